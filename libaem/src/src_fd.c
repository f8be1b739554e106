// SPDX-License-Identifier: MIT
/*
 * AEM_SRC_FD on the embedded backend: socket readiness (accept, readable,
 * hang-up) through one epoll thread per process, the user-space twin of
 * kmod/aem_fd.c.  What a subscriber sees is the module's:
 *
 *  - subscribe checks struct aem_fd_args as the module does: -EINVAL for a
 *    negative fd, an empty or unknown mask or a non-zero reserved field,
 *    -EBADF for an fd that is not open, -ENOTSOCK for one that is not a
 *    socket.  It keeps its own duplicate of the fd, as the module keeps a
 *    file reference, so the application closing or reusing its fd number
 *    changes nothing until it unsubscribes;
 *  - edge-triggered (EPOLLET), as the module's wait-queue hook is: an event
 *    when the socket reports a change, not one per look while a condition
 *    stays true; changes the thread has not picked up yet coalesce into one
 *    event.  What is already true when the subscription starts is reported
 *    once, after the SUBSCRIBE result (the start op re-arms the entry,
 *    which makes epoll look at the socket again);
 *  - EPOLLIN is AEM_FD_ACCEPT on a socket that was listening at subscribe,
 *    AEM_FD_READABLE on any other; EPOLLHUP, EPOLLRDHUP and EPOLLERR are
 *    AEM_FD_HANGUP; only the bits subscribed to are reported, and a change
 *    that maps to none posts nothing.  Payload: struct aem_fd_event inline,
 *    fd as the subscriber named it.
 *
 * No event for a freed subscription: epoll hands the thread a key (table
 * index and serial), never a pointer.  The thread posts only under fd_mu,
 * after checking that the key still names a started watch; unsubscribe
 * deletes the epoll entry, frees the watch and bumps its serial under
 * fd_mu.  Once unsubscribe returns, nothing of the subscription is touched.
 *
 * Locks: ring submit_lock -> fd_mu -> ring cq_lock (aem_core_post).  The
 * thread starts with the first subscription and is joined by
 * __aem_fd_source_stop() when the last embedded ring goes.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "emb_sources.h"

#define FD_NIL		UINT32_MAX
#define FD_STOP_KEY	UINT64_MAX	/* epoll key of the eventfd that stops the thread */
#define FD_BATCH	64		/* epoll events per wait */
#define FD_TAB_MIN	64

struct fd_watch {
	struct aem_ctx	*r;		/* NULL: a free entry */
	struct aem_sub	*s;
	u64		id;		/* subscription id, the events' token */
	int		fd;		/* as the subscriber named it, echoed */
	int		dupfd;		/* ours, registered with epoll */
	u32		events;		/* AEM_FD_* wanted */
	u32		serial;		/* bumped at start and free: a stale epoll key misses */
	u32		next_free;
	bool		listening;	/* EPOLLIN means accept, not read */
	bool		started;	/* the SUBSCRIBE result is out: events may follow */
};

/* All below under fd_mu, except what the thread reads before it starts. */
static pthread_mutex_t fd_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fd_watch *fd_tab;
static u32 fd_tab_len, fd_tab_cap, fd_free = FD_NIL, fd_live;
static int fd_epfd = -1, fd_stopfd = -1;
static pthread_t fd_thr;
static bool fd_running;

static u64 fd_key(u32 idx, u32 serial)
{
	return (u64)serial << 32 | idx;
}

static u32 fd_epoll_mask(u32 events)
{
	u32 m = EPOLLET;	/* EPOLLHUP and EPOLLERR are always reported */

	if (events & (AEM_FD_ACCEPT | AEM_FD_READABLE))
		m |= EPOLLIN;
	if (events & AEM_FD_HANGUP)
		m |= EPOLLRDHUP;
	return m;
}

static u32 fd_translate(const struct fd_watch *w, u32 mask)
{
	u32 ev = 0;

	if (mask & (EPOLLIN | EPOLLRDNORM))
		ev |= w->listening ? AEM_FD_ACCEPT : AEM_FD_READABLE;
	if (mask & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))
		ev |= AEM_FD_HANGUP;
	return ev & w->events;
}

static void fd_fire(u64 key, u32 mask)
{
	u32 idx = (u32)key, serial = (u32)(key >> 32);
	struct aem_fd_event ev;
	struct fd_watch *w;

	pthread_mutex_lock(&fd_mu);
	if (idx < fd_tab_len) {
		w = &fd_tab[idx];
		if (w->r && w->serial == serial && w->started) {
			ev.fd = w->fd;
			ev.events = fd_translate(w, mask);
			if (ev.events)
				aem_core_post(w->r, w->s, &ev, sizeof(ev), 0, w->id);
		}
	}
	pthread_mutex_unlock(&fd_mu);
}

static void *fd_main(void *arg)
{
	struct epoll_event evs[FD_BATCH];
	int i, n;

	(void)arg;
	for (;;) {
		n = epoll_wait(fd_epfd, evs, FD_BATCH, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			aem_warn("fd source: epoll_wait: %s; socket events stop", strerror(errno));
			return NULL;
		}
		for (i = 0; i < n; i++) {
			/* Stop comes only once no watch is left: the rest of the batch is stale. */
			if (evs[i].data.u64 == FD_STOP_KEY)
				return NULL;
			fd_fire(evs[i].data.u64, evs[i].events);
		}
	}
}

/*
 * Under fd_mu.  Signals stay blocked in the thread, so the application's
 * handlers never run on it.
 */
static int fd_start_locked(void)
{
	struct epoll_event ee = { .events = EPOLLIN, .data.u64 = FD_STOP_KEY };
	sigset_t all, old;
	int ret;

	if (fd_running)
		return 0;
	fd_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (fd_epfd < 0)
		return -errno;
	fd_stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd_stopfd < 0) {
		ret = -errno;
		goto err;
	}
	if (epoll_ctl(fd_epfd, EPOLL_CTL_ADD, fd_stopfd, &ee) < 0) {
		ret = -errno;
		goto err;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&fd_thr, NULL, fd_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret)
		goto err;
	fd_running = true;
	return 0;
err:
	if (fd_stopfd >= 0)
		close(fd_stopfd);
	close(fd_epfd);
	fd_epfd = fd_stopfd = -1;
	return ret;
}

/* Under fd_mu: a free table entry, the table grown (entries never move while unlocked). */
static int fd_alloc_locked(u32 *out)
{
	struct fd_watch *t;
	u32 cap;

	if (fd_free == FD_NIL) {
		if (fd_tab_len == fd_tab_cap) {
			cap = fd_tab_cap ? fd_tab_cap * 2 : FD_TAB_MIN;
			t = aem_realloc(fd_tab, (size_t)cap * sizeof(*t));
			if (!t)
				return -ENOMEM;
			fd_tab = t;
			fd_tab_cap = cap;
		}
		memset(&fd_tab[fd_tab_len], 0, sizeof(*fd_tab));
		fd_tab[fd_tab_len].next_free = FD_NIL;
		fd_free = fd_tab_len++;
	}
	*out = fd_free;
	fd_free = fd_tab[fd_free].next_free;
	fd_live++;
	return 0;
}

static void fd_release_locked(u32 idx)
{
	struct fd_watch *w = &fd_tab[idx];

	w->r = NULL;
	w->s = NULL;
	w->started = false;
	w->serial++;
	w->next_free = fd_free;
	fd_free = idx;
	fd_live--;
}

static int fd_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	const struct aem_fd_args *a = &sqe->fd;
	socklen_t sl = sizeof(int);
	struct epoll_event ee;
	struct fd_watch *w;
	int dupfd, acc = 0, ret;
	struct stat st;
	u32 idx;

	if (a->fd < 0 || !a->events || (a->events & ~AEM_FD_ALL) ||
	    a->resv[0] || a->resv[1] || a->resv[2])
		return -EINVAL;
	/* Subscribe runs in the submitter's thread: the fd is the application's. */
	dupfd = fcntl(a->fd, F_DUPFD_CLOEXEC, 0);
	if (dupfd < 0)
		return -errno;	/* EBADF for an fd that is not open */
	if (fstat(dupfd, &st) < 0) {
		ret = -errno;
		goto err;
	}
	ret = -ENOTSOCK;
	if (!S_ISSOCK(st.st_mode))
		goto err;
	/* As the module: listening or not is decided once, at subscribe. */
	if (getsockopt(dupfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl) < 0)
		acc = 0;

	pthread_mutex_lock(&fd_mu);
	ret = fd_start_locked();
	if (ret)
		goto err_unlock;
	ret = fd_alloc_locked(&idx);
	if (ret)
		goto err_unlock;
	w = &fd_tab[idx];
	w->r = r;
	w->s = s;
	w->id = aem_sub_id(r, s);
	w->fd = a->fd;
	w->dupfd = dupfd;
	w->events = a->events;
	w->listening = acc != 0;
	/* Registered now so that a refusal (e.g. max_user_watches) is this SQE's result. */
	ee.events = fd_epoll_mask(a->events);
	ee.data.u64 = fd_key(idx, w->serial);
	if (epoll_ctl(fd_epfd, EPOLL_CTL_ADD, dupfd, &ee) < 0) {
		ret = -errno;
		fd_release_locked(idx);
		goto err_unlock;
	}
	s->priv[0] = (u64)idx + 1;
	pthread_mutex_unlock(&fd_mu);
	return 0;
err_unlock:
	pthread_mutex_unlock(&fd_mu);
err:
	close(dupfd);
	return ret;
}

/*
 * The SUBSCRIBE result is out: events may flow.  Re-arming makes epoll
 * poll the socket again and queue it if a wanted condition is true now,
 * which reports the state at start, as the module's start does.  It
 * re-arms under a new key: what the thread took from epoll before (the
 * same state, already covered by this look) misses, so the state is
 * reported once, not twice.
 */
static void fd_start(struct aem_ctx *r, struct aem_sub *s)
{
	struct epoll_event ee;
	struct fd_watch *w;

	(void)r;
	if (!s->priv[0])
		return;
	pthread_mutex_lock(&fd_mu);
	w = &fd_tab[s->priv[0] - 1];
	w->started = true;
	w->serial++;
	ee.events = fd_epoll_mask(w->events);
	ee.data.u64 = fd_key((u32)(s->priv[0] - 1), w->serial);
	if (epoll_ctl(fd_epfd, EPOLL_CTL_MOD, w->dupfd, &ee) < 0)
		aem_warn("fd source: re-arm fd %d: %s", w->fd, strerror(errno));
	pthread_mutex_unlock(&fd_mu);
}

static void fd_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct fd_watch *w;
	u32 idx;

	(void)r;
	if (!s->priv[0])
		return;
	idx = (u32)(s->priv[0] - 1);
	pthread_mutex_lock(&fd_mu);
	w = &fd_tab[idx];
	/* Explicitly: closing our duplicate alone would not unregister a file that is still open elsewhere. */
	epoll_ctl(fd_epfd, EPOLL_CTL_DEL, w->dupfd, NULL);
	close(w->dupfd);
	fd_release_locked(idx);
	pthread_mutex_unlock(&fd_mu);
	s->priv[0] = 0;
}

const struct aem_source_ops __aem_fd_source_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_FD,
	.name		= "fd",
	.subscribe	= fd_subscribe,
	.unsubscribe	= fd_unsubscribe,
	.start		= fd_start,
};

void __aem_fd_source_stop(void)
{
	u64 one = 1;
	ssize_t n;

	pthread_mutex_lock(&fd_mu);
	if (!fd_running) {
		pthread_mutex_unlock(&fd_mu);
		return;
	}
	pthread_mutex_unlock(&fd_mu);
	/* Not under fd_mu: the thread takes it to post. */
	n = write(fd_stopfd, &one, sizeof(one));
	(void)n;	/* EAGAIN: already signalled */
	pthread_join(fd_thr, NULL);

	pthread_mutex_lock(&fd_mu);
	close(fd_epfd);
	close(fd_stopfd);
	fd_epfd = fd_stopfd = -1;
	fd_running = false;
	if (!fd_live) {
		free(fd_tab);
		fd_tab = NULL;
		fd_tab_len = fd_tab_cap = 0;
		fd_free = FD_NIL;
	}
	pthread_mutex_unlock(&fd_mu);
}
