// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The charge of a ring's kernel-side memory: its subscription table, its
 * backlog (chunks and the payloads they hold), its slot bookkeeping and
 * its sources' state.  It goes to the same account as the ring's regions,
 * which the host keeps (aem_host_charge(): the module charges the user's
 * locked memory, RLIMIT_MEMLOCK, within the ring's max_ring_mb; the
 * embedded backend a per-ring budget by the same rule).
 *
 * The core takes the account in grains of AEM_CHARGE_GRAIN bytes and
 * counts objects against the grains it holds, so an allocation costs a
 * few additions under the completion lock and the host is asked once per
 * grain; it gives grains back once two lie unused (no flapping at a
 * boundary).  Everything here runs under cq_lock and never sleeps.
 */
#include "aem_core_int.h"

static u64 round_grain(u64 v)
{
	return (v + AEM_CHARGE_GRAIN - 1) & ~((u64)AEM_CHARGE_GRAIN - 1);
}

/* The backlog's spare chunks (post.c) give their charge back: a charge needs it. */
static bool spares_release_locked(struct aem_ctx *r)
{
	if (!r->bl_spare)
		return false;
	while (r->bl_spare) {
		struct aem_bl_chunk *c = r->bl_spare;

		r->bl_spare = c->next;
		aem_free(c);
		r->mem_used -= AEM_BL_CHUNK_BYTES;
	}
	r->nr_bl_spare = 0;
	return true;
}

/*
 * Account @bytes more; false (nothing changed) past the ring's limit.
 * @force takes the grains even then: for results, which are never lost
 * (while the charge is short and results wait in the backlog, submission
 * stops: aem_core_submit).
 */
static bool charge_locked(struct aem_ctx *r, u64 bytes, bool force)
{
	u64 need = r->mem_used + bytes;

	if (need > r->mem_charged) {
		u64 more = round_grain(need - r->mem_charged);
		/* Past the limit the spares go first, before a forced charge. */
		int ret = aem_host_charge(r->host, more, force && !r->bl_spare);

		if (ret < 0 && spares_release_locked(r))
			return charge_locked(r, bytes, force);
		/* Read without the lock by submission (aem_core_submit). */
		aem_write_once(r->mem_short, ret < 0 || ret == AEM_CHARGE_OVER);
		if (ret < 0)
			return false;
		r->mem_charged += more;
	}
	r->mem_used = need;
	return true;
}

bool __aem_mem_charge_locked(struct aem_ctx *r, u64 bytes)
{
	return charge_locked(r, bytes, false);
}

void __aem_mem_force_locked(struct aem_ctx *r, u64 bytes)
{
	charge_locked(r, bytes, true);
}

/* Whether @bytes more would be granted now (taking the grains if so). */
bool __aem_mem_room_locked(struct aem_ctx *r, u64 bytes)
{
	if (!charge_locked(r, bytes, false))
		return false;
	r->mem_used -= bytes;
	return true;
}

void __aem_mem_uncharge_locked(struct aem_ctx *r, u64 bytes)
{
	u64 keep;

	r->mem_used -= bytes;
	if (r->mem_short)
		aem_write_once(r->mem_short, false);
	/* One spare grain stays: a backlog chunk freed and taken again costs nothing. */
	keep = round_grain(r->mem_used) + AEM_CHARGE_GRAIN;
	if (r->mem_charged > keep + AEM_CHARGE_GRAIN) {
		aem_host_uncharge(r->host, r->mem_charged - keep);
		r->mem_charged = keep;
	}
}

/* For callers that hold no lock: sources (their per-ring and per-subscription state). */
int aem_core_charge(struct aem_ctx *r, u32 bytes)
{
	unsigned long f;
	bool ok;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	ok = __aem_mem_charge_locked(r, bytes);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return ok ? 0 : -ENOMEM;
}

void aem_core_uncharge(struct aem_ctx *r, u32 bytes)
{
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_mem_uncharge_locked(r, bytes);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

/* Ring teardown: every object is gone; give the whole charge back. */
void __aem_mem_release(struct aem_ctx *r)
{
	if (r->mem_charged)
		aem_host_uncharge(r->host, r->mem_charged);
	r->mem_charged = r->mem_used = 0;
}
