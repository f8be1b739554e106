// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The subscription table: 60-byte entries in chunks that never move, found
 * by id (index, generation, kind) in O(1); a free list by index.  Entries
 * change only under the ring's completion lock; chunks are added under the
 * submit lock, each charged to the ring's account (mem.c) as it is added.
 *
 * The table grows a chunk at a time for its first AEM_SUB_GROUP_FROM
 * chunks (16 MiB), then AEM_SUB_GROUP chunks (2 MiB) at a time, so that
 * what it holds beyond its entries stays under an eighth; each growth is
 * one block of memory (huge pages in user space: aem_table_zalloc),
 * charged as the whole pages it takes (block_bytes).  Eight chunks of
 * 4369 entries of 60 bytes fill a 2 MiB page but for 32 bytes, so from
 * 100 k subscriptions up an idle timer costs at most 60 bytes and the
 * growth slack (at most 2 MiB) together (about 60.2-61 B at 100 k-10 M).  A new block is not
 * walked: its entries are zero (generation 0, which no freed entry has) and
 * join the free list one at a time, as the list's head reaches them, so
 * subscribing touches each entry once, when it is taken.
 */
#include "aem_core_int.h"

#define AEM_SUB_GROUP		8U
#define AEM_SUB_GROUP_FROM	64U

/* Chunks the table grows by when chunk @c is the next; also the size of the block at @c. */
static u32 grow_chunks(u32 c)
{
	return c < AEM_SUB_GROUP_FROM ? 1 : AEM_SUB_GROUP;
}

/* The memory a block of @n chunks takes: whole pages, as allocated and charged. */
static u64 block_bytes(u32 n)
{
	return ((u64)n * AEM_SUB_CHUNK_BYTES + 4095) & ~(u64)4095;
}

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
	s->impl = 0;
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
	ops = __aem_source_ops(s->source, s->impl);
	__aem_sub_free_locked(r, s);
	if (ops)
		aem_module_put(ops->owner);
}

/*
 * The counters of @s.  produced holds the count's low 16 bits (see struct
 * aem_sub): widen it around the outcome sum.
 */
void __aem_sub_counts_locked(const struct aem_sub *s, struct aem_sub_counts *c)
{
	u64 sum = s->delivered + s->backlog + s->dropped;

	c->delivered = s->delivered;
	c->backlog = s->backlog;
	c->dropped = s->dropped;
	c->produced = sum + (u64)(s64)(s16)(u16)(s->produced - (u16)sum);
}

/* The free list's head, made live. Under cq_lock; the list is not empty. */
static struct aem_sub *take_free_locked(struct aem_ctx *r, u8 source, u32 state)
{
	u32 idx = r->sub_free;
	struct aem_sub *s = __aem_sub_at(r, idx);

	if (!s->gen) {
		/*
		 * Fresh: the block came when the free list was empty, so
		 * every entry after this one is fresh too.
		 */
		s->index = idx;
		s->gen = 1;
		s->link[0] = idx + 1 < r->nr_sub_chunks * AEM_SUB_CHUNK ? idx + 1 : AEM_NIL;
	}
	r->sub_free = s->link[0];
	s->link[0] = 0;
	s->source = source;
	s->state = AEM_SUB_LIVE | state;
	r->nr_subs++;
	return s;
}

/*
 * @state: AEM_SUB_* bits beside LIVE.  Submission (under submit_lock) and a
 * source spawning a connection (aem_core_sub_spawn) may both grow the
 * table: a block is added under cq_lock only if the table is still as it
 * was when the block was sized.  None once the ring is closing (teardown
 * sweeps the table after that).  NULL: the table is full, or a new block
 * was refused by the ring's charge (or its allocation failed): the
 * SUBSCRIBE gets -ENOMEM.
 */
struct aem_sub *__aem_sub_alloc(struct aem_ctx *r, u8 source, u32 state)
{
	struct aem_sub *s = NULL, *block = NULL;
	unsigned long f;
	u32 c = 0, n = 0, i;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (r->sub_free == AEM_NIL && r->nr_sub_chunks < AEM_SUB_NR_CHUNKS && !r->closing) {
		/* The table grows by a block: charged before it exists, kept until the ring goes. */
		c = r->nr_sub_chunks;
		n = grow_chunks(c);
		if (!__aem_mem_charge_locked(r, block_bytes(n))) {
			aem_spin_unlock_irqrestore(&r->cq_lock, f);
			return NULL;
		}
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		block = aem_table_zalloc(block_bytes(n));
		if (!block) {
			aem_core_uncharge(r, block_bytes(n));
			return NULL;
		}
		aem_spin_lock_irqsave(&r->cq_lock, f);
	}
	if (block && r->sub_free == AEM_NIL && r->nr_sub_chunks == c) {
		for (i = 0; i < n; i++)
			r->sub_chunks[c + i] = block + (size_t)i * AEM_SUB_CHUNK;
		r->sub_free = c * AEM_SUB_CHUNK;
		aem_write_once(r->nr_sub_chunks, c + n);
		block = NULL;
	}
	if (r->sub_free != AEM_NIL && !r->closing)
		s = take_free_locked(r, source, state);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (block) {	/* another allocator grew the table meanwhile */
		aem_table_free(block, block_bytes(n));
		aem_core_uncharge(r, block_bytes(n));
	}
	return s;
}

/*
 * Up to @n entries into @out, each as __aem_sub_alloc() returns one: the
 * first by it (which grows the table when no entry is free), the rest in
 * one more round of cq_lock, as many as the free list holds.  Returns how
 * many (0: the first was refused, as __aem_sub_alloc's NULL).
 */
u32 __aem_sub_alloc_n(struct aem_ctx *r, u8 source, u32 state, struct aem_sub **out, u32 n)
{
	unsigned long f;
	u32 k = 1;

	if (!n)
		return 0;
	out[0] = __aem_sub_alloc(r, source, state);
	if (!out[0])
		return 0;
	aem_spin_lock_irqsave(&r->cq_lock, f);
	for (; k < n && r->sub_free != AEM_NIL && !r->closing; k++)
		out[k] = take_free_locked(r, source, state);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return k;
}

/* The table's blocks and index, as the ring goes. */
void __aem_sub_table_free(struct aem_ctx *r)
{
	u32 c, n;

	for (c = 0; c < r->nr_sub_chunks; c += n) {
		n = grow_chunks(c);
		aem_table_free(r->sub_chunks[c], block_bytes(n));
		aem_cond_resched();
	}
	aem_kvfree(r->sub_chunks);
}

struct aem_sub *aem_core_sub_spawn(struct aem_ctx *r, struct aem_sub *parent)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s = NULL;
	unsigned long f;
	u64 tag;
	u8 src, prio, impl;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	src = parent->source;
	impl = parent->impl;
	tag = parent->user_data;
	prio = parent->prio;
	if (!(parent->state & AEM_SUB_LIVE) || (parent->state & (AEM_SUB_DYING | AEM_SUB_FINAL)))
		src = 0;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	/* The parent's own implementation, not merely the newest. */
	ops = src ? __aem_source_get_slot(src, impl) : NULL;
	if (!ops)
		return NULL;
	s = __aem_sub_alloc(r, src, 0);
	if (!s) {
		aem_module_put(ops->owner);
		return NULL;
	}
	s->impl = impl;
	s->user_data = tag;
	s->prio = prio;
	return s;
}

struct aem_sub *__aem_sub_find(struct aem_ctx *r, u64 id, u32 bad_state)
{
	u32 idx = AEM_ID_INDEX(id);
	struct aem_sub *s;

	if (AEM_ID_KIND(id) != AEM_ID_KIND_SUB || idx / AEM_SUB_CHUNK >= r->nr_sub_chunks)
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
