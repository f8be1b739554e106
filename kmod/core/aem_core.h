/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The host-neutral ring core: the kernel side of the AEM protocol, written
 * once and compiled into the kernel module and into libaem's embedded
 * backend.  It consumes SQEs, posts CQEs into per-class completion rings,
 * keeps the overflow backlog, the subscription table, the pending-call
 * table and every counter, and decides when to wake a waiter.
 *
 * Everything the core needs from its host (locks, allocation, barriers,
 * wait/wake, time, user copies) comes through aem_compat.h, which selects
 * compat_kernel.h or compat_user.h.  Nothing here includes a host header.
 *
 * Trust: every byte in the RINGS, SQES and PAYLOAD regions may be written
 * by user space at any moment.  The core reads each shared field once
 * (aem_read_once) into a local, validates the local, masks every index and
 * clamps every count.  The CQES region is mapped read-only for user space.
 */
#ifndef AEM_CORE_H
#define AEM_CORE_H

#include "aem_compat.h"
#include "../uapi/aem.h"

#define AEM_SOURCE_API_VERSION	1

struct aem_ring;
struct aem_sub;

/*
 * One subscription: 64 bytes, the whole kernel-side state of a timer.
 * Lives in a chunked table (no moves on growth), found by id in O(1).
 */
struct aem_sub {
	u64	user_data;	/* tag echoed in every event */
	u64	produced;	/* events the source produced */
	u64	delivered;	/* events written to a CQ ring */
	u64	dropped;	/* events dropped past the backlog bound */
	u64	priv[2];	/* source-private (timer: expiry tick, interval) */
	u32	link[2];	/* source-private list links by table index */
	u32	backlog;	/* events in the overflow backlog */
	u16	gen;		/* generation of the id; bumped on free */
	u8	source;		/* AEM_SRC_*, 0 when free */
	u8	prio;		/* class its events go to */
};

/* Layout computed from validated parameters; filled by aem_core_layout(). */
struct aem_layout {
	u64	region_size[AEM_NR_REGIONS];
	u32	sq_entries, cq_entries, nr_classes;
	u32	slot_size, slot_count, send_slots, slot_ring_entries;
	u32	backlog_limit;
};

/*
 * Validate @p (user input: unknown flags, non-zero reserved fields, out of
 * range sizes -> -EINVAL), round sizes, and fill its out fields (offsets,
 * region sizes, features, api_version) and @l.  @host_features is OR-ed
 * into p->features.  Pure: allocates nothing.
 */
int aem_core_layout(struct aem_params *p, u32 host_features, struct aem_layout *l);

/*
 * Create a ring over host-allocated, zeroed regions of l->region_size
 * bytes (kernel: vmalloc_user pages; user: memfd mappings the core writes
 * through).  Registers the ring in the global ring table and returns its
 * id through *ring_id.  @host is the host's private pointer (its wait
 * queue, eventfd, file ...), retrievable with aem_ring_host().
 */
int aem_core_ring_create(const struct aem_params *p, const struct aem_layout *l,
			 void *regions[AEM_NR_REGIONS], void *host,
			 struct aem_ring **out, u32 *ring_id);

/*
 * Tear down: unregisters the ring (new posts and calls to it fail with
 * -ENOENT), ends every subscription through its source, fails pending
 * calls into it with -ECONNRESET, frees the backlog.  May sleep.  The host
 * frees the regions afterwards.
 */
void aem_core_ring_destroy(struct aem_ring *r);

void *aem_ring_host(struct aem_ring *r);
u32 aem_ring_id(struct aem_ring *r);

/*
 * Consume up to @to_submit SQEs (clamped to what the tail shows, and the
 * tail to one ring's worth beyond head).  Each SQE is copied once, then
 * validated; a refused SQE gets an error CQE (res = -errno, F_RESULT) and
 * a count in aem_ring_stats.refused.  Returns the number consumed.
 * Process context (may sleep: subscribe allocates).
 */
int aem_core_submit(struct aem_ring *r, u32 to_submit);

/* Consume the slot return ring: user-held delivery slots back to the core. */
void aem_core_reclaim_slots(struct aem_ring *r);

/* Move backlog entries into CQ rings while there is room. */
void aem_core_flush_backlog(struct aem_ring *r);

/*
 * Wait condition: at least @min CQEs across classes, or any in class 0
 * (urgent events end a wait at once).  Lock-free; pairs with the producer's
 * store-release of a CQ tail.
 */
bool aem_core_cq_ready(struct aem_ring *r, u32 min);

/*
 * Host waiting.  A waiter calls aem_core_wait_begin() (announces itself;
 * full barrier), re-checks aem_core_cq_ready(), sleeps, then calls
 * aem_core_wait_end().  Producers publish the tail, issue a full barrier
 * and call the host's aem_host_wake() only if a waiter is announced.  This
 * store-tail/mb/load-waiters vs store-waiters/mb/load-tail pair (Dekker) is
 * what makes wake-ups impossible to lose.
 */
void aem_core_wait_begin(struct aem_ring *r);
void aem_core_wait_end(struct aem_ring *r);

int aem_core_sub_stats(struct aem_ring *r, struct aem_sub_stats *st);
void aem_core_ring_stats(struct aem_ring *r, struct aem_ring_stats *st);

/*
 * Blocking call: deliver @req to the AEM_SRC_MSG subscription at
 * a->addr as an event with AEM_CQE_F_CALL, then wait (killably, at most
 * a->timeout_ms) until the handler writes back.  The reply is copied to
 * @resp (at most a->resp_cap bytes; a->resp_len says how many it had).
 * @req and @resp are kernel/process memory, already copied by the host.
 * Returns 0, -ETIMEDOUT, -ENOENT (no such ring or channel),
 * -ECONNRESET (target ring closed), -EINTR, -EINVAL.
 */
int aem_core_call(struct aem_call_args *a, const void *req, void *resp);

/* ---------------------------------------------------------------------- */
/* Host hooks: implemented by each host (kernel module; libaem embedded).  */

/* Wake waiters of @r (kernel: wake_up; user: futex wake + eventfd write). */
void aem_host_wake(struct aem_ring *r, void *host, bool urgent);

/* ---------------------------------------------------------------------- */
/* Sources                                                                */

struct aem_source_ops {
	u32		api_version;	/* AEM_SOURCE_API_VERSION */
	u8		source;		/* AEM_SRC_* */
	const char	*name;
	void		*owner;		/* kernel: THIS_MODULE; user: NULL */
	/*
	 * Start producing for @s.  @sqe is the core's private copy, already
	 * checked for opcode/flags/prio; the source validates its own union
	 * member and returns -EINVAL for anything it does not accept.
	 */
	int	(*subscribe)(struct aem_ring *r, struct aem_sub *s, const struct aem_sqe *sqe);
	/* Stop producing for @s; after return the source never touches @s. May sleep. */
	void	(*unsubscribe)(struct aem_ring *r, struct aem_sub *s);
	/*
	 * AEM_OP_WRITEBACK to a subscription token (not a call), or
	 * AEM_OP_TIMER_SET / AEM_OP_GEN_SET: reinterpret @data (a private copy).
	 * NULL: the source takes no writeback (-EOPNOTSUPP).
	 */
	int	(*writeback)(struct aem_ring *r, struct aem_sub *s, const struct aem_sqe *sqe,
			     const void *data, u32 len);
};

/* Register a source; -EEXIST if its id is taken, -EINVAL on version mismatch. */
int aem_core_register_source(const struct aem_source_ops *ops);
/* Unregister: every subscription of the source, in every ring, ends (F_FINAL). May sleep. */
void aem_core_unregister_source(const struct aem_source_ops *ops);

/*
 * Post one event for @s: inline if @len <= AEM_CQE_INLINE and the source
 * does not ask for a slot, else in a delivery slot.  When the CQ ring is
 * full it goes to the backlog; past the backlog bound it is dropped and
 * counted.  Any context (takes the ring's completion spinlock, never
 * sleeps).  Returns 0 (delivered or backlogged) or -ENOSPC (dropped).
 */
int aem_core_post(struct aem_ring *r, struct aem_sub *s, const void *data, u32 len,
		  u32 cqe_flags, u64 id);

/*
 * Post up to @n events for @s in one reservation: @fill writes the payload
 * of event i (at most @len bytes, <= AEM_CQE_INLINE) into @dst.  One lock
 * round and one tail store for the batch.  Events that do not fit go to the
 * backlog or are dropped, as for aem_core_post.  Returns events produced.
 */
typedef void (*aem_fill_fn)(void *arg, u64 i, u8 *dst, u32 len);
u32 aem_core_post_batch(struct aem_ring *r, struct aem_sub *s, u32 n, u32 len,
			aem_fill_fn fill, void *arg);

/* Subscription id (AEM_ID_KIND_SUB) of @s in @r. */
u64 aem_sub_id(struct aem_ring *r, struct aem_sub *s);

/*
 * A source ends its own subscription (one-shot timer fired, generator count
 * reached) by posting its last event with AEM_CQE_F_FINAL: the core frees
 * the subscription once that event leaves the backlog or is dropped, and the
 * source must not touch @s after that post.
 */

#endif /* AEM_CORE_H */
