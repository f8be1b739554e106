/* SPDX-License-Identifier: MIT */
/*
 * libaem: set up an AEM ring, fill SQEs, reap CQEs, wait.
 *
 * The same API runs over two backends, chosen at setup:
 *  - kernel:   /dev/aem (the aem module); rings are the module's pages;
 *  - embedded: the ring core runs inside this process; rings live in
 *              memfd-backed shared memory, waiting is a futex, and an
 *              eventfd makes the ring pollable.
 * Order of choice: AEM_SETUP_KERNEL / AEM_SETUP_EMBEDDED in params.flags,
 * else the environment variable AEM_BACKEND=kernel|embedded, else kernel
 * when /dev/aem exists, else embedded.  Asking for kernel where there is no
 * module fails with -ENODEV; it never falls back.
 *
 * Both charge a ring's memory (regions and kernel-side state) by one rule:
 * within max_ring_mb (the module's parameter; embedded: the environment
 * variable AEM_MAX_RING_MB, default 1024) and, without CAP_IPC_LOCK,
 * RLIMIT_MEMLOCK (docs/PROTOCOL.md, "The ring's memory account").
 *
 * Functions return 0 or a count on success and -errno on failure; they
 * never set errno.  Fast-path helpers are AEMINLINE below; ffi.c
 * exports them as real symbols for bindings that cannot inline.
 */
#ifndef LIBAEM_H
#define LIBAEM_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "aem.h"		/* the ABI: kmod/uapi/aem.h */
#include "libaem_barrier.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Fast-path helpers are AEMINLINE: static inline for applications; ffi.c
 * defines it empty before including this header, so the same functions are
 * also exported as real symbols for bindings that cannot inline.
 */
#ifndef AEMINLINE
#define AEMINLINE static inline
#endif

enum aem_backend {
	AEM_BACKEND_KERNEL	= 1,
	AEM_BACKEND_EMBEDDED	= 2,
};

/* User-space view of the submission ring.  k* point into shared memory. */
struct aem_sq {
	unsigned	*khead;		/* written by the kernel side */
	unsigned	*ktail;		/* written by us: store-release publishes SQEs */
	unsigned	*kflags;
	unsigned	*kdropped;
	unsigned	ring_mask;
	unsigned	ring_entries;
	struct aem_sqe	*sqes;
	unsigned	sqe_head;	/* local: first SQE not yet published */
	unsigned	sqe_tail;	/* local: next SQE to hand out */
};

/* User-space view of one completion ring (one per priority class, and the result ring). */
struct aem_cq {
	unsigned		*khead;		/* written by us: store-release frees CQEs */
	unsigned		*ktail;		/* written by the kernel side */
	unsigned		*kflags;	/* AEM_CQ_F_* */
	unsigned		*kdropped;
	unsigned		ring_mask;
	unsigned		ring_entries;
	const struct aem_cqe	*cqes;		/* read-only mapping */
};

/* Slot return ring: delivery slots go back to the kernel side in batches. */
struct aem_slot_ring {
	unsigned	*khead;		/* written by the kernel side */
	unsigned	*ktail;		/* written by us */
	unsigned	ring_mask;
	unsigned	ring_entries;
	uint32_t	*array;
	unsigned	local_tail;	/* releases queued, not yet published */
};

struct aem_ring {
	struct aem_sq		sq;
	struct aem_cq		cq[AEM_MAX_CLASSES];	/* events, by class */
	struct aem_cq		res;			/* results: the answers to SQEs */
	struct aem_slot_ring	slots;
	unsigned		nr_classes;
	unsigned		features;	/* AEM_FEAT_* */
	unsigned		ring_id;	/* address of this ring for post/call */
	uint8_t			*payload;	/* PAYLOAD region */
	unsigned		slot_size;
	unsigned		slot_count;	/* delivery slots */
	unsigned		send_slots;	/* send slots: indices [0, send_slots) */
	int			fd;		/* pollable: device fd or eventfd */
	enum aem_backend	backend;
	unsigned		calls;		/* library calls inside, see aem_teardown(); in what was padding */
	void			*region[AEM_NR_REGIONS];
	size_t			region_size[AEM_NR_REGIONS];
	void			*priv;		/* backend state */
};

/* ---------------------------------------------------------------------- */
/* Setup                                                                  */

/*
 * Zero @p, then fill the fields you care about; zero means "default".
 * p->api_version 0 means this header's AEM_API_VERSION, the only one this
 * build reads.  -EOPNOTSUPP: the kernel side does not serve that version
 * (or lacks a feature this build reads); aem_probe() says what it serves.
 */
int aem_setup(struct aem_params *p, struct aem_ring *ring);
/*
 * Unmap @ring and end it on the kernel side.  Like close(), it must not
 * race other use of @ring: a thread still in an AEMINLINE helper (they
 * read the mapped rings directly) or in aem_ring_fd() may fault.  The
 * library's own functions (aem_submit, aem_wait, the stats, ...) are made
 * safe: each counts itself in, and teardown turns new ones away, wakes
 * those waiting in aem_wait() on the embedded backend, and waits for the
 * rest to leave before it unmaps anything.  A call that begins after
 * teardown has begun, and a wait it woke, return -ESHUTDOWN.  The kernel
 * backend's waits cannot be woken from here: teardown waits until they
 * end (timeout, event, signal).  aem_call() blocked in the embedded
 * backend is not waited for: it uses no part of @ring.  @ring may be freed
 * once teardown returns; a second teardown does nothing.  With a
 * submission poller (AEM_SETUP_SQPOLL), the SQEs it has not consumed when
 * teardown stops it are not consumed (as io_uring's): to hand them all
 * over, wait until the SQ head (*ring->sq.khead) reaches the tail first.
 */
void aem_teardown(struct aem_ring *ring);
const char *aem_backend_name(const struct aem_ring *ring);
/*
 * What the backend of @ring serves (ABI versions, features, opcodes,
 * loaded sources with their versions and opcodes).  @ring NULL: the
 * backend aem_setup() would choose with @setup_flags.  0 or -errno.
 */
int aem_probe(const struct aem_ring *ring, unsigned setup_flags, struct aem_probe *p);
/*
 * Test hook, embedded backend: register (@add) or unregister another
 * implementation @impl (>= 2) of the embedded fd source, the same code
 * under another implementation version, so that two implementations of
 * one source can be chosen per subscription.  Unregistering ends its
 * subscriptions (AEM_CQE_F_FINAL) as unloading a source module does.
 * -EINVAL for another source or impl 1; -EEXIST / -ENOENT.
 */
int aem_embedded_source_impl(unsigned source, unsigned impl, bool add);

/*
 * Zero sizes take the kernel side's defaults (AEM_DEFAULT_* in aem.h);
 * send slots, which the kernel side leaves at zero, aem_setup() sets to
 * this many.
 */
#define AEM_DEFAULT_SEND_SLOTS	64

/* ---------------------------------------------------------------------- */
/* Submission                                                             */

/* Next free SQE, zeroed, or NULL when the SQ ring is full (submit first). */
AEMINLINE struct aem_sqe *aem_get_sqe(struct aem_ring *ring)
{
	struct aem_sq *sq = &ring->sq;
	unsigned head = aem_load_acquire(sq->khead);	/* pairs with the core's head release */
	struct aem_sqe *sqe;

	if (sq->sqe_tail - head >= sq->ring_entries)
		return NULL;
	sqe = &sq->sqes[sq->sqe_tail & sq->ring_mask];
	sq->sqe_tail++;
	memset(sqe, 0, sizeof(*sqe));
	return sqe;
}

/*
 * Up to @n free SQEs at once, zeroed, in @sqes[] in submission order: one
 * load of the kernel side's head for the lot.  Returns how many (0: the SQ
 * ring is full; submit first).  Fill them, then aem_sq_flush() or
 * aem_submit() hands them over together.
 */
AEMINLINE unsigned aem_get_sqes(struct aem_ring *ring, struct aem_sqe **sqes, unsigned n)
{
	struct aem_sq *sq = &ring->sq;
	unsigned head = aem_load_acquire(sq->khead);	/* pairs with the core's head release */
	unsigned used = sq->sqe_tail - head, i;

	if (used >= sq->ring_entries)
		return 0;
	if (n > sq->ring_entries - used)
		n = sq->ring_entries - used;
	for (i = 0; i < n; i++) {
		sqes[i] = &sq->sqes[(sq->sqe_tail + i) & sq->ring_mask];
		memset(sqes[i], 0, sizeof(*sqes[i]));
	}
	sq->sqe_tail += n;
	return n;
}

/* Publish every SQE handed out so far; returns how many. No system call. */
AEMINLINE unsigned aem_sq_flush(struct aem_ring *ring)
{
	struct aem_sq *sq = &ring->sq;
	unsigned n = sq->sqe_tail - sq->sqe_head;

	if (n) {
		sq->sqe_head = sq->sqe_tail;
		aem_store_release(sq->ktail, sq->sqe_tail);	/* pairs with the core's tail acquire */
	}
	return n;
}

AEMINLINE void aem_sqe_set_data(struct aem_sqe *sqe, uint64_t user_data)
{
	sqe->user_data = user_data;
}

AEMINLINE void aem_prep_nop(struct aem_sqe *sqe)
{
	sqe->opcode = AEM_OP_NOP;
}

AEMINLINE void aem_prep_subscribe_timer(struct aem_sqe *sqe, uint64_t first_ns,
					    uint64_t interval_ns, unsigned prio, uint64_t tag)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_TIMER;
	sqe->prio = (uint8_t)prio;
	sqe->user_data = tag;
	sqe->timer.first_ns = first_ns;
	sqe->timer.interval_ns = interval_ns;
}

AEMINLINE void aem_prep_subscribe_gen(struct aem_sqe *sqe, uint64_t rate, uint64_t count,
					  unsigned burst, unsigned payload_len,
					  unsigned prio, uint64_t tag)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_GEN;
	sqe->prio = (uint8_t)prio;
	sqe->user_data = tag;
	sqe->gen.rate = rate;
	sqe->gen.count = count;
	sqe->gen.burst = burst;
	sqe->gen.payload_len = payload_len;
}

AEMINLINE void aem_prep_subscribe_msg(struct aem_sqe *sqe, unsigned channel,
					  unsigned prio, uint64_t tag)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_MSG;
	sqe->prio = (uint8_t)prio;
	sqe->user_data = tag;
	sqe->msg.channel = channel;
}

AEMINLINE void aem_prep_subscribe_proc(struct aem_sqe *sqe, unsigned events, int pid,
					   unsigned prio, uint64_t tag)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_PROC;
	sqe->prio = (uint8_t)prio;
	sqe->user_data = tag;
	sqe->proc.events = events;
	sqe->proc.pid = (uint32_t)pid;
}

AEMINLINE void aem_prep_subscribe_fd(struct aem_sqe *sqe, int fd, unsigned events,
					 unsigned prio, uint64_t tag)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_FD;
	sqe->prio = (uint8_t)prio;
	sqe->user_data = tag;
	sqe->fd.fd = fd;
	sqe->fd.events = events;
}

/*
 * A SUBSCRIBE on a version 4 ring: served by implementation @impl of its
 * source (aem_probe() lists them), not the newest (0).  Not loaded, or
 * not serving the ring's version: the result is -EOPNOTSUPP.
 */
AEMINLINE void aem_sqe_set_impl(struct aem_sqe *sqe, unsigned impl)
{
	sqe->arg = impl;
}

/*
 * Socket I/O (docs/PROTOCOL.md section 10): the kernel side accepts on the
 * listening socket @fd (TCP over IPv4/IPv6, Unix stream); each connection
 * is a subscription of its own, whose events carry @tag and the
 * connection's id in cqe->id.  Close a connection with
 * aem_prep_sock_shutdown(AEM_SOCK_CLOSE), abort it with an unsubscribe.
 */
AEMINLINE void aem_prep_subscribe_sock(struct aem_sqe *sqe, int fd, unsigned prio, uint64_t tag)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_SOCK;
	sqe->prio = (uint8_t)prio;
	sqe->user_data = tag;
	sqe->sock.fd = fd;
}

/* Send @len <= AEM_SQE_INLINE bytes on connection @conn; the result: bytes sent or -errno. */
AEMINLINE void aem_prep_sock_send(struct aem_sqe *sqe, uint64_t conn, const void *data, unsigned len)
{
	sqe->opcode = AEM_OP_SEND;
	sqe->target = conn;
	sqe->len = len;
	if (len <= AEM_SQE_INLINE && data)
		memcpy(sqe->data, data, len);
}

/* Send @len bytes written in send slot @slot (index < ring->send_slots) on @conn. */
AEMINLINE void aem_prep_sock_send_slot(struct aem_sqe *sqe, uint64_t conn, unsigned slot,
					   unsigned len)
{
	sqe->opcode = AEM_OP_SEND;
	sqe->flags |= AEM_SQE_F_SLOT;
	sqe->target = conn;
	sqe->slot = slot;
	sqe->len = len;
}

/* @how: AEM_SOCK_SHUT_RD, _WR, _RDWR, or AEM_SOCK_CLOSE, after the sends queued before it. */
AEMINLINE void aem_prep_sock_shutdown(struct aem_sqe *sqe, uint64_t conn, unsigned how)
{
	sqe->opcode = AEM_OP_SHUTDOWN;
	sqe->target = conn;
	sqe->arg = how;
}

/*
 * Whether a send's or writeback's result @res is a refusal (nothing sent;
 * a writeback's slot is still the application's: release it or try again)
 * rather than the outcome of a send that was taken (the slot went with it).
 */
AEMINLINE int aem_sock_refused(int res)
{
	return res == -ENOENT || res == -EINVAL || res == -EOPNOTSUPP || res == -ENOTCONN ||
	       res == -ESHUTDOWN || res == -ENOBUFS;
}

/* The control event @cqe carries (AEM_CQE_F_SOCK_CTL), or NULL for received bytes. */
AEMINLINE const struct aem_sock_event *aem_cqe_sock_event(const struct aem_cqe *cqe)
{
	if (cqe->source != AEM_SRC_SOCK || !(cqe->flags & AEM_CQE_F_SOCK_CTL) ||
	    cqe->res < (int32_t)sizeof(struct aem_sock_event))
		return NULL;
	return (const struct aem_sock_event *)(const void *)cqe->data;
}

AEMINLINE void aem_prep_unsubscribe(struct aem_sqe *sqe, uint64_t sub_id)
{
	sqe->opcode = AEM_OP_UNSUBSCRIBE;
	sqe->target = sub_id;
}

/* Inline payload of at most AEM_SQE_INLINE bytes; longer: use the _slot form. */
AEMINLINE void __aem_prep_data(struct aem_sqe *sqe, const void *data, unsigned len)
{
	sqe->len = len;
	if (len <= AEM_SQE_INLINE && data)
		memcpy(sqe->data, data, len);
}

AEMINLINE void aem_prep_writeback(struct aem_sqe *sqe, uint64_t token,
				      const void *data, unsigned len)
{
	sqe->opcode = AEM_OP_WRITEBACK;
	sqe->target = token;
	__aem_prep_data(sqe, data, len);
}

/*
 * Answer the call event @cqe with the errno @err (1..AEM_CALL_ERRNO_MAX)
 * instead of data: its caller gets -@err.  The event's slot, if it has one,
 * goes back with it.
 */
AEMINLINE void aem_prep_writeback_error(struct aem_sqe *sqe, const struct aem_cqe *cqe, int err)
{
	sqe->opcode = AEM_OP_WRITEBACK;
	sqe->target = cqe->id;
	sqe->arg = (uint32_t)err;
	if (cqe->flags & AEM_CQE_F_SLOT) {
		sqe->flags |= AEM_SQE_F_SLOT;
		sqe->slot = cqe->slot;
	}
}

/* Write back @len bytes modified in place in the event's own slot. */
AEMINLINE void aem_prep_writeback_slot(struct aem_sqe *sqe, uint64_t token,
					   unsigned slot, unsigned len)
{
	sqe->opcode = AEM_OP_WRITEBACK;
	sqe->flags |= AEM_SQE_F_SLOT;
	sqe->target = token;
	sqe->slot = slot;
	sqe->len = len;
}

AEMINLINE void aem_prep_post(struct aem_sqe *sqe, uint64_t addr, const void *data,
				 unsigned len, unsigned prio)
{
	sqe->opcode = AEM_OP_POST;
	sqe->target = addr;
	sqe->prio = (uint8_t)prio;
	__aem_prep_data(sqe, data, len);
}

/* Post @len bytes from send slot @slot (index < ring->send_slots). */
AEMINLINE void aem_prep_post_slot(struct aem_sqe *sqe, uint64_t addr, unsigned slot,
				      unsigned len, unsigned prio)
{
	sqe->opcode = AEM_OP_POST;
	sqe->flags |= AEM_SQE_F_SLOT;
	sqe->target = addr;
	sqe->slot = slot;
	sqe->len = len;
	sqe->prio = (uint8_t)prio;
}

/* Asynchronous call: the reply is the result CQE of this SQE. */
AEMINLINE void aem_prep_call(struct aem_sqe *sqe, uint64_t addr, const void *data,
				 unsigned len, unsigned prio, unsigned timeout_ms)
{
	sqe->opcode = AEM_OP_CALL;
	sqe->target = addr;
	sqe->prio = (uint8_t)prio;
	sqe->arg = timeout_ms;
	__aem_prep_data(sqe, data, len);
}

AEMINLINE void aem_prep_timer_set(struct aem_sqe *sqe, uint64_t sub_id,
				      uint64_t first_ns, uint64_t interval_ns)
{
	sqe->opcode = AEM_OP_TIMER_SET;
	sqe->target = sub_id;
	sqe->timer.first_ns = first_ns;
	sqe->timer.interval_ns = interval_ns;
}

AEMINLINE void aem_prep_gen_set(struct aem_sqe *sqe, uint64_t sub_id, uint64_t rate,
				    uint64_t count, unsigned burst, unsigned payload_len)
{
	sqe->opcode = AEM_OP_GEN_SET;
	sqe->target = sub_id;
	sqe->gen.rate = rate;
	sqe->gen.count = count;
	sqe->gen.burst = burst;
	sqe->gen.payload_len = payload_len;
}

/*
 * Publish and hand the SQEs to the kernel side; returns SQEs consumed.
 * With a submission poller (AEM_SETUP_SQPOLL: ring->features has
 * AEM_FEAT_SQPOLL) the poller consumes them: this enters only when the
 * poller sleeps (AEM_SQ_F_NEED_WAKEUP, then with AEM_ENTER_SQ_WAKEUP),
 * else makes no system call, and returns how many SQEs wait for the
 * poller, at least those it published (the poller may have taken them
 * already); their results come as always.  A
 * POST whose target is full (ring full, backlog at its bound) is not
 * consumed and not dropped: the submission stops at it, it stays at the SQ
 * head and the count is short; submit again once the target's consumer
 * has read (or set AEM_SQE_F_LOSSY to let the target drop and count).
 */
int aem_submit(struct aem_ring *ring);

struct aem_post_msg {
	const void	*data;
	unsigned	len;
};

/*
 * Post @n messages in order to the Msg subscriber at @addr, in class
 * @prio, with as few entries into the kernel side as the SQ allows (one
 * when they fit); @sqe_flags may hold AEM_SQE_F_LOSSY.  Payloads beyond
 * AEM_SQE_INLINE go through the send slots, at most send_slots of them per
 * entry.  The SQEs are silent: refusals (no subscriber, ...) come back as
 * results.  Returns how many messages the target took (a prefix of @msgs):
 * fewer than @n when it is full, none of the rest then being queued (wait
 * for its consumer, and post the rest), or -errno (-EMSGSIZE: a message
 * larger than a slot; SQEs queued before the call are submitted too).
 */
int aem_post_batch(struct aem_ring *ring, uint64_t addr, const struct aem_post_msg *msgs,
		   unsigned n, unsigned prio, unsigned sqe_flags);
/*
 * With a submission poller, aem_post_batch() returns how many it queued:
 * the poller holds a POST at a full target until it fits, so the SQ
 * filling up is the back-pressure; a batch with slot payloads first waits
 * until the poller has consumed what came before (the send slots are
 * reused from 0).
 */

/*
 * Entries into the kernel side the calling thread made through this
 * library (enter ioctls; the embedded backend's submissions, waits and
 * wake-ups, which stand for them): a count of system calls per event.
 */
uint64_t aem_thread_enters(void);
/* Submit, then wait as aem_wait() for @wait_nr CQEs, or until @timeout_ns passes (-1: forever). */
int aem_submit_and_wait(struct aem_ring *ring, unsigned wait_nr, int64_t timeout_ns);

/* ---------------------------------------------------------------------- */
/* Completion                                                             */

/*
 * Events arrive in the class rings (aem_cq_*, aem_peek_batch), results of
 * SQEs in the result ring (aem_result_*).  Read the result ring before the
 * class rings: a subscription's id then arrives before any of its events.
 * The __aem_cqv_* helpers work on either view.
 */
AEMINLINE unsigned __aem_cqv_peek(const struct aem_cq *cq, unsigned *head)
{
	*head = *cq->khead;
	return aem_load_acquire(cq->ktail) - *head;	/* pairs with the core's tail release */
}

AEMINLINE void __aem_cqv_advance(struct aem_cq *cq, unsigned n)
{
	if (n)
		aem_store_release(cq->khead, *cq->khead + n);	/* pairs with the core's head acquire */
}

/* CQEs ready in class @cls. One acquire load of the tail. */
AEMINLINE unsigned aem_cq_ready(const struct aem_ring *ring, unsigned cls)
{
	unsigned head;

	return __aem_cqv_peek(&ring->cq[cls], &head);
}

/*
 * Fill @cqes with up to @max pointers to ready CQEs of class @cls, oldest
 * first; returns how many.  They stay valid until aem_cq_advance().
 */
AEMINLINE unsigned aem_peek_batch(const struct aem_ring *ring, unsigned cls,
				      const struct aem_cqe **cqes, unsigned max)
{
	const struct aem_cq *cq = &ring->cq[cls];
	unsigned head, i;
	unsigned n = __aem_cqv_peek(cq, &head);

	if (n > max)
		n = max;
	for (i = 0; i < n; i++)
		cqes[i] = &cq->cqes[(head + i) & cq->ring_mask];
	return n;
}

/*
 * The leanest way to reap: the index of the oldest ready CQE of class @cls
 * in *head and how many are ready (one acquire load of the tail); read
 * them with aem_cq_at(ring, cls, *head + i) for i < the count, then
 * aem_cq_advance().  No per-event pointer array.
 */
AEMINLINE unsigned aem_cq_peek(const struct aem_ring *ring, unsigned cls, unsigned *head)
{
	return __aem_cqv_peek(&ring->cq[cls], head);
}

AEMINLINE const struct aem_cqe *aem_cq_at(const struct aem_ring *ring, unsigned cls,
					  unsigned idx)
{
	const struct aem_cq *cq = &ring->cq[cls];

	return &cq->cqes[idx & cq->ring_mask];
}

/* Free @n CQEs of class @cls for reuse: one store-release for the batch. */
AEMINLINE void aem_cq_advance(struct aem_ring *ring, unsigned cls, unsigned n)
{
	__aem_cqv_advance(&ring->cq[cls], n);
}

/*
 * The result ring, read as aem_cq_peek / aem_cq_at / aem_cq_advance read a
 * class ring: *head gets the index of the oldest ready result, the return
 * value how many are ready.
 */
AEMINLINE unsigned aem_result_peek(const struct aem_ring *ring, unsigned *head)
{
	return __aem_cqv_peek(&ring->res, head);
}

AEMINLINE const struct aem_cqe *aem_result_at(const struct aem_ring *ring, unsigned idx)
{
	return &ring->res.cqes[idx & ring->res.ring_mask];
}

AEMINLINE void aem_result_advance(struct aem_ring *ring, unsigned n)
{
	__aem_cqv_advance(&ring->res, n);
}

/* Payload of @cqe: inline bytes or its slot. *len gets the byte count. */
AEMINLINE void *aem_cqe_payload(const struct aem_ring *ring, const struct aem_cqe *cqe,
				    unsigned *len)
{
	unsigned n = cqe->res < 0 ? 0 : (unsigned)cqe->res;

	if (cqe->flags & AEM_CQE_F_SLOT) {
		unsigned idx = AEM_SLOT_INDEX(cqe->slot);	/* the reference's generation is the kernel side's */

		if (idx >= ring->send_slots + ring->slot_count || n > ring->slot_size) {
			*len = 0;
			return NULL;
		}
		*len = n;
		return ring->payload + (size_t)idx * ring->slot_size;
	}
	*len = n > AEM_CQE_INLINE ? AEM_CQE_INLINE : n;
	return (void *)cqe->data;
}

/*
 * Who posted or called: a version 4 ring's AEM_SRC_MSG event has
 * AEM_CQE_F_SENDER, and its sender sits beside it in the read-only sender
 * array of its class ring.  @cqe must point into class ring @cls (from
 * aem_peek_batch() or aem_cq_at(), not a copy), and be read before
 * aem_cq_advance() releases it.  Copies the sender to @out; -ENODATA when
 * @cqe carries none (another source, or a ring of version 2 or 3), -EINVAL
 * for a pointer outside the ring.  pid and uid are as the ring's creator
 * sees them (pid 0: not in its pid namespace).
 */
AEMINLINE int aem_cqe_sender(const struct aem_ring *ring, unsigned cls, const struct aem_cqe *cqe,
			     struct aem_sender *out)
{
	const struct aem_cqe *base;
	const struct aem_sender *senders;
	size_t idx;

	if (!(cqe->flags & AEM_CQE_F_SENDER) || (cqe->flags & AEM_CQE_F_RESULT))
		return -ENODATA;
	if (cls >= ring->nr_classes)
		return -EINVAL;
	base = ring->cq[cls].cqes;
	if (cqe < base || cqe >= base + ring->cq[cls].ring_entries)
		return -EINVAL;
	idx = (size_t)(cqe - base);
	/* After the class rings' and the result ring's CQEs, class by class (cq_off[].senders). */
	senders = (const struct aem_sender *)((const struct aem_cqe *)ring->region[AEM_REGION_CQES] +
					      (size_t)ring->nr_classes * ring->cq[0].ring_entries +
					      ring->res.ring_entries) +
		  (size_t)cls * ring->cq[0].ring_entries;
	memcpy(out, &senders[idx], sizeof(*out));
	return 0;
}

/*
 * The final counts a result carries (AEM_CQE_F_STATS: the answer to an
 * UNSUBSCRIBE, or the end result of a subscription subscribed with
 * AEM_SQE_F_END_STATS) into @st, its id included; -ENODATA when @cqe
 * carries none.  The kernel side forgets a subscription once it has ended
 * (aem_sub_stats() is then -ENOENT, and so is another UNSUBSCRIBE of the
 * id, which it cannot tell from a stale one): these results are where its
 * counts stay readable.
 */
AEMINLINE int aem_cqe_sub_stats(const struct aem_cqe *cqe, struct aem_sub_stats *st)
{
	struct aem_sub_counts c;

	if ((cqe->flags & (AEM_CQE_F_RESULT | AEM_CQE_F_STATS)) !=
	    (AEM_CQE_F_RESULT | AEM_CQE_F_STATS))
		return -ENODATA;
	memcpy(&c, cqe->data, sizeof(c));
	memset(st, 0, sizeof(*st));
	st->id = cqe->id;
	st->produced = c.produced;
	st->delivered = c.delivered;
	st->backlog = c.backlog;
	st->dropped = c.dropped;
	return 0;
}

/* Send slot @slot (< send_slots) for building a post or call payload. */
AEMINLINE void *aem_send_slot(const struct aem_ring *ring, unsigned slot)
{
	return slot < ring->send_slots ? ring->payload + (size_t)slot * ring->slot_size : NULL;
}

/*
 * Queue delivery slot @slot (the CQE's whole slot reference, cqe->slot, not
 * AEM_SLOT_INDEX of it) for return to the kernel side; it becomes
 * visible at aem_release_commit().  Returns -EAGAIN when the slot ring is
 * full (commit, then submit or wait, and retry).
 */
AEMINLINE int aem_release_slot(struct aem_ring *ring, unsigned slot)
{
	struct aem_slot_ring *sr = &ring->slots;

	if (sr->local_tail - aem_load_acquire(sr->khead) >= sr->ring_entries)
		return -EAGAIN;
	sr->array[sr->local_tail & sr->ring_mask] = slot;
	sr->local_tail++;
	return 0;
}

AEMINLINE void aem_release_commit(struct aem_ring *ring)
{
	aem_store_release(ring->slots.ktail, ring->slots.local_tail);	/* pairs with the core's slot-ring acquire */
}

/*
 * Wait until @min CQEs (all classes and results) are ready, or a class-0
 * event or any result is; -ETIME on timeout, -EINTR.
 */
int aem_wait(struct aem_ring *ring, unsigned min, int64_t timeout_ns);

/* The fd to poll/epoll for readability when CQEs are ready. */
AEMINLINE int aem_ring_fd(const struct aem_ring *ring)
{
	return ring->fd;
}

/*
 * Rearm the pollable fd after draining (embedded: reads the eventfd
 * counter; kernel: no-op, its poll() arms).  Call before re-checking the
 * rings and polling.
 * A ring fd takes exactly one poller: on the embedded backend a drain by
 * one poller consumes the wake-up another poller (even through a dup) was
 * waiting for.  Several goroutines or threads share one poller instead.
 */
int aem_ring_fd_drain(struct aem_ring *ring);

/*
 * aem_ring_fd_drain() without the read, for a poller that is
 * edge-triggered (epoll with EPOLLET, Go's netpoller): there every wake-up
 * is a new edge whether or not the embedded backend's eventfd counter was
 * read, so the read is a system call per sleep that buys nothing.  A
 * level-triggered poller must drain instead, or it spins on a readable fd.
 * On the module it enters the kernel side (one system call) instead: an
 * edge-triggered poller never calls poll() before it sleeps, so this is
 * where slots released since the last enter are taken back and the
 * sources waiting for them resume.
 */
int aem_ring_fd_arm(struct aem_ring *ring);

/* ---------------------------------------------------------------------- */
/* Calls, statistics                                                      */

/*
 * Blocking call to the AEM_SRC_MSG subscriber at @addr: returns the reply
 * length (which may exceed @resp_cap: the reply was truncated) or -errno
 * (-ETIMEDOUT, -ENOENT, -ECONNRESET, -EINTR, -ENOSPC when the target's
 * backlog is full, -EBUSY when @ring (or its user) has its quota of calls
 * pending, -EACCES when the target's owner did not grant @ring's user,
 * -EINVAL for a @timeout_ms above AEM_CALL_MAX_TIMEOUT_MS).  @ring is any
 * ring of the caller's: it selects the backend and its quota pays.
 */
int aem_call(struct aem_ring *ring, uint64_t addr, const void *req, unsigned req_len,
	     void *resp, unsigned resp_cap, unsigned prio, unsigned timeout_ms);

int aem_sub_stats(struct aem_ring *ring, uint64_t sub_id, struct aem_sub_stats *st);
int aem_ring_stats(struct aem_ring *ring, struct aem_ring_stats *st);

/*
 * Who may post and call into @ring besides its owner's user (AEM_IOC_GRANT;
 * docs/PROTOCOL.md, "Who may post and call"): let @uid in, or with
 * AEM_GRANT_ANY (and @uid 0) everyone; AEM_GRANT_REVOKE takes a grant
 * back.  0, or -EINVAL (unknown flags, a uid with AEM_GRANT_ANY, an invalid
 * uid), -ENOSPC (AEM_MAX_GRANTS uids granted already), -ENOENT (revoking
 * what was not granted).  A post or call refused for want of a grant gets
 * -EACCES.  The embedded backend keeps the grants the same way; in one
 * process every sender is the owner's user, so they never refuse there.
 */
int aem_grant(struct aem_ring *ring, uint32_t uid, uint32_t flags);

/* ---------------------------------------------------------------------- */
/* Process handlers                                                       */

/*
 * Run an event's handler in a child process, with its payload shared in
 * place: the child is forked, so it inherits the MAP_SHARED payload region
 * and changes the event's slot where it lies; the parent then writes the
 * result back (a call's reply) or releases the slot.
 *
 * @fn gets the event's bytes, their length and the room it may fill (the
 * slot size; AEM_CQE_INLINE for an inline event, which the child gets in
 * a small shared copy) and returns the length to write back, or -errno.
 * It runs in a child forked from a process that may have other threads
 * (the embedded backend has some): it should keep to async-signal-safe
 * work, and it must not use the ring.
 *
 * At most max_procs handlers run at once; aem_proc_start() returns
 * -EBUSY at the bound (reap, then start again).  A child past timeout_ms
 * is killed and its event reported -ETIMEDOUT; a child that dies or exits
 * before answering is reported -ECHILD with its wait status.  Either way
 * the event's slot goes back to the ring and the ring is unharmed; the
 * caller of a failed call gets that errno as an error reply.  With AEM_PROC_POOL the children are forked once, at
 * create, and each serves event after event over its socket (one that
 * dies is replaced at the next start); otherwise a child is forked per
 * event.  Not thread-safe: one thread drives the ring and its handlers.
 *
 *	aem_proc_create(&ring, fn, NULL, &(struct aem_proc_opts){ .max_procs = 4 }, &ph);
 *	for each event cqe (not a result):
 *		while (aem_proc_start(ph, cqe) == -EBUSY)
 *			aem_proc_reap(ph, done, 16, -1);
 *	aem_cq_advance(...);
 *	n = aem_proc_reap(ph, done, 16, 0);	(writebacks submitted here)
 */
typedef int (*aem_proc_fn)(void *data, unsigned len, unsigned cap, void *arg);

#define AEM_PROC_POOL			(1U << 0)	/* keep max_procs children and reuse them */
#define AEM_PROC_WRITEBACK_ALWAYS	(1U << 1)	/* write back non-call events too */
#define AEM_PROC_MAX_PROCS		256

struct aem_proc_opts {
	unsigned	max_procs;	/* handlers at once (pool size); 0: 4, at most AEM_PROC_MAX_PROCS */
	unsigned	timeout_ms;	/* per event; past it the child is killed; 0: 10000 */
	unsigned	flags;		/* AEM_PROC_* */
	unsigned	resv;		/* must be 0 */
};

/* One finished handler. */
struct aem_proc_done {
	uint64_t	user_data;	/* the event's (its subscription's tag) */
	uint64_t	token;		/* the event's id */
	int		res;		/* >= 0: bytes the handler returned; -ETIMEDOUT, -ECHILD or the handler's -errno */
	int		status;		/* wait status of a child that was killed or died; else 0 */
};

struct aem_proc;

/* @opts may be NULL for defaults.  -EINVAL for unknown flags or a bound over the limit. */
int aem_proc_create(struct aem_ring *ring, aem_proc_fn fn, void *arg,
		    const struct aem_proc_opts *opts, struct aem_proc **out);
/* Hand event @cqe to a child; the caller may advance past the CQE at once. */
int aem_proc_start(struct aem_proc *ph, const struct aem_cqe *cqe);
/*
 * Collect up to @max finished handlers into @done, write their results
 * back and submit; waits up to @timeout_ms (-1: until one finishes; 0:
 * not at all).  Returns how many, 0 when none is running.
 */
int aem_proc_reap(struct aem_proc *ph, struct aem_proc_done *done, unsigned max, int timeout_ms);
/* Handlers running now. */
unsigned aem_proc_running(const struct aem_proc *ph);
/* Kill the children (events still running have their slots released) and free @ph. */
void aem_proc_destroy(struct aem_proc *ph);

/*
 * A new close-on-exec fd through which another process can map the
 * ring's PAYLOAD region (mmap MAP_SHARED at *@offset, region_size bytes):
 * for handlers in processes that were not forked from this one.
 */
int aem_payload_fd(struct aem_ring *ring, uint64_t *offset);

/* ---------------------------------------------------------------------- */
/* Producer lanes (docs/PROTOCOL.md, "Producer lanes")                    */

/*
 * One producer's records to a ring's reader through memory the two share:
 * a struct aem_lane_ctl, then the records.  struct aem_lane is one side's
 * private view: after aem_lane_init() or aem_lane_attach() nothing in it
 * is read back from the lane's memory, which the other side may scribble
 * on.  No system call and no lock per record; a post returns 1 when the
 * reader sleeps and must be kicked, aem_lane_advance() 1 when the producer
 * waits for room.  A lane also carries calls, one at a time (aem_lane_call,
 * aem_lane_reply: docs/PROTOCOL.md, "Calls on a lane"); their state sits
 * in what was padding, so the struct keeps its size and offsets.
 */
struct aem_lane {
	struct aem_lane_ctl	*kctl;
	unsigned char		*krecs;
	unsigned	mask;
	unsigned	entries;
	unsigned	stride;
	unsigned	rec_size;
	unsigned	prio;		/* consumer: the class of its events */
	unsigned	pos_hi : 31;	/* the high half of this side's position: the tail's or the head's */
	unsigned	call_busy : 1;	/* producer: a call is in flight, at the position before the tail's */
	uint64_t	sub_id;		/* consumer: the subscription of its events */
	unsigned	tail;		/* producer: the next record to fill */
	unsigned	head_seen;	/* producer: the reader's head as last read */
	unsigned	head;		/* consumer: the next record to read */
	unsigned	malformed;	/* consumer: records and tails refused */
};

/* The 64-bit position of record @k after this side's index @idx. */
AEMINLINE uint64_t aem_lane_pos(const struct aem_lane *l, unsigned idx, unsigned k)
{
	return ((uint64_t)l->pos_hi << 32 | idx) + k;
}

/* Move this side's index @idx on by @n, carrying into pos_hi.  Internal. */
static inline void __aem_lane_step(struct aem_lane *l, unsigned *idx, unsigned n)
{
	unsigned old = *idx;

	*idx = old + n;
	if (*idx < old)
		l->pos_hi++;
}

/* The record at index @idx (masked: it lies inside the lane).  Internal. */
static inline struct aem_lane_rec *__aem_lane_rec(const struct aem_lane *l, unsigned idx)
{
	return (struct aem_lane_rec *)(l->krecs + (size_t)(idx & l->mask) * l->stride);
}

/*
 * The reader's look at the tail: the records ready after its head, or 0
 * with the tail counted in malformed when it is more than a lane ahead
 * (no producer could have written it).  Internal.
 */
static inline unsigned __aem_lane_ready(struct aem_lane *l)
{
	unsigned avail = aem_load_acquire(&l->kctl->tail) - l->head;	/* pairs with the producer's tail release */

	if (avail > l->entries) {
		l->malformed++;
		return 0;
	}
	return avail;
}

/* The producer's call in flight: the record before its tail. */
AEMINLINE uint64_t aem_lane_call_pos(const struct aem_lane *l)
{
	return aem_lane_pos(l, l->tail, 0) - 1;
}

/* Bytes a lane of @entries records of @rec_size payload bytes takes. */
AEMINLINE size_t aem_lane_size(unsigned entries, unsigned rec_size)
{
	return sizeof(struct aem_lane_ctl) + (size_t)entries * AEM_LANE_REC_STRIDE(rec_size);
}

/*
 * The reader's side: lay a lane out in @mem (@size bytes, 8-aligned) for
 * records of the subscription @sub_id in class @prio.  0, or -EINVAL for
 * sizes out of range (@entries a power of two up to AEM_LANE_MAX_ENTRIES,
 * @rec_size 1..AEM_LANE_MAX_RECORD) or memory too small.
 */
AEMINLINE int aem_lane_init(struct aem_lane *l, void *mem, size_t size, unsigned entries,
			    unsigned rec_size, unsigned prio, uint64_t sub_id)
{
	if (!entries || (entries & (entries - 1)) || entries > AEM_LANE_MAX_ENTRIES ||
	    !rec_size || rec_size > AEM_LANE_MAX_RECORD || prio >= AEM_MAX_CLASSES ||
	    ((uintptr_t)mem & 7) || size < aem_lane_size(entries, rec_size))
		return -EINVAL;
	memset(mem, 0, sizeof(struct aem_lane_ctl));
	memset(l, 0, sizeof(*l));
	l->kctl = (struct aem_lane_ctl *)mem;
	l->krecs = (unsigned char *)mem + sizeof(struct aem_lane_ctl);
	l->mask = entries - 1;
	l->entries = entries;
	l->stride = AEM_LANE_REC_STRIDE(rec_size);
	l->rec_size = rec_size;
	l->prio = prio;
	l->sub_id = sub_id;
	l->kctl->entries = entries;
	l->kctl->rec_size = rec_size;
	l->kctl->prio = prio;
	l->kctl->sub_id = sub_id;
	return 0;
}

/*
 * The producer's side: view a lane the reader laid out in @mem (@size
 * bytes).  Its geometry is read once and checked against @size: -EINVAL
 * when it does not fit.
 */
AEMINLINE int aem_lane_attach(struct aem_lane *l, void *mem, size_t size)
{
	const struct aem_lane_ctl *c = (const struct aem_lane_ctl *)mem;
	unsigned entries, rec_size;

	if (((uintptr_t)mem & 7) || size < sizeof(*c))
		return -EINVAL;
	entries = aem_read_once(c->entries);
	rec_size = aem_read_once(c->rec_size);
	if (!entries || (entries & (entries - 1)) || entries > AEM_LANE_MAX_ENTRIES ||
	    !rec_size || rec_size > AEM_LANE_MAX_RECORD || size < aem_lane_size(entries, rec_size))
		return -EINVAL;
	memset(l, 0, sizeof(*l));
	l->kctl = (struct aem_lane_ctl *)mem;
	l->krecs = (unsigned char *)mem + sizeof(*c);
	l->mask = entries - 1;
	l->entries = entries;
	l->stride = AEM_LANE_REC_STRIDE(rec_size);
	l->rec_size = rec_size;
	l->tail = aem_read_once(l->kctl->tail);	/* pos_hi 0: a lane attached after 2^32 records gets no answers to calls */
	l->head_seen = aem_load_acquire(&l->kctl->head);	/* pairs with the reader's head release */
	return 0;
}

/*
 * Post one record with @flags (0 or AEM_LANE_REC_CALL); for a call, the
 * call line's WAITING before the record: the tail's release publishes both.
 * Not AEMINLINE: the public ones below are the API.
 */
static inline int __aem_lane_put(struct aem_lane *l, const void *data, unsigned len,
				 unsigned flags)
{
	struct aem_lane_rec *rec;

	if (len > l->rec_size)
		return -EINVAL;
	if (l->call_busy)
		return -EBUSY;
	if ((aem_read_once(l->kctl->prod_flags) & AEM_LANE_P_CLOSED) ||
	    (aem_read_once(l->kctl->cons_flags) & AEM_LANE_C_GONE))
		return -EPIPE;
	if (l->tail - l->head_seen >= l->entries) {
		l->head_seen = aem_load_acquire(&l->kctl->head);	/* pairs with the reader's head release */
		if (l->tail - l->head_seen >= l->entries)
			return -EAGAIN;
	}
	if (flags & AEM_LANE_REC_CALL) {
		aem_write_once(l->kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_WAITING, aem_lane_pos(l, l->tail, 0)));
		l->call_busy = 1;
	}
	rec = __aem_lane_rec(l, l->tail);
	rec->len = len;
	rec->flags = flags;
	if (len)
		memcpy(rec + 1, data, len);
	__aem_lane_step(l, &l->tail, 1);
	aem_store_release(&l->kctl->tail, l->tail);	/* pairs with the reader's tail acquire */
	aem_smp_mb();
	return !!(aem_read_once(l->kctl->cons_flags) & AEM_LANE_C_SLEEPING);
}

/*
 * Post one record: 0, or 1 when the reader sleeps (kick it: its pollable
 * fd, aem_lane_kick() for a remote lane, or whatever wakes it); -EAGAIN
 * when the lane is full, -EINVAL when @len exceeds the record size, -EPIPE
 * after aem_lane_close() or once the consumer ring is gone (remote lanes),
 * -EBUSY while a call is in flight (a lane carries nothing else meanwhile).  The tail's
 * release, a full barrier, then the load of SLEEPING: pairs with the
 * reader's store of SLEEPING, full barrier, load of the tail (Dekker).
 */
AEMINLINE int aem_lane_post(struct aem_lane *l, const void *data, unsigned len)
{
	return __aem_lane_put(l, data, len, 0);
}

/*
 * Call the lane's reader with @req (@len bytes): posted as aem_lane_post()
 * posts (the same returns, kick included), as a record with
 * AEM_LANE_REC_CALL, after storing the call line's WAITING at the record's
 * position; -EBUSY while an earlier call is in flight, since the call line
 * holds one.  Then aem_lane_call_poll() until it answers, or
 * aem_lane_call_abandon().
 */
AEMINLINE int aem_lane_call(struct aem_lane *l, const void *req, unsigned len)
{
	return __aem_lane_put(l, req, len, AEM_LANE_REC_CALL);
}

/*
 * The answer to the call in flight: the reply's length (its first @cap
 * bytes copied to @resp; a length past @cap says it was cut), or the
 * reader's -errno; -EIO when the reader left a result out of range (never
 * read past the call line); either way the call is over.  -EAGAIN while
 * unanswered; -EPIPE (the call over) once the consumer ring is gone;
 * -EINVAL without a call in flight.  The load-acquire of DONE pairs with
 * the reader's store-release after the reply.
 */
AEMINLINE int aem_lane_call_poll(struct aem_lane *l, void *resp, unsigned cap)
{
	__u64 word;
	int32_t res;

	if (!l->call_busy)
		return -EINVAL;
	word = aem_load_acquire(&l->kctl->call);	/* pairs with the reader's DONE release */
	if (word == AEM_LANE_CALL(AEM_LANE_CALL_DONE, aem_lane_call_pos(l))) {
		l->call_busy = 0;
		res = aem_read_once(l->kctl->call_res);	/* once: the reader may scribble on it */
		if (res < -4095 || res > (int32_t)AEM_LANE_MAX_RECORD)
			return -EIO;
		if (res > 0 && cap)
			memcpy(resp, l->kctl->reply, (unsigned)res < cap ? (unsigned)res : cap);
		return res;
	}
	if (aem_read_once(l->kctl->cons_flags) & AEM_LANE_C_GONE) {
		l->call_busy = 0;
		return -EPIPE;
	}
	return -EAGAIN;
}

/*
 * Give up the call in flight: 0, the lane free for the next post (a reply
 * the reader has not claimed yet will never be written: its
 * compare-and-swap fails), or -EAGAIN while the reader is writing its
 * reply (at most AEM_LANE_MAX_RECORD bytes: try again; its answer is then
 * dropped).  A call line scribbled on, or a consumer ring gone, ends the
 * call too.  0 without a call in flight.
 */
AEMINLINE int aem_lane_call_abandon(struct aem_lane *l)
{
	uint64_t pos = aem_lane_call_pos(l);
	__u64 word = AEM_LANE_CALL(AEM_LANE_CALL_WAITING, pos);

	if (!l->call_busy)
		return 0;
	if (!__atomic_compare_exchange_n(&l->kctl->call, &word,
					 AEM_LANE_CALL(AEM_LANE_CALL_IDLE, pos), 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) &&
	    word == AEM_LANE_CALL(AEM_LANE_CALL_CLAIMED, pos) &&
	    !(aem_read_once(l->kctl->cons_flags) & AEM_LANE_C_GONE))
		return -EAGAIN;	/* the reader copies its reply: DONE follows */
	l->call_busy = 0;
	return 0;
}

/* No record after the last posted: the reader detaches once it has read it. */
AEMINLINE void aem_lane_close(struct aem_lane *l)
{
	aem_store_release(&l->kctl->prod_flags, AEM_LANE_P_CLOSED);	/* after the last tail */
}

/*
 * The reader: copy up to @max ready records into @cqes as inline events of
 * the lane's subscription (AEM_SRC_MSG, its class, user_data @user_data),
 * oldest first; returns how many.  A call (AEM_LANE_REC_CALL) comes with
 * AEM_CQE_F_CALL and its position as id, the token aem_lane_reply() takes.
 * A malformed record (len past the record size, flags neither zero nor
 * AEM_LANE_REC_CALL) first in line is skipped and counted in
 * malformed; one after good records ends the batch.  A tail more than a
 * lane ahead is counted and nothing is read.  Hand the records back with
 * aem_lane_advance(l, the count).
 */
AEMINLINE unsigned aem_lane_peek(struct aem_lane *l, struct aem_cqe *cqes, unsigned max,
				 uint64_t user_data)
{
	unsigned avail = __aem_lane_ready(l);
	unsigned got = 0;

	if (avail > max)
		avail = max;
	while (avail--) {
		const struct aem_lane_rec *rec = __aem_lane_rec(l, l->head + got);
		unsigned len = aem_read_once(rec->len), flags = aem_read_once(rec->flags);
		struct aem_cqe *c;

		if (len > l->rec_size || (flags && flags != AEM_LANE_REC_CALL)) {
			if (got)
				break;
			l->malformed++;
			__aem_lane_step(l, &l->head, 1);
			continue;
		}
		c = &cqes[got];
		memset(c, 0, sizeof(*c));
		c->user_data = user_data;
		if (flags == AEM_LANE_REC_CALL) {
			c->flags = AEM_CQE_F_CALL;
			c->id = aem_lane_pos(l, l->head, got);	/* the record's position: the call line's token */
		} else {
			c->id = l->sub_id;
		}
		got++;
		c->res = (int32_t)len;
		c->source = AEM_SRC_MSG;
		c->prio = (uint8_t)l->prio;
		memcpy(c->data, rec + 1, len);
	}
	return got;
}

/*
 * Hand @n records back to the producer: one store-release of the head.
 * Returns 1 when the producer waits for room (wake it): the head's store,
 * a full barrier, then the load of WAITING, paired with the producer's.
 */
AEMINLINE int aem_lane_advance(struct aem_lane *l, unsigned n)
{
	__aem_lane_step(l, &l->head, n);
	aem_store_release(&l->kctl->head, l->head);	/* pairs with the producer's head acquire */
	aem_smp_mb();
	return !!(aem_read_once(l->kctl->prod_flags) & AEM_LANE_P_WAITING);
}

/*
 * The reader answers the call whose event had id @token: @len bytes of
 * @data (at most AEM_LANE_MAX_RECORD), or, with @err non-zero, the
 * positive errno @err (1..4095), which the caller gets as -@err.  0, or
 * -ENOENT when that call no longer waits (the caller gave up, or @token
 * is no call waiting on this lane): nothing is written then, so a late
 * reply never lands in a later call.  -EINVAL for a bad @len or @err.  The
 * compare-and-swap claims the call line before it is written; DONE's
 * store-release publishes the reply.  The reader never reads the line
 * back beyond that compare-and-swap: the producer may scribble on it.
 */
AEMINLINE int aem_lane_reply(struct aem_lane *l, uint64_t token, const void *data,
			     unsigned len, int err)
{
	__u64 word = AEM_LANE_CALL(AEM_LANE_CALL_WAITING, token);

	if (len > AEM_LANE_MAX_RECORD || (err && (err < 1 || err > 4095)))
		return -EINVAL;
	if (!__atomic_compare_exchange_n(&l->kctl->call, &word,
					 AEM_LANE_CALL(AEM_LANE_CALL_CLAIMED, token), 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -ENOENT;
	if (!err && len)
		memcpy(l->kctl->reply, data, len);
	aem_write_once(l->kctl->call_res, err ? -err : (int32_t)len);
	aem_store_release(&l->kctl->call, AEM_LANE_CALL(AEM_LANE_CALL_DONE, token));	/* pairs with the caller's acquire */
	return 0;
}

/*
 * The reader goes to sleep (@sleeping 1) or wakes (0): SLEEPING, then a
 * full barrier; look at the tail once more before sleeping.  The flag's
 * word keeps AEM_LANE_C_GONE (an atomic OR or AND, itself the barrier).
 */
AEMINLINE void aem_lane_sleeping(struct aem_lane *l, int sleeping)
{
	if (sleeping)
		__atomic_fetch_or(&l->kctl->cons_flags, AEM_LANE_C_SLEEPING, __ATOMIC_SEQ_CST);
	else
		__atomic_fetch_and(&l->kctl->cons_flags, ~(__u32)AEM_LANE_C_SLEEPING, __ATOMIC_SEQ_CST);
}

/*
 * The reader ends a lane whose subscription has ended (docs/PROTOCOL.md,
 * "The subscription's end"): AEM_LANE_C_GONE, by an atomic OR that is a
 * full barrier before the reader's next look at the tail, so posts and
 * calls answer -EPIPE from then on and a producer waiting for room stops.
 * What the lane holds, and what a post that raced the flag adds later,
 * goes to aem_lane_discard(), never to aem_lane_peek(), until the
 * producer closes the lane.
 */
AEMINLINE void aem_lane_end(struct aem_lane *l)
{
	__atomic_fetch_or(&l->kctl->cons_flags, AEM_LANE_C_GONE, __ATOMIC_SEQ_CST);
}

/*
 * Skip every record ready in an ended lane: each is added to *@dropped
 * (nothing is lost untold), a call among them answered -EPIPE, and all
 * are handed back at once.  Returns aem_lane_advance()'s answer (1: the
 * producer waits for room; for a remote lane, aem_lane_room()).  A tail
 * more than a lane ahead is counted in malformed and nothing is skipped.
 */
AEMINLINE int aem_lane_discard(struct aem_lane *l, uint64_t *dropped)
{
	unsigned avail = __aem_lane_ready(l);
	unsigned k;

	if (!avail)
		return 0;
	for (k = 0; k < avail; k++) {
		const struct aem_lane_rec *rec = __aem_lane_rec(l, l->head + k);

		if (aem_read_once(rec->flags) == AEM_LANE_REC_CALL)
			(void)aem_lane_reply(l, aem_lane_pos(l, l->head, k), NULL, 0, EPIPE);
	}
	*dropped += avail;
	return aem_lane_advance(l, avail);
}

/*
 * Remote lanes (AEM_FEAT_LANES, the kernel module): a producer in another
 * process than the consumer ring.  aem_lane_open_remote() attaches a lane
 * of @entries records of @rec_size bytes to the Msg subscription at @addr
 * (AEM_ADDR(consumer ring id, channel)) through @ring, a ring of this
 * process on the module: post with aem_lane_post(&r->lane, ...), and when
 * it returns 1 wake the consumer with aem_lane_kick(r) (once per sleep
 * seen).  aem_lane_close_remote() closes the lane (the consumer drains
 * what was posted) and unmaps it.  -EOPNOTSUPP on the embedded backend,
 * else AEM_IOC_LANE_OPEN's errno: -EINVAL, -ENOENT (no such ring or
 * subscription), -EACCES (not granted), -ENOSPC (the consumer takes no
 * more lanes), -ENOMEM.
 */
struct aem_lane_remote {
	struct aem_lane	lane;
	int		fd;		/* the lane fd */
	void		*mem;
	size_t		map_size;
};

int aem_lane_open_remote(struct aem_ring *ring, uint64_t addr, unsigned entries,
			 unsigned rec_size, struct aem_lane_remote *r);
int aem_lane_kick(struct aem_lane_remote *r);
void aem_lane_close_remote(struct aem_lane_remote *r);

/*
 * The producer of a full remote lane sleeps in the module until the
 * consumer hands back room: store AEM_LANE_P_WAITING in
 * r->lane.kctl->prod_flags, a full barrier, try aem_lane_post() again,
 * and only if it still says -EAGAIN call aem_lane_wait_room(r,
 * @timeout_ms) (1..AEM_LANE_WAIT_MAX_MS); clear WAITING once there is
 * room.  0 once the consumer has signalled room (aem_lane_room()) since
 * the last wait returned 0, at once if it did before the call: look at
 * the lane again (a stale signal only ends one wait early); -ETIMEDOUT,
 * -EPIPE once the consumer ring is gone, -EINTR on a signal, -EINVAL for
 * a timeout out of range.
 */
int aem_lane_wait_room(struct aem_lane_remote *r, unsigned timeout_ms);

/*
 * The consumer's side: a ring set up with aem_params.remote_lanes gets a
 * result CQE with AEM_CQE_F_LANE (user_data: the subscription's tag) per note.  aem_lane_note()
 * reads it (0, or -EINVAL if @cqe is no lane note).  For an
 * AEM_LANE_NOTE_ATTACH, aem_lane_map_remote() maps that lane and views it
 * as its reader (its memory untouched: the producer may have posted
 * already); read it with aem_lane_peek()/aem_lane_advance() until the
 * producer closed it (AEM_LANE_P_CLOSED) and it is drained, then
 * aem_lane_unmap_remote().  A KICK note only wakes the reader.
 */
int aem_lane_note(const struct aem_cqe *cqe, struct aem_lane_note *n);
int aem_lane_map_remote(struct aem_ring *ring, const struct aem_lane_note *n,
			struct aem_lane *l);
void aem_lane_unmap_remote(struct aem_lane *l);
/* The producer closed the lane and every record before its close was read. */
int aem_lane_drained(struct aem_lane *l);
/*
 * The consumer wakes the producer of the remote lane in @slot
 * (aem_lane_note.slot) that waits for room: call it when aem_lane_advance()
 * returns 1 (head stored, a full barrier, WAITING seen).  0, -ENOENT when
 * that slot has no lane (its producer is gone), -EINVAL for a slot past
 * AEM_MAX_LANES, -EBADFD without a ring; -EOPNOTSUPP on the embedded
 * backend.
 */
int aem_lane_room(struct aem_ring *ring, unsigned slot);

/* ---------------------------------------------------------------------- */
/* A reader's lanes (docs/PROTOCOL.md, "A reader's lanes in libaem")     */

/*
 * Lanes a set holds: a ring's remote lanes (AEM_MAX_LANES at most hold a
 * slot of the module's; a slot is reused once its producer is gone, while
 * the old lane may still be draining here) and the process's own.
 */
#define AEM_LANE_SET_MAX	(2 * AEM_MAX_LANES)

struct aem_lane_set_entry {
	struct aem_lane	lane;
	uint64_t	user_data;	/* its events' user_data */
	unsigned	state;		/* internal: free, live, remote, ended */
	unsigned	gen;		/* internal: bumped at each attach, in its call events' slot */
	unsigned	slot;		/* a remote lane's slot (aem_lane_note.slot) */
	unsigned	resv;
};

/*
 * Every lane one reader reads, in one table: the ring's remote lanes,
 * which enter from their ATTACH notes (aem_lane_set_note), and lanes in the
 * process's own memory (aem_lane_set_add).  aem_lane_set_peek() copies the
 * ready records of one class from all of them, a lane after another in
 * turn, hands them straight back, wakes the producers that wait for room,
 * and lets go of a lane whose producer closed it once it is drained
 * (unmapping a remote one).  One thread reads a set; the struct is the
 * caller's memory, set up by aem_lane_set_init().
 */
struct aem_lane_set {
	struct aem_ring	*ring;
	unsigned	hi;		/* internal: entries in use are below it */
	unsigned	next[AEM_MAX_CLASSES];	/* internal: per class, the entry read first */
	uint64_t	dropped;	/* records of ended lanes skipped (aem_lane_set_end) */
	uint64_t	detached;	/* lanes let go: closed and drained */
	uint64_t	malformed;	/* records and tails refused, of lanes let go */
	struct aem_lane_set_entry entry[AEM_LANE_SET_MAX];
};

void aem_lane_set_init(struct aem_lane_set *s, struct aem_ring *ring);
/*
 * Route a result CQE: 1 for a lane note (an ATTACH mapped, a KICK
 * swallowed), 0 for any other CQE (the caller's), or -errno for a lane
 * note that could not be taken: -EINVAL malformed, -ENOSPC the set is
 * full (read so that drained lanes leave it, then give the note again:
 * its lane holds its slot in the module until mapped), or
 * aem_lane_map_remote()'s error.  Events of a remote lane get the note's
 * user_data (the subscription's tag).
 */
int aem_lane_set_note(struct aem_lane_set *s, const struct aem_cqe *cqe);
/*
 * Read a lane of this process's memory with the rest: @l is the reader's
 * view from aem_lane_init(), copied (read through the set from now on),
 * its events get @user_data.  Its index, -ENOSPC when the set is full,
 * or -EINVAL for a view without a lane or of a class past
 * AEM_MAX_CLASSES.  The memory is the
 * caller's; the set lets go of it once the producer closed the lane and
 * it is drained (aem_lane_set_live() says 0), or at aem_lane_set_close().
 */
int aem_lane_set_add(struct aem_lane_set *s, const struct aem_lane *l, uint64_t user_data);
/* Whether entry @idx (aem_lane_set_add's answer) still holds its lane. */
int aem_lane_set_live(const struct aem_lane_set *s, unsigned idx);
/*
 * Copy up to @max records of class @cls into @cqes, as aem_lane_peek()
 * makes them, and hand them back; returns how many.  A call's event
 * (AEM_CQE_F_CALL) carries its lane in slot: answer it with
 * aem_lane_set_reply().  A malformed record or tail is skipped and counted
 * in its lane's malformed, as aem_lane_peek() does.
 */
unsigned aem_lane_set_peek(struct aem_lane_set *s, unsigned cls, struct aem_cqe *cqes, unsigned max);
/*
 * Answer the call of @cqe (one of aem_lane_set_peek()'s events): as
 * aem_lane_reply(), and -ENOENT also when its lane is gone from the set
 * or @cqe is no call.
 */
int aem_lane_set_reply(struct aem_lane_set *s, const struct aem_cqe *cqe, const void *data,
		       unsigned len, int err);
/*
 * Before sleeping (@sleeping 1): SLEEPING in every lane, then one more
 * look; returns the lanes with records (or their producer's close) to
 * read, and the reader sleeps only on 0.  After (@sleeping 0): clears it;
 * returns 0.  A producer that sees SLEEPING kicks (remote lanes: a KICK
 * note, which wakes aem_wait()).
 */
unsigned aem_lane_set_sleeping(struct aem_lane_set *s, int sleeping);
/*
 * The subscription @sub_id ended: aem_lane_end() in each of its lanes,
 * whose records are skipped from then on and counted in dropped (a call
 * answered -EPIPE).  Returns the lanes ended.
 */
unsigned aem_lane_set_end(struct aem_lane_set *s, uint64_t sub_id);
/* The reader is done: every lane ended (posts answer -EPIPE), remote ones unmapped. */
void aem_lane_set_close(struct aem_lane_set *s);

#ifdef __cplusplus
}
#endif

#endif /* LIBAEM_H */
