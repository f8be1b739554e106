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
 * This file: the objects, their epoll interest, the paused list, the
 * thread and the source ops; src_sock_io.c: what connections and
 * listeners do (control events, sends, receives, accepts).
 *
 * Locks: ring submit_lock -> sk_mu -> ring cq_lock (and the core's source
 * lock, in aem_core_sub_spawn).  The thread does everything under sk_mu
 * but epoll_wait.  The .room hook runs under the core's source lock: it
 * only writes the thread's eventfd.
 */
#define _GNU_SOURCE
#include "src_sock.h"

static pthread_mutex_t sk_mu = PTHREAD_MUTEX_INITIALIZER;
struct sk_obj *sk_tab;
u32 sk_len, sk_paused = SK_NIL;
static u32 sk_cap, sk_free = SK_NIL, sk_live;
int sk_epfd = -1;
static int sk_stopfd = -1, sk_roomfd = -1;
int sk_npaused;		/* objects waiting for room (read by the .room hook) */
u32 sk_nretry;		/* listeners waiting to retry accept */
static pthread_t sk_thr;
static bool sk_running;


static u64 sk_key(u32 idx, u32 serial)
{
	return (u64)serial << 32 | idx;
}

u32 sk_idx(const struct sk_obj *o)
{
	return (u32)(o - sk_tab);
}

struct sk_ring *sk_ring(struct aem_ctx *r)
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

void sk_arm(struct sk_obj *o)
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

void sk_unpause(struct sk_obj *o)
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
bool sk_pause(struct sk_obj *o, u32 len)
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

struct sk_obj *sk_new(struct aem_ctx *r, struct aem_sub *s, u8 kind, int fd)
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

void sk_release(struct sk_obj *o)
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
		if (!o->dead)
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
		ret = -ESHUTDOWN;
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
