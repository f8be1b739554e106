// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Posts of sources that hold back rather than drop: the generator at rate
 * 0 (aem_core_want_room) and the socket source (PROTOCOL.md section 10).  Such a source produces only when the ring can take the
 * event: aem_core_post_fit() refuses (-EAGAIN, nothing counted) rather
 * than backlog or drop, and a received payload is written straight into a
 * delivery slot the source took beforehand (aem_core_slot_take) and then
 * posted with that slot (aem_core_post_slot).  A refused source pauses,
 * announces it with aem_core_want_room() and resumes from its .room hook.
 */
#include "aem_core_int.h"

int aem_core_post_fit(struct aem_ctx *r, struct aem_sub *s, const void *data, u32 len,
		      u32 cqe_flags, u64 id)
{
	struct aem_post p = {
		.user_data = s->user_data,
		.id = id ? id : aem_sub_id(r, s),
		.flags = cqe_flags & (AEM_CQE_F_CALL | AEM_CQE_F_TRUNC | AEM_CQE_F_SOCK_CTL),
		.source = s->source,
		.cls = s->prio,
		.len = len,
		.n = 1,
		.mode = AEM_POST_FIT | ((cqe_flags & AEM_CQE_F_FINAL) ? AEM_POST_FINAL : 0),
		.data = data,
	};
	struct aem_posted out;
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_post_locked(r, s, &p, &out);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (out.wake)
		__aem_wake(r, p.cls == 0);
	return out.produced ? 0 : -EAGAIN;
}

bool aem_core_has_room(struct aem_ctx *r, struct aem_sub *s, u32 len)
{
	struct aem_cq_core *cq = &r->cq[s->prio];
	unsigned long f;
	bool room;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (cq->bl_head && __aem_flush_class_locked(r, cq)) {
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		__aem_wake(r, s->prio == 0);
		aem_spin_lock_irqsave(&r->cq_lock, f);
	}
	room = !cq->bl_head && __aem_cq_room_locked(r, cq);
	if (room && len > AEM_CQE_INLINE) {
		if (!r->nr_free)
			__aem_slot_reclaim_locked(r);
		room = r->nr_free > 0;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return room;
}

bool aem_core_want_room(struct aem_ctx *r, struct aem_sub *s, u32 len)
{
	aem_atomic_set(&r->room_wanted, 1);
	aem_smp_mb();	/* pairs with __aem_room_kick()'s caller's barrier */
	return aem_core_has_room(r, s, len);
}

int aem_core_slot_take(struct aem_ctx *r, u32 *ref, void **buf)
{
	unsigned long f;
	u32 slot;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	slot = __aem_slot_get_locked(r);	/* AEM_SLOT_CORE: neither free nor the user's */
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (slot == AEM_NIL)
		return -ENOSPC;
	*ref = slot;
	*buf = __aem_slot_ptr(r, slot);
	return 0;
}

void aem_core_slot_put(struct aem_ctx *r, u32 ref)
{
	__aem_slot_give_back(r, ref);
}

/* Fill the CQE of an event of @s; the payload is inline (@slot AEM_NIL) or in @slot. */
static void hold_cqe(struct aem_ctx *r, struct aem_sub *s, struct aem_cqe *e, u64 id,
		     u32 flags, u32 slot, const u8 *inl, u32 len)
{
	e->user_data = s->user_data;
	e->id = id;
	e->res = (s32)len;
	e->flags = flags | (slot != AEM_NIL ? AEM_CQE_F_SLOT : 0);
	e->slot = slot != AEM_NIL ? slot : 0;
	e->source = s->source;
	e->prio = s->prio;
	e->resv = 0;
	memset(e->data, 0, sizeof(e->data));
	if (slot == AEM_NIL)
		memcpy(e->data, inl, len);
	else
		r->slot_token[__aem_slot_d(r, slot)] = id;
}

int aem_core_post_slot(struct aem_ctx *r, struct aem_sub *s, u32 ref, u32 len,
		       u32 cqe_flags, u64 id)
{
	struct aem_cq_core *cq = &r->cq[s->prio];
	u32 flags = cqe_flags & (AEM_CQE_F_TRUNC | AEM_CQE_F_SOCK_CTL);
	u8 inl[AEM_CQE_INLINE];
	struct aem_cqe *e;
	bool wake = false;
	unsigned long f;
	u32 slot = ref;

	if (len > r->slot_size)
		len = r->slot_size;
	if (!id)
		id = aem_sub_id(r, s);
	if (len <= AEM_CQE_INLINE) {
		/* Small: inline, and the slot goes back at once. */
		memcpy(inl, __aem_slot_ptr(r, ref), len);
		slot = AEM_NIL;
	}
	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (cq->bl_head)
		wake = __aem_flush_class_locked(r, cq);
	if (!cq->bl_head && __aem_cq_room_locked(r, cq)) {
		e = &cq->cqes[cq->tail & cq->mask];
		hold_cqe(r, s, e, id, flags, slot, inl, len);
		if (slot != AEM_NIL)
			r->slot_state[__aem_slot_d(r, slot)] = AEM_SLOT_USER;
		r->produced++;
		r->delivered++;
		s->produced++;
		s->delivered++;
		cq->tail++;
		aem_store_release(cq->ktail, cq->tail);	/* pairs with aem_peek_batch()'s acquire */
		wake = true;
	} else {
		/*
		 * Another producer took the room after the source looked: the
		 * event waits, past backlog_limit if need be.  Entries that hold
		 * a slot are bounded by slot_count; inline ones by the source's
		 * own pause (it posts again only after want_room found room).
		 */
		e = __aem_bl_append_locked(r, cq, s);
		if (!e) {
			aem_spin_unlock_irqrestore(&r->cq_lock, f);
			return -ENOMEM;
		}
		hold_cqe(r, s, e, id, flags, slot, inl, len);
		r->produced++;
		s->produced++;
		cq->backlog++;
		r->nr_backlog++;
		r->backlog++;
		s->backlog++;
		aem_write_once(*cq->kflags, AEM_CQ_F_OVERFLOW);
	}
	if (slot == AEM_NIL)
		__aem_slot_put_locked(r, ref);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (wake)
		__aem_wake(r, s->prio == 0);
	return 0;
}
