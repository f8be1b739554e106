/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The host-neutral ring core: the kernel side of the AEM protocol, written
 * once and compiled into the kernel module and into libaem's embedded
 * backend.  It consumes SQEs, posts events into per-class completion rings
 * and the answers to SQEs into the result ring, keeps the overflow backlog, the subscription table, the pending-call
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

/* 2: struct aem_source_ops has impl and api_versions (several implementations per source id). */
#define AEM_SOURCE_API_VERSION	2

/* Implementations of one source id registered at once. */
#define AEM_SRC_IMPLS		4

struct aem_ctx;
struct aem_sub;

/*
 * One subscription: 60 bytes, the whole kernel-side state of a timer.
 * Lives in a chunked table (no moves on growth), found by id in O(1).
 * Counters and state change only under the ring's completion lock.
 *
 * produced is counted where an event enters the core, before the
 * deliver / backlog / drop decision, apart from the three outcome
 * counters, so that produced == delivered + backlog + dropped is a check
 * that a lost event fails, not an identity.  It keeps the low 16 bits of
 * the count and statistics widen it against the outcome sum: any
 * disagreement below 2^15 events shows in full.  The small fields share
 * three 32-bit words: a subscription never has more than backlog_limit <=
 * AEM_MAX_BACKLOG (2^22) events backlogged, the table never more than
 * AEM_MAX_SUBS (2^24) entries, there are fewer than 16 sources and
 * AEM_MAX_CLASSES (4) classes.  The entry is packed to 4-byte alignment so
 * that the table holds no padding: with the table's growth slack (sub.c)
 * an idle timer costs at most 64 bytes.
 */

struct aem_sub {
	u64	user_data;	/* tag echoed in every event */
	u64	delivered;	/* events written to a CQ ring */
	u64	dropped;	/* events dropped past the backlog bound (or discarded by unsubscribe) */
	u64	priv[2];	/* source-private (timer: expiry, interval) */
	u32	link[2];	/* source-private list links by table index */
	u32	index : 24;	/* own index in the table (constant; < AEM_MAX_SUBS) */
	u32	source : 4;	/* AEM_SRC_*, 0 when free */
	u32	prio : 2;	/* class its events go to (< AEM_MAX_CLASSES) */
	u32	backlog : 23;	/* events in the overflow backlog (<= AEM_MAX_BACKLOG) */
	u32	state : 5;	/* core-private AEM_SUB_* bits */
	u32	impl : 3;	/* registration slot of its source implementation (< AEM_SRC_IMPLS) */
	u16	gen;		/* generation of the id; bumped on free */
	u16	produced;	/* events that entered the core, modulo 2^16 (see above) */
} __attribute__((packed, aligned(4)));

/* Features of every ring, whichever host; the host ORs in its own. */
#define AEM_CORE_FEATURES	(AEM_FEAT_CQE_INLINE | AEM_FEAT_SLOT_RING | AEM_FEAT_BLOCKING_CALL | \
				 AEM_FEAT_SUB_STATS | AEM_FEAT_GRANT | AEM_FEAT_SOCK)

/* Layout computed from validated parameters; filled by aem_core_layout(). */
struct aem_layout {
	u64	region_size[AEM_NR_REGIONS];
	u32	sq_entries, cq_entries, nr_classes;
	u32	res_entries;	/* result ring: twice the SQ ring, so a full batch's results fit twice */
	u32	slot_size, slot_count, send_slots, slot_ring_entries;
	u32	backlog_limit;
	u32	call_quota;	/* pending calls charged to the ring, at most */
	u32	sock_conns;	/* socket connections the ring may hold */
	u32	sq_idle_ms;	/* AEM_SETUP_SQPOLL: the poller's idle time; else 0 */
};

/*
 * Validate @p (user input: unknown flags, non-zero reserved fields, out of
 * range sizes -> -EINVAL; an ABI version it does not serve -> -EOPNOTSUPP),
 * round sizes, and fill its out fields (offsets,
 * region sizes, features, api_version) and @l.  @host_features is OR-ed
 * into p->features.  Pure: allocates nothing.
 */
int aem_core_layout(struct aem_params *p, u32 host_features, struct aem_layout *l);

/*
 * Create a ring over host-allocated, zeroed regions of l->region_size
 * bytes (kernel: vmalloc_user pages; user: memfd mappings the core writes
 * through).  Registers the ring in the global ring table and returns its
 * id through *ring_id.  @host is the host's private pointer (its wait
 * queue, eventfd, file ...), handed back to aem_host_wake().
 */
int aem_core_ring_create(const struct aem_params *p, const struct aem_layout *l,
			 void *regions[AEM_NR_REGIONS], void *host,
			 struct aem_ctx **out, u32 *ring_id);

/*
 * Tear down: unregisters the ring (new posts and calls to it fail with
 * -ENOENT), ends every subscription through its source, fails pending
 * calls into it with -ECONNRESET, frees the backlog.  May sleep.  The host
 * frees the regions afterwards.
 */
void aem_core_ring_destroy(struct aem_ctx *r);

u32 aem_ctx_slot_size(struct aem_ctx *r);

/*
 * Consume up to @to_submit SQEs (clamped to what the tail shows, and the
 * tail to one ring's worth beyond head).  Each SQE is copied once, then
 * validated; a refused SQE gets an error result (res = -errno) and
 * a count in aem_ring_stats.refused.  Every consumed SQE is answered: while
 * the overflow backlog holds twice its bound, consumption stops and the
 * remaining SQEs stay in the ring until the user reaps.  Returns the
 * number consumed.  Process context (may sleep: subscribe allocates).
 */
int aem_core_submit(struct aem_ctx *r, u32 to_submit);

/*
 * The submission poller (AEM_SETUP_SQPOLL, sqpoll.c), run by the host in
 * a thread of its own per ring, the only consumer of that ring's SQ:
 *	for (;;) {
 *		if (aem_core_sqpoll_round(r) > 0)	(consumed: busy)
 *			continue;
 *		... SQEs pending but none consumed (a full target): back off;
 *		... idle for aem_core_sq_idle_ms(r): then
 *		if (aem_core_sqpoll_sleep_begin(r)) {	(NEED_WAKEUP set, mb, tail re-read)
 *			sleep until an enter wakes it (or teardown);
 *		}
 *		aem_core_sqpoll_sleep_end(r);	(only after a sleep)
 *	}
 * aem_core_sqpoll_sleep_begin() returns false, the flag cleared again,
 * when SQEs arrived meanwhile.  Process context (submission may sleep).
 */
bool aem_core_sqpoll(struct aem_ctx *r);		/* the ring has a poller */
u32 aem_core_sq_idle_ms(struct aem_ctx *r);
u32 aem_core_sq_pending(struct aem_ctx *r);		/* SQEs published, not consumed */
int aem_core_sqpoll_round(struct aem_ctx *r);		/* consume them: SQEs consumed */
bool aem_core_sqpoll_sleep_begin(struct aem_ctx *r);
void aem_core_sqpoll_sleep_end(struct aem_ctx *r);

/* Consume the slot return ring: user-held delivery slots back to the core. */
void aem_core_reclaim_slots(struct aem_ctx *r);

/* Move backlog entries into CQ rings while there is room. */
void aem_core_flush_backlog(struct aem_ctx *r);

/*
 * Wait condition: at least @min CQEs across the class rings and the result
 * ring, or any in class 0 or in the result ring (urgent events and results
 * end a wait at once).  Lock-free; pairs with the producer's store-release
 * of a CQ tail.
 */
bool aem_core_cq_ready(struct aem_ctx *r, u32 min);

/*
 * Host waiting.  A waiter calls aem_core_wait_begin() (announces itself;
 * full barrier), re-checks aem_core_cq_ready(), sleeps, then calls
 * aem_core_wait_end().  Producers publish the tail, issue a full barrier
 * and call the host's aem_host_wake() only if a waiter is announced.  This
 * store-tail/mb/load-waiters vs store-waiters/mb/load-tail pair (Dekker) is
 * what makes wake-ups impossible to lose.
 */
void aem_core_wait_begin(struct aem_ctx *r);
void aem_core_wait_end(struct aem_ctx *r);

int aem_core_sub_stats(struct aem_ctx *r, struct aem_sub_stats *st);
void aem_core_ring_stats(struct aem_ctx *r, struct aem_ring_stats *st);

/*
 * Blocking call: deliver @req to the AEM_SRC_MSG subscription at
 * a->addr as an event with AEM_CQE_F_CALL, then wait (killably, at most
 * a->timeout_ms) until the handler writes back.  The reply is copied to
 * @resp (at most a->resp_cap bytes; a->resp_len says how many it had).
 * @req and @resp are kernel/process memory, already copied by the host.
 * The call counts against @caller's quota of pending calls (the ring of
 * the fd it came through; NULL: one pool shared by ring-less callers).
 * The sender is @caller's owner, or without a ring the current task.
 * Returns 0, -ETIMEDOUT, -ENOENT (no such ring or channel),
 * -ECONNRESET (target ring closed), -EINTR, -EINVAL (a timeout beyond
 * AEM_CALL_MAX_TIMEOUT_MS), -EBUSY (the quota or the user's share is used
 * up), -EACCES (the target does not let the sender's user in).
 */
int aem_core_call(struct aem_ctx *caller, struct aem_call_args *a, const void *req, void *resp);

/*
 * Let @uid (a kuid's value; the host translates the caller's uid) post and
 * call into @r, or with AEM_GRANT_ANY everyone; AEM_GRANT_REVOKE takes it
 * back.  -EINVAL for unknown flags or a uid with AEM_GRANT_ANY, -ENOSPC past
 * AEM_MAX_GRANTS uids, -ENOENT to revoke what was not granted.
 */
int aem_core_grant(struct aem_ctx *r, u32 uid, u32 flags);

/*
 * Per-user limits on the machine-wide tables (the module's parameters
 * user_max_rings and user_max_calls): rings a user may have at once (setup
 * past it: -EMFILE) and calls a user may have pending (past it: as past a
 * ring's quota).  Read at each check, so a change applies at once.
 */
#define AEM_DEFAULT_USER_RINGS	1024
#define AEM_DEFAULT_USER_CALLS	4096
extern unsigned int aem_core_user_max_rings;
extern unsigned int aem_core_user_max_calls;

/* ---------------------------------------------------------------------- */
/* Host hooks: implemented by each host (kernel module; libaem embedded).  */

/* Wake waiters of @r (kernel: wake_up; user: futex wake + eventfd write). */
void aem_host_wake(struct aem_ctx *r, void *host, bool urgent);

/*
 * The account of a ring's memory.  The host charges the regions at setup;
 * the core charges the ring's kernel-side state (subscription table,
 * backlog and the payloads it holds, slot bookkeeping, source state) to
 * the same account through these, in whole grains of AEM_CHARGE_GRAIN
 * bytes (a multiple of the page size).  The rule, on both hosts: the
 * ring's total (regions and state) stays within its budget (the module's
 * max_ring_mb when the ring was set up), and, unless the setter-up had
 * CAP_IPC_LOCK, its owner's locked memory within RLIMIT_MEMLOCK as it was
 * then (module: per user, shared by the user's rings, as io_uring's;
 * embedded: per ring).  aem_host_charge() returns 0, or -ENOMEM past the
 * limit, or with @force AEM_CHARGE_OVER when it took the grains past the
 * limit anyway (results the ring owes its user are never refused).  Any
 * context, under the ring's completion lock: must not sleep.
 */
#define AEM_CHARGE_GRAIN	(64U << 10)
#define AEM_CHARGE_OVER		1
int aem_host_charge(void *host, u64 bytes, bool force);
void aem_host_uncharge(void *host, u64 bytes);

/*
 * The identity of the task posting or calling now (process context), as
 * the creator of the receiving ring (@target_host, its host pointer) sees
 * it: out->pid and out->uid.  Version 4 rings stamp it in msg events.
 */
void aem_host_sender(void *target_host, struct aem_sender *out);

/*
 * Who the current task is, for a ring's owner and a ring-less caller:
 * kernel: the euid's kuid value and the user namespace (a reference, which
 * aem_host_cred_put() drops); user: the euid, no namespace.  Process context.
 */
struct aem_cred {
	u32		uid;
	const void	*ns;
};
void aem_host_cred_get(struct aem_cred *c);
void aem_host_cred_put(struct aem_cred *c);

/*
 * Remote producer lanes (the module's aem_lane.c; the core never reads a
 * lane).  aem_core_lane_target() finds and holds the ring at @addr for
 * @cred, as a POST would (-ENOENT, -EACCES), and its live Msg subscription
 * on @addr's channel (-ENOENT): its host, id, class and tag (user_data).
 * Put the ring with aem_core_ring_put().  aem_core_lane_note() posts @n
 * into @r's result ring (AEM_CQE_F_RESULT | AEM_CQE_F_LANE, user_data
 * @tag: the subscription's) and wakes its waiters;
 * with @if_room only while the result ring is less than half full, and
 * not while the note last posted for the same lane (*@unread_end: one past
 * its index, 0 for none) is still unread (false: not posted); else never
 * dropped (the result backlog).
 */
int aem_core_lane_target(u64 addr, const struct aem_cred *cred, struct aem_ctx **out,
			 void **host, u64 *sub_id, u8 *prio, u64 *tag);
void aem_core_ring_put(struct aem_ctx *r);
bool aem_core_lane_note(struct aem_ctx *r, const struct aem_lane_note *n, u64 tag, bool if_room,
			u32 *unread_end);

/* Random bits for ring ids (kernel: get_random_u32). */
u32 aem_host_random_u32(void);

/* ---------------------------------------------------------------------- */
/* Sources                                                                */

struct aem_source_ops {
	u32		api_version;	/* AEM_SOURCE_API_VERSION */
	u8		source;		/* AEM_SRC_* */
	/*
	 * Implementation version, 0 = 1: several implementations of one source
	 * id may be registered at once (at most AEM_SRC_IMPLS, each impl once);
	 * a version 4 SUBSCRIBE names one in its arg (0: the newest that
	 * serves the ring's ABI version).
	 */
	u32		impl;
	/* ABI versions (bit 1 << v) whose rings it serves; 0 = every version the core serves. */
	u32		api_versions;
	const char	*name;
	void		*owner;		/* kernel: THIS_MODULE; user: NULL */
	/*
	 * Start producing for @s.  @sqe is the core's private copy, already
	 * checked for opcode/flags/prio; the source validates its own union
	 * member and returns -EINVAL for anything it does not accept.
	 */
	int	(*subscribe)(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe);
	/* Stop producing for @s; after return the source never touches @s. May sleep. */
	void	(*unsubscribe)(struct aem_ctx *r, struct aem_sub *s);
	/*
	 * AEM_OP_WRITEBACK to a subscription token (not a call), or
	 * AEM_OP_TIMER_SET / AEM_OP_GEN_SET: reinterpret @data (a private copy).
	 * NULL: the source takes no writeback (-EOPNOTSUPP).
	 */
	int	(*writeback)(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
			     const void *data, u32 len);
	/*
	 * Optional: begin producing for @s.  Called after the SUBSCRIBE result
	 * CQE is posted, so a subscription's events never overtake the result
	 * that names its id.  Any lock the source takes here nests outside the
	 * completion lock.
	 */
	void	(*start)(struct aem_ctx *r, struct aem_sub *s);
	/*
	 * Optional: @r is going away; free per-ring source state.  Every sub
	 * of the source in @r has been unsubscribed.  It is also the fence for
	 * subscriptions that ended by their own final event (no unsubscribe
	 * call): after it returns, no producer of the source may still be
	 * inside a post to @r.  May sleep.
	 */
	void	(*ring_release)(struct aem_ctx *r);
	/*
	 * Optional (the socket source): AEM_OP_SEND (@data, @len: the
	 * payload), AEM_OP_SHUTDOWN (@data NULL, @len 0; sqe->arg), and
	 * AEM_OP_WRITEBACK to @s's token, which then goes here with its whole
	 * payload instead of to .writeback.  @data points where the payload
	 * lies (the core's SQE copy, or a slot in the shared region that user
	 * space may change meanwhile): the source reads it once (sends or
	 * copies it) before returning and keeps no pointer.  Returns the
	 * result (>= 0: bytes sent, 0), a refusal -errno (-ENOENT counts as
	 * AEM_REFUSE_ID; -ENOBUFS, -ENOMEM, -ENOSPC as AEM_REFUSE_NOMEM; others
	 * AEM_REFUSE_FIELD; never -EAGAIN, which is taken as -ENOBUFS), or
	 * AEM_CORE_PENDING: accepted, answered later by
	 * exactly one aem_core_complete().  Process context (submission); it
	 * must not block on the network.
	 */
	int	(*io)(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
		      const void *data, u32 len);
	/*
	 * Optional: after aem_core_want_room() answered false for a
	 * subscription of this source in @r, the consumer freed CQ entries or
	 * slots (its next enter, wait or poll arming).  Called once per such
	 * announcement, maybe spuriously; any context: must not sleep nor take
	 * @r's completion lock (kick the source's own driver).
	 */
	void	(*room)(struct aem_ctx *r);
};

/*
 * Register a source implementation; -EEXIST if its id and implementation
 * are taken (or AEM_SRC_IMPLS of the id are), -EINVAL on a version mismatch.
 */
int aem_core_register_source(const struct aem_source_ops *ops);
/* Unregister: every subscription of the source, in every ring, ends (F_FINAL). May sleep. */
void aem_core_unregister_source(const struct aem_source_ops *ops);
/* Fill @p (AEM_IOC_PROBE) from the opcode table and the source registry. */
void aem_core_probe(struct aem_probe *p, u32 host_features, u32 setup_flags);

/*
 * Post one event for @s: inline if @len <= AEM_CQE_INLINE, else in a
 * delivery slot.  When the CQ ring is full, or no slot is free, it goes to
 * the backlog (its payload in a slot or, failing that, on the heap); past
 * the backlog bound it is dropped and counted.  @cqe_flags: AEM_CQE_F_CALL,
 * AEM_CQE_F_TRUNC, AEM_CQE_F_FINAL (the source's last event); @id: the
 * event's token, 0 for the subscription's id.  Any context (takes the
 * ring's completion spinlock, never sleeps).  Returns 0 (delivered or
 * backlogged) or -ENOSPC (dropped).
 */
int aem_core_post(struct aem_ctx *r, struct aem_sub *s, const void *data, u32 len,
		  u32 cqe_flags, u64 id);

/*
 * @n events of @s that the source lost before it could post them (its own
 * state could not be allocated, say): counted produced and dropped, as
 * events dropped past the backlog bound, so the subscriber sees the loss.
 * Any context.
 */
void aem_core_lost(struct aem_ctx *r, struct aem_sub *s, u32 n);

/* Subscription id (AEM_ID_KIND_SUB) of @s in @r. */
u64 aem_sub_id(struct aem_ctx *r, struct aem_sub *s);


/*
 * Whether @s is still a live subscription (not ended by its final event,
 * not being unsubscribed).  A source's writeback, serialised with its own
 * producer by the source's lock, checks it before touching @s: the
 * producer may have posted the final event just before.
 */
bool aem_sub_active(struct aem_ctx *r, struct aem_sub *s);

/*
 * CLOCK_MONOTONIC ns, read once per submission (per aem_core_submit that
 * consumes SQEs): what a source arming from an SQE counts from, so a batch
 * of timer subscriptions costs one clock read.  It is no later than the
 * SQE's consumption and no earlier than the enter that submitted it, so a
 * timer armed from it never fires before its interval from its submission.
 * Only from an opcode's handler (under the submit lock).
 */
u64 aem_core_submit_clock(struct aem_ctx *r);

/* The subscription at table index @idx of @r (sources link subs by index). */
struct aem_sub *aem_sub_at(struct aem_ctx *r, u32 idx);

/*
 * Post up to @n events for @s in one reservation, their payloads written
 * run by run: @fill writes @count payloads of the batch's events @first..
 * (each @len bytes as passed to the post, cut to slot_size) at @dst,
 * @dst + @stride, ...  Inline payloads (@len <= AEM_CQE_INLINE) come in at
 * most two runs (stride sizeof(struct aem_cqe)); backlogged or slot
 * payloads one at a time (count 1).  One lock round and one tail store for
 * the batch; the per-event cost is a few stores.  Events the ring has no
 * room for go to the backlog or are dropped, as for aem_core_post, but a
 * payload longer than AEM_CQE_INLINE that finds no free delivery slot ends
 * the batch early (slots return only from the consumer: the source retries
 * later rather than dropping).  Returns the events produced.
 *
 * AEM_POST_FIT: post only what the CQ ring has room for now (nothing goes
 * to the backlog, nothing is dropped).  A source that can hold back (the
 * generator at rate 0) uses it so the backlog is never its buffer.
 * AEM_POST_FINAL: the batch's last event carries AEM_CQE_F_FINAL and ends
 * the subscription, but only if the whole batch was produced (return ==
 * n); a source clears its own hold on @s before such a post.
 */
#define AEM_POST_FIT	(1U << 0)
#define AEM_POST_FINAL	(1U << 1)
typedef void (*aem_fill_run_fn)(void *arg, u64 first, u32 count, u8 *dst, u32 stride);
u32 aem_core_post_batch_run(struct aem_ctx *r, struct aem_sub *s, u32 n, u32 len,
			    aem_fill_run_fn fill, void *arg, u32 flags);

/*
 * A source that holds back rather than backlog (the generator at rate 0)
 * found the CQ ring of @s's class full, or, for @len > AEM_CQE_INLINE, no
 * delivery slot free.  Announces it (full barrier), then looks again:
 * true means there is room now, go on; false means the host's driver may
 * sleep until aem_host_gen_kick(), which the consumer's next enter, wait
 * or poll arming on @r calls once (a timed fallback is the source's: a
 * consumer that only busy-polls never enters).
 */
bool aem_core_want_room(struct aem_ctx *r, struct aem_sub *s, u32 len);

/*
 * A source's own memory for @r (per-ring state, per-subscription state)
 * counted against the ring's account: 0, or -ENOMEM past its limit (the
 * source then refuses the subscription with -ENOMEM).  Every charge is
 * given back with aem_core_uncharge() when the memory is freed, before the
 * source's ring_release() returns.  Any context; never sleeps.
 */
int aem_core_charge(struct aem_ctx *r, u32 bytes);
void aem_core_uncharge(struct aem_ctx *r, u32 bytes);

/*
 * Per-ring private pointer of the registered source implementation @ops
 * (e.g. the timer wheel), NULL at first; one per implementation, so two
 * implementations of a source id never share it.
 */
void **aem_ctx_src_priv(struct aem_ctx *r, const struct aem_source_ops *ops);

/* ---------------------------------------------------------------------- */
/* Sources that never drop (the socket source, PROTOCOL.md §10)           */

/*
 * Post one event for @s only if it is delivered now: the CQ ring of @s's
 * class has room and no backlog of that class is ahead of it, and, for
 * @len > AEM_CQE_INLINE, a delivery slot is free.  Returns 0 (delivered;
 * @cqe_flags and @id as for aem_core_post, AEM_CQE_F_FINAL ends @s), or
 * -EAGAIN with nothing counted and nothing changed: the source pauses,
 * calls aem_core_want_room(), and tries again from its .room hook.  Any
 * context (completion spinlock; never sleeps).
 */
int aem_core_post_fit(struct aem_ctx *r, struct aem_sub *s, const void *data, u32 len,
		      u32 cqe_flags, u64 id);

/*
 * Whether one event of @s of @len bytes would be delivered now (CQ room in
 * its class, no backlog of the class ahead, and for @len > AEM_CQE_INLINE
 * a free slot), without announcing anything: the look a source takes
 * before it reads.  On false it calls aem_core_want_room().  Any context.
 */
bool aem_core_has_room(struct aem_ctx *r, struct aem_sub *s, u32 len);

/*
 * Take a free delivery slot for a payload the source writes itself (a
 * receive straight into the slot, no bounce buffer).  Returns 0 with the
 * slot's reference in *@ref and its slot_size bytes at *@buf, or -ENOSPC
 * (none free: pause, aem_core_want_room(), retry from .room).  *@buf is
 * in the shared region: user space may read or scribble it; the source
 * never trusts what it reads back.  The slot is the source's until
 * aem_core_slot_put() or aem_core_post_slot().  Any context.
 */
int aem_core_slot_take(struct aem_ctx *r, u32 *ref, void **buf);
/* Give back a taken slot the source did not post (the receive found nothing). */
void aem_core_slot_put(struct aem_ctx *r, u32 ref);

/*
 * Post an event of @s whose @len (1..slot_size) bytes are in the taken
 * slot @ref; the slot goes with the event (a @len <= AEM_CQE_INLINE is
 * copied inline and the slot freed).  Never dropped: when the ring has no
 * room (another producer took it after the source looked), the event
 * waits in the backlog holding its slot, past backlog_limit if need be
 * (such entries hold slots, so there are at most slot_count of them).
 * @cqe_flags: AEM_CQE_F_TRUNC, AEM_CQE_F_SOCK_CTL (never FINAL: end with
 * aem_core_post_fit).  Returns 0, or -ENOMEM (no memory for a backlog
 * entry): nothing posted, the slot is still the source's.  Any context.
 */
int aem_core_post_slot(struct aem_ctx *r, struct aem_sub *s, u32 ref, u32 len,
		       u32 cqe_flags, u64 id);

/*
 * A new subscription of @parent's source, with its tag and class, that
 * no SUBSCRIBE names (a listener's connection).  It is a subscription
 * like any other: it counts in the ring's table and statistics, has its
 * own id and counters, takes a reference on the source's owner, and ends
 * by its final event, an UNSUBSCRIBE of its id, the source's unload or
 * the ring's teardown (each calling .unsubscribe as for any).  Posting its
 * events is up to the source (.start is not called).  Returns NULL when
 * the ring's table is full, memory is short, or @parent is ending.
 * Process context (may allocate); takes the completion lock, so the
 * source may hold its own locks.  NULL too once the ring is closing.
 */
struct aem_sub *aem_core_sub_spawn(struct aem_ctx *r, struct aem_sub *parent);

/* Connections the ring may hold (aem_params.sock_conns, validated). */
u32 aem_ctx_sock_conns(struct aem_ctx *r);

/*
 * An operation the source accepted with AEM_CORE_PENDING finished: post
 * its result (user_data, class and flags of the SQE as the source kept
 * them from @sqe at issue: see aem_core_pending_init) with @res, bytes
 * sent or -errno.  Exactly once per pending operation; a success of an
 * AEM_SQE_F_SILENT SQE posts nothing.  Results are never dropped (the
 * result ring's backlog).  Any context (completion spinlock; never sleeps).
 * Not after the ring's .ring_release (teardown posts nothing).
 */
#define AEM_CORE_PENDING	(-4096)	/* below every -errno the core returns */
struct aem_pending {
	u64	user_data;
	u8	prio;
	u8	flags;		/* the SQE's AEM_SQE_F_* */
	u8	opcode;
	u8	resv[5];
};
void aem_core_pending_init(struct aem_pending *p, const struct aem_sqe *sqe);
void aem_core_complete(struct aem_ctx *r, const struct aem_pending *p, s32 res);


/* ---------------------------------------------------------------------- */
/* Host life cycle and drivers                                            */

/*
 * Once per host before anything else (module init; libaem: first setup),
 * and aem_core_exit() after the last ring is gone.  Init registers the
 * built-in AEM_SRC_MSG source; the host registers the others it runs
 * (aem_timer_source_ops, aem_gen_source_ops: see aem_sources.h).
 */
int aem_core_init(void);
void aem_core_exit(void);

/*
 * A poller (poll/epoll on the ring fd) is about to sleep: the next
 * producer that publishes a tail calls aem_host_wake() even if nobody
 * waits in aem_core_wait_begin().  Call it, then re-check
 * aem_core_cq_ready(), then sleep (same Dekker pairing as waiting).
 * aem_core_poll_take() returns true once per arming: the host's wake
 * signals its pollable object only then (one eventfd write per sleep,
 * not per batch).
 */
void aem_core_poll_arm(struct aem_ctx *r);
bool aem_core_poll_take(struct aem_ctx *r);

/*
 * Asynchronous calls (AEM_OP_CALL) time out by the clock: the host's
 * timer driver calls aem_core_expire_calls() on each tick (aem_timer_tick
 * does it); aem_core_calls_pending() says whether the driver must keep
 * ticking for them.
 */
void aem_core_expire_calls(u64 now_ns);
bool aem_core_calls_pending(void);

/*
 * Host hooks for the source drivers (see aem_sources.h): something was
 * armed while the driver may be asleep.  Any context, possibly with
 * spinlocks held: must not sleep.
 */
void aem_host_timer_kick(void);
void aem_host_gen_kick(void);

/*
 * A source ends its own subscription (one-shot timer fired, generator count
 * reached) by posting its last event with AEM_CQE_F_FINAL: the core frees
 * the subscription once that event leaves the backlog or is dropped, and the
 * source must not touch @s after that post.
 */

#endif /* AEM_CORE_H */
