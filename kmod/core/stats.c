// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Statistics: per subscription and per ring, read under the completion
 * lock so that every snapshot balances (produced == delivered + backlog +
 * dropped).
 */
#include "aem_core_int.h"

int aem_core_sub_stats(struct aem_ctx *r, struct aem_sub_stats *st)
{
	struct aem_sub *s;
	unsigned long f;
	int ret = -ENOENT;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	s = __aem_sub_find(r, st->id, 0);
	if (s) {
		struct aem_sub_counts c;

		__aem_sub_counts_locked(s, &c);
		st->produced = c.produced;
		st->delivered = c.delivered;
		st->backlog = c.backlog;
		st->dropped = c.dropped;
		ret = 0;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	memset(st->resv, 0, sizeof(st->resv));
	return ret;
}

void aem_core_ring_stats(struct aem_ctx *r, struct aem_ring_stats *st)
{
	unsigned long f;
	u32 i;

	memset(st, 0, sizeof(*st));
	aem_spin_lock_irqsave(&r->cq_lock, f);
	for (i = 0; i < AEM_REFUSE_NR; i++)
		st->refused[i] = r->refused[i];
	st->delivered = r->delivered;
	st->backlog = r->backlog;
	st->dropped = r->dropped;
	st->produced = r->produced;
	st->subscriptions = r->nr_subs;
	st->slots_free = r->nr_free;
	st->charged = r->region_bytes + r->mem_charged;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	st->sqes = aem_read_once(r->sqes_done);
	/* Refused SQEs are counted under the submit path's own counter too. */
}
