// SPDX-License-Identifier: MIT
/*
 * AEM_SRC_SOCK on the embedded backend: socket I/O carried through the
 * ring (docs/PROTOCOL.md section 10), the user-space twin of the module's
 * aem_sock.  One thread per process with one level-triggered epoll set
 * accepts, receives and continues partial sends for every ring; sends
 * and shutdowns are first tried in the submitter's thread (the .io hook).
 *
 *  - Objects: a listener (the SUBSCRIBE) and one connection per accepted
 *    socket, each with a subscription of its own (aem_core_sub_spawn).
 *    epoll hands the thread a key (table index and serial), never a
 *    pointer; a subscription names its object by index and serial in
 *    priv[0..1], so a stale key or a freed subscription misses.
 *  - Back-pressure: before it accepts or receives, the thread asks the
 *    core for room (aem_core_has_room, then aem_core_want_room); a
 *    received payload goes straight into a delivery slot taken first
 *    (aem_core_slot_take, aem_core_post_slot), control events go in only
 *    if they fit (aem_core_post_fit).  Without room the object pauses:
 *    its EPOLLIN interest is dropped (the kernel's socket buffer fills,
 *    TCP closes the window) and it waits on the paused list until the
 *    core's .room hook kicks the thread, which re-arms every paused one.
 *  - Sends: never blocking.  What the socket does not take at once is
 *    copied into the connection's queue (at most AEM_SOCK_MAX_QUEUED
 *    entries) and continued on EPOLLOUT; each send is answered when its
 *    last byte is taken (aem_core_complete).
 *  - Descriptors: the listener is a duplicate of the subscriber's fd (set
 *    O_NONBLOCK, which the duplicate shares with the original);
 *    connections are accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) fds that
 *    libaem never hands out.
 *
 * Locks: ring submit_lock -> sk_mu -> ring cq_lock (and the core's source
 * lock, in aem_core_sub_spawn).  The thread does everything under sk_mu
 * but epoll_wait.  The .room hook runs under the core's source lock: it
 * only writes the thread's eventfd.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "emb_sources.h"

#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS	83	/* Linux 6.16 */
#endif

#define SK_NIL		UINT32_MAX
#define SK_STOP_KEY	UINT64_MAX		/* the eventfd that stops the thread */
#define SK_ROOM_KEY	(UINT64_MAX - 1)	/* the eventfd the .room hook writes */
#define SK_BATCH	64			/* epoll events per wait */
#define SK_TAB_MIN	64
#define SK_READS	4			/* receives per connection per wake: fairness */
#define SK_ACCEPTS	32			/* accepts per listener per wake */
#define SK_RETRY_MS	100			/* accept failed for want of resources */

enum { SK_FREE, SK_LISTEN, SK_CONN };

struct sk_send {
	struct sk_send		*next;
	struct aem_pending	p;
	u32			len, off;	/* bytes queued, bytes of them sent */
	u32			total;		/* the answer: the send's whole length */
	u32			how;		/* 0: data; else AEM_SOCK_SHUT_* or AEM_SOCK_CLOSE */
	u8			data[];
};

struct sk_obj {
	struct aem_ctx	*r;
	struct aem_sub	*s;
	u64		id;
	int		fd;
	u32		serial;		/* bumped at free: stale keys and priv miss */
	u32		next_free;
	u32		pnext, pprev;	/* the paused list, by index */
	u8		kind;		/* SK_* */
	bool		armed;		/* registered with epoll */
	u32		mask;		/* its epoll mask when armed */
	bool		paused;		/* on the paused list: waits for room */
	bool		started;	/* listener: the SUBSCRIBE result is out */
	bool		at_limit;	/* listener: sock_conns reached */
	bool		limit_posted;	/* listener: and a connection waits: LIMIT posted */
	bool		retry;		/* listener: accept failed for resources */
	bool		need_connect;	/* conn: CONNECT not yet posted */
	bool		need_eof;	/* conn: EOF not yet posted */
	bool		rd_done;	/* conn: no more receiving (EOF, SHUT_RD, failed) */
	bool		wr_done;	/* conn: no more sends (SHUT_WR, CLOSE accepted, failed) */
	bool		closing;	/* conn: CLOSE accepted: every later op is -EPIPE */
	bool		dead;		/* conn: socket closed; CLOSED (final) to post */
	s32		err;		/* conn: CLOSED's res */
	u32		nq;		/* sends queued */
	struct sk_send	*qhead, *qtail;
	struct aem_sock_event ev;	/* CONNECT's payload until posted */
};

struct sk_ring {
	u32	conns;		/* open connection sockets */
	u32	limited;	/* listeners waiting at the limit */
};

static pthread_mutex_t sk_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sk_obj *sk_tab;
static u32 sk_len, sk_cap, sk_free = SK_NIL, sk_live, sk_paused = SK_NIL;
static int sk_epfd = -1, sk_stopfd = -1, sk_roomfd = -1;
static int sk_npaused;		/* objects waiting for room (read by the .room hook) */
static u32 sk_nretry;		/* listeners waiting to retry accept */
static pthread_t sk_thr;
static bool sk_running;

static void sk_drop_queue(struct sk_obj *o, s32 res, bool answer);

static u64 sk_key(u32 idx, u32 serial)
{
	return (u64)serial << 32 | idx;
}

static u32 sk_idx(const struct sk_obj *o)
{
	return (u32)(o - sk_tab);
}

static struct sk_ring *sk_ring(struct aem_ctx *r)
{
	return *aem_ctx_src_priv(r, AEM_SRC_SOCK);
}

/* The object @s names, or NULL (freed, or a subscription we never kept). Under sk_mu. */
static struct sk_obj *sk_of(struct aem_sub *s)
{
	u32 idx;

	if (!s->priv[0])
		return NULL;
	idx = (u32)(s->priv[0] - 1);
	if (idx >= sk_len || sk_tab[idx].kind == SK_FREE || sk_tab[idx].s != s ||
	    sk_tab[idx].serial != (u32)s->priv[1])
		return NULL;
	return &sk_tab[idx];
}

/* ---------------------------------------------------------------------- */
/* epoll interest and the paused list                                     */

/* The interest @o should have now; none at all while paused. */
static u32 sk_want(const struct sk_obj *o)
{
	u32 m = 0;

	if (o->paused || o->fd < 0)
		return 0;
	if (o->kind == SK_LISTEN)
		return o->started && !o->retry && !o->limit_posted ? EPOLLIN : 0;
	if (!o->rd_done && !o->need_connect && !o->need_eof)
		m |= EPOLLIN;
	if (o->qhead)
		m |= EPOLLOUT;
	return m;
}

static void sk_arm(struct sk_obj *o)
{
	struct epoll_event ee = { .data.u64 = sk_key(sk_idx(o), o->serial) };
	u32 m = sk_want(o);

	if (m == (o->armed ? o->mask : 0))
		return;
	if (!m) {
		/* Not merely a mask of 0: epoll reports HUP and ERR regardless. */
		epoll_ctl(sk_epfd, EPOLL_CTL_DEL, o->fd, NULL);
		o->armed = false;
		return;
	}
	ee.events = m;
	if (epoll_ctl(sk_epfd, o->armed ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, o->fd, &ee) < 0) {
		aem_warn("sock source: epoll_ctl fd %d: %s", o->fd, strerror(errno));
		return;
	}
	o->armed = true;
	o->mask = m;
}

static void sk_unpause(struct sk_obj *o)
{
	if (!o->paused)
		return;
	if (o->pprev != SK_NIL)
		sk_tab[o->pprev].pnext = o->pnext;
	else
		sk_paused = o->pnext;
	if (o->pnext != SK_NIL)
		sk_tab[o->pnext].pprev = o->pprev;
	o->paused = false;
	__atomic_sub_fetch(&sk_npaused, 1, __ATOMIC_RELAXED);
}

/*
 * No room for @o's next event: park it, then announce (the count before
 * the core's barrier, so the hook sees it).  False: room came meanwhile,
 * go on.
 */
static bool sk_pause(struct sk_obj *o, u32 len)
{
	if (!o->paused) {
		o->paused = true;
		o->pprev = SK_NIL;
		o->pnext = sk_paused;
		if (sk_paused != SK_NIL)
			sk_tab[sk_paused].pprev = sk_idx(o);
		sk_paused = sk_idx(o);
		__atomic_add_fetch(&sk_npaused, 1, __ATOMIC_SEQ_CST);
	}
	if (aem_core_want_room(o->r, o->s, len)) {
		sk_unpause(o);
		return false;
	}
	sk_arm(o);
	return true;
}

static void sk_room(struct aem_ctx *r)
{
	u64 one = 1;
	ssize_t n;

	(void)r;
	if (__atomic_load_n(&sk_npaused, __ATOMIC_SEQ_CST) && sk_roomfd >= 0) {
		n = write(sk_roomfd, &one, sizeof(one));
		(void)n;	/* EAGAIN: a kick is pending anyway */
	}
}

/* ---------------------------------------------------------------------- */
/* The table                                                              */

static int sk_alloc_locked(u32 *out)
{
	struct sk_obj *t;
	u32 cap;

	if (sk_free == SK_NIL) {
		if (sk_len == sk_cap) {
			cap = sk_cap ? sk_cap * 2 : SK_TAB_MIN;
			t = realloc(sk_tab, (size_t)cap * sizeof(*t));
			if (!t)
				return -ENOMEM;
			sk_tab = t;
			sk_cap = cap;
		}
		memset(&sk_tab[sk_len], 0, sizeof(*sk_tab));
		sk_tab[sk_len].next_free = SK_NIL;
		sk_free = sk_len++;
	}
	*out = sk_free;
	sk_free = sk_tab[sk_free].next_free;
	sk_live++;
	return 0;
}

static struct sk_obj *sk_new(struct aem_ctx *r, struct aem_sub *s, u8 kind, int fd)
{
	struct sk_obj *o;
	u32 idx, serial;

	if (sk_alloc_locked(&idx))
		return NULL;
	o = &sk_tab[idx];
	serial = o->serial;
	memset(o, 0, sizeof(*o));
	o->serial = serial;
	o->next_free = SK_NIL;
	o->kind = kind;
	o->r = r;
	o->s = s;
	o->id = aem_sub_id(r, s);
	o->fd = fd;
	s->priv[0] = (u64)idx + 1;
	s->priv[1] = serial;
	return o;
}

static void sk_release(struct sk_obj *o)
{
	u32 idx = sk_idx(o);

	sk_unpause(o);
	if (o->kind == SK_LISTEN && o->retry)
		sk_nretry--;
	o->kind = SK_FREE;
	o->r = NULL;
	o->s = NULL;
	o->serial++;
	o->next_free = sk_free;
	sk_free = idx;
	sk_live--;
}

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
static void sk_below_limit(struct aem_ctx *r)
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

static void sk_drop_queue(struct sk_obj *o, s32 res, bool answer)
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
static int sk_send(struct sk_obj *o, const struct aem_sqe *sqe, const u8 *data, u32 len)
{
	struct aem_pending p;
	u32 off = 0;
	ssize_t n;

	if (o->wr_done)
		return o->dead && o->err ? o->err : -EPIPE;
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

static int sk_shutdown(struct sk_obj *o, const struct aem_sqe *sqe)
{
	struct aem_pending p;
	u32 how = sqe->arg;
	int ret;

	if (!how || (how & ~(AEM_SOCK_SHUT_RDWR | AEM_SOCK_CLOSE)) ||
	    ((how & AEM_SOCK_CLOSE) && how != AEM_SOCK_CLOSE))
		return -EINVAL;
	if (o->closing)
		return -EPIPE;
	if (o->dead)
		return o->err ? o->err : -EPIPE;
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
			sk_listen_limit(l, -errno);	/* EMFILE (the process), ENFILE, ENOBUFS, ENOMEM */
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
static void sk_resume_all(void)
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
		if (o->kind == SK_CONN && o->need_connect)
			sk_post_connect(o);
		if (o->kind == SK_CONN && !o->need_connect && o->need_eof)
			sk_post_eof(o);
		sk_arm(o);
	}
}

static void sk_retry_listeners(void)
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

static void sk_dispatch(u64 key, u32 events)
{
	u32 idx = (u32)key, serial = (u32)(key >> 32);
	struct sk_obj *o;

	if (idx >= sk_len || sk_tab[idx].serial != serial)
		return;
	o = &sk_tab[idx];
	if (o->kind == SK_LISTEN) {
		if (o->started && !o->paused)
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

static void *sk_main(void *arg)
{
	struct epoll_event evs[SK_BATCH];
	u64 v;
	int i, n;

	(void)arg;
	for (;;) {
		n = epoll_wait(sk_epfd, evs, SK_BATCH,
			       __atomic_load_n(&sk_nretry, __ATOMIC_RELAXED) ? SK_RETRY_MS : -1);
		if (n < 0 && errno != EINTR) {
			aem_warn("sock source: epoll_wait: %s; socket I/O stops", strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&sk_mu);
		for (i = 0; i < n; i++) {
			if (evs[i].data.u64 == SK_STOP_KEY) {
				pthread_mutex_unlock(&sk_mu);
				return NULL;
			}
			if (evs[i].data.u64 == SK_ROOM_KEY) {
				if (read(sk_roomfd, &v, sizeof(v)) < 0)
					v = 0;
				sk_resume_all();
				continue;
			}
			sk_dispatch(evs[i].data.u64, evs[i].events);
		}
		if (sk_nretry)
			sk_retry_listeners();
		pthread_mutex_unlock(&sk_mu);
	}
}

static int sk_start_locked(void)
{
	struct epoll_event ee = { .events = EPOLLIN };
	sigset_t all, old;
	int ret;

	if (sk_running)
		return 0;
	sk_epfd = epoll_create1(EPOLL_CLOEXEC);
	sk_stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	sk_roomfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = -errno;
	if (sk_epfd < 0 || sk_stopfd < 0 || sk_roomfd < 0)
		goto err;
	ee.data.u64 = SK_STOP_KEY;
	if (epoll_ctl(sk_epfd, EPOLL_CTL_ADD, sk_stopfd, &ee) < 0)
		goto err_errno;
	ee.data.u64 = SK_ROOM_KEY;
	if (epoll_ctl(sk_epfd, EPOLL_CTL_ADD, sk_roomfd, &ee) < 0)
		goto err_errno;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&sk_thr, NULL, sk_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		goto err;
	sk_running = true;
	return 0;
err_errno:
	ret = -errno;
err:
	if (sk_roomfd >= 0)
		close(sk_roomfd);
	if (sk_stopfd >= 0)
		close(sk_stopfd);
	if (sk_epfd >= 0)
		close(sk_epfd);
	sk_epfd = sk_stopfd = sk_roomfd = -1;
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Source ops                                                             */

/* The checks of PROTOCOL.md section 10, "Subscribe a listener", on our duplicate. */
static int sk_check_listener(int fd)
{
	int type = 0, dom = 0, acc = 0, off = 0;
	socklen_t sl = sizeof(int);
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0)
		return -errno;
	sl = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &sl) < 0)
		return -errno;
	if (type != SOCK_STREAM || (dom != AF_INET && dom != AF_INET6 && dom != AF_UNIX))
		return -EOPNOTSUPP;
	sl = sizeof(int);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl) < 0 || !acc)
		return -EINVAL;
	/* No file may sit in a connection's queue (PROTOCOL.md: no SCM_RIGHTS cycle). */
	if (dom == AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_PASSRIGHTS, &off, sizeof(off)) < 0 &&
	    errno != ENOPROTOOPT && errno != EINVAL)
		return -errno;
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int sk_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	const struct aem_sock_args *a = &sqe->sock;
	void **priv = aem_ctx_src_priv(r, AEM_SRC_SOCK);
	int fd, ret;

	if (a->fd < 0 || a->flags || a->resv[0] || a->resv[1] || a->resv[2])
		return -EINVAL;
	fd = fcntl(a->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return -errno;	/* EBADF */
	ret = sk_check_listener(fd);
	if (ret)
		goto err;
	pthread_mutex_lock(&sk_mu);
	ret = sk_start_locked();
	if (!ret && !*priv) {
		*priv = calloc(1, sizeof(struct sk_ring));
		if (!*priv)
			ret = -ENOMEM;
	}
	if (!ret && !sk_new(r, s, SK_LISTEN, fd))
		ret = -ENOMEM;
	pthread_mutex_unlock(&sk_mu);
	if (!ret)
		return 0;
err:
	close(fd);
	return ret;
}

static void sk_start_op(struct aem_ctx *r, struct aem_sub *s)
{
	struct sk_obj *o;

	(void)r;
	pthread_mutex_lock(&sk_mu);
	o = sk_of(s);
	if (o) {
		o->started = true;
		sk_arm(o);
	}
	pthread_mutex_unlock(&sk_mu);
}

static void sk_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct sk_obj *o;

	pthread_mutex_lock(&sk_mu);
	o = sk_of(s);
	if (!o) {
		pthread_mutex_unlock(&sk_mu);
		return;
	}
	if (o->armed)
		epoll_ctl(sk_epfd, EPOLL_CTL_DEL, o->fd, NULL);
	if (o->kind == SK_LISTEN) {
		close(o->fd);
		if (o->at_limit)
			sk_ring(r)->limited--;
		sk_release(o);
	} else {
		sk_drop_queue(o, -ECANCELED, true);
		if (!o->dead) {
			close(o->fd);
			sk_ring(r)->conns--;
		}
		sk_release(o);
		sk_below_limit(r);
	}
	pthread_mutex_unlock(&sk_mu);
}

static int sk_io(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
		 const void *data, u32 len)
{
	struct sk_obj *o;
	int ret;

	(void)r;
	pthread_mutex_lock(&sk_mu);
	o = sk_of(s);
	if (!o)
		ret = -ENOENT;
	else if (o->kind != SK_CONN)
		ret = -ENOTCONN;
	else if (o->closing)
		ret = -EPIPE;
	else if (sqe->opcode == AEM_OP_SHUTDOWN)
		ret = sk_shutdown(o, sqe);
	else
		ret = sk_send(o, sqe, data, len);
	pthread_mutex_unlock(&sk_mu);
	return ret;
}

static void sk_ring_release(struct aem_ctx *r)
{
	void **priv = aem_ctx_src_priv(r, AEM_SRC_SOCK);

	pthread_mutex_lock(&sk_mu);	/* the fence: the thread touches @r only under it */
	free(*priv);
	*priv = NULL;
	pthread_mutex_unlock(&sk_mu);
}

const struct aem_source_ops __aem_sock_source_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_SOCK,
	.name		= "sock",
	.subscribe	= sk_subscribe,
	.unsubscribe	= sk_unsubscribe,
	.start		= sk_start_op,
	.ring_release	= sk_ring_release,
	.io		= sk_io,
	.room		= sk_room,
};

void __aem_sock_source_stop(void)
{
	u64 one = 1;
	ssize_t n;

	pthread_mutex_lock(&sk_mu);
	if (!sk_running) {
		pthread_mutex_unlock(&sk_mu);
		return;
	}
	pthread_mutex_unlock(&sk_mu);
	n = write(sk_stopfd, &one, sizeof(one));
	(void)n;
	pthread_join(sk_thr, NULL);

	pthread_mutex_lock(&sk_mu);
	close(sk_epfd);
	close(sk_stopfd);
	close(sk_roomfd);
	sk_epfd = sk_stopfd = sk_roomfd = -1;
	sk_running = false;
	if (!sk_live) {
		free(sk_tab);
		sk_tab = NULL;
		sk_len = sk_cap = 0;
		sk_free = SK_NIL;
		sk_paused = SK_NIL;
	}
	pthread_mutex_unlock(&sk_mu);
}
