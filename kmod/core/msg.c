// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Rings talking to rings (found through ring_table.c): the built-in
 * AEM_SRC_MSG source (one subscription per channel), POST, and the
 * delivery of every message, a call's request included (call.c keeps the
 * calls).
 *
 * Posts and calls reach a ring only when its owner lets the sender in
 * (ring_table.c: -EACCES otherwise), and only within its budget for
 * incoming messages (AEM_POST_MSG), so they never take the backlog its own
 * sources need.
 */
#include "aem_core_int.h"

/* ---------------------------------------------------------------------- */
/* The message source: channel -> subscription, chained through link[0]    */

#define AEM_MSG_BUCKETS	256

static u32 msg_hash(u32 channel)
{
	return (channel * 0x9e3779b1U) >> 24;
}

/* Under the ring's cq_lock. */
static struct aem_sub *msg_find_locked(struct aem_ctx *r, u32 channel)
{
	u32 idx;

	if (!r->msg_buckets)
		return NULL;
	for (idx = r->msg_buckets[msg_hash(channel)]; idx != AEM_NIL;) {
		struct aem_sub *s = __aem_sub_at(r, idx);

		if ((u32)s->priv[0] == channel && (s->state & AEM_SUB_LIVE) &&
		    !(s->state & AEM_SUB_DYING))
			return s;
		idx = s->link[0];
	}
	return NULL;
}

static int msg_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	u32 *buckets = NULL, i;
	unsigned long f;
	int ret = 0;

	if (sqe->msg.resv0 || sqe->msg.resv[0] || sqe->msg.resv[1] || sqe->msg.resv[2])
		return -EINVAL;
	if (!r->msg_buckets) {
		buckets = aem_zalloc(AEM_MSG_BUCKETS * sizeof(u32));
		if (!buckets)
			return -ENOMEM;
		for (i = 0; i < AEM_MSG_BUCKETS; i++)
			buckets[i] = AEM_NIL;
	}
	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (!r->msg_buckets) {
		r->msg_buckets = buckets;
		buckets = NULL;
	}
	/* Subscribes of one ring are serialised by its submit lock: check here, insert in start. */
	if (msg_find_locked(r, sqe->msg.channel))
		ret = -EEXIST;
	s->priv[0] = sqe->msg.channel;
	s->link[0] = AEM_NIL;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	aem_free(buckets);
	return ret;
}

static void msg_start(struct aem_ctx *r, struct aem_sub *s)
{
	u32 h = msg_hash((u32)s->priv[0]);
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	s->link[0] = r->msg_buckets[h];
	r->msg_buckets[h] = s->index;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

static void msg_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	u32 *pp, h = msg_hash((u32)s->priv[0]);
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	for (pp = &r->msg_buckets[h]; *pp != AEM_NIL; pp = &__aem_sub_at(r, *pp)->link[0]) {
		if (*pp == s->index) {
			*pp = s->link[0];
			break;
		}
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

static void msg_ring_release(struct aem_ctx *r)
{
	aem_free(r->msg_buckets);
	r->msg_buckets = NULL;
}

const struct aem_source_ops __aem_msg_source_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_MSG,
	.name		= "msg",
	.subscribe	= msg_subscribe,
	.unsubscribe	= msg_unsubscribe,
	.start		= msg_start,
	.ring_release	= msg_ring_release,
};

/*
 * One message into @t under its cq_lock: the channel subscriber at @addr,
 * in class @cls (clamped by the caller), from @who (NULL before version
 * 4), within the budget for incoming messages when @incoming.  Unless
 * @lossy, an event the target would drop, or whose backlog entry or held
 * payload cannot be allocated, is not posted: -EAGAIN.  A lossy event
 * dropped is -ENOSPC; no subscriber -ENOENT.  *wake: a tail moved.
 */
static int msg_deliver_locked(struct aem_ctx *t, u64 addr, u8 cls, const void *data, u32 len,
			      u64 call_id, bool lossy, bool incoming,
			      const struct aem_sender *who, bool *wake)
{
	struct aem_posted out = { .wake = false };
	struct aem_post p;
	struct aem_sub *s;

	s = t->closing ? NULL : msg_find_locked(t, AEM_ADDR_CHANNEL(addr));
	if (!s)
		return -ENOENT;
	if (!lossy && __aem_post_would_drop_locked(t, cls, len, incoming, wake))
		return -EAGAIN;
	memset(&p, 0, sizeof(p));
	p.cls = cls;
	p.sender = who;
	p.flags = who ? AEM_CQE_F_SENDER : 0;
	p.user_data = s->user_data;
	p.id = call_id ? call_id : aem_sub_id(t, s);
	/* A call's request sits in a slot, so the handler can edit it in place. */
	p.flags |= call_id ? AEM_CQE_F_CALL | AEM_CQE_F_SLOT : 0;
	p.source = AEM_SRC_MSG;
	p.len = len;
	p.n = 1;
	p.mode = AEM_POST_HOLD | (incoming ? AEM_POST_MSG : 0) | (lossy ? 0 : AEM_POST_KEEP);
	p.data = data;
	__aem_post_locked(t, s, &p, &out);
	*wake |= out.wake;
	/*
	 * Past the check above only an allocation can fail: a lossy event is
	 * then dropped and counted, any other is not posted and waits in the
	 * poster's SQ as when the target is full.
	 */
	return out.dropped ? -ENOSPC : !out.produced ? -EAGAIN : 0;
}

/* The target's class for a message the sender sent in class @prio. */
static u8 msg_class(const struct aem_ctx *t, u8 prio)
{
	return prio < t->nr_classes ? prio : (u8)(t->nr_classes - 1);
}

/*
 * Who sent it, as @t's creator sees the sender (process context): version
 * 4 rings get it beside each message; NULL for older ones.
 */
static const struct aem_sender *msg_sender(struct aem_ctx *from, struct aem_ctx *t,
					   struct aem_sender *who)
{
	if (t->api_version < 4)
		return NULL;
	memset(who, 0, sizeof(*who));
	aem_host_sender(t->host, who);
	who->ring_id = from ? from->id : 0;
	return who;
}

/*
 * Deliver a message (post, or call with @call_id) to the channel subscriber
 * at @addr.  The sender's class picks the target class (clamped to the
 * target's classes): the sender knows how urgent its message is.  Unless
 * @lossy, an event the target would drop, or whose backlog entry or held
 * payload cannot be allocated, is not posted: -EAGAIN, and the POST stays
 * in the poster's SQ (submit.c).  @from is the sending ring
 * (NULL for a ring-less call), @cred whom it acts for: -EACCES when the
 * target does not let it in.
 */
int __aem_msg_deliver(struct aem_ctx *from, u64 addr, u8 prio, const void *data, u32 len,
		       u64 call_id, bool lossy, const struct aem_cred *cred)
{
	struct aem_ctx *t;
	int ret;

	ret = __aem_ring_get_for(AEM_ADDR_RING(addr), cred, &t);
	if (ret)
		return ret;
	ret = __aem_msg_deliver_to(from, t, addr, prio, data, len, call_id, lossy, cred);
	__aem_ring_put(t);
	return ret;
}

/* __aem_msg_deliver() into @t, ring AEM_ADDR_RING(@addr), found and held by the caller. */
int __aem_msg_deliver_to(struct aem_ctx *from, struct aem_ctx *t, u64 addr, u8 prio,
			  const void *data, u32 len, u64 call_id, bool lossy,
			  const struct aem_cred *cred)
{
	const struct aem_sender *sender;
	struct aem_sender who;
	u8 cls = msg_class(t, prio);
	bool wake = false;
	unsigned long f;
	int ret;

	sender = msg_sender(from, t, &who);
	aem_spin_lock_irqsave(&t->cq_lock, f);
	/* A ring posting to itself is its own source: the budget is for the others. */
	ret = msg_deliver_locked(t, addr, cls, data, len, call_id, lossy, cred != &t->owner,
				 sender, &wake);
	aem_spin_unlock_irqrestore(&t->cq_lock, f);
	if (wake)
		__aem_wake(t, cls == 0);
	return ret;
}

/* The refusal reason of a post that __aem_msg_deliver*() did not deliver. */
static u32 post_reason(int ret)
{
	if (ret == -EAGAIN)
		return AEM_REFUSE_FULL;
	if (ret == -ENOENT || ret == -EACCES)
		return AEM_REFUSE_ID;
	return AEM_REFUSE_NOMEM;
}

/* ---------------------------------------------------------------------- */
/* A run of POSTs to one ring (submit.c)                                   */

/*
 * Hold the ring @sqe posts to for @run: found, checked that @r may post
 * into it and referenced once for every POST of the run that follows.
 */
static int post_run_open(struct aem_post_run *run, struct aem_ctx *r, const struct aem_sqe *sqe)
{
	int ret;

	ret = __aem_ring_get_for(AEM_ADDR_RING(sqe->target), &r->owner, &run->t);
	if (ret)
		return ret;
	run->from = r;
	run->sender = msg_sender(r, run->t, &run->who);
	/* A ring posting to itself is its own source: the budget is for the others. */
	run->incoming = run->t != r;
	run->locked = false;
	run->wake = run->urgent = false;
	run->held = 0;
	run->nr_results = 0;
	return 0;
}

/*
 * Let go of the target's completion lock, wake its waiter once for the
 * posts delivered under it, and answer those posts that want an answer
 * in one lock round of the poster's result ring.  The target stays held.
 * Before anything else takes a completion lock (a ring's cq_lock is never
 * held while another's is taken) and at least every AEM_POST_RUN posts.
 */
void __aem_post_run_pause(struct aem_post_run *run)
{
	if (run->locked) {
		aem_spin_unlock_irqrestore(&run->t->cq_lock, run->flags);
		run->locked = false;
	}
	if (run->wake)
		__aem_wake(run->t, run->urgent);
	run->wake = run->urgent = false;
	run->held = 0;
	if (run->nr_results)
		__aem_post_results(run->from, run->res_user_data, run->res_cls, NULL,
				   run->nr_results);
	run->nr_results = 0;
}

/* The run ends: paused, and its target let go. */
void __aem_post_run_close(struct aem_post_run *run)
{
	if (!run->t)
		return;
	__aem_post_run_pause(run);
	__aem_ring_put(run->t);
	run->t = NULL;
}

/*
 * POST @sqe of @r, checked against the opcode table: its payload checked,
 * then its target (-ENOENT, -EACCES), then delivered to its channel within
 * the budget and under back-pressure; within @run when it goes to the
 * run's ring, else after the run closes and a new one holds its ring.
 * 0 when delivered (the answer, unless silent, comes at the next pause);
 * else -errno and *reason, the run perhaps still locked: the caller pauses
 * it before it answers.
 */
int __aem_post_run_add(struct aem_post_run *run, struct aem_ctx *r, const struct aem_sqe *sqe,
		       u32 *reason)
{
	const void *data;
	u8 cls;
	u32 took;
	int ret;

	ret = __aem_sqe_payload(r, sqe, false, &data, &took, reason);
	if (ret)
		return ret;
	if (run->t && run->t->id != AEM_ADDR_RING(sqe->target))
		__aem_post_run_close(run);
	if (!run->t) {
		ret = post_run_open(run, r, sqe);
		if (ret)
			goto out;
	}
	if (!run->locked) {
		aem_spin_lock_irqsave(&run->t->cq_lock, run->flags);
		run->locked = true;
	}
	cls = msg_class(run->t, sqe->prio);
	ret = msg_deliver_locked(run->t, sqe->target, cls, data, sqe->len, 0,
				 sqe->flags & AEM_SQE_F_LOSSY, run->incoming, run->sender,
				 &run->wake);
	/* A tail of class 0 may have moved even for a post held back (the flush). */
	run->urgent |= cls == 0;
	if (ret)
		goto out;
	if (!(sqe->flags & AEM_SQE_F_SILENT)) {
		run->res_user_data[run->nr_results] = sqe->user_data;
		run->res_cls[run->nr_results++] = sqe->prio;
	}
	/* A completion lock is held for a bounded time, and the answers fit. */
	if (++run->held == AEM_POST_RUN)
		__aem_post_run_pause(run);
	return 0;
out:
	*reason = post_reason(ret);
	return ret;
}

/* One POST alone: a run of one. */
int __aem_op_post(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	struct aem_post_run run = { .t = NULL };
	int ret;

	ret = __aem_post_run_add(&run, r, sqe, reason);
	*answered = !ret;	/* the run's pause answers it (unless silent) */
	__aem_post_run_close(&run);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* Remote producer lanes: finding the consumer, telling it (aem_core.h)    */

int aem_core_lane_target(u64 addr, const struct aem_cred *cred, struct aem_ctx **out,
			 void **host, u64 *sub_id, u8 *prio, u64 *tag)
{
	struct aem_ctx *t;
	struct aem_sub *s;
	unsigned long f;
	int ret;

	ret = __aem_ring_get_for(AEM_ADDR_RING(addr), cred, &t);
	if (ret)
		return ret;
	aem_spin_lock_irqsave(&t->cq_lock, f);
	s = t->closing ? NULL : msg_find_locked(t, AEM_ADDR_CHANNEL(addr));
	if (s) {
		*sub_id = aem_sub_id(t, s);
		*prio = s->prio;
		*tag = s->user_data;
	}
	aem_spin_unlock_irqrestore(&t->cq_lock, f);
	if (!s) {
		__aem_ring_put(t);
		return -ENOENT;
	}
	*host = t->host;
	*out = t;
	return 0;
}

void aem_core_ring_put(struct aem_ctx *r)
{
	__aem_ring_put(r);
}

bool aem_core_lane_note(struct aem_ctx *r, const struct aem_lane_note *n, u64 tag, bool if_room,
			u32 *unread_end)
{
	struct aem_cq_core *cq = __aem_res_cq(r);
	struct aem_post p = {
		.user_data = tag,
		.flags = AEM_CQE_F_RESULT | AEM_CQE_F_LANE,
		.cls = n->prio < r->nr_classes ? n->prio : 0,
		.len = sizeof(*n),
		.n = 1,
		.data = n,
	};
	struct aem_posted out = { 0 };
	bool post = true;
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (if_room) {
		/* Kicks only while the ring is less than half full: they never crowd out the ring's own results. */
		post = !cq->bl_head && __aem_cq_room_locked(r, cq) > cq->entries / 2;
		/*
		 * The lane's last kick not yet read: the consumer is awake or
		 * about to be, and will look at the lane.  The head is the
		 * consumer's to write: a false one only costs it kicks.
		 */
		if (post && unread_end && *unread_end &&
		    (s32)(aem_load_acquire(cq->khead) - *unread_end) < 0)
			post = false;
	}
	if (post) {
		u32 at = cq->tail;

		__aem_post_locked(r, NULL, &p, &out);
		if (unread_end)
			*unread_end = (at + 1) ? at + 1 : 1;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (post && out.wake)
		__aem_wake(r, p.cls == 0);
	return post;
}
