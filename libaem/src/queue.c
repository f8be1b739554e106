// SPDX-License-Identifier: MIT
/*
 * Submission, waiting, calls and statistics over either backend.  Each
 * public function counts itself into the ring (__aem_ring_get) before it
 * reads the mapped rings or the backend's state, so a teardown on another
 * thread waits for it instead of unmapping under it (see aem_teardown()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include "libaem.h"
#include "aem_int.h"

/* Entries into the kernel side by this thread: what aem_thread_enters() reports. */
static __thread uint64_t thread_enters;

uint64_t aem_thread_enters(void)
{
	return thread_enters;
}

static int kernel_enter(struct aem_ring *ring, unsigned to_submit, unsigned min_complete,
			unsigned flags, int64_t timeout_ns)
{
	struct aem_enter e;

	memset(&e, 0, sizeof(e));
	e.to_submit = to_submit;
	e.min_complete = min_complete;
	e.flags = flags;
	e.timeout_ns = timeout_ns;
	thread_enters++;
	/*
	 * -EINTR and -ETIME end a wait as on the embedded backend; SQEs the
	 * kernel consumed before stay consumed (the SQ head says how many).
	 */
	if (ioctl(ring->fd, AEM_IOC_ENTER, &e) >= 0)
		return (int)e.submitted;
	return errno == ETIMEDOUT ? -ETIME : -errno;
}

/* SQEs published but not yet consumed by the kernel side. */
static unsigned sq_pending(struct aem_ring *ring)
{
	aem_sq_flush(ring);
	return ring->sq.sqe_tail - aem_load_acquire(ring->sq.khead);	/* pairs with the core's head release */
}

static bool sq_polled(const struct aem_ring *ring)
{
	return ring->features & AEM_FEAT_SQPOLL;
}

/*
 * SQPOLL (liburing's sq_ring_needs_enter): the SQ tail was stored
 * (release) before; a full barrier, then the flag.  Pairs with the
 * poller's flag store, barrier and tail re-read: either it sees the SQEs
 * or we see that it sleeps.
 */
static bool sq_needs_wakeup(struct aem_ring *ring)
{
	aem_smp_mb();
	return aem_read_once(*ring->sq.kflags) & AEM_SQ_F_NEED_WAKEUP;
}

static int sq_wakeup(struct aem_ring *ring)
{
	int ret;

	if (ring->backend == AEM_BACKEND_EMBEDDED) {
		thread_enters++;
		__aem_emb_sq_wakeup(ring->priv);
		return 0;
	}
	ret = kernel_enter(ring, 0, 0, AEM_ENTER_SQ_WAKEUP, 0);
	return ret < 0 ? ret : 0;
}

/*
 * Hand the published SQEs to the poller: no entry unless it sleeps, or
 * nothing waits for it (then, as on any ring, the entry flushes the
 * backlogs and reclaims slots).  Returns how many SQEs wait for the
 * poller (as liburing's submit), at least those this call published, even
 * when the poller has taken them already.
 */
static int sq_poll_submit(struct aem_ring *ring)
{
	/* Judged by what was new: a busy poller may consume it at once. */
	unsigned fresh = ring->sq.sqe_tail - ring->sq.sqe_head;
	unsigned n = sq_pending(ring);
	int ret;

	if (!fresh && !n) {
		if (ring->backend == AEM_BACKEND_EMBEDDED) {
			thread_enters++;
			ret = __aem_emb_submit(ring->priv, 0);
		} else {
			ret = kernel_enter(ring, 0, 0, 0, 0);
		}
		return ret < 0 ? ret : 0;
	}
	if (n && sq_needs_wakeup(ring)) {
		ret = sq_wakeup(ring);
		if (ret < 0)
			return ret;
	}
	return (int)(fresh > n ? fresh : n);
}

static int submit(struct aem_ring *ring)
{
	unsigned n;

	if (sq_polled(ring))
		return sq_poll_submit(ring);
	n = sq_pending(ring);
	if (ring->backend == AEM_BACKEND_EMBEDDED) {
		thread_enters++;
		return __aem_emb_submit(ring->priv, n);
	}
	return kernel_enter(ring, n, 0, 0, 0);
}

int aem_submit(struct aem_ring *ring)
{
	int ret = __aem_ring_get(&ring->calls);

	if (ret)
		return ret;
	ret = submit(ring);
	__aem_ring_put(&ring->calls);
	return ret;
}

/*
 * The send slots are reused from 0 at each batch: before writing them
 * again, wait until the poller has consumed every SQE before (a POST at a
 * full target holds it back until its consumer reads).
 */
static int sq_poll_drain(struct aem_ring *ring)
{
	struct aem_sq *sq = &ring->sq;
	int ret;

	while (aem_load_acquire(sq->khead) != sq->sqe_tail) {	/* pairs with the core's head release */
		if (sq_needs_wakeup(ring)) {
			ret = sq_wakeup(ring);
			if (ret < 0)
				return ret;
		}
		sched_yield();
	}
	return 0;
}

/* One silent POST of @m: inline, or copied into the next send slot (*@slots counts them). */
static void prep_post_msg(struct aem_ring *ring, struct aem_sqe *sqe, uint64_t addr,
			  const struct aem_post_msg *m, unsigned *slots, unsigned prio,
			  unsigned sqe_flags)
{
	if (m->len > AEM_SQE_INLINE) {
		memcpy(aem_send_slot(ring, *slots), m->data, m->len);
		aem_prep_post_slot(sqe, addr, (*slots)++, m->len, prio);
	} else {
		aem_prep_post(sqe, addr, m->data, m->len, prio);
	}
	sqe->flags |= AEM_SQE_F_SILENT | sqe_flags;
}

/*
 * SQPOLL: queue what fits and hand it over; the poller consumes in order
 * and holds a POST at a full target until it fits, so the SQ filling up
 * is the back-pressure: what was queued is what the call returns.
 */
static int post_batch_polled(struct aem_ring *ring, uint64_t addr, const struct aem_post_msg *msgs,
			     unsigned n, unsigned prio, unsigned sqe_flags)
{
	unsigned done = 0, slots = 0;
	struct aem_sqe *sqe;
	int ret;

	while (done < n) {
		const struct aem_post_msg *m = &msgs[done];

		if (m->len > ring->slot_size) {
			if (!done)
				return -EMSGSIZE;
			break;
		}
		if (m->len > AEM_SQE_INLINE) {
			if (slots == ring->send_slots)
				break;
			if (!slots) {
				aem_sq_flush(ring);
				ret = sq_poll_drain(ring);
				if (ret < 0)
					return done ? (int)done : ret;
			}
		}
		sqe = aem_get_sqe(ring);
		if (!sqe)
			break;
		prep_post_msg(ring, sqe, addr, m, &slots, prio, sqe_flags);
		done++;
	}
	ret = sq_poll_submit(ring);
	if (ret < 0 && !done)
		return ret;
	return (int)done;
}

/*
 * Queue what fits, submit once, then take back the entries the kernel side
 * left (a full target stops the submission there): nothing consumes SQEs
 * between enters, so the shortened tail is simply republished.
 */
static int post_batch(struct aem_ring *ring, uint64_t addr, const struct aem_post_msg *msgs,
		      unsigned n, unsigned prio, unsigned sqe_flags)
{
	struct aem_sq *sq = &ring->sq;
	unsigned start, queued, taken, done = 0, slots;
	struct aem_sqe *sqe;
	int ret;

	if (sqe_flags & ~AEM_SQE_F_LOSSY)
		return -EINVAL;
	if (sq_polled(ring))
		return post_batch_polled(ring, addr, msgs, n, prio, sqe_flags);
	while (done < n) {
		start = sq->sqe_tail;
		slots = 0;
		while (done + (sq->sqe_tail - start) < n) {
			const struct aem_post_msg *m = &msgs[done + (sq->sqe_tail - start)];

			if (m->len > ring->slot_size)
				break;
			if (m->len > AEM_SQE_INLINE && slots == ring->send_slots)
				break;
			sqe = aem_get_sqe(ring);
			if (!sqe)
				break;
			prep_post_msg(ring, sqe, addr, m, &slots, prio, sqe_flags);
		}
		queued = sq->sqe_tail - start;
		ret = submit(ring);
		if (ret < 0)
			return done ? (int)done : ret;
		taken = aem_load_acquire(sq->khead) - start;
		if ((int)taken < 0)
			taken = 0;	/* stopped before our entries */
		if (taken < queued) {
			sq->sqe_tail = sq->sqe_head = start + taken;
			aem_store_release(sq->ktail, sq->sqe_tail);
			return (int)(done + taken);
		}
		done += taken;
		if (!queued) {
			if (msgs[done].len > ring->slot_size)
				return done ? (int)done : -EMSGSIZE;
			if (!ret)
				return (int)done;	/* the SQ stays full: the caller retries */
		}
	}
	return (int)done;
}

int aem_post_batch(struct aem_ring *ring, uint64_t addr, const struct aem_post_msg *msgs,
		   unsigned n, unsigned prio, unsigned sqe_flags)
{
	int ret = __aem_ring_get(&ring->calls);

	if (ret)
		return ret;
	ret = post_batch(ring, addr, msgs, n, prio, sqe_flags);
	__aem_ring_put(&ring->calls);
	return ret;
}

static int submit_and_wait(struct aem_ring *ring, unsigned wait_nr, int64_t timeout_ns)
{
	unsigned n;
	int ret, sub;

	if (sq_polled(ring)) {
		sub = sq_poll_submit(ring);
		if (sub < 0 || !wait_nr)
			return sub;
		ret = ring->backend == AEM_BACKEND_EMBEDDED ?
			(thread_enters++, __aem_emb_wait(ring->priv, wait_nr, timeout_ns)) :
			kernel_enter(ring, 0, wait_nr, AEM_ENTER_GETEVENTS, timeout_ns);
		return ret < 0 ? ret : sub;
	}
	n = sq_pending(ring);
	if (ring->backend == AEM_BACKEND_EMBEDDED) {
		thread_enters++;
		sub = __aem_emb_submit(ring->priv, n);
		if (sub < 0 || !wait_nr)
			return sub;
		ret = __aem_emb_wait(ring->priv, wait_nr, timeout_ns);
		return ret < 0 ? ret : sub;
	}
	return kernel_enter(ring, n, wait_nr, wait_nr ? AEM_ENTER_GETEVENTS : 0, timeout_ns);
}

int aem_submit_and_wait(struct aem_ring *ring, unsigned wait_nr, int64_t timeout_ns)
{
	int ret = __aem_ring_get(&ring->calls);

	if (ret)
		return ret;
	ret = submit_and_wait(ring, wait_nr, timeout_ns);
	__aem_ring_put(&ring->calls);
	return ret;
}

int aem_wait(struct aem_ring *ring, unsigned min, int64_t timeout_ns)
{
	int ret = __aem_ring_get(&ring->calls);

	if (ret)
		return ret;
	if (!min) {
		/* nothing to wait for */
	} else if (ring->backend == AEM_BACKEND_EMBEDDED) {
		thread_enters++;
		ret = __aem_emb_wait(ring->priv, min, timeout_ns);
	} else {
		ret = kernel_enter(ring, 0, min, AEM_ENTER_GETEVENTS, timeout_ns);
		if (ret > 0)
			ret = 0;
	}
	__aem_ring_put(&ring->calls);
	return ret;
}

static int fd_drain(struct aem_ring *ring, bool read_counter)
{
	int ret = __aem_ring_get(&ring->calls);

	if (ret)
		return ret;
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		ret = __aem_emb_drain(ring->priv, read_counter);
	else if (!read_counter) {
		/*
		 * The module arms in poll(), which an edge-triggered poller
		 * calls only after a wake-up: before it sleeps, an enter takes
		 * the slots released since and resumes the sources paused for
		 * them (PROTOCOL.md section 3, "Wake-ups"), whose events would
		 * otherwise never come to wake it.
		 */
		ret = kernel_enter(ring, 0, 0, 0, 0);
		ret = ret < 0 ? ret : 0;
	}
	__aem_ring_put(&ring->calls);
	return ret;
}

int aem_ring_fd_drain(struct aem_ring *ring)
{
	return fd_drain(ring, true);
}

int aem_ring_fd_arm(struct aem_ring *ring)
{
	return fd_drain(ring, false);
}

int aem_call(struct aem_ring *ring, uint64_t addr, const void *req, unsigned req_len,
	     void *resp, unsigned resp_cap, unsigned prio, unsigned timeout_ms)
{
	struct aem_call_args a;
	int ret;

	if (!ring || (req_len && !req) || (resp_cap && !resp) || prio >= AEM_MAX_CLASSES)
		return -EINVAL;
	memset(&a, 0, sizeof(a));
	a.addr = addr;
	a.req = (uintptr_t)req;
	a.resp = (uintptr_t)resp;
	a.req_len = req_len;
	a.resp_cap = resp_cap;
	a.timeout_ms = timeout_ms;
	a.prio = (uint8_t)prio;
	ret = __aem_ring_get(&ring->calls);
	if (ret)
		return ret;
	if (ring->backend == AEM_BACKEND_EMBEDDED) {
		/* The call is charged to @ring's quota: teardown waits for it, as for a kernel call. */
		ret = __aem_emb_call(ring->priv, &a, req, resp);
		__aem_ring_put(&ring->calls);
	} else {
		ret = ioctl(ring->fd, AEM_IOC_CALL, &a) < 0 ? -errno : 0;
		__aem_ring_put(&ring->calls);
	}
	return ret < 0 ? ret : (int)a.resp_len;
}

int aem_sub_stats(struct aem_ring *ring, uint64_t sub_id, struct aem_sub_stats *st)
{
	int ret;

	memset(st, 0, sizeof(*st));
	st->id = sub_id;
	ret = __aem_ring_get(&ring->calls);
	if (ret)
		return ret;
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		ret = __aem_emb_sub_stats(ring->priv, st);
	else
		ret = ioctl(ring->fd, AEM_IOC_SUB_STATS, st) < 0 ? -errno : 0;
	__aem_ring_put(&ring->calls);
	return ret;
}

int aem_grant(struct aem_ring *ring, uint32_t uid, uint32_t flags)
{
	struct aem_grant g = { .uid = uid, .flags = flags };
	int ret = __aem_ring_get(&ring->calls);

	if (ret)
		return ret;
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		ret = __aem_emb_grant(ring->priv, uid, flags);
	else
		ret = ioctl(ring->fd, AEM_IOC_GRANT, &g) < 0 ? -errno : 0;
	__aem_ring_put(&ring->calls);
	return ret;
}

int aem_ring_stats(struct aem_ring *ring, struct aem_ring_stats *st)
{
	int ret;

	memset(st, 0, sizeof(*st));
	ret = __aem_ring_get(&ring->calls);
	if (ret)
		return ret;
	if (ring->backend == AEM_BACKEND_EMBEDDED)
		ret = __aem_emb_ring_stats(ring->priv, st);
	else
		ret = ioctl(ring->fd, AEM_IOC_RING_STATS, st) < 0 ? -errno : 0;
	__aem_ring_put(&ring->calls);
	return ret;
}
