// SPDX-License-Identifier: MIT
/*
 * The embedded socket source's connection work (see src_sock.c for the
 * design): control events and the end of a connection, sends and their
 * queue, receiving into delivery slots, accepting, and the thread's
 * dispatch of epoll events.  Everything here runs under sk_mu.
 */
#define _GNU_SOURCE
#include "src_sock.h"

static void sk_conn_close(struct sk_obj *o);

/* ---------------------------------------------------------------------- */
/* Control events and the end of a connection                             */

/*
 * Post a control event of @o; false when the ring has no room for it (@o
 * is paused then, and the caller leaves the event pending).
 */
static bool sk_post_ctl(struct sk_obj *o, const struct aem_sock_event *ev, u32 flags)
{
	for (;;) {
		if (!aem_core_post_fit(o->r, o->s, ev, sizeof(*ev), AEM_CQE_F_SOCK_CTL | flags, o->id))
			return true;
		if (sk_pause(o, sizeof(*ev)))
			return false;
	}
}

/* Resume the ring's listeners that wait at the connection limit. */
void sk_below_limit(struct aem_ctx *r)
{
	struct sk_ring *sr = sk_ring(r);
	u32 i;

	if (!sr || !sr->limited || sr->conns >= aem_ctx_sock_conns(r))
		return;
	for (i = 0; i < sk_len && sr->limited; i++) {
		struct sk_obj *l = &sk_tab[i];

		if (l->kind == SK_LISTEN && l->r == r && l->at_limit) {
			l->at_limit = l->limit_posted = false;
			sr->limited--;
			sk_arm(l);
		}
	}
}

/* The connection's CLOSED, its final event; @o is freed once it is posted. */
static void sk_post_closed(struct sk_obj *o)
{
	struct aem_sock_event ev = { .type = AEM_SOCK_EV_CLOSED, .res = o->err };

	if (sk_post_ctl(o, &ev, AEM_CQE_F_FINAL))
		sk_release(o);	/* the subscription ended with it */
}

/* Close @o's socket (o->err: CLOSED's res); queued sends are answered with it. */
static void sk_conn_close(struct sk_obj *o)
{
	struct aem_ctx *r = o->r;

	if (!o->dead) {
		if (o->armed)
			epoll_ctl(sk_epfd, EPOLL_CTL_DEL, o->fd, NULL);
		o->armed = false;
		close(o->fd);
		o->fd = -1;
		o->dead = o->rd_done = o->wr_done = true;
		o->need_connect = o->need_eof = false;
		sk_drop_queue(o, o->err ? o->err : -ECANCELED, true);
		sk_ring(r)->conns--;
	}
	sk_post_closed(o);	/* may free @o */
	sk_below_limit(r);
}

static void sk_fail(struct sk_obj *o, int err)
{
	o->err = err;
	sk_conn_close(o);
}

static void sk_post_eof(struct sk_obj *o)
{
	struct aem_sock_event ev = { .type = AEM_SOCK_EV_EOF };

	if (sk_post_ctl(o, &ev, 0))
		o->need_eof = false;
}

static void sk_post_connect(struct sk_obj *o)
{
	if (sk_post_ctl(o, &o->ev, 0))
		o->need_connect = false;
}

/* ---------------------------------------------------------------------- */
/* Sends                                                                  */

void sk_drop_queue(struct sk_obj *o, s32 res, bool answer)
{
	struct sk_send *q;

	while ((q = o->qhead)) {
		o->qhead = q->next;
		if (answer)
			aem_core_complete(o->r, &q->p, res);
		free(q);
	}
	o->qtail = NULL;
	o->nq = 0;
}

/* A shutdown whose turn has come (not CLOSE); 0 or -errno. */
static int sk_do_shut(struct sk_obj *o, u32 how)
{
	int h = how == AEM_SOCK_SHUT_RDWR ? SHUT_RDWR : how == AEM_SOCK_SHUT_RD ? SHUT_RD : SHUT_WR;

	if (how & AEM_SOCK_SHUT_RD) {
		o->rd_done = true;
		o->need_eof = false;
	}
	if (shutdown(o->fd, h) < 0 && errno != ENOTCONN)
		return -errno;
	return 0;
}

/*
 * Send queued entries while the socket takes them; each is answered once
 * its last byte is taken, a shutdown when its turn comes, a CLOSE closes.
 */
static void sk_flush(struct sk_obj *o)
{
	struct sk_send *q;
	s32 ret;
	ssize_t n;

	while ((q = o->qhead)) {
		if (!q->how) {
			while (q->off < q->len) {
				n = send(o->fd, q->data + q->off, q->len - q->off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
					sk_arm(o);
					return;
				}
				if (n < 0) {
					sk_fail(o, -errno);
					return;
				}
				q->off += (u32)n;
			}
			ret = (s32)q->total;
		} else {
			ret = q->how == AEM_SOCK_CLOSE ? 0 : sk_do_shut(o, q->how);
		}
		o->qhead = q->next;
		if (!o->qhead)
			o->qtail = NULL;
		o->nq--;
		aem_core_complete(o->r, &q->p, ret);
		if (q->how == AEM_SOCK_CLOSE) {
			free(q);
			o->err = 0;
			sk_conn_close(o);
			return;
		}
		free(q);
	}
	sk_arm(o);
}

static int sk_queue(struct sk_obj *o, const struct aem_sqe *sqe, const u8 *data, u32 len,
		    u32 total, u32 how)
{
	struct sk_send *q = malloc(sizeof(*q) + len);

	if (!q)
		return -ENOMEM;
	q->next = NULL;
	aem_core_pending_init(&q->p, sqe);
	q->len = len;
	q->off = 0;
	q->total = total;
	q->how = how;
	if (len)
		memcpy(q->data, data, len);
	if (o->qtail)
		o->qtail->next = q;
	else
		o->qhead = q;
	o->qtail = q;
	o->nq++;
	sk_arm(o);
	return AEM_CORE_PENDING;
}

/* SEND, or WRITEBACK of a data event: now if the socket takes it, else queued. */
int sk_send(struct sk_obj *o, const struct aem_sqe *sqe, const u8 *data, u32 len)
{
	struct aem_pending p;
	u32 off = 0;
	ssize_t n;

	if (o->dead)
		return -ENOTCONN;	/* failed or closed: its CLOSED is on the way */
	if (o->wr_done)
		return -ESHUTDOWN;
	if (o->nq >= AEM_SOCK_MAX_QUEUED)
		return -ENOBUFS;
	if (o->qhead)
		return sk_queue(o, sqe, data, len, len, 0);
	while (off < len) {
		n = send(o->fd, data + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0) {
			/* The connection failed: this send's answer, not a refusal. */
			int err = -errno;

			aem_core_pending_init(&p, sqe);
			aem_core_complete(o->r, &p, err);
			sk_fail(o, err);
			return AEM_CORE_PENDING;
		}
		off += (u32)n;
	}
	if (off == len)
		return (int)len;
	return sk_queue(o, sqe, data + off, len - off, len, 0);
}

int sk_shutdown(struct sk_obj *o, const struct aem_sqe *sqe)
{
	struct aem_pending p;
	u32 how = sqe->arg;
	int ret;

	if (!how || (how & ~(AEM_SOCK_SHUT_RDWR | AEM_SOCK_CLOSE)) ||
	    ((how & AEM_SOCK_CLOSE) && how != AEM_SOCK_CLOSE))
		return -EINVAL;
	if (o->closing)
		return -ESHUTDOWN;
	if (o->dead)
		return -ENOTCONN;
	if (o->nq >= AEM_SOCK_MAX_QUEUED)
		return -ENOBUFS;
	if (how & (AEM_SOCK_SHUT_WR | AEM_SOCK_CLOSE))
		o->wr_done = true;
	if (how == AEM_SOCK_CLOSE)
		o->closing = true;
	if (o->qhead)
		return sk_queue(o, sqe, NULL, 0, 0, how);
	if (how != AEM_SOCK_CLOSE) {
		ret = sk_do_shut(o, how);
		sk_arm(o);
		return ret;
	}
	/* The result first, then the connection's final CLOSED. */
	aem_core_pending_init(&p, sqe);
	aem_core_complete(o->r, &p, 0);
	o->err = 0;
	sk_conn_close(o);
	return AEM_CORE_PENDING;
}

/* ---------------------------------------------------------------------- */
/* Receiving and accepting (the thread)                                   */

static void sk_read(struct sk_obj *o)
{
	u32 ss = aem_ctx_slot_size(o->r), ref, i;
	void *buf;
	ssize_t n;

	for (i = 0; i < SK_READS && !o->rd_done; i++) {
		if (!aem_core_has_room(o->r, o->s, ss) && sk_pause(o, ss))
			return;
		if (aem_core_slot_take(o->r, &ref, &buf)) {
			if (sk_pause(o, ss))
				return;
			continue;
		}
		n = recv(o->fd, buf, ss, MSG_DONTWAIT);
		if (n > 0) {
			if (aem_core_post_slot(o->r, o->s, ref, (u32)n, 0, o->id)) {
				aem_core_slot_put(o->r, ref);
				sk_fail(o, -ENOMEM);
				return;
			}
			if ((u32)n < ss)
				break;	/* drained, most likely: let the others have their turn */
			continue;
		}
		aem_core_slot_put(o->r, ref);
		if (n == 0) {
			o->rd_done = o->need_eof = true;
			sk_post_eof(o);
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			sk_fail(o, -errno);
			return;
		}
		break;
	}
	sk_arm(o);
}

static void sk_peer(struct sk_obj *c, const struct sockaddr_storage *ss)
{
	c->ev.type = AEM_SOCK_EV_CONNECT;
	c->ev.family = ss->ss_family;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)ss;

		c->ev.port = ntohs(in->sin_port);
		memcpy(c->ev.addr, &in->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		c->ev.port = ntohs(in6->sin6_port);
		c->ev.scope_id = in6->sin6_scope_id;
		memcpy(c->ev.addr, &in6->sin6_addr, 16);
	} else {
		c->ev.family = AF_UNIX;
	}
}

/* The listener stops accepting for now: a limit (or accept's -errno) says why, once. */
static void sk_listen_limit(struct sk_obj *l, int res)
{
	struct aem_sock_event ev = { .type = AEM_SOCK_EV_LIMIT, .res = res };

	if (res == -EMFILE && !l->retry) {
		struct pollfd pf = { .fd = l->fd, .events = POLLIN };

		if (!l->at_limit) {
			l->at_limit = true;
			sk_ring(l->r)->limited++;
		}
		/* Said only when a connection waits; else the next one's arrival wakes us to say it. */
		if (poll(&pf, 1, 0) <= 0) {
			sk_arm(l);
			return;
		}
		l->limit_posted = true;
	} else {
		l->retry = true;
		sk_nretry++;
	}
	sk_arm(l);
	/* Best effort: no room means the application is behind anyway; never wait for it. */
	aem_core_post_fit(l->r, l->s, &ev, sizeof(ev), AEM_CQE_F_SOCK_CTL, l->id);
}

/*
 * The listening socket cannot accept any more (the application shut it
 * down, or it failed): the listener ends with CLOSED -ECONNABORTED, its
 * final event; its connections go on.
 */
static void sk_listen_gone(struct sk_obj *l)
{
	struct aem_sock_event ev = { .type = AEM_SOCK_EV_CLOSED, .res = -ECONNABORTED };

	if (!l->dead) {
		if (l->armed)
			epoll_ctl(sk_epfd, EPOLL_CTL_DEL, l->fd, NULL);
		l->armed = false;
		close(l->fd);
		l->fd = -1;
		l->dead = true;
		if (l->at_limit)
			sk_ring(l->r)->limited--;
		l->at_limit = false;
	}
	if (sk_post_ctl(l, &ev, AEM_CQE_F_FINAL))
		sk_release(l);
}

static void sk_accept(u32 lidx)
{
	struct sk_obj *l = &sk_tab[lidx], *c;
	struct sockaddr_storage ss;
	struct aem_sub *cs;
	socklen_t sl;
	u32 i;
	int fd;

	for (i = 0; i < SK_ACCEPTS; i++) {
		l = &sk_tab[lidx];	/* sk_new() may move the table */
		if (sk_ring(l->r)->conns >= aem_ctx_sock_conns(l->r)) {
			sk_listen_limit(l, -EMFILE);
			return;
		}
		if (!aem_core_has_room(l->r, l->s, sizeof(struct aem_sock_event)) &&
		    sk_pause(l, sizeof(struct aem_sock_event)))
			return;
		sl = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				sk_listen_limit(l, -errno);	/* wait for resources */
				return;
			}
			sk_listen_gone(l);	/* shut down under us, or failed: no accept will work */
			return;
		}
		cs = aem_core_sub_spawn(l->r, l->s);
		c = cs ? sk_new(l->r, cs, SK_CONN, fd) : NULL;
		l = &sk_tab[lidx];
		if (!c) {
			/* A spawned subscription without its object ends with its CLOSED. */
			if (cs) {
				struct aem_sock_event ev = { .type = AEM_SOCK_EV_CLOSED, .res = -ENOMEM };

				aem_core_post(l->r, cs, &ev, sizeof(ev), AEM_CQE_F_FINAL, 0);
			}
			close(fd);
			sk_listen_limit(l, -ENOMEM);
			return;
		}
		sk_ring(l->r)->conns++;
		if (sl < sizeof(sa_family_t))
			ss.ss_family = AF_UNIX;	/* an unnamed Unix peer */
		sk_peer(c, &ss);
		c->need_connect = true;
		sk_post_connect(c);
		if (!c->paused)
			sk_arm(c);
	}
	sk_arm(&sk_tab[lidx]);
}

/* Room came (the .room hook's kick): every paused object looks again. */
void sk_resume_all(void)
{
	u32 idx = sk_paused, next;

	sk_paused = SK_NIL;
	for (; idx != SK_NIL; idx = next) {
		struct sk_obj *o = &sk_tab[idx];

		next = o->pnext;
		o->paused = false;
		__atomic_sub_fetch(&sk_npaused, 1, __ATOMIC_RELAXED);
		if (o->kind == SK_CONN && o->dead) {
			sk_post_closed(o);
			continue;
		}
		if (o->kind == SK_LISTEN && o->dead) {
			sk_listen_gone(o);
			continue;
		}
		if (o->kind == SK_CONN && o->need_connect)
			sk_post_connect(o);
		if (o->kind == SK_CONN && !o->need_connect && o->need_eof)
			sk_post_eof(o);
		sk_arm(o);
	}
}

void sk_retry_listeners(void)
{
	u32 i;

	for (i = 0; i < sk_len && sk_nretry; i++) {
		if (sk_tab[i].kind == SK_LISTEN && sk_tab[i].retry) {
			sk_tab[i].retry = false;
			sk_nretry--;
			sk_arm(&sk_tab[i]);
		}
	}
}

void sk_dispatch(u64 key, u32 events)
{
	u32 idx = (u32)key, serial = (u32)(key >> 32);
	struct sk_obj *o;

	if (idx >= sk_len || sk_tab[idx].serial != serial)
		return;
	o = &sk_tab[idx];
	if (o->kind == SK_LISTEN) {
		if (o->started && !o->paused && !o->dead)
			sk_accept(idx);
		return;
	}
	if (o->kind != SK_CONN || o->dead || o->paused)
		return;
	if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && o->qhead) {
		sk_flush(o);
		if (sk_tab[idx].serial != serial || o->dead)
			return;
	}
	if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && !o->rd_done && !o->need_connect)
		sk_read(o);
}

