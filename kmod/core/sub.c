// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The subscription table: 64-byte entries in chunks that never move, found
 * by id (index, generation, kind) in O(1); a free list by index.  Entries
 * change only under the ring's completion lock; chunks are added under the
 * submit lock.
 */
#include "aem_core_int.h"

void __aem_sub_free_locked(struct aem_ctx *r, struct aem_sub *s)
{
	u16 gen = (u16)(s->gen + 1);

	s->user_data = 0;
	s->delivered = 0;
	s->dropped = 0;
	s->produced = 0;
	s->priv[0] = s->priv[1] = 0;
	s->backlog = 0;
	s->source = 0;
	s->prio = 0;
	s->state = 0;
	s->gen = gen ? gen : 1;
	s->link[1] = 0;
	s->link[0] = r->sub_free;
	r->sub_free = s->index;
	r->nr_subs--;
}

/* A subscription's last event left: free it, unless an unsubscribe owns that. */
void __aem_sub_end_locked(struct aem_ctx *r, struct aem_sub *s)
{
	const struct aem_source_ops *ops;

	if (s->state & AEM_SUB_DYING)
		return;
	ops = __aem_source_ops(s->source);
	__aem_sub_free_locked(r, s);
	if (ops)
		aem_module_put(ops->owner);
}

/*
 * The counters of @s.  produced holds the count's low 32 bits (see struct
 * aem_sub): widen it around the outcome sum.
 */
void __aem_sub_counts_locked(const struct aem_sub *s, struct aem_sub_counts *c)
{
	u64 sum = s->delivered + s->backlog + s->dropped;

	c->delivered = s->delivered;
	c->backlog = s->backlog;
	c->dropped = s->dropped;
	c->produced = sum + (u64)(s64)(s32)(s->produced - (u32)sum);
}

/*
 * @state: AEM_SUB_* bits beside LIVE.  Submission (under submit_lock) and a
 * source spawning a connection (aem_core_sub_spawn) may both grow the
 * table: a chunk is added under cq_lock only if the table still needs it.
 * None once the ring is closing (teardown sweeps the table after that).
 */
struct aem_sub *__aem_sub_alloc(struct aem_ctx *r, u8 source, u32 state)
{
	struct aem_sub *s = NULL, *chunk = NULL;
	unsigned long f;
	u32 base, i;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (r->sub_free == AEM_NIL && r->nr_sub_chunks < AEM_SUB_NR_CHUNKS && !r->closing) {
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		chunk = aem_kvzalloc(AEM_SUB_CHUNK * sizeof(struct aem_sub));
		if (!chunk)
			return NULL;
		aem_spin_lock_irqsave(&r->cq_lock, f);
	}
	if (chunk && r->sub_free == AEM_NIL && r->nr_sub_chunks < AEM_SUB_NR_CHUNKS) {
		base = r->nr_sub_chunks << AEM_SUB_CHUNK_SHIFT;
		for (i = 0; i < AEM_SUB_CHUNK; i++) {
			chunk[i].index = base + i;
			chunk[i].gen = 1;
			chunk[i].link[0] = base + i + 1;
		}
		chunk[AEM_SUB_CHUNK - 1].link[0] = r->sub_free;
		r->sub_chunks[r->nr_sub_chunks] = chunk;
		aem_write_once(r->nr_sub_chunks, r->nr_sub_chunks + 1);
		r->sub_free = base;
		chunk = NULL;
	}
	if (r->sub_free != AEM_NIL && !r->closing) {
		s = __aem_sub_at(r, r->sub_free);
		r->sub_free = s->link[0];
		s->link[0] = 0;
		s->source = source;
		s->state = AEM_SUB_LIVE | state;
		r->nr_subs++;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	aem_kvfree(chunk);	/* another allocator grew the table meanwhile */
	return s;
}

struct aem_sub *aem_core_sub_spawn(struct aem_ctx *r, struct aem_sub *parent)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s = NULL;
	unsigned long f;
	u64 tag;
	u8 src, prio;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	src = parent->source;
	tag = parent->user_data;
	prio = parent->prio;
	if (!(parent->state & AEM_SUB_LIVE) || (parent->state & (AEM_SUB_DYING | AEM_SUB_FINAL)))
		src = 0;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	ops = src ? __aem_source_get(src) : NULL;
	if (!ops)
		return NULL;
	s = __aem_sub_alloc(r, src, 0);
	if (!s) {
		aem_module_put(ops->owner);
		return NULL;
	}
	s->user_data = tag;
	s->prio = prio;
	return s;
}

struct aem_sub *__aem_sub_find(struct aem_ctx *r, u64 id, u32 bad_state)
{
	u32 idx = AEM_ID_INDEX(id);
	struct aem_sub *s;

	if (AEM_ID_KIND(id) != AEM_ID_KIND_SUB || (idx >> AEM_SUB_CHUNK_SHIFT) >= r->nr_sub_chunks)
		return NULL;
	s = __aem_sub_at(r, idx);
	if (s->gen != AEM_ID_GEN(id) || !(s->state & AEM_SUB_LIVE) || (s->state & bad_state))
		return NULL;
	return s;
}

/* A live subscription that may still take writebacks and unsubscribes. Under cq_lock. */
struct aem_sub *__aem_sub_lookup_locked(struct aem_ctx *r, u64 id)
{
	return __aem_sub_find(r, id, AEM_SUB_DYING | AEM_SUB_FINAL);
}

struct aem_sub *aem_sub_at(struct aem_ctx *r, u32 idx)
{
	return __aem_sub_at(r, idx);
}

u64 aem_sub_id(struct aem_ctx *r, struct aem_sub *s)
{
	(void)r;
	return __aem_make_id(s->index, s->gen, AEM_ID_KIND_SUB);
}

bool aem_sub_active(struct aem_ctx *r, struct aem_sub *s)
{
	unsigned long f;
	bool ok;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	ok = (s->state & AEM_SUB_LIVE) && !(s->state & (AEM_SUB_DYING | AEM_SUB_FINAL));
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return ok;
}

/* __aem_sub_lookup_locked() for callers that do not hold cq_lock. */
struct aem_sub *__aem_sub_lookup(struct aem_ctx *r, u64 id)
{
	struct aem_sub *s;
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	s = __aem_sub_lookup_locked(r, id);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return s;
}
