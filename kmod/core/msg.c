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
	struct aem_posted out = { .wake = false };
	struct aem_sender who;
	struct aem_post p;
	struct aem_sub *s;
	unsigned long f;
	bool incoming;
	int ret = -ENOENT;

	/* A ring posting to itself is its own source: the budget is for the others. */
	incoming = cred != &t->owner;
	memset(&p, 0, sizeof(p));
	p.cls = prio < t->nr_classes ? prio : (u8)(t->nr_classes - 1);
	/* Version 4: who sent it, as the target's creator sees the sender (process context). */
	if (t->api_version >= 4) {
		memset(&who, 0, sizeof(who));
		aem_host_sender(t->host, &who);
		who.ring_id = from ? from->id : 0;
		p.sender = &who;
		p.flags = AEM_CQE_F_SENDER;
	}
	aem_spin_lock_irqsave(&t->cq_lock, f);
	s = t->closing ? NULL : msg_find_locked(t, AEM_ADDR_CHANNEL(addr));
	if (s && !lossy && __aem_post_would_drop_locked(t, p.cls, len, incoming, &out.wake)) {
		ret = -EAGAIN;
	} else if (s) {
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
		/*
		 * Past the check above only an allocation can fail: a lossy
		 * event is then dropped and counted, any other is not posted
		 * and waits in the poster's SQ as when the target is full.
		 */
		ret = out.dropped ? -ENOSPC : !out.produced ? -EAGAIN : 0;
	}
	aem_spin_unlock_irqrestore(&t->cq_lock, f);
	if (out.wake)
		__aem_wake(t, p.cls == 0);
	return ret;
}

int __aem_op_post(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	const void *data;
	u32 took;
	int ret;

	(void)answered;
	ret = __aem_sqe_payload(r, sqe, false, &data, &took, reason);
	if (ret)
		return ret;
	ret = __aem_msg_deliver(r, sqe->target, sqe->prio, data, sqe->len, 0,
			  sqe->flags & AEM_SQE_F_LOSSY, &r->owner);
	if (ret == -EAGAIN)
		*reason = AEM_REFUSE_FULL;
	else if (ret == -ENOENT || ret == -EACCES)
		*reason = AEM_REFUSE_ID;
	else if (ret)
		*reason = AEM_REFUSE_NOMEM;
	return ret;
}

