// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Delivery slots: the core's free stack, the slot return ring the user
 * fills, and the hand-over of a slot to a writeback.  Slot states
 * (AEM_SLOT_*) change only under the ring's completion lock.
 *
 * The free stack holds plain indices; what the core hands out (and writes
 * into a CQE) is a reference, index | generation << AEM_SLOT_GEN_SHIFT, with
 * a new generation per issue on version 3 rings (version 2: always 0).  A release or writeback
 * must name the current issue: a late duplicate release of a reissued slot,
 * or another held slot of the same subscription, names another generation
 * or token and is refused.
 */
#include "aem_core_int.h"

/* Consume the slot return ring. Under cq_lock. */
void __aem_slot_reclaim_locked(struct aem_ctx *r)
{
	u32 tail = aem_load_acquire(r->sr_ktail);	/* pairs with aem_release_commit() */
	u32 head = r->sr_head;
	u32 n = tail - head, i;

	if (!n)
		return;
	if (unlikely(n > r->sr_entries)) {
		r->refused[AEM_REFUSE_INDEX]++;
		if ((s32)n < 0)
			return;		/* moved backwards: wait for a sane tail */
		n = r->sr_entries;
	}
	for (i = 0; i < n; i++) {
		u32 slot = aem_read_once(r->sr_array[(head + i) & r->sr_mask]);
		u32 d = __aem_slot_d(r, slot);

		/* A send slot wraps d to >= slot_count as well as an index past the end. */
		if (unlikely(d >= r->slot_count || r->slot_state[d] != AEM_SLOT_USER ||
			     r->slot_gen[d] != AEM_SLOT_GEN(slot))) {
			r->refused[AEM_REFUSE_SLOT]++;
			continue;
		}
		r->slot_state[d] = AEM_SLOT_FREE;
		r->slot_free[r->nr_free++] = AEM_SLOT_INDEX(slot);
	}
	aem_write_once(r->sr_head, head + n);
	aem_store_release(r->sr_khead, head + n);	/* pairs with aem_release_slot()'s acquire */
}

/* A free slot, as a reference to this issue of it; AEM_NIL when none is free. */
u32 __aem_slot_get_locked(struct aem_ctx *r)
{
	u32 slot, d;

	if (!r->nr_free)
		__aem_slot_reclaim_locked(r);
	if (!r->nr_free)
		return AEM_NIL;
	slot = r->slot_free[--r->nr_free];
	d = slot - r->send_slots;
	r->slot_state[d] = AEM_SLOT_CORE;
	if (r->slot_gens) {
		/*
		 * Ring-wide, so slots held at once carry different generations,
		 * and never the one this slot had last, which a late duplicate
		 * release of it names.
		 */
		do
			r->slot_issue = r->slot_issue < AEM_SLOT_GEN_MAX ? r->slot_issue + 1 : 1;
		while (r->slot_issue == r->slot_gen[d]);
		r->slot_gen[d] = r->slot_issue;
	}
	return slot | (u32)r->slot_gen[d] << AEM_SLOT_GEN_SHIFT;
}

void __aem_slot_put_locked(struct aem_ctx *r, u32 slot)
{
	r->slot_state[__aem_slot_d(r, slot)] = AEM_SLOT_FREE;
	r->slot_free[r->nr_free++] = AEM_SLOT_INDEX(slot);
}

/*
 * A writeback names the delivery slot its event came in (the reference
 * that event carried, whose token must be the writeback's target) and the
 * user holds: the core takes it (so a concurrent release of it is a double
 * release), the caller copies from it and puts it back.  Under cq_lock.
 */
int __aem_slot_take_user(struct aem_ctx *r, u32 slot, u64 token)
{
	u32 d = __aem_slot_d(r, slot);

	if (d >= r->slot_count || r->slot_state[d] != AEM_SLOT_USER || r->slot_token[d] != token ||
	    r->slot_gen[d] != AEM_SLOT_GEN(slot))
		return -EINVAL;
	r->slot_state[d] = AEM_SLOT_CORE;
	return 0;
}

void __aem_slot_give_back(struct aem_ctx *r, u32 slot)
{
	unsigned long f;

	if (slot == AEM_NIL)
		return;
	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_slot_put_locked(r, slot);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

/* A refused writeback changes nothing: the slot it named is the user's again. */
void __aem_slot_untake(struct aem_ctx *r, u32 slot)
{
	unsigned long f;

	if (slot == AEM_NIL)
		return;
	aem_spin_lock_irqsave(&r->cq_lock, f);
	r->slot_state[__aem_slot_d(r, slot)] = AEM_SLOT_USER;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

void aem_core_reclaim_slots(struct aem_ctx *r)
{
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_slot_reclaim_locked(r);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}
