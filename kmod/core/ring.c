// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Life cycles: a ring's (create over the host's regions, destroy), a
 * source's end (unregistration ends its subscriptions in every ring), and
 * the core's own (init, exit).
 */
#include "aem_core_int.h"

static bool aem_core_inited;

/* Per delivery slot: free stack entry, state, token, generation. */
#define AEM_SLOT_STATE_BYTES	(sizeof(u32) + sizeof(u8) + sizeof(u64) + sizeof(u16))

u32 aem_ctx_slot_size(struct aem_ctx *r)
{
	return r->slot_size;
}

u32 aem_ctx_sock_conns(struct aem_ctx *r)
{
	return r->sock_conns;
}

void **aem_ctx_src_priv(struct aem_ctx *r, const struct aem_source_ops *ops)
{
	u32 slot = __aem_source_slot(ops);

	/* Only a registered source has subscriptions, hence calls here. */
	return &r->src_priv[slot < AEM_SRC_IMPLS ? ops->source : 0][slot < AEM_SRC_IMPLS ? slot : 0];
}

int aem_core_ring_create(const struct aem_params *p, const struct aem_layout *l,
			 void *regions[AEM_NR_REGIONS], void *host,
			 struct aem_ctx **out, u32 *ring_id)
{
	struct aem_rings *rings = regions[AEM_REGION_RINGS];
	struct aem_ctx *r;
	u32 c, i;
	int ret = -ENOMEM;

	if (!aem_core_inited)
		return -EINVAL;
	r = aem_zalloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->nr_classes = l->nr_classes;
	r->sq_entries = l->sq_entries;
	r->sq_mask = l->sq_entries - 1;
	r->cq_entries = l->cq_entries;
	r->cq_mask = l->cq_entries - 1;
	r->slot_size = l->slot_size;
	r->slot_count = l->slot_count;
	r->send_slots = l->send_slots;
	r->sr_entries = l->slot_ring_entries;
	r->sr_mask = l->slot_ring_entries - 1;
	r->backlog_limit = l->backlog_limit;
	r->call_quota = l->call_quota;
	r->sock_conns = l->sock_conns;
	r->sq_idle_ms = l->sq_idle_ms;
	r->host = host;
	r->payload = regions[AEM_REGION_PAYLOAD];
	r->sqes = regions[AEM_REGION_SQES];
	aem_host_cred_get(&r->owner);	/* whose ring it is: who may post into it */

	r->sq_khead = &rings->sq.head;
	r->sq_ktail = &rings->sq.tail;
	r->sq_kflags = &rings->sq.flags;
	r->sq_kdropped = &rings->sq.dropped;
	rings->sq.ring_mask = r->sq_mask;
	rings->sq.ring_entries = r->sq_entries;
	for (c = 0; c <= r->nr_classes; c++) {
		/* The class rings, then the result ring: its CQEs follow theirs. */
		struct aem_ring_block *b = c < r->nr_classes ? &rings->cq[c] : &rings->res;
		struct aem_cq_core *cq = &r->cq[c];

		cq->entries = c < r->nr_classes ? r->cq_entries : l->res_entries;
		cq->mask = cq->entries - 1;

		cq->khead = &b->head;
		cq->ktail = &b->tail;
		cq->kflags = &b->flags;
		cq->kdropped = &b->dropped;
		cq->cqes = (struct aem_cqe *)regions[AEM_REGION_CQES] + (size_t)c * r->cq_entries;
		if (p->api_version >= 4 && c < r->nr_classes)
			cq->senders = (struct aem_sender *)((u8 *)regions[AEM_REGION_CQES] +
							    p->cq_off[c].senders);
		b->ring_mask = cq->mask;
		b->ring_entries = cq->entries;
	}
	r->sr_khead = &rings->slot.head;
	r->sr_ktail = &rings->slot.tail;
	r->sr_array = rings->slot_array;
	rings->slot.ring_mask = r->sr_mask;
	rings->slot.ring_entries = r->sr_entries;

	/*
	 * The ring's own state, beside its regions: this struct, the slot
	 * bookkeeping and the subscription table's directory.  Charged before
	 * it is allocated; the table's chunks and the backlog as they come.
	 */
	for (c = 0; c < AEM_NR_REGIONS; c++)
		r->region_bytes += l->region_size[c];
	if (!__aem_mem_charge_locked(r, sizeof(*r) + ((u64)r->slot_count + 1) * AEM_SLOT_STATE_BYTES +
				     AEM_SUB_NR_CHUNKS * sizeof(struct aem_sub *)))
		goto err;
	r->slot_free = aem_kvzalloc(((size_t)r->slot_count + 1) * sizeof(u32));
	r->slot_state = aem_kvzalloc((size_t)r->slot_count + 1);
	r->slot_token = aem_kvzalloc(((size_t)r->slot_count + 1) * sizeof(u64));
	r->slot_gen = aem_kvzalloc(((size_t)r->slot_count + 1) * sizeof(u16));
	r->slot_gens = p->api_version >= 3;
	r->api_version = p->api_version;
	r->sub_chunks = aem_kvzalloc(AEM_SUB_NR_CHUNKS * sizeof(struct aem_sub *));
	if (!r->slot_free || !r->slot_state || !r->slot_token || !r->slot_gen || !r->sub_chunks)
		goto err;
	/* Lowest slot on top: the first events use the first slots. */
	for (i = 0; i < r->slot_count; i++)
		r->slot_free[i] = r->send_slots + r->slot_count - 1 - i;
	r->nr_free = r->slot_count;
	r->sub_free = AEM_NIL;

	aem_mutex_init(&r->submit_lock);
	aem_spin_init(&r->cq_lock);
	aem_atomic_set(&r->refs, 1);
	aem_completion_init(&r->unref);
	ret = __aem_ring_register(r);
	if (ret)
		goto err;
	*ring_id = r->id;
	*out = r;
	return 0;
err:
	__aem_mem_release(r);
	aem_kvfree(r->sub_chunks);
	aem_kvfree(r->slot_gen);
	aem_kvfree(r->slot_token);
	aem_kvfree(r->slot_state);
	aem_kvfree(r->slot_free);
	aem_host_cred_put(&r->owner);
	aem_free(r);
	return ret;
}

void aem_core_ring_destroy(struct aem_ctx *r)
{
	unsigned long f;
	u32 c, i;

	__aem_ring_unregister(r);	/* no new posts or calls; in-flight ones are done */
	__aem_calls_ring_gone(r);
	aem_mutex_lock(&r->submit_lock);
	aem_spin_lock_irqsave(&r->cq_lock, f);
	r->closing = true;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	for (c = 0; c < r->nr_sub_chunks; c++) {
		aem_cond_resched();	/* up to 16 M subscriptions: a chunk at a time */
		for (i = 0; i < AEM_SUB_CHUNK; i++) {
			struct aem_sub *s = &r->sub_chunks[c][i];
			const struct aem_source_ops *ops;

			aem_spin_lock_irqsave(&r->cq_lock, f);
			if (!(s->state & AEM_SUB_LIVE) || (s->state & AEM_SUB_DYING)) {
				aem_spin_unlock_irqrestore(&r->cq_lock, f);
				continue;
			}
			if (s->state & AEM_SUB_FINAL) {
				/* The source is done with it; only its last event is queued. */
				ops = __aem_source_ops(s->source, s->impl);
				__aem_sub_free_locked(r, s);
				aem_spin_unlock_irqrestore(&r->cq_lock, f);
				if (ops)
					aem_module_put(ops->owner);
				continue;
			}
			s->state |= AEM_SUB_DYING;
			aem_spin_unlock_irqrestore(&r->cq_lock, f);
			__aem_sub_unsubscribe(r, s, false, NULL);
		}
	}
	for (i = 1; i < AEM_SRC_LAST; i++) {
		for (c = 0; c < AEM_SRC_IMPLS; c++) {
			const struct aem_source_ops *ops = __aem_source_ops((u8)i, (u8)c);

			if (ops && ops->ring_release)
				ops->ring_release(r);
		}
	}
	aem_mutex_unlock(&r->submit_lock);

	__aem_backlog_free(r);
	__aem_sub_table_free(r);
	aem_kvfree(r->slot_gen);
	aem_kvfree(r->slot_token);
	aem_kvfree(r->slot_state);
	aem_kvfree(r->slot_free);
	aem_mutex_destroy(&r->submit_lock);
	__aem_mem_release(r);
	aem_host_cred_put(&r->owner);
	aem_free(r);
}

/* ---------------------------------------------------------------------- */
/* Source unregistration, init                                            */

void aem_core_unregister_source(const struct aem_source_ops *ops)
{
	struct aem_ctx *r;
	unsigned long f;
	u32 pos = 0, c, i, slot;

	if (!__aem_source_close(ops))	/* no new subscriptions */
		return;
	slot = __aem_source_slot(ops);

	while ((r = __aem_ring_iter(&pos))) {
		aem_mutex_lock(&r->submit_lock);
		for (c = 0; c < r->nr_sub_chunks; c++) {
			aem_cond_resched();
			for (i = 0; i < AEM_SUB_CHUNK; i++) {
				struct aem_sub *s = &r->sub_chunks[c][i];
				bool mine;

				aem_spin_lock_irqsave(&r->cq_lock, f);
				mine = s->source == ops->source && s->impl == slot &&
				       (s->state & AEM_SUB_LIVE) &&
				       !(s->state & (AEM_SUB_DYING | AEM_SUB_FINAL));
				if (mine)
					s->state |= AEM_SUB_DYING;
				aem_spin_unlock_irqrestore(&r->cq_lock, f);
				if (mine)
					__aem_sub_unsubscribe(r, s, true, NULL);
			}
		}
		if (ops->ring_release)
			ops->ring_release(r);
		aem_mutex_unlock(&r->submit_lock);
		__aem_ring_put(r);
	}

	__aem_source_forget(ops);
}

int aem_core_init(void)
{
	int ret;

	if (aem_core_inited)
		return 0;
	__aem_sources_init();
	__aem_rings_init();
	__aem_calls_init();
	ret = aem_core_register_source(&__aem_msg_source_ops);
	if (ret)
		return ret;
	aem_core_inited = true;
	return 0;
}

void aem_core_exit(void)
{
	if (!aem_core_inited)
		return;
	aem_core_unregister_source(&__aem_msg_source_ops);
	__aem_calls_exit();
	aem_core_inited = false;
}
