/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Private to the kmod/core .c files: the ring structure and what each file
 * offers the others (docs/ARCHITECTURE.md maps the files to concerns).
 * Calls go down these layers, never up, so no two files call each other:
 *   ring.c (life cycles), submit.c (submission), stats.c
 *   opdef.c (the opcode table)
 *   op_sub.c, op_sock.c (the subscription and socket opcodes)
 *   call.c (calls and the pending-call table)
 *   msg.c (post, the message source, delivery of every message)
 *   sqe.c (SQE checks and payloads)
 *   backlog.c (the backlog from outside), post_hold.c (posts that never drop)
 *   post.c (completion rings and backlog)
 *   slot.c, sub.c, wait.c
 *   source.c, ring_table.c, mem.c
 *
 * Lock order (outer to inner):
 *   source locks (timer wheels list, wheel, generator mutex)
 *   -> ring submit mutex -> call table lock -> ring table lock
 *   -> a ring's completion lock (cq_lock)
 * A ring's cq_lock is never held while another ring's is taken.
 */
#ifndef AEM_CORE_INT_H
#define AEM_CORE_INT_H

#include "aem_core.h"

#define AEM_NIL			0xffffffffU

struct aem_user;	/* ring_table.c: one user's rings and pending calls */

/*
 * A subscription table chunk: as many entries as fill 256 KiB (4369 of 60
 * bytes; 4096 while the module's entries carry their tail), so that eight
 * chunks fill one 2 MiB huge page (sub.c).  Not a power of two: an index
 * is split by a division by a constant (a multiply and a shift).
 */
#define AEM_SUB_CHUNK_SPAN	(256U << 10)
#define AEM_SUB_CHUNK		((u32)(AEM_SUB_CHUNK_SPAN / sizeof(struct aem_sub)))
#define AEM_SUB_NR_CHUNKS	(AEM_MAX_SUBS / AEM_SUB_CHUNK)

/* aem_sub.state */
#define AEM_SUB_LIVE		(1U << 0)
#define AEM_SUB_DYING		(1U << 1)	/* unsubscribe in progress: it frees */
#define AEM_SUB_FINAL		(1U << 2)	/* final event queued (or dropped behind queued events): freed when the backlog has them out */
#define AEM_SUB_END_STATS	(1U << 3)	/* AEM_SQE_F_END_STATS: its own end posts its counts as a result */

/* delivery slot states */
#define AEM_SLOT_FREE		0	/* on the core's free stack */
#define AEM_SLOT_CORE		1	/* holds a backlogged event */
#define AEM_SLOT_USER		2	/* delivered: the user owns it */

/*
 * The RINGS region as the core lays it out (io_uring's struct io_rings):
 * user space never sees the struct, only the offset of every field that
 * setup publishes (aem_params.*_off, taken with offsetof).  Each ring has
 * a block of three cache lines, so its two indices, written by different
 * sides, never share a line with each other or with the read-mostly
 * words.  layout.c pins every field's offset at build time: the offsets
 * are ABI once published.
 */
#define AEM_CACHELINE		64

struct aem_ring_block {
	u32	head;		/* consumer: SQ the core, CQ and slot ring the user */
	u8	head_pad[AEM_CACHELINE - 4];
	u32	tail;		/* producer: SQ and slot ring the user, CQ the core */
	u8	tail_pad[AEM_CACHELINE - 4];
	u32	ring_mask;	/* written once at create; the core keeps its own copy */
	u32	ring_entries;	/* written once at create */
	u32	flags;		/* core: AEM_SQ_F_* / AEM_CQ_F_* */
	u32	dropped;	/* core: refused SQEs / dropped CQEs */
	u8	info_pad[AEM_CACHELINE - 16];
};

struct aem_rings {
	struct aem_ring_block	sq;
	struct aem_ring_block	cq[AEM_MAX_CLASSES];
	struct aem_ring_block	res;		/* the result ring */
	struct aem_ring_block	slot;		/* the slot return ring */
	u32			slot_array[];	/* user: released delivery slots */
};

/*
 * Overflow backlog: per-class FIFO of chunks of whole CQEs.  A chunk is one
 * 4 KiB heap object (AEM_BL_CHUNK_BYTES, what its charge counts): 43
 * entries of 94 bytes (the sender too) and the header.
 */
#define AEM_BL_CHUNK		43
#define AEM_BL_CHUNK_BYTES	4096U
/*
 * Result CQEs (the result ring's backlog) may fill the backlog beyond the
 * events' bound: a second bound's worth (submission stops there), one SQ
 * ring (the batch in flight) and the call table (asynchronous call results).
 */
#define AEM_MAX_CALLS		(1U << 14)
#define AEM_RESULT_LIMIT(r)	(2 * (r)->backlog_limit + (r)->sq_entries + AEM_MAX_CALLS)

/* Payload bytes backlog entries may hold on the heap while no delivery slot is free. */
#define AEM_BL_BYTES_MAX	(16U << 20)
#define AEM_BL_DEAD		0xfffffffeU	/* entry discarded by unsubscribe, or a result that passed a slot-starved head */

struct aem_bl_chunk {
	struct aem_bl_chunk	*next;
	u32			head, tail;	/* entries [head, tail) are queued */
	u32			sub[AEM_BL_CHUNK];	/* table index, AEM_NIL, AEM_BL_DEAD */
	u16			gen[AEM_BL_CHUNK];
	void			*buf[AEM_BL_CHUNK];	/* payload waiting for a slot, or NULL */
	struct aem_cqe		cqe[AEM_BL_CHUNK];
	struct aem_sender	snd[AEM_BL_CHUNK];	/* with AEM_CQE_F_SENDER: the entry's sender */
};
aem_static_assert(sizeof(struct aem_bl_chunk) <= AEM_BL_CHUNK_BYTES,
		  "a backlog chunk is charged as one 4 KiB object");

/*
 * Emptied backlog chunks a ring keeps for reuse, still charged: as many
 * as the incoming messages' budget fills, so a fan-in that outruns its
 * consumer, filling and draining the backlog, allocates nothing once it
 * has been that deep.  They give way to any charge that needs their
 * grains (mem.c), and go at teardown.
 */
#define AEM_BL_SPARES(r)	(AEM_MSG_BACKLOG(r) / AEM_BL_CHUNK + 1)

/* A subscription table chunk: what growing the table by AEM_SUB_CHUNK entries charges. */
#define AEM_SUB_CHUNK_BYTES	((u64)AEM_SUB_CHUNK * sizeof(struct aem_sub))

struct aem_cq_core {
	u32			*khead;		/* in its struct aem_ring_block: user-written */
	u32			*ktail;
	u32			*kflags;
	u32			*kdropped;
	struct aem_cqe		*cqes;
	struct aem_sender	*senders;	/* version 4 class rings: beside cqes (AEM_CQE_F_SENDER) */
	u32			entries, mask;	/* class rings: cq_entries; the result ring: res_entries */
	u32			tail;		/* the truth; ktail is its published copy */
	u32			head_seen;	/* last sane user head */
	u32			dropped;
	u32			backlog;	/* live entries in this class's backlog */
	struct aem_bl_chunk	*bl_head, *bl_tail;
};

struct aem_ctx {
	/* immutable after create */
	u32			id;
	u32			nr_classes;
	u32			sq_entries, sq_mask;
	u32			cq_entries, cq_mask;
	u32			slot_size, slot_count, send_slots;
	u32			sr_entries, sr_mask;
	u32			backlog_limit;
	void			*host;
	u8			*payload;
	struct aem_sqe		*sqes;
	u32			*sq_khead, *sq_ktail, *sq_kflags, *sq_kdropped;
	u32			*sr_khead, *sr_ktail, *sr_array;

	u32			call_quota;
	u64			region_bytes;	/* the regions' size: charged by the host at setup */
	u32			sock_conns;	/* aem_params.sock_conns */
	u32			sq_idle_ms;	/* AEM_SETUP_SQPOLL: the poller's idle time; 0: no poller */
	bool			slot_gens;	/* version 3: slot references carry a generation */
	u32			calls_pending;	/* charged to this ring; under the call table lock */

	/* who may post and call into it (ring_table.c); grants under the ring table lock */
	struct aem_cred		owner;		/* immutable after create */
	struct aem_user		*user;		/* its owner's entry in the per-user limits */
	bool			grant_any;
	u32			nr_grants;
	u32			grants[AEM_MAX_GRANTS];

	aem_atomic_t		refs;		/* ring table lookups in flight, +1 while registered */
	struct aem_completion	unref;		/* completed when refs reaches zero */

	/* submission side: under submit_lock */
	aem_mutex_t		submit_lock;
	u32			sq_head;
	u32			sq_dropped;
	u64			sqes_done;
	u64			clock_ns;	/* aem_core_submit_clock(): read once per submission */
	u64			clock_at;	/* sqes_done + 1 when clock_ns was read; 0: never */

	/* waiters: lock-free, Dekker with the tails */
	aem_atomic_t		waiters;
	aem_atomic_t		poll_armed;
	/* a generator waits for CQ room: Dekker with the user's CQ head (and slot ring tail) */
	aem_atomic_t		room_wanted;

	/* everything below: under cq_lock */
	aem_spinlock_t		cq_lock;
	/* class rings [0, nr_classes), then the result ring at [nr_classes] */
	struct aem_cq_core	cq[AEM_MAX_CLASSES + 1];
	u32			sr_head;
	u32			nr_free;	/* slot free stack depth */
	u32			*slot_free;	/* absolute slot indices */
	u8			*slot_state;	/* per delivery slot, AEM_SLOT_* */
	u64			*slot_token;	/* per delivery slot: id of the event it carries */
	u16			*slot_gen;	/* per delivery slot: generation of its current issue */
	u16			slot_issue;	/* generation of the last issue, any slot */
	u32			nr_backlog;	/* live backlog entries, all classes */
	u32			bl_bytes;	/* payload bytes held in backlog bufs */
	struct aem_bl_chunk	*bl_spare;	/* emptied chunks kept (charged) for the next, through ->next */
	u32			nr_bl_spare;
	u64			produced;	/* ring-wide, results included; counted on entry */
	u64			delivered, backlog, dropped;	/* ring-wide outcomes (results included) */
	u64			refused[AEM_REFUSE_NR];
	struct aem_sub		**sub_chunks;
	u32			nr_sub_chunks;
	u32			sub_free;	/* free list head by index */
	u64			nr_subs;
	u32			*msg_buckets;	/* channel hash -> sub index chain (link[0]) */
	bool			closing;
	/* kernel-side memory charged to the ring's account (mem.c) */
	u64			mem_used;	/* bytes of state counted */
	u64			mem_charged;	/* bytes taken from the host, whole grains */
	bool			mem_short;	/* the last charge was refused or forced past the limit */
	void			*src_priv[AEM_SRC_LAST][AEM_SRC_IMPLS];	/* per source implementation */
	/* immutable after create; here so the fields above keep their cache lines */
	u32			api_version;	/* the ABI version setup stated (4: msg events carry their sender) */
};

static inline struct aem_sub *__aem_sub_at(struct aem_ctx *r, u32 idx)
{
	return &r->sub_chunks[idx / AEM_SUB_CHUNK][idx % AEM_SUB_CHUNK];
}

/* The completion ring that carries results (answers to SQEs), apart from events. */
static inline struct aem_cq_core *__aem_res_cq(struct aem_ctx *r)
{
	return &r->cq[r->nr_classes];
}

static inline u64 __aem_make_id(u32 idx, u32 gen, u32 kind)
{
	return (u64)idx | ((u64)(gen & 0xffffff) << 32) | ((u64)kind << 56);
}

#define AEM_ID_INDEX(id)	((u32)(id))
#define AEM_ID_GEN(id)		((u32)((id) >> 32) & 0xffffff)

/* Callers hold r->cq_lock where a name ends in _locked. */

/* source.c */
void __aem_sources_init(void);
const struct aem_source_ops *__aem_source_get(u8 src, u32 impl, u32 api, u8 *slot);
const struct aem_source_ops *__aem_source_get_slot(u8 src, u8 slot);
const struct aem_source_ops *__aem_source_ops(u8 src, u8 slot);
u32 __aem_source_slot(const struct aem_source_ops *ops);
bool __aem_source_close(const struct aem_source_ops *ops);
void __aem_source_forget(const struct aem_source_ops *ops);

/* mem.c: the ring's kernel-side memory, counted against its account (cq_lock) */
bool __aem_mem_charge_locked(struct aem_ctx *r, u64 bytes);
void __aem_mem_force_locked(struct aem_ctx *r, u64 bytes);
bool __aem_mem_room_locked(struct aem_ctx *r, u64 bytes);
void __aem_mem_uncharge_locked(struct aem_ctx *r, u64 bytes);
void __aem_mem_release(struct aem_ctx *r);

/* ring_table.c */
void __aem_rings_init(void);
int __aem_ring_register(struct aem_ctx *r);
void __aem_ring_unregister(struct aem_ctx *r);
struct aem_ctx *__aem_ring_get(u32 id);
void __aem_ring_put(struct aem_ctx *r);
struct aem_ctx *__aem_ring_iter(u32 *pos);
/* A ring by id that @from may post and call into: -ENOENT, or -EACCES without a grant. */
int __aem_ring_get_for(u32 id, const struct aem_cred *from, struct aem_ctx **out);
void __aem_user_call_uncharge(struct aem_user *u);
/* A call's target (as __aem_ring_get_for) and its user's charge, in one lock round. */
int __aem_ring_get_for_call(u32 id, const struct aem_cred *from, u32 req_len,
			    struct aem_ctx *caller, const struct aem_cred *who,
			    struct aem_ctx **out, struct aem_user **user);

/* sub.c */
struct aem_sub *__aem_sub_alloc(struct aem_ctx *r, u8 source, u32 state);
u32 __aem_sub_alloc_n(struct aem_ctx *r, u8 source, u32 state, struct aem_sub **out, u32 n);
void __aem_sub_free_locked(struct aem_ctx *r, struct aem_sub *s);
void __aem_sub_table_free(struct aem_ctx *r);
void __aem_sub_counts_locked(const struct aem_sub *s, struct aem_sub_counts *c);
void __aem_sub_end_locked(struct aem_ctx *r, struct aem_sub *s);
struct aem_sub *__aem_sub_find(struct aem_ctx *r, u64 id, u32 bad_state);
struct aem_sub *__aem_sub_lookup_locked(struct aem_ctx *r, u64 id);
struct aem_sub *__aem_sub_lookup(struct aem_ctx *r, u64 id);

/* slot.c */
void __aem_slot_reclaim_locked(struct aem_ctx *r);
u32 __aem_slot_get_locked(struct aem_ctx *r);
void __aem_slot_put_locked(struct aem_ctx *r, u32 slot);
int __aem_slot_take_user(struct aem_ctx *r, u32 slot, u64 token);
void __aem_slot_give_back(struct aem_ctx *r, u32 slot);
void __aem_slot_untake(struct aem_ctx *r, u32 slot);
/* A slot reference (index | generation << AEM_SLOT_GEN_SHIFT, see aem.h) or a plain index. */
static inline u8 *__aem_slot_ptr(struct aem_ctx *r, u32 slot)
{
	return r->payload + (size_t)AEM_SLOT_INDEX(slot) * r->slot_size;
}

/* Index of delivery slot @slot (a reference) in the per-slot arrays. */
static inline u32 __aem_slot_d(struct aem_ctx *r, u32 slot)
{
	return AEM_SLOT_INDEX(slot) - r->send_slots;
}

/* wait.c */
/* A waiter of @r to wake (aem_host_wake) after a tail store: __aem_wake's decision alone. */
bool __aem_wake_wanted(struct aem_ctx *r);
void __aem_wake(struct aem_ctx *r, bool urgent);
void __aem_room_kick(struct aem_ctx *r);

/* post.c: one request to the one posting path */
#define AEM_POST_HOLD	(1U << 2)	/* no free slot: keep the payload on the heap in the backlog */
#define AEM_POST_MSG	(1U << 3)	/* a message from another ring: within the budget for incoming posts */
/*
 * Never drop: an event the backlog cannot take (its allocation failed) is
 * not produced at all (out->produced says how many were), for a POST that
 * then stays in its poster's SQ as one its target cannot take now.
 */
#define AEM_POST_KEEP	(1U << 4)

/*
 * Posts and calls from other rings may fill half of a ring's backlog
 * (entries and held payload bytes): the other half stays for the ring's
 * own sources (its posts to itself among them), so a flood from another
 * ring never pushes them into drops.
 */
#define AEM_MSG_BACKLOG(r)	((r)->backlog_limit / 2)
#define AEM_MSG_BL_BYTES	(AEM_BL_BYTES_MAX / 2)

struct aem_post {
	u64		user_data;
	u64		id;
	s32		res;		/* non-zero: the result's res (< 0 an error; > 0 bytes sent), no payload; 0: from len */
	u32		flags;		/* AEM_CQE_F_*: RESULT selects the result ring; SLOT forces a slot */
	u8		source;
	u8		cls;		/* event: its class ring; result: the SQE's class, informational */
	u32		len;		/* payload bytes of each event */
	u32		n;		/* events */
	u32		mode;		/* AEM_POST_FIT, AEM_POST_FINAL, AEM_POST_HOLD, AEM_POST_MSG, AEM_POST_KEEP */
	aem_fill_run_fn	fill;		/* writes the payloads; NULL: copy @data (n == 1) */
	const struct aem_sender *sender;	/* with AEM_CQE_F_SENDER: into the class ring's sender array */
	void		*arg;
	const void	*data;
};

/* What became of a request. */
struct aem_posted {
	u32		produced;	/* events that entered the core (fewer than n: FIT, or no slot) */
	u32		dropped;	/* of those, dropped past the backlog bound */
	bool		wake;		/* a CQ tail moved: wake after unlocking */
};

/* post.c: the one posting path, and the backlog's filling and draining */
void __aem_post_locked(struct aem_ctx *r, struct aem_sub *s, const struct aem_post *p,
		       struct aem_posted *out);
void __aem_post_result(struct aem_ctx *r, const struct aem_post *p);
void __aem_sqe_result(struct aem_ctx *r, const struct aem_sqe *sqe, s32 res, u64 id);
void __aem_post_results(struct aem_ctx *r, const u64 *user_data, const u8 *cls, const u64 *id,
			u32 n);
bool __aem_post_counts_locked(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe);
bool __aem_flush_class_locked(struct aem_ctx *r, struct aem_cq_core *cq);
struct aem_cqe *__aem_bl_append_locked(struct aem_ctx *r, struct aem_cq_core *cq,
				       u32 sub, u16 gen, void *buf);
void __aem_bl_buf_free_locked(struct aem_ctx *r, struct aem_bl_chunk *c, u32 i);
void __aem_account_drop_locked(struct aem_ctx *r, struct aem_cq_core *cq, struct aem_sub *s);

/* backlog.c: the backlog seen from outside the posting path */
bool __aem_post_would_drop_locked(struct aem_ctx *r, u8 cls, u32 len, bool budget, bool *wake);
void __aem_discard_backlog_locked(struct aem_ctx *r, struct aem_sub *s);
void __aem_backlog_free(struct aem_ctx *r);

/*
 * Free entries of a CQ ring; under cq_lock.  The head is user-written: one
 * that claims more than the ring holds, or that moved backwards, reads as
 * "full" so we never write over unread CQEs; the backlog takes the events.
 */
static inline u32 __aem_cq_room_locked(struct aem_ctx *r, struct aem_cq_core *cq)
{
	u32 head = aem_load_acquire(cq->khead);	/* pairs with aem_cq_advance()'s release */
	u32 used = cq->tail - head;

	if (unlikely(used > cq->entries || (s32)(head - cq->head_seen) < 0)) {
		r->refused[AEM_REFUSE_INDEX]++;
		return 0;
	}
	cq->head_seen = head;
	return cq->entries - used;
}

/* source.c: the .room hooks of every source, after a consumer freed room */
void __aem_sources_room(struct aem_ctx *r);

/* opdef.c: the opcode table; sqe.c: the checks it declares */
#define AEM_OPF_SOURCE	(1U << 0)	/* fields an opcode reads; the others must be zero */
#define AEM_OPF_LEN	(1U << 1)
#define AEM_OPF_TARGET	(1U << 2)
#define AEM_OPF_SLOT	(1U << 3)
#define AEM_OPF_ARG	(1U << 4)
#define AEM_OPF_ARGS	(1U << 5)	/* the union: inline payload or source arguments */

/*
 * A handler: 0 or -errno with *reason (AEM_REFUSE_*) set; *answered when it
 * posted the SQE's result itself (or will: a call's reply).
 */
typedef int (*aem_op_fn)(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason,
			 bool *answered);

struct aem_op_def {
	const char	*name;
	aem_op_fn	issue;
	u8		sqe_flags;	/* AEM_SQE_F_* it accepts */
	u8		uses;		/* AEM_OPF_* */
};

const struct aem_op_def *__aem_op_def(u8 opcode);
int __aem_sqe_check(struct aem_ctx *r, const struct aem_op_def *def,
		    const struct aem_sqe *sqe, u32 *reason);
int __aem_sqe_payload(struct aem_ctx *r, const struct aem_sqe *sqe, bool writeback,
		      const void **data, u32 *took, u32 *reason);

/* A field check that fails refuses the SQE: AEM_REFUSE_FIELD, -EINVAL. */
#define NEED(cond)	do { if (!(cond)) { *reason = AEM_REFUSE_FIELD; return -EINVAL; } } while (0)

/* op_sub.c */
int __aem_op_nop(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_op_subscribe(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_op_unsubscribe(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_op_writeback(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_op_timer_set(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_op_gen_set(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_op_send(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_op_shutdown(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_io_writeback(struct aem_ctx *r, struct aem_sub *s, const struct aem_source_ops *ops,
		       const struct aem_sqe *sqe, u32 *reason, bool *answered);
void __aem_sub_unsubscribe(struct aem_ctx *r, struct aem_sub *s, bool final_event,
			   const struct aem_sqe *sqe);

/* call.c */
void __aem_calls_init(void);
void __aem_calls_ring_gone(struct aem_ctx *r);
void __aem_calls_exit(void);
int __aem_op_call(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_writeback_call(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason);

/* msg.c */
extern const struct aem_source_ops __aem_msg_source_ops;
int __aem_op_post(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered);
int __aem_msg_deliver(struct aem_ctx *from, u64 addr, u8 prio, const void *data, u32 len,
		      u64 call_id, bool lossy, const struct aem_cred *cred);
int __aem_msg_deliver_to(struct aem_ctx *from, struct aem_ctx *t, u64 addr, u8 prio,
			 const void *data, u32 len, u64 call_id, bool lossy,
			 const struct aem_cred *cred);

/*
 * A run of consecutive POSTs to one ring (submit.c): the target found,
 * checked and referenced once, its cq_lock taken once for up to
 * AEM_POST_RUN posts, the sender computed once, one wake-up and one round
 * of the poster's result ring per lock hold.  Closed: t == NULL.
 */
#define AEM_POST_RUN	64

struct aem_post_run {
	struct aem_ctx		*from, *t;	/* the poster; the target, held */
	const struct aem_sender	*sender;	/* &who, or NULL before version 4 */
	struct aem_sender	who;
	unsigned long		flags;		/* the target's cq_lock, while locked */
	bool			incoming;	/* within the target's budget for messages */
	bool			locked, wake, urgent;
	u32			held;		/* posts delivered under this lock hold */
	u32			nr_results;	/* answers owed to non-silent posts */
	u64			res_user_data[AEM_POST_RUN];
	u8			res_cls[AEM_POST_RUN];
};

int __aem_post_run_add(struct aem_post_run *run, struct aem_ctx *r, const struct aem_sqe *sqe,
		       u32 *reason);
void __aem_post_run_pause(struct aem_post_run *run);
void __aem_post_run_close(struct aem_post_run *run);

/*
 * A run of consecutive SUBSCRIBEs of timers (submit.c): each set up as it
 * comes, their answers posted in one round of the result ring (one
 * cq_lock hold, one wake-up) per up to AEM_SUB_RUN, and the timers armed
 * after that in one round of the wheel's lock, so that an answer still
 * comes before its subscription's events.
 */
#define AEM_SUB_RUN	32

/*
 * The run also keeps the source implementation the last SUBSCRIBE got
 * (src_ops for src_id and src_impl, in src_slot), so that the next one
 * that asks for the same takes no round of the source registry's lock.
 * That holds only while the submission holds submit_lock, as the run
 * does: a source that starts closing meanwhile ends its subscriptions on
 * this ring only after taking submit_lock (aem_core_unregister_source), so a
 * subscription made from the kept lookup is ended as one made just before
 * the closing would be.
 *
 * And it takes the timers' table entries AEM_SUB_RUN at a time, in one
 * round of cq_lock (__aem_sub_alloc_n), rather than a round each: the
 * stash holds those not yet used, live but reachable by nobody (no id of
 * theirs has been answered), and goes back to the free list when the
 * submission ends (__aem_sub_run_release).
 */
struct aem_sub_run {
	struct aem_ctx	*r;
	u32		nr_subs;		/* set up, not started */
	u32		nr_results;		/* answers owed: the non-silent ones */
	const struct aem_source_ops *src_ops;	/* NULL: nothing kept */
	u32		src_impl;
	u8		src_id, src_slot;
	u32		nr_stash, stash_state;	/* entries left in stash[], taken with stash_state */
	struct aem_sub	*subs[AEM_SUB_RUN];
	struct aem_sub	*stash[AEM_SUB_RUN];
	u64		res_user_data[AEM_SUB_RUN];
	u64		res_id[AEM_SUB_RUN];
	u8		res_cls[AEM_SUB_RUN];
};

int __aem_sub_run_add(struct aem_sub_run *run, const struct aem_sqe *sqe, u32 *reason);
void __aem_sub_run_flush(struct aem_sub_run *run);
void __aem_sub_run_release(struct aem_sub_run *run);

#endif /* AEM_CORE_INT_H */
