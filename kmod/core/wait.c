// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Waiting and waking.  Every wake decision is a Dekker pair: one side
 * stores (a tail, or its announcement), issues a full barrier, then loads
 * the other side's word, so either the waiter sees the tail or the
 * producer sees the waiter.  The same pairing lets a held-back producer
 * (aem_core_want_room) be kicked by the consumer.
 */
#include "aem_core_int.h"

/* Dekker, producer half: the tail store (release) happened before; now the waiters load. */
bool __aem_wake_wanted(struct aem_ctx *r)
{
	aem_smp_mb();	/* pairs with aem_core_wait_begin() / aem_core_poll_arm() */
	return aem_atomic_read(&r->waiters) || aem_atomic_read(&r->poll_armed);
}

void __aem_wake(struct aem_ctx *r, bool urgent)
{
	if (__aem_wake_wanted(r))
		aem_host_wake(r, r->host, urgent);
}

/*
 * Dekker, consumer half of a producer waiting for room: the user stored
 * its CQ head (or slot ring tail) before entering, the caller issued a
 * full barrier since; now the flag loads.  Either the producer's re-check
 * in aem_core_want_room() sees the room, or this sees the flag.  Every
 * clear is followed by a kick, so a flag set again meanwhile is never lost.
 */
void __aem_room_kick(struct aem_ctx *r)
{
	if (aem_atomic_read(&r->room_wanted)) {
		aem_atomic_set(&r->room_wanted, 0);
		aem_host_gen_kick();
		__aem_sources_room(r);
	}
}

bool aem_core_cq_ready(struct aem_ctx *r, u32 min)
{
	u32 c, total = 0;

	for (c = 0; c <= r->nr_classes; c++) {	/* the class rings and the result ring */
		struct aem_cq_core *cq = &r->cq[c];
		/* Both indices live in shared memory: the tail is ours (release), the head the user's. */
		u32 n = aem_load_acquire(cq->ktail) - aem_load_acquire(cq->khead);

		if (n > cq->entries)
			n = 0;
		/* An urgent event or any result (what the waiter asked for) ends a wait at once. */
		if ((c == 0 || c == r->nr_classes) && n)
			return true;
		total += n;
	}
	return total >= (min ? min : 1);
}

/* Dekker, waiter half: announce, full barrier, then the caller re-reads the tails. */
void aem_core_wait_begin(struct aem_ctx *r)
{
	aem_atomic_inc(&r->waiters);
	aem_smp_mb();	/* pairs with __aem_wake() and aem_core_want_room() */
	__aem_room_kick(r);
}

void aem_core_wait_end(struct aem_ctx *r)
{
	aem_atomic_dec_return(&r->waiters);
}

void aem_core_poll_arm(struct aem_ctx *r)
{
	aem_atomic_set(&r->poll_armed, 1);
	aem_smp_mb();	/* pairs with __aem_wake() and aem_core_want_room() */
	__aem_room_kick(r);
}

bool aem_core_poll_take(struct aem_ctx *r)
{
	if (!aem_atomic_read(&r->poll_armed))
		return false;
	aem_atomic_set(&r->poll_armed, 0);
	return true;
}
