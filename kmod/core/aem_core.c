// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The ring core: layout, ring life cycle, SQE consumption and validation,
 * posting into the per-class CQ rings, the overflow backlog, delivery
 * slots, the subscription table, statistics and the wake decision.
 * Posts, calls and the ring table live in aem_msg.c.
 *
 * Every field of the shared regions may change under us at any moment:
 * each SQE is copied once (aem_read_once, word by word) and only the copy
 * is validated and used; every index is masked; every count is clamped.
 */
#include "aem_core_int.h"

_Static_assert(sizeof(struct aem_sub) == 64, "struct aem_sub is the whole state of a timer: 64 bytes");
_Static_assert(AEM_MAX_BACKLOG < (1U << 24), "aem_sub.backlog is 24 bits wide");
_Static_assert(sizeof(struct aem_sqe) == 64, "SQE is one cache line");
_Static_assert(sizeof(struct aem_cqe) == 64, "CQE is one cache line");
_Static_assert(AEM_RB_SLOT_ARRAY % 64 == 0, "slot ring array starts on a cache line");

static aem_spinlock_t aem_src_lock;
static const struct aem_source_ops *aem_srcs[AEM_SRC_LAST];
static bool aem_src_closing[AEM_SRC_LAST];
static bool aem_core_inited;

/* ---------------------------------------------------------------------- */
/* Layout                                                                 */

static u32 roundup_pow2(u32 v)
{
	v--;
	v |= v >> 1;
	v |= v >> 2;
	v |= v >> 4;
	v |= v >> 8;
	v |= v >> 16;
	return v + 1;
}

static u64 round_page(u64 v)
{
	return (v + AEM_PAGE_SIZE - 1) & ~((u64)AEM_PAGE_SIZE - 1);
}

static void set_offsets(struct aem_ring_offsets *o, u32 base, u32 array)
{
	o->head = base + AEM_RB_HEAD;
	o->tail = base + AEM_RB_TAIL;
	o->ring_mask = base + AEM_RB_MASK;
	o->ring_entries = base + AEM_RB_ENTRIES;
	o->flags = base + AEM_RB_FLAGS;
	o->dropped = base + AEM_RB_DROPPED;
	o->array = array;
	o->resv = 0;
}

int aem_core_layout(struct aem_params *p, u32 host_features, struct aem_layout *l)
{
	u32 sq = p->sq_entries ? p->sq_entries : AEM_CORE_DEFAULT_SQ_ENTRIES;
	u32 cq = p->cq_entries ? p->cq_entries : AEM_CORE_DEFAULT_CQ_ENTRIES;
	u32 nc = p->nr_classes ? p->nr_classes : AEM_CORE_DEFAULT_CLASSES;
	u32 ss = p->slot_size ? p->slot_size : AEM_CORE_DEFAULT_SLOT_SIZE;
	u32 sc = p->slot_count ? p->slot_count : AEM_CORE_DEFAULT_SLOTS;
	u32 send = p->send_slots;
	u64 bl = p->backlog_limit;
	u32 i, c;

	if (p->flags & ~AEM_SETUP_FLAGS_ALL)
		return -EINVAL;
	for (i = 0; i < sizeof(p->resv) / sizeof(p->resv[0]); i++)
		if (p->resv[i])
			return -EINVAL;
	for (i = 0; i < sizeof(p->resv2) / sizeof(p->resv2[0]); i++)
		if (p->resv2[i])
			return -EINVAL;
	if (sq > AEM_MAX_SQ_ENTRIES || cq > AEM_MAX_CQ_ENTRIES || nc > AEM_MAX_CLASSES)
		return -EINVAL;
	if (ss < AEM_MIN_SLOT_SIZE || ss > AEM_MAX_SLOT_SIZE)
		return -EINVAL;
	if ((u64)sc + send > AEM_MAX_SLOTS || bl > AEM_MAX_BACKLOG)
		return -EINVAL;

	sq = roundup_pow2(sq);
	cq = roundup_pow2(cq);
	ss = roundup_pow2(ss);
	if (!bl) {
		/* Default: two rings' worth of every class, so a burst survives one slow poll. */
		bl = 2ULL * cq * nc;
		if (bl < 1024)
			bl = 1024;
		if (bl > AEM_MAX_BACKLOG)
			bl = AEM_MAX_BACKLOG;
	}

	memset(l, 0, sizeof(*l));
	l->sq_entries = sq;
	l->cq_entries = cq;
	l->res_entries = 2 * sq;
	l->nr_classes = nc;
	l->slot_size = ss;
	l->slot_count = sc;
	l->send_slots = send;
	l->slot_ring_entries = roundup_pow2(sc);
	l->backlog_limit = (u32)bl;
	l->region_size[AEM_REGION_RINGS] =
		round_page(AEM_RB_SLOT_ARRAY + 4ULL * l->slot_ring_entries);
	l->region_size[AEM_REGION_SQES] = round_page((u64)sq * sizeof(struct aem_sqe));
	/* The class rings, then the result ring. */
	l->region_size[AEM_REGION_CQES] =
		round_page(((u64)cq * nc + l->res_entries) * sizeof(struct aem_cqe));
	l->region_size[AEM_REGION_PAYLOAD] = round_page(((u64)sc + send) * ss);

	p->sq_entries = sq;
	p->cq_entries = cq;
	p->nr_classes = nc;
	p->slot_size = ss;
	p->slot_count = sc;
	p->backlog_limit = (u32)bl;
	p->features = AEM_FEAT_CQE_INLINE | AEM_FEAT_SLOT_RING | AEM_FEAT_BLOCKING_CALL |
		      host_features;
	p->api_version = AEM_API_VERSION;
	set_offsets(&p->sq_off, AEM_RB_SQ, 0);
	for (c = 0; c < AEM_MAX_CLASSES; c++) {
		if (c < nc)
			set_offsets(&p->cq_off[c], AEM_RB_CQ(c),
				    c * cq * (u32)sizeof(struct aem_cqe));
		else
			memset(&p->cq_off[c], 0, sizeof(p->cq_off[c]));
	}
	set_offsets(&p->slot_off, AEM_RB_SLOT, AEM_RB_SLOT_ARRAY);
	set_offsets(&p->res_off, AEM_RB_RES, nc * cq * (u32)sizeof(struct aem_cqe));
	for (i = 0; i < AEM_NR_REGIONS; i++)
		p->region_size[i] = l->region_size[i];
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Sources registry                                                       */

int aem_core_register_source(const struct aem_source_ops *ops)
{
	unsigned long f;
	int ret = 0;

	if (!ops || ops->api_version != AEM_SOURCE_API_VERSION || !ops->source ||
	    ops->source >= AEM_SRC_LAST || !ops->subscribe || !ops->unsubscribe)
		return -EINVAL;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	if (aem_srcs[ops->source])
		ret = -EEXIST;
	else
		aem_srcs[ops->source] = ops;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ret;
}

static const struct aem_source_ops *source_get(u8 src)
{
	const struct aem_source_ops *ops;
	unsigned long f;

	if (!src || src >= AEM_SRC_LAST)
		return NULL;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	ops = aem_src_closing[src] ? NULL : aem_srcs[src];
	if (ops && !aem_module_get(ops->owner))
		ops = NULL;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ops;
}

/* The ops of a live subscription: registered until all its subs are gone. */
static const struct aem_source_ops *sub_ops(const struct aem_sub *s)
{
	return aem_srcs[s->source];
}

/* ---------------------------------------------------------------------- */
/* Subscription table                                                     */

static void sub_free_locked(struct aem_ring *r, struct aem_sub *s)
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
static void sub_end_locked(struct aem_ring *r, struct aem_sub *s)
{
	const struct aem_source_ops *ops;

	if (s->state & AEM_SUB_DYING)
		return;
	ops = sub_ops(s);
	sub_free_locked(r, s);
	if (ops)
		aem_module_put(ops->owner);
}

/* Under submit_lock (chunks only grow there). */
static struct aem_sub *sub_alloc(struct aem_ring *r, u8 source)
{
	struct aem_sub *s = NULL, *chunk;
	unsigned long f;
	u32 base, i;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (r->sub_free == AEM_NIL && r->nr_sub_chunks < AEM_SUB_NR_CHUNKS) {
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		chunk = aem_kvzalloc(AEM_SUB_CHUNK * sizeof(struct aem_sub));
		if (!chunk)
			return NULL;
		base = r->nr_sub_chunks << AEM_SUB_CHUNK_SHIFT;
		for (i = 0; i < AEM_SUB_CHUNK; i++) {
			chunk[i].index = base + i;
			chunk[i].gen = 1;
			chunk[i].link[0] = base + i + 1;
		}
		aem_spin_lock_irqsave(&r->cq_lock, f);
		chunk[AEM_SUB_CHUNK - 1].link[0] = r->sub_free;
		r->sub_chunks[r->nr_sub_chunks] = chunk;
		aem_write_once(r->nr_sub_chunks, r->nr_sub_chunks + 1);
		r->sub_free = base;
	}
	if (r->sub_free != AEM_NIL) {
		s = __aem_sub_at(r, r->sub_free);
		r->sub_free = s->link[0];
		s->link[0] = 0;
		s->source = source;
		s->state = AEM_SUB_LIVE;
		r->nr_subs++;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return s;
}

static struct aem_sub *sub_find(struct aem_ring *r, u64 id, u32 bad_state)
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
struct aem_sub *__aem_sub_lookup(struct aem_ring *r, u64 id)
{
	return sub_find(r, id, AEM_SUB_DYING | AEM_SUB_FINAL);
}

struct aem_sub *aem_sub_at(struct aem_ring *r, u32 idx)
{
	return __aem_sub_at(r, idx);
}

u64 aem_sub_id(struct aem_ring *r, struct aem_sub *s)
{
	(void)r;
	return __aem_make_id(s->index, s->gen, AEM_ID_KIND_SUB);
}

bool aem_sub_active(struct aem_ring *r, struct aem_sub *s)
{
	unsigned long f;
	bool ok;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	ok = (s->state & AEM_SUB_LIVE) && !(s->state & (AEM_SUB_DYING | AEM_SUB_FINAL));
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return ok;
}

void **aem_ring_src_priv(struct aem_ring *r, u8 source)
{
	return &r->src_priv[source < AEM_SRC_LAST ? source : 0];
}

u32 aem_ring_slot_size(struct aem_ring *r)
{
	return r->slot_size;
}

void *aem_ring_host(struct aem_ring *r)
{
	return r->host;
}

u32 aem_ring_id(struct aem_ring *r)
{
	return r->id;
}

/* ---------------------------------------------------------------------- */
/* Delivery slots                                                         */

void __aem_refuse_locked(struct aem_ring *r, u32 reason)
{
	r->refused[reason]++;
}

/* Consume the slot return ring. Under cq_lock. */
static void reclaim_locked(struct aem_ring *r)
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
		u32 d = slot - r->send_slots;

		/* A send slot wraps d to >= slot_count as well as an index past the end. */
		if (unlikely(d >= r->slot_count || r->slot_state[d] != AEM_SLOT_USER)) {
			r->refused[AEM_REFUSE_SLOT]++;
			continue;
		}
		r->slot_state[d] = AEM_SLOT_FREE;
		r->slot_free[r->nr_free++] = slot;
	}
	aem_write_once(r->sr_head, head + n);
	aem_store_release(r->sr_khead, head + n);	/* pairs with aem_release_slot()'s acquire */
}

static u32 slot_get_locked(struct aem_ring *r)
{
	u32 slot;

	if (!r->nr_free)
		reclaim_locked(r);
	if (!r->nr_free)
		return AEM_NIL;
	slot = r->slot_free[--r->nr_free];
	r->slot_state[slot - r->send_slots] = AEM_SLOT_CORE;
	return slot;
}

void __aem_slot_put_locked(struct aem_ring *r, u32 slot)
{
	r->slot_state[slot - r->send_slots] = AEM_SLOT_FREE;
	r->slot_free[r->nr_free++] = slot;
}

/*
 * A writeback names the delivery slot its event came in (the slot's
 * token must be the writeback's target) and the user holds: the core takes it
 * (so a concurrent release of it is a double release), the caller copies
 * from it and puts it back.  Under cq_lock.
 */
int __aem_slot_take_user(struct aem_ring *r, u32 slot, u64 token)
{
	u32 d = slot - r->send_slots;

	if (d >= r->slot_count || r->slot_state[d] != AEM_SLOT_USER || r->slot_token[d] != token)
		return -EINVAL;
	r->slot_state[d] = AEM_SLOT_CORE;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Posting and the backlog                                                */

/*
 * Free entries of a CQ ring.  The head is user-written: one that claims
 * more than the ring holds, or that moved backwards, reads as "full" so
 * we never write over unread CQEs; the backlog takes the events.
 */
static u32 cq_room(struct aem_ring *r, struct aem_cq_core *cq)
{
	u32 head = aem_load_acquire(cq->khead);	/* pairs with aem_cq_advance()'s release */
	u32 used = cq->tail - head;

	if (unlikely(used > cq->entries || (s32)(head - cq->head_seen) < 0)) {
		r->refused[AEM_REFUSE_INDEX]++;
		return 0;
	}
	cq->head_seen = head;
	return cq->entries - used;
}

static struct aem_cqe *bl_append_locked(struct aem_ring *r, struct aem_cq_core *cq,
					u32 sub, u16 gen, void *buf)
{
	struct aem_bl_chunk *c = cq->bl_tail;

	if (!c || c->tail == AEM_BL_CHUNK) {
		if (r->bl_spare) {
			c = r->bl_spare;
			r->bl_spare = NULL;
		} else {
			c = aem_zalloc_atomic(sizeof(*c));
			if (!c)
				return NULL;
		}
		c->next = NULL;
		c->head = c->tail = 0;
		if (cq->bl_tail)
			cq->bl_tail->next = c;
		else
			cq->bl_head = c;
		cq->bl_tail = c;
	}
	c->sub[c->tail] = sub;
	c->gen[c->tail] = gen;
	c->buf[c->tail] = buf;
	return &c->cqe[c->tail++];
}

static void bl_chunk_done(struct aem_ring *r, struct aem_cq_core *cq)
{
	struct aem_bl_chunk *c = cq->bl_head;

	cq->bl_head = c->next;
	if (!cq->bl_head)
		cq->bl_tail = NULL;
	if (!r->bl_spare)
		r->bl_spare = c;
	else
		aem_free(c);
}

/*
 * Write backlog entry @cqe at *tail of @cq's ring (room checked by the
 * caller) and account it delivered; returns the ring entry.
 */
static struct aem_cqe *bl_emit_locked(struct aem_ring *r, struct aem_cq_core *cq,
				      const struct aem_cqe *cqe, u32 *tail, u32 *room)
{
	struct aem_cqe *e = &cq->cqes[*tail & cq->mask];

	*e = *cqe;
	(*tail)++;
	(*room)--;
	if (e->flags & AEM_CQE_F_SLOT)
		r->slot_state[e->slot - r->send_slots] = AEM_SLOT_USER;
	cq->backlog--;
	r->nr_backlog--;
	r->backlog--;
	r->delivered++;
	return e;
}

/*
 * The head of @cq's backlog waits for a free delivery slot.  Results that
 * need no slot (sub == AEM_NIL, no heap payload) may pass it: they belong to
 * no subscription, so per-subscription order holds, and one of them may be
 * what tells the application that it still holds a slot (a refused slot
 * writeback) -- held back, nothing would ever move again.  Each passed entry
 * is written at *tail and marked AEM_BL_DEAD, which the head skips.
 */
static void pass_slot_starved_locked(struct aem_ring *r, struct aem_cq_core *cq,
				     u32 *tail, u32 *room)
{
	struct aem_bl_chunk *c;
	u32 i;

	for (c = cq->bl_head; c && *room; c = c->next) {
		for (i = c->head; i < c->tail && *room; i++) {
			if (c->sub[i] != AEM_NIL || c->buf[i])
				continue;
			bl_emit_locked(r, cq, &c->cqe[i], tail, room);
			c->sub[i] = AEM_BL_DEAD;
		}
	}
}

/* Move backlog entries of one class into its CQ ring while there is room. */
static bool flush_class_locked(struct aem_ring *r, struct aem_cq_core *cq)
{
	u32 room = cq_room(r, cq);
	u32 tail = cq->tail;
	struct aem_bl_chunk *c;

	while ((c = cq->bl_head)) {
		while (c->head < c->tail) {
			u32 i = c->head, sidx = c->sub[i];
			struct aem_cqe *e;

			if (sidx == AEM_BL_DEAD) {
				c->head++;
				continue;
			}
			if (!room)
				goto out;
			if (c->buf[i]) {
				/* Its payload waited on the heap for a slot: FIFO stops until one is free. */
				u32 slot = slot_get_locked(r);

				if (slot == AEM_NIL) {
					pass_slot_starved_locked(r, cq, &tail, &room);
					goto out;
				}
				memcpy(__aem_slot_ptr(r, slot), c->buf[i], (u32)c->cqe[i].res);
				r->bl_bytes -= (u32)c->cqe[i].res;
				aem_free(c->buf[i]);
				c->buf[i] = NULL;
				c->cqe[i].slot = slot;
				r->slot_token[slot - r->send_slots] = c->cqe[i].id;
			}
			e = bl_emit_locked(r, cq, &c->cqe[i], &tail, &room);
			c->head++;
			if (sidx != AEM_NIL) {
				struct aem_sub *s = __aem_sub_at(r, sidx);

				if (s->gen == c->gen[i] && (s->state & AEM_SUB_LIVE)) {
					s->backlog--;
					s->delivered++;
					if (e->flags & AEM_CQE_F_FINAL)
						sub_end_locked(r, s);
				}
			}
		}
		bl_chunk_done(r, cq);
	}
	aem_write_once(*cq->kflags, 0);
out:
	if (tail != cq->tail) {
		cq->tail = tail;
		aem_store_release(cq->ktail, tail);	/* pairs with aem_peek_batch()'s acquire */
		return true;
	}
	return false;
}

static void fill_payload(const struct aem_ev *ev, u8 *dst, u32 len)
{
	if (ev->fill)
		ev->fill(ev->arg, 0, dst, len);
	else if (len && ev->data)
		memcpy(dst, ev->data, len);
}

static void account_drop_locked(struct aem_ring *r, struct aem_cq_core *cq, struct aem_sub *s)
{
	r->dropped++;
	cq->dropped++;
	aem_write_once(*cq->kdropped, cq->dropped);
	if (s)
		s->dropped++;
}

/*
 * Post one CQE into @r: an event into class ev->cls, a result (F_RESULT)
 * into the result ring; under cq_lock.
 * A payload longer than AEM_CQE_INLINE, or any payload with F_SLOT in
 * ev->flags, goes into a delivery slot.  When the CQ ring is full, or no
 * slot is free, the event waits in the backlog (its payload in a slot or,
 * failing that, on the heap).  Returns 0 (delivered or backlogged) or
 * -ENOSPC (dropped and counted).
 */
int __aem_post_locked(struct aem_ring *r, struct aem_sub *s, const struct aem_ev *ev)
{
	struct aem_cq_core *cq = (ev->flags & AEM_CQE_F_RESULT) ? __aem_res_cq(r) : &r->cq[ev->cls];
	u32 len = ev->len, flags = ev->flags & ~AEM_CQE_F_SLOT, slot = AEM_NIL, limit;
	bool need_slot = len > AEM_CQE_INLINE || (ev->flags & AEM_CQE_F_SLOT);
	struct aem_cqe *e, tmp;
	void *buf = NULL;

	/* Entered the core: counted before the decision, apart from its outcome. */
	r->produced++;
	if (s)
		s->produced++;
	if (need_slot) {
		if (len > r->slot_size) {
			len = r->slot_size;
			flags |= AEM_CQE_F_TRUNC;
		}
		flags |= AEM_CQE_F_SLOT;
	} else {
		if (len)
			fill_payload(ev, tmp.data, len);
		if (len < AEM_CQE_INLINE)
			memset(tmp.data + len, 0, AEM_CQE_INLINE - len);
	}
	tmp.user_data = ev->user_data;
	tmp.id = ev->id;
	tmp.res = ev->res < 0 ? ev->res : (s32)len;
	tmp.flags = flags;
	tmp.slot = 0;
	tmp.source = ev->source;
	tmp.prio = ev->cls;
	tmp.resv = 0;

	if (cq->bl_head)
		flush_class_locked(r, cq);
	if (!cq->bl_head && cq_room(r, cq)) {
		if (need_slot)
			slot = slot_get_locked(r);
		if (!need_slot || slot != AEM_NIL) {
			e = &cq->cqes[cq->tail & cq->mask];
			if (need_slot) {
				fill_payload(ev, __aem_slot_ptr(r, slot), len);
				tmp.slot = slot;
				r->slot_token[slot - r->send_slots] = ev->id;
				r->slot_state[slot - r->send_slots] = AEM_SLOT_USER;
				memcpy(e, &tmp, offsetof(struct aem_cqe, data));
			} else {
				*e = tmp;
			}
			cq->tail++;
			aem_store_release(cq->ktail, cq->tail);	/* pairs with aem_peek_batch()'s acquire */
			r->delivered++;
			if (s) {
				s->delivered++;
				if (flags & AEM_CQE_F_FINAL)
					sub_end_locked(r, s);
			}
			return 0;
		}
	}
	/*
	 * Results answer SQEs the user submitted and are never dropped for
	 * the bound alone: submission stops consuming SQEs while the backlog
	 * holds two bounds' worth (see aem_core_submit), so a result always
	 * fits under AEM_RESULT_LIMIT; asynchronous call results are bounded
	 * by the call table.
	 */
	limit = r->backlog_limit;
	if (ev->flags & AEM_CQE_F_RESULT)
		limit = AEM_RESULT_LIMIT(r);
	if (r->nr_backlog >= limit)
		goto drop;
	if (need_slot) {
		if (slot == AEM_NIL)
			slot = slot_get_locked(r);
		if (slot != AEM_NIL) {
			fill_payload(ev, __aem_slot_ptr(r, slot), len);
			tmp.slot = slot;
			r->slot_token[slot - r->send_slots] = ev->id;
		} else {
			/* Slots come back only from the consumer: hold the bytes until one does. */
			if (r->bl_bytes + len > AEM_BL_BYTES_MAX)
				goto drop;
			buf = aem_zalloc_atomic(len ? len : 1);
			if (!buf)
				goto drop;
			fill_payload(ev, buf, len);
		}
	}
	e = bl_append_locked(r, cq, s ? s->index : AEM_NIL, s ? s->gen : 0, buf);
	if (!e) {
		aem_free(buf);
		if (slot != AEM_NIL)
			__aem_slot_put_locked(r, slot);
		goto drop;
	}
	*e = tmp;
	if (buf)
		r->bl_bytes += len;
	cq->backlog++;
	r->nr_backlog++;
	r->backlog++;
	aem_write_once(*cq->kflags, AEM_CQ_F_OVERFLOW);
	if (s) {
		s->backlog++;
		if ((flags & AEM_CQE_F_FINAL) && !(s->state & AEM_SUB_DYING))
			s->state |= AEM_SUB_FINAL;
	}
	return 0;
drop:
	account_drop_locked(r, cq, s);
	if (s && (flags & AEM_CQE_F_FINAL))
		sub_end_locked(r, s);
	return -ENOSPC;
}

/* Dekker, producer half: the tail store (release) happened before; now the waiters load. */
void __aem_wake(struct aem_ring *r, bool urgent)
{
	aem_smp_mb();	/* pairs with aem_core_wait_begin() / aem_core_poll_arm() */
	if (aem_atomic_read(&r->waiters) || aem_atomic_read(&r->poll_armed))
		aem_host_wake(r, r->host, urgent);
}

/* One event for @s, its payload copied from @data or written by @fill. */
static int post_one(struct aem_ring *r, struct aem_sub *s, u32 len, u32 cqe_flags, u64 id,
		    const void *data, aem_fill_fn fill, void *arg)
{
	struct aem_ev ev = {
		.user_data = s->user_data,
		.id = id ? id : aem_sub_id(r, s),
		.flags = cqe_flags & (AEM_CQE_F_CALL | AEM_CQE_F_FINAL | AEM_CQE_F_TRUNC),
		.source = s->source,
		.cls = s->prio,
		.len = len,
		.data = data,
		.fill = fill,
		.arg = arg,
	};
	unsigned long f;
	int ret;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	ret = __aem_post_locked(r, s, &ev);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	__aem_wake(r, ev.cls == 0);
	return ret;
}

int aem_core_post_fill(struct aem_ring *r, struct aem_sub *s, u32 len, u32 cqe_flags,
		       u64 id, aem_fill_fn fill, void *arg)
{
	return post_one(r, s, len, cqe_flags, id, NULL, fill, arg);
}

int aem_core_post(struct aem_ring *r, struct aem_sub *s, const void *data, u32 len,
		  u32 cqe_flags, u64 id)
{
	return post_one(r, s, len, cqe_flags, id, data, NULL, NULL);
}

/*
 * The hot path: one lock round, one tail store and one wake check for the
 * batch.  Inline payloads are filled run by run (at most two runs: the
 * ring wraps once), so the per-event work is the header stores and what
 * the source's fill loop does; a payload longer than AEM_CQE_INLINE takes
 * a slot per event.
 */
u32 aem_core_post_batch_run(struct aem_ring *r, struct aem_sub *s, u32 n, u32 len,
			    aem_fill_run_fn fill, void *arg, u32 flags)
{
	struct aem_cq_core *cq = &r->cq[s->prio];
	bool big = len > AEM_CQE_INLINE, final = false, urgent = s->prio == 0;
	u32 i, k, room, tail, slot, mask = r->cq_mask;
	u64 id = aem_sub_id(r, s), user_data = s->user_data;
	u64 word2, word3;
	struct aem_cqe hdr, *e;
	unsigned long f;

	if (!n)
		return 0;
	hdr.user_data = user_data;
	hdr.id = id;
	hdr.flags = 0;
	if (big) {
		hdr.flags = AEM_CQE_F_SLOT;
		if (len > r->slot_size) {
			len = r->slot_size;
			hdr.flags |= AEM_CQE_F_TRUNC;
		}
	}
	hdr.res = (s32)len;
	hdr.slot = 0;
	hdr.source = s->source;
	hdr.prio = s->prio;
	hdr.resv = 0;
	memset(hdr.data, 0, sizeof(hdr.data));
	/* The header's second half as two words: res|flags, slot|source|prio|resv. */
	memcpy(&word2, (u8 *)&hdr + 16, 8);
	memcpy(&word3, (u8 *)&hdr + 24, 8);

	aem_spin_lock_irqsave(&r->cq_lock, f);
	if (cq->bl_head)
		flush_class_locked(r, cq);
	room = cq->bl_head ? 0 : cq_room(r, cq);
	k = n < room ? n : room;
	tail = cq->tail;
	if (!big) {
		u32 done = 0;

		while (done < k) {
			u32 pos = (tail + done) & mask;
			u32 run = k - done;
			u64 *w;

			if (run > r->cq_entries - pos)
				run = r->cq_entries - pos;
			e = &cq->cqes[pos];
			for (i = 0; i < run; i++) {
				w = (u64 *)&e[i];
				w[0] = user_data;
				w[1] = id;
				w[2] = word2;
				w[3] = word3;
			}
			fill(arg, done, run, e->data, sizeof(*e));
			done += run;
		}
	} else {
		for (i = 0; i < k; i++) {
			slot = slot_get_locked(r);
			if (slot == AEM_NIL)
				break;
			e = &cq->cqes[(tail + i) & mask];
			memcpy(e, &hdr, offsetof(struct aem_cqe, data));
			fill(arg, i, 1, __aem_slot_ptr(r, slot), 0);
			e->slot = slot;
			r->slot_state[slot - r->send_slots] = AEM_SLOT_USER;
			r->slot_token[slot - r->send_slots] = id;
		}
		k = i;
	}
	/* These k entered the core; each later one is counted as it enters, below. */
	r->produced += k;
	s->produced += k;
	if (k == n && (flags & AEM_POST_FINAL)) {
		cq->cqes[(tail + k - 1) & mask].flags |= AEM_CQE_F_FINAL;
		final = true;
	}
	if (k) {
		cq->tail = tail + k;
		aem_store_release(cq->ktail, tail + k);	/* pairs with aem_peek_batch()'s acquire */
		r->delivered += k;
		s->delivered += k;
	}
	/*
	 * FIT: only what the ring takes now.  Otherwise the rest goes to the
	 * backlog or is dropped; but a big payload with no free slot ends the
	 * batch: slots come back only from the consumer, so wait for them.
	 */
	if ((flags & AEM_POST_FIT) || (big && k < room && k < n))
		n = k;
	for (i = k; i < n; i++) {
		bool last = i == n - 1 && (flags & AEM_POST_FINAL);

		e = NULL;
		slot = 0;
		if (big) {
			slot = slot_get_locked(r);
			if (slot == AEM_NIL) {
				n = i;
				break;
			}
		}
		r->produced++;
		s->produced++;
		if (r->nr_backlog < r->backlog_limit)
			e = bl_append_locked(r, cq, s->index, s->gen, NULL);
		if (!e) {
			if (big)
				__aem_slot_put_locked(r, slot);
			account_drop_locked(r, cq, s);
			final |= last;
			continue;
		}
		*e = hdr;
		if (big) {
			e->slot = slot;
			r->slot_token[slot - r->send_slots] = id;
			fill(arg, i, 1, __aem_slot_ptr(r, slot), 0);
		} else {
			fill(arg, i, 1, e->data, 0);
		}
		cq->backlog++;
		r->nr_backlog++;
		r->backlog++;
		s->backlog++;
		aem_write_once(*cq->kflags, AEM_CQ_F_OVERFLOW);
		if (last) {
			e->flags |= AEM_CQE_F_FINAL;
			if (!(s->state & AEM_SUB_DYING))
				s->state |= AEM_SUB_FINAL;
		}
	}
	/* Delivered or dropped final event: the subscription ends now (@s is the core's). */
	if (final)
		sub_end_locked(r, s);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (k)
		__aem_wake(r, urgent);
	return n;
}

/* The per-event fill interface on top of runs. */
struct fill_adapter {
	aem_fill_fn	fill;
	void		*arg;
	u32		len;
};

static void fill_one_by_one(void *arg, u64 first, u32 count, u8 *dst, u32 stride)
{
	const struct fill_adapter *a = arg;
	u32 i;

	for (i = 0; i < count; i++)
		a->fill(a->arg, first + i, dst + (size_t)i * stride, a->len);
}

u32 aem_core_post_batch_flags(struct aem_ring *r, struct aem_sub *s, u32 n, u32 len,
			      aem_fill_fn fill, void *arg, u32 flags)
{
	struct fill_adapter a = {
		.fill = fill,
		.arg = arg,
		.len = len > AEM_CQE_INLINE && len > r->slot_size ? r->slot_size : len,
	};

	return aem_core_post_batch_run(r, s, n, len, fill_one_by_one, &a, flags);
}

u32 aem_core_post_batch(struct aem_ring *r, struct aem_sub *s, u32 n, u32 len,
			aem_fill_fn fill, void *arg)
{
	return aem_core_post_batch_flags(r, s, n, len, fill, arg, 0);
}

void aem_core_flush_backlog(struct aem_ring *r)
{
	bool moved = false, urgent = false;
	unsigned long f;
	u32 c;

	/*
	 * Called on every enter and wait: when nothing is backlogged and no
	 * slot was released, do not touch the completion lock the producers
	 * hammer.  Both reads are hints; a stale one only delays to the next
	 * call (or the next post, which flushes too).
	 */
	if (!aem_read_once(r->nr_backlog) &&
	    aem_load_acquire(r->sr_ktail) == aem_read_once(r->sr_head))
		return;
	aem_spin_lock_irqsave(&r->cq_lock, f);
	reclaim_locked(r);
	for (c = 0; c <= r->nr_classes; c++) {	/* the class rings and the result ring */
		if (r->cq[c].bl_head && flush_class_locked(r, &r->cq[c])) {
			moved = true;
			urgent |= c == 0;
		}
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (moved)
		__aem_wake(r, urgent);
}

void aem_core_reclaim_slots(struct aem_ring *r)
{
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	reclaim_locked(r);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

/* Unsubscribe: its backlog entries are discarded and counted dropped. Under cq_lock. */
static void discard_backlog_locked(struct aem_ring *r, struct aem_sub *s)
{
	u32 c, i;

	for (c = 0; c < r->nr_classes && s->backlog; c++) {
		struct aem_cq_core *cq = &r->cq[c];
		struct aem_bl_chunk *b;

		for (b = cq->bl_head; b && s->backlog; b = b->next) {
			for (i = b->head; i < b->tail; i++) {
				if (b->sub[i] != s->index || b->gen[i] != s->gen)
					continue;
				b->sub[i] = AEM_BL_DEAD;
				if (b->buf[i]) {
					r->bl_bytes -= (u32)b->cqe[i].res;
					aem_free(b->buf[i]);
					b->buf[i] = NULL;
				} else if (b->cqe[i].flags & AEM_CQE_F_SLOT) {
					__aem_slot_put_locked(r, b->cqe[i].slot);
				}
				cq->backlog--;
				r->nr_backlog--;
				r->backlog--;
				s->backlog--;
				account_drop_locked(r, cq, s);
			}
		}
		if (!cq->backlog)
			aem_write_once(*cq->kflags, 0);	/* only discarded entries are left */
	}
}

/* ---------------------------------------------------------------------- */
/* Waiting                                                                */

bool aem_core_want_room(struct aem_ring *r, struct aem_sub *s, u32 len)
{
	struct aem_cq_core *cq = &r->cq[s->prio];
	unsigned long f;
	bool room;

	aem_atomic_set(&r->room_wanted, 1);
	aem_smp_mb();	/* pairs with room_kick()'s caller's barrier */
	aem_spin_lock_irqsave(&r->cq_lock, f);
	room = !cq->bl_head && cq_room(r, cq);
	if (room && len > AEM_CQE_INLINE) {
		if (!r->nr_free)
			reclaim_locked(r);
		room = r->nr_free > 0;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return room;
}

/*
 * Dekker, consumer half of a producer waiting for room: the user stored
 * its CQ head (or slot ring tail) before entering, the caller issued a
 * full barrier since; now the flag loads.  Either the producer's re-check
 * in aem_core_want_room() sees the room, or this sees the flag.  Every
 * clear is followed by a kick, so a flag set again meanwhile is never lost.
 */
static void room_kick(struct aem_ring *r)
{
	if (aem_atomic_read(&r->room_wanted)) {
		aem_atomic_set(&r->room_wanted, 0);
		aem_host_gen_kick();
	}
}

bool aem_core_cq_ready(struct aem_ring *r, u32 min)
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
void aem_core_wait_begin(struct aem_ring *r)
{
	aem_atomic_inc(&r->waiters);
	aem_smp_mb();	/* pairs with __aem_wake() and aem_core_want_room() */
	room_kick(r);
}

void aem_core_wait_end(struct aem_ring *r)
{
	aem_atomic_dec_return(&r->waiters);
}

void aem_core_poll_arm(struct aem_ring *r)
{
	aem_atomic_set(&r->poll_armed, 1);
	aem_smp_mb();	/* pairs with __aem_wake() and aem_core_want_room() */
	room_kick(r);
}

bool aem_core_poll_take(struct aem_ring *r)
{
	if (!aem_atomic_read(&r->poll_armed))
		return false;
	aem_atomic_set(&r->poll_armed, 0);
	return true;
}

/* ---------------------------------------------------------------------- */
/* Submission                                                             */

static bool all_zero(const void *p, u32 n)
{
	const u8 *b = p;
	u32 i;

	for (i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void post_result(struct aem_ring *r, const struct aem_sqe *sqe, s32 res, u64 id)
{
	struct aem_ev ev = {
		.user_data = sqe->user_data,
		.id = id,
		.res = res,
		.flags = AEM_CQE_F_RESULT,
		.cls = sqe->prio < r->nr_classes ? sqe->prio : 0,
	};
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_post_locked(r, NULL, &ev);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	__aem_wake(r, ev.cls == 0);
}

static void refuse(struct aem_ring *r, const struct aem_sqe *sqe, u32 reason, int err)
{
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	r->refused[reason]++;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	r->sq_dropped++;
	aem_write_once(*r->sq_kdropped, r->sq_dropped);
	aem_write_once(*r->sq_kflags, AEM_SQ_F_REFUSED);
	post_result(r, sqe, err, 0);
}

/* Fields an opcode does not use must be zero. */
#define NEED(cond)	do { if (!(cond)) { *reason = AEM_REFUSE_FIELD; return -EINVAL; } } while (0)

static int check_plain(struct aem_ring *r, const struct aem_sqe *sqe, u32 *reason)
{
	NEED(!(sqe->flags & ~AEM_SQE_F_SILENT));
	NEED(sqe->prio < r->nr_classes);
	NEED(!sqe->source && !sqe->len && !sqe->slot && !sqe->arg);
	return 0;
}

static int op_subscribe(struct aem_ring *r, const struct aem_sqe *sqe, u32 *reason, bool *done)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s;
	unsigned long f;
	int ret;

	NEED(!(sqe->flags & ~AEM_SQE_F_SILENT));
	NEED(sqe->prio < r->nr_classes);
	NEED(!sqe->len && !sqe->target && !sqe->slot && !sqe->arg);
	NEED(sqe->source && sqe->source < AEM_SRC_LAST);
	ops = source_get(sqe->source);
	if (!ops) {
		*reason = AEM_REFUSE_FIELD;
		return -EOPNOTSUPP;
	}
	s = sub_alloc(r, sqe->source);
	if (!s) {
		aem_module_put(ops->owner);
		*reason = AEM_REFUSE_NOMEM;
		return -ENOMEM;
	}
	s->user_data = sqe->user_data;
	s->prio = sqe->prio;
	ret = ops->subscribe(r, s, sqe);
	if (ret) {
		aem_spin_lock_irqsave(&r->cq_lock, f);
		sub_free_locked(r, s);
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		aem_module_put(ops->owner);
		*reason = ret == -ENOMEM || ret == -ENOSPC ? AEM_REFUSE_NOMEM : AEM_REFUSE_FIELD;
		return ret;
	}
	/* The result names the id before any event of the subscription can. */
	if (!(sqe->flags & AEM_SQE_F_SILENT))
		post_result(r, sqe, 0, aem_sub_id(r, s));
	*done = true;
	if (ops->start)
		ops->start(r, s);
	return 0;
}

static void sub_unsubscribe(struct aem_ring *r, struct aem_sub *s, bool final_event)
{
	const struct aem_source_ops *ops = sub_ops(s);
	unsigned long f;

	/* DYING is set: the source's own final post will not free @s under us. */
	if (ops)
		ops->unsubscribe(r, s);
	aem_spin_lock_irqsave(&r->cq_lock, f);
	discard_backlog_locked(r, s);
	if (final_event) {
		struct aem_ev ev = {
			.user_data = s->user_data,
			.id = aem_sub_id(r, s),
			.flags = AEM_CQE_F_FINAL,
			.source = s->source,
			.cls = s->prio,
		};

		__aem_post_locked(r, s, &ev);
	}
	sub_free_locked(r, s);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (ops)
		aem_module_put(ops->owner);
	if (final_event)
		__aem_wake(r, false);
}

static int op_unsubscribe(struct aem_ring *r, const struct aem_sqe *sqe, u32 *reason)
{
	struct aem_sub *s;
	unsigned long f;
	int ret = check_plain(r, sqe, reason);

	if (ret)
		return ret;
	NEED(all_zero(sqe->data, sizeof(sqe->data)));
	aem_spin_lock_irqsave(&r->cq_lock, f);
	s = __aem_sub_lookup(r, sqe->target);
	if (s)
		s->state |= AEM_SUB_DYING;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (!s) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	sub_unsubscribe(r, s, false);
	return 0;
}

/*
 * Payload of a writeback/post/call SQE: checks len and the slot.  Post and
 * call take send slots; a writeback only the delivery slot its event came
 * in, which the core takes back (*took).
 */
static int sqe_payload(struct aem_ring *r, const struct aem_sqe *sqe, bool writeback,
		       const void **data, u32 *took, u32 *reason)
{
	unsigned long f;
	int ret;

	*took = AEM_NIL;
	if (!(sqe->flags & AEM_SQE_F_SLOT)) {
		NEED(sqe->len <= AEM_SQE_INLINE && !sqe->slot);
		*data = sqe->data;
		return 0;
	}
	NEED(sqe->len <= r->slot_size);
	if (!writeback) {
		if (sqe->slot >= r->send_slots) {
			*reason = AEM_REFUSE_SLOT;
			return -EINVAL;
		}
		*data = __aem_slot_ptr(r, sqe->slot);
		return 0;
	}
	aem_spin_lock_irqsave(&r->cq_lock, f);
	ret = __aem_slot_take_user(r, sqe->slot, sqe->target);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (ret) {
		*reason = AEM_REFUSE_SLOT;
		return ret;
	}
	*took = sqe->slot;
	*data = __aem_slot_ptr(r, sqe->slot);
	return 0;
}

int __aem_sqe_payload(struct aem_ring *r, const struct aem_sqe *sqe, bool writeback,
		      const void **data, u32 *took, u32 *reason)
{
	return sqe_payload(r, sqe, writeback, data, took, reason);
}

void __aem_slot_give_back(struct aem_ring *r, u32 slot)
{
	unsigned long f;

	if (slot == AEM_NIL)
		return;
	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_slot_put_locked(r, slot);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

/* A refused writeback changes nothing: the slot it named is the user's again. */
void __aem_slot_untake(struct aem_ring *r, u32 slot)
{
	unsigned long f;

	if (slot == AEM_NIL)
		return;
	aem_spin_lock_irqsave(&r->cq_lock, f);
	r->slot_state[slot - r->send_slots] = AEM_SLOT_USER;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

/* Sources see at most this many bytes of a writeback: their arguments, never bulk data. */
#define AEM_SRC_WB_MAX	64

/* __aem_sub_lookup() for callers that do not hold cq_lock. */
static struct aem_sub *sub_lookup(struct aem_ring *r, u64 id)
{
	struct aem_sub *s;
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	s = __aem_sub_lookup(r, id);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	return s;
}

static int op_writeback(struct aem_ring *r, const struct aem_sqe *sqe, u32 *reason)
{
	const struct aem_source_ops *ops;
	u8 buf[AEM_SRC_WB_MAX];
	const void *data;
	struct aem_sub *s;
	u32 took, len;
	int ret;

	NEED(!(sqe->flags & ~AEM_SQE_FLAGS_ALL));
	NEED(sqe->prio < r->nr_classes && !sqe->source && !sqe->arg);
	if (AEM_ID_KIND(sqe->target) == AEM_ID_KIND_CALL)
		return __aem_writeback_call(r, sqe, reason);
	if (AEM_ID_KIND(sqe->target) != AEM_ID_KIND_SUB) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	s = sub_lookup(r, sqe->target);
	if (!s) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	ops = sub_ops(s);
	if (!ops || !ops->writeback) {
		*reason = AEM_REFUSE_FIELD;
		return -EOPNOTSUPP;
	}
	ret = sqe_payload(r, sqe, true, &data, &took, reason);
	if (ret)
		return ret;
	len = sqe->len < AEM_SRC_WB_MAX ? sqe->len : AEM_SRC_WB_MAX;
	memcpy(buf, data, len);
	ret = ops->writeback(r, s, sqe, buf, len);
	if (ret) {
		__aem_slot_untake(r, took);
		*reason = ret == -ENOENT ? AEM_REFUSE_ID : AEM_REFUSE_FIELD;
		return ret;
	}
	__aem_slot_give_back(r, took);
	return 0;
}

static int op_set(struct aem_ring *r, const struct aem_sqe *sqe, u8 source, u32 *reason)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s;
	int ret = check_plain(r, sqe, reason);

	if (ret)
		return ret;
	s = sub_lookup(r, sqe->target);
	if (!s) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	ops = sub_ops(s);
	NEED(s->source == source && ops && ops->writeback);
	ret = ops->writeback(r, s, sqe, sqe->data, sizeof(sqe->data));
	if (ret)
		*reason = ret == -ENOENT ? AEM_REFUSE_ID : AEM_REFUSE_FIELD;
	return ret;
}

static void handle_sqe(struct aem_ring *r, const struct aem_sqe *sqe)
{
	u32 reason = AEM_REFUSE_FIELD;
	bool done = false;
	u64 id = 0;
	int ret;

	switch (sqe->opcode) {
	case AEM_OP_NOP:
		ret = check_plain(r, sqe, &reason);
		if (!ret && (sqe->target || !all_zero(sqe->data, sizeof(sqe->data)))) {
			reason = AEM_REFUSE_FIELD;
			ret = -EINVAL;
		}
		break;
	case AEM_OP_SUBSCRIBE:
		ret = op_subscribe(r, sqe, &reason, &done);
		break;
	case AEM_OP_UNSUBSCRIBE:
		ret = op_unsubscribe(r, sqe, &reason);
		break;
	case AEM_OP_WRITEBACK:
		ret = op_writeback(r, sqe, &reason);
		break;
	case AEM_OP_POST:
		ret = __aem_op_post(r, sqe, &reason);
		break;
	case AEM_OP_CALL:
		ret = __aem_op_call(r, sqe, &reason);
		done = ret == 0;	/* the reply is the result */
		break;
	case AEM_OP_TIMER_SET:
		ret = op_set(r, sqe, AEM_SRC_TIMER, &reason);
		break;
	case AEM_OP_GEN_SET:
		ret = op_set(r, sqe, AEM_SRC_GEN, &reason);
		break;
	default:
		reason = AEM_REFUSE_OPCODE;
		ret = -EINVAL;
		break;
	}
	if (ret < 0)
		refuse(r, sqe, reason, ret);
	else if (!done && !(sqe->flags & AEM_SQE_F_SILENT))
		post_result(r, sqe, 0, id);
}

/* The one read of an SQE: word by word, each word once. */
static void sqe_copy(struct aem_sqe *dst, const struct aem_sqe *src)
{
	const u64 *s = (const u64 *)src;
	u64 *d = (u64 *)dst;
	u32 i;

	for (i = 0; i < sizeof(*dst) / sizeof(u64); i++)
		d[i] = aem_read_once(s[i]);
}

int aem_core_submit(struct aem_ring *r, u32 to_submit)
{
	struct aem_sqe sqe;
	u32 head, tail, avail, i;
	unsigned long f;

	aem_smp_mb();	/* the user's CQ head and slot releases, then the flag: pairs with aem_core_want_room() */
	room_kick(r);
	aem_core_flush_backlog(r);
	/* Polling loops enter with nothing to submit: no mutex for them. */
	if (!to_submit || aem_load_acquire(r->sq_ktail) == aem_read_once(r->sq_head))
		return 0;
	aem_mutex_lock(&r->submit_lock);
	head = r->sq_head;
	tail = aem_load_acquire(r->sq_ktail);	/* pairs with aem_sq_flush()'s release */
	avail = tail - head;
	if (unlikely(avail > r->sq_entries)) {
		aem_spin_lock_irqsave(&r->cq_lock, f);
		r->refused[AEM_REFUSE_INDEX]++;
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		/* Backwards: consume nothing until the tail is sane again; ahead: one ring's worth. */
		avail = (s32)avail < 0 ? 0 : r->sq_entries;
	}
	if (to_submit > avail)
		to_submit = avail;
	for (i = 0; i < to_submit; i++) {
		/*
		 * Every SQE is answered: while the backlog is this full, leave
		 * the rest in the SQ ring (the user reaps, then submits again)
		 * rather than consume SQEs whose results could not be kept.
		 */
		if (unlikely(aem_read_once(r->nr_backlog) >= 2 * r->backlog_limit))
			break;
		sqe_copy(&sqe, &r->sqes[(head + i) & r->sq_mask]);
		handle_sqe(r, &sqe);
	}
	to_submit = i;
	if (to_submit) {
		aem_write_once(r->sq_head, head + to_submit);
		aem_store_release(r->sq_khead, head + to_submit);	/* pairs with aem_get_sqe()'s acquire */
		aem_write_once(r->sqes_done, r->sqes_done + to_submit);
	}
	aem_mutex_unlock(&r->submit_lock);
	return (int)to_submit;
}

/* ---------------------------------------------------------------------- */
/* Statistics                                                             */

int aem_core_sub_stats(struct aem_ring *r, struct aem_sub_stats *st)
{
	struct aem_sub *s;
	unsigned long f;
	int ret = -ENOENT;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	s = sub_find(r, st->id, 0);
	if (s) {
		u64 sum = s->delivered + s->backlog + s->dropped;

		st->delivered = s->delivered;
		st->backlog = s->backlog;
		st->dropped = s->dropped;
		/* s->produced holds the count's low 32 bits: widen it around the outcome sum. */
		st->produced = sum + (u64)(s64)(s32)(s->produced - (u32)sum);
		ret = 0;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	memset(st->resv, 0, sizeof(st->resv));
	return ret;
}

void aem_core_ring_stats(struct aem_ring *r, struct aem_ring_stats *st)
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
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	st->sqes = aem_read_once(r->sqes_done);
	/* Refused SQEs are counted under the submit path's own counter too. */
}

/* ---------------------------------------------------------------------- */
/* Ring life cycle                                                        */

int aem_core_ring_create(const struct aem_params *p, const struct aem_layout *l,
			 void *regions[AEM_NR_REGIONS], void *host,
			 struct aem_ring **out, u32 *ring_id)
{
	u8 *rings = regions[AEM_REGION_RINGS];
	struct aem_ring *r;
	u32 c, i;
	int ret = -ENOMEM;

	(void)p;
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
	r->host = host;
	r->payload = regions[AEM_REGION_PAYLOAD];
	r->sqes = regions[AEM_REGION_SQES];

	r->sq_khead = (u32 *)(rings + AEM_RB_SQ + AEM_RB_HEAD);
	r->sq_ktail = (u32 *)(rings + AEM_RB_SQ + AEM_RB_TAIL);
	r->sq_kflags = (u32 *)(rings + AEM_RB_SQ + AEM_RB_FLAGS);
	r->sq_kdropped = (u32 *)(rings + AEM_RB_SQ + AEM_RB_DROPPED);
	*(u32 *)(rings + AEM_RB_SQ + AEM_RB_MASK) = r->sq_mask;
	*(u32 *)(rings + AEM_RB_SQ + AEM_RB_ENTRIES) = r->sq_entries;
	for (c = 0; c <= r->nr_classes; c++) {
		/* The class rings, then the result ring: its CQEs follow theirs. */
		u8 *b = rings + (c < r->nr_classes ? AEM_RB_CQ(c) : AEM_RB_RES);
		struct aem_cq_core *cq = &r->cq[c];

		cq->entries = c < r->nr_classes ? r->cq_entries : l->res_entries;
		cq->mask = cq->entries - 1;

		cq->khead = (u32 *)(b + AEM_RB_HEAD);
		cq->ktail = (u32 *)(b + AEM_RB_TAIL);
		cq->kflags = (u32 *)(b + AEM_RB_FLAGS);
		cq->kdropped = (u32 *)(b + AEM_RB_DROPPED);
		cq->cqes = (struct aem_cqe *)regions[AEM_REGION_CQES] + (size_t)c * r->cq_entries;
		*(u32 *)(b + AEM_RB_MASK) = cq->mask;
		*(u32 *)(b + AEM_RB_ENTRIES) = cq->entries;
	}
	r->sr_khead = (u32 *)(rings + AEM_RB_SLOT + AEM_RB_HEAD);
	r->sr_ktail = (u32 *)(rings + AEM_RB_SLOT + AEM_RB_TAIL);
	r->sr_array = (u32 *)(rings + AEM_RB_SLOT_ARRAY);
	*(u32 *)(rings + AEM_RB_SLOT + AEM_RB_MASK) = r->sr_mask;
	*(u32 *)(rings + AEM_RB_SLOT + AEM_RB_ENTRIES) = r->sr_entries;

	r->slot_free = aem_kvzalloc(((size_t)r->slot_count + 1) * sizeof(u32));
	r->slot_state = aem_kvzalloc((size_t)r->slot_count + 1);
	r->slot_token = aem_kvzalloc(((size_t)r->slot_count + 1) * sizeof(u64));
	r->sub_chunks = aem_kvzalloc(AEM_SUB_NR_CHUNKS * sizeof(struct aem_sub *));
	if (!r->slot_free || !r->slot_state || !r->slot_token || !r->sub_chunks)
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
	aem_kvfree(r->sub_chunks);
	aem_kvfree(r->slot_token);
	aem_kvfree(r->slot_state);
	aem_kvfree(r->slot_free);
	aem_free(r);
	return ret;
}

void aem_core_ring_destroy(struct aem_ring *r)
{
	unsigned long f;
	u32 c, i, n;

	__aem_ring_unregister(r);	/* no new posts or calls; in-flight ones are done */
	__aem_calls_ring_gone(r);
	aem_mutex_lock(&r->submit_lock);
	aem_spin_lock_irqsave(&r->cq_lock, f);
	r->closing = true;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	for (c = 0; c < r->nr_sub_chunks; c++) {
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
				ops = sub_ops(s);
				sub_free_locked(r, s);
				aem_spin_unlock_irqrestore(&r->cq_lock, f);
				if (ops)
					aem_module_put(ops->owner);
				continue;
			}
			s->state |= AEM_SUB_DYING;
			aem_spin_unlock_irqrestore(&r->cq_lock, f);
			sub_unsubscribe(r, s, false);
		}
	}
	for (i = 1; i < AEM_SRC_LAST; i++) {
		const struct aem_source_ops *ops = aem_srcs[i];

		if (ops && ops->ring_release)
			ops->ring_release(r);
	}
	aem_mutex_unlock(&r->submit_lock);

	for (c = 0; c <= r->nr_classes; c++) {
		while (r->cq[c].bl_head) {
			struct aem_bl_chunk *b = r->cq[c].bl_head;

			r->cq[c].bl_head = b->next;
			for (i = b->head; i < b->tail; i++)
				aem_free(b->buf[i]);
			aem_free(b);
		}
	}
	aem_free(r->bl_spare);
	n = r->nr_sub_chunks;
	for (c = 0; c < n; c++)
		aem_kvfree(r->sub_chunks[c]);
	aem_kvfree(r->sub_chunks);
	aem_kvfree(r->slot_token);
	aem_kvfree(r->slot_state);
	aem_kvfree(r->slot_free);
	aem_mutex_destroy(&r->submit_lock);
	aem_free(r);
}

/* ---------------------------------------------------------------------- */
/* Source unregistration, init                                            */

void aem_core_unregister_source(const struct aem_source_ops *ops)
{
	struct aem_ring *r;
	unsigned long f;
	u32 pos = 0, c, i;

	aem_spin_lock_irqsave(&aem_src_lock, f);
	if (!ops || ops->source >= AEM_SRC_LAST || aem_srcs[ops->source] != ops) {
		aem_spin_unlock_irqrestore(&aem_src_lock, f);
		return;
	}
	aem_src_closing[ops->source] = true;	/* no new subscriptions */
	aem_spin_unlock_irqrestore(&aem_src_lock, f);

	while ((r = __aem_ring_iter(&pos))) {
		aem_mutex_lock(&r->submit_lock);
		for (c = 0; c < r->nr_sub_chunks; c++) {
			for (i = 0; i < AEM_SUB_CHUNK; i++) {
				struct aem_sub *s = &r->sub_chunks[c][i];
				bool mine;

				aem_spin_lock_irqsave(&r->cq_lock, f);
				mine = s->source == ops->source && (s->state & AEM_SUB_LIVE) &&
				       !(s->state & (AEM_SUB_DYING | AEM_SUB_FINAL));
				if (mine)
					s->state |= AEM_SUB_DYING;
				aem_spin_unlock_irqrestore(&r->cq_lock, f);
				if (mine)
					sub_unsubscribe(r, s, true);
			}
		}
		if (ops->ring_release)
			ops->ring_release(r);
		aem_mutex_unlock(&r->submit_lock);
		__aem_ring_put(r);
	}

	aem_spin_lock_irqsave(&aem_src_lock, f);
	aem_srcs[ops->source] = NULL;
	aem_src_closing[ops->source] = false;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
}

int aem_core_init(void)
{
	int ret;

	if (aem_core_inited)
		return 0;
	aem_spin_init(&aem_src_lock);
	ret = __aem_rings_init();
	if (ret)
		return ret;
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
