// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Posting into the completion rings and the overflow backlog.  One path,
 * __aem_post_locked(), takes every CQE in: a source's single event or
 * batch, a message, a result.  It fills the ring while there is room,
 * queues the rest in the ring's backlog (FIFO per ring) within its bound
 * and the ring's memory charge (mem.c), and drops and counts past them.  The backlog flushes into the ring
 * on every post, enter and wait.
 */
#include "aem_core_int.h"

struct aem_cqe *__aem_bl_append_locked(struct aem_ctx *r, struct aem_cq_core *cq,
				       u32 sub, u16 gen, void *buf)
{
	struct aem_bl_chunk *c = cq->bl_tail;

	if (!c || c->tail == AEM_BL_CHUNK) {
		if (r->bl_spare) {
			c = r->bl_spare;
			r->bl_spare = c->next;
			r->nr_bl_spare--;
		} else {
			/*
			 * Charged first: past the ring's account an event is
			 * dropped as past the backlog bound; a result is never
			 * refused (submission stops instead, see aem_core_submit).
			 */
			if (cq == __aem_res_cq(r))
				__aem_mem_force_locked(r, AEM_BL_CHUNK_BYTES);
			else if (!__aem_mem_charge_locked(r, AEM_BL_CHUNK_BYTES))
				return NULL;
			c = aem_zalloc_atomic(sizeof(*c));
			if (!c) {
				__aem_mem_uncharge_locked(r, AEM_BL_CHUNK_BYTES);
				return NULL;
			}
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

static void bl_chunk_done(struct aem_ctx *r, struct aem_cq_core *cq)
{
	struct aem_bl_chunk *c = cq->bl_head;

	cq->bl_head = c->next;
	if (!cq->bl_head)
		cq->bl_tail = NULL;
	if (r->nr_bl_spare < AEM_BL_SPARES(r)) {
		c->next = r->bl_spare;
		r->bl_spare = c;
		r->nr_bl_spare++;
	} else {
		aem_free(c);
		__aem_mem_uncharge_locked(r, AEM_BL_CHUNK_BYTES);
	}
}

/* A backlog payload's heap copy is done with: its bytes leave the count and the charge. */
void __aem_bl_buf_free_locked(struct aem_ctx *r, struct aem_bl_chunk *c, u32 i)
{
	u32 len = (u32)c->cqe[i].res;

	r->bl_bytes -= len;
	aem_free(c->buf[i]);
	c->buf[i] = NULL;
	__aem_mem_uncharge_locked(r, len);
}

/*
 * Write backlog entry @i of chunk @c (and its sender) at *tail of @cq's
 * ring (room checked by the caller) and account it delivered; returns the
 * ring entry.
 */
static struct aem_cqe *bl_emit_locked(struct aem_ctx *r, struct aem_cq_core *cq,
				      const struct aem_bl_chunk *c, u32 i, u32 *tail, u32 *room)
{
	struct aem_cqe *e = &cq->cqes[*tail & cq->mask];

	*e = c->cqe[i];
	if ((e->flags & AEM_CQE_F_SENDER) && cq->senders)
		cq->senders[*tail & cq->mask] = c->snd[i];
	(*tail)++;
	(*room)--;
	if (e->flags & AEM_CQE_F_SLOT)
		r->slot_state[__aem_slot_d(r, e->slot)] = AEM_SLOT_USER;
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
static void pass_slot_starved_locked(struct aem_ctx *r, struct aem_cq_core *cq,
				     u32 *tail, u32 *room)
{
	struct aem_bl_chunk *c;
	u32 i;

	for (c = cq->bl_head; c && *room; c = c->next) {
		for (i = c->head; i < c->tail && *room; i++) {
			if (c->sub[i] != AEM_NIL || c->buf[i])
				continue;
			bl_emit_locked(r, cq, c, i, tail, room);
			c->sub[i] = AEM_BL_DEAD;
		}
	}
}

/*
 * @s ended by itself: its last event was delivered or dropped.  Its counts
 * go to the SUBSCRIBE that asked for them (unless an unsubscribe owns the
 * end: it answers with them), then the entry is freed.  Callers publish the
 * final event's tail after this, so a reader that has seen the final event
 * finds the end result in the result ring (or its backlog).
 */
static void sub_end_locked(struct aem_ctx *r, struct aem_sub *s)
{
	if ((s->state & (AEM_SUB_END_STATS | AEM_SUB_DYING)) == AEM_SUB_END_STATS)
		__aem_post_counts_locked(r, s, NULL);
	__aem_sub_end_locked(r, s);
}

/* Move backlog entries of one class into its CQ ring while there is room. */
bool __aem_flush_class_locked(struct aem_ctx *r, struct aem_cq_core *cq)
{
	u32 room = __aem_cq_room_locked(r, cq);
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
				u32 slot = __aem_slot_get_locked(r);

				if (slot == AEM_NIL) {
					pass_slot_starved_locked(r, cq, &tail, &room);
					goto out;
				}
				memcpy(__aem_slot_ptr(r, slot), c->buf[i], (u32)c->cqe[i].res);
				__aem_bl_buf_free_locked(r, c, i);
				c->cqe[i].slot = slot;
				r->slot_token[__aem_slot_d(r, slot)] = c->cqe[i].id;
			}
			e = bl_emit_locked(r, cq, c, i, &tail, &room);
			c->head++;
			if (sidx != AEM_NIL) {
				struct aem_sub *s = __aem_sub_at(r, sidx);

				if (s->gen == c->gen[i] && (s->state & AEM_SUB_LIVE)) {
					s->backlog--;
					s->delivered++;
					/* Its final event, or the last one queued before a dropped final event. */
					if ((e->flags & AEM_CQE_F_FINAL) ||
					    (!s->backlog && (s->state & AEM_SUB_FINAL)))
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

/* Payloads of events @first.. of @p, @count of them @stride bytes apart. */
static void fill_run(const struct aem_post *p, u64 first, u32 count, u8 *dst, u32 stride, u32 len)
{
	u32 i;

	if (p->fill) {
		p->fill(p->arg, first, count, dst, stride);
		return;
	}
	for (i = 0; i < count && len; i++)
		memcpy(dst + (size_t)i * stride, p->data, len);
}

/* Version 4 msg events: the sender beside the CQE at ring position @pos (see aem.h). */
static void put_sender(struct aem_cq_core *cq, u32 pos, const struct aem_post *p)
{
	if (p->sender && cq->senders)
		cq->senders[pos & cq->mask] = *p->sender;
}

void __aem_account_drop_locked(struct aem_ctx *r, struct aem_cq_core *cq, struct aem_sub *s)
{
	r->dropped++;
	cq->dropped++;
	aem_write_once(*cq->kdropped, cq->dropped);
	if (s)
		s->dropped++;
}

void aem_core_lost(struct aem_ctx *r, struct aem_sub *s, u32 n)
{
	struct aem_cq_core *cq = &r->cq[s->prio];
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	for (; n; n--) {
		r->produced++;
		s->produced++;
		__aem_account_drop_locked(r, cq, s);
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
}

/*
 * The one posting path; under cq_lock.  @s is NULL for a result.  Events
 * are produced in order: those the ring has room for (and, for payloads
 * beyond AEM_CQE_INLINE, a free delivery slot) are written in place with
 * one tail store; the rest go to the backlog or are dropped past its
 * bound.  A payload that finds no free slot ends the batch there (the
 * source retries later: slots return only from the consumer), unless
 * AEM_POST_HOLD keeps the bytes on the heap in the backlog until one is
 * free.  An event the backlog cannot take for want of memory is dropped
 * and counted, or with AEM_POST_KEEP not produced (the batch ends there).
 * The caller wakes after unlocking when out->wake says a tail moved.
 */
void __aem_post_locked(struct aem_ctx *r, struct aem_sub *s, const struct aem_post *p,
		       struct aem_posted *out)
{
	bool result = p->flags & AEM_CQE_F_RESULT, final_mode = p->mode & AEM_POST_FINAL;
	struct aem_cq_core *cq = result ? __aem_res_cq(r) : &r->cq[p->cls];
	bool need_slot = p->len > AEM_CQE_INLINE || (p->flags & AEM_CQE_F_SLOT), final = false;
	u32 n = p->n, len = p->len, mask = cq->mask, room, tail, k, i, slot, limit, bl_bytes_max;
	struct aem_cqe hdr, *e;
	u64 word2, word3;

	out->produced = out->dropped = 0;
	out->wake = false;
	if (!n)
		return;
	/*
	 * One inline event, nothing backlogged, room in the ring (a timer's
	 * firing, a result): straight into its entry.  The same outcome as the
	 * general path below without its run and backlog bookkeeping, which
	 * would otherwise cost a firing a third more instructions.
	 */
	if (n == 1 && !need_slot && !cq->bl_head && __aem_cq_room_locked(r, cq)) {
		tail = cq->tail;
		e = &cq->cqes[tail & mask];
		e->user_data = p->user_data;
		e->id = p->id;
		e->res = p->res || (p->flags & AEM_CQE_F_STATS) ? p->res : (s32)len;
		e->flags = (p->flags & ~(AEM_CQE_F_SLOT | AEM_CQE_F_FINAL)) |
			   (final_mode ? AEM_CQE_F_FINAL : 0);
		e->slot = 0;
		e->source = p->source;
		e->prio = p->cls;
		e->resv = 0;
		memset(e->data, 0, sizeof(e->data));
		fill_run(p, 0, 1, e->data, 0, len);
		put_sender(cq, tail, p);
		cq->tail = tail + 1;
		r->produced++;
		r->delivered++;
		if (s) {
			s->produced++;
			s->delivered++;
			if (final_mode)
				sub_end_locked(r, s);	/* before the tail: see sub_end_locked() */
		}
		aem_store_release(cq->ktail, tail + 1);	/* pairs with aem_peek_batch()'s acquire */
		out->produced = 1;
		out->wake = true;
		return;
	}
	hdr.user_data = p->user_data;
	hdr.id = p->id;
	hdr.flags = p->flags & ~(AEM_CQE_F_SLOT | AEM_CQE_F_FINAL);
	if (need_slot) {
		hdr.flags |= AEM_CQE_F_SLOT;
		if (len > r->slot_size) {
			len = r->slot_size;
			hdr.flags |= AEM_CQE_F_TRUNC;
		}
	}
	hdr.res = p->res || (p->flags & AEM_CQE_F_STATS) ? p->res : (s32)len;
	hdr.slot = 0;
	hdr.source = p->source;
	hdr.prio = p->cls;
	hdr.resv = 0;	/* hdr.data stays unset: only the header is ever copied from hdr */
	/* The header's second half as two words: res|flags, slot|source|prio|resv. */
	memcpy(&word2, (u8 *)&hdr + 16, 8);
	memcpy(&word3, (u8 *)&hdr + 24, 8);

	if (cq->bl_head)
		out->wake = __aem_flush_class_locked(r, cq);
	room = cq->bl_head ? 0 : __aem_cq_room_locked(r, cq);
	k = n < room ? n : room;
	tail = cq->tail;
	if (!need_slot) {
		/* Run by run (the ring wraps at most once): the per-event work is four stores. */
		u32 done = 0;

		while (done < k) {
			u32 pos = (tail + done) & mask, run = k - done;

			if (run > cq->entries - pos)
				run = cq->entries - pos;
			e = &cq->cqes[pos];
			for (i = 0; i < run; i++) {
				u64 *w = (u64 *)&e[i];

				w[0] = hdr.user_data;
				w[1] = hdr.id;
				w[2] = word2;
				w[3] = word3;
				/* Constant-size zeroing is four stores; fill_run() then writes len bytes. */
				if (len < AEM_CQE_INLINE)
					w[4] = w[5] = w[6] = w[7] = 0;
			}
			fill_run(p, done, run, e->data, sizeof(*e), len);
			for (i = 0; p->sender && i < run; i++)
				put_sender(cq, tail + done + i, p);
			done += run;
		}
	} else {
		for (i = 0; i < k; i++) {
			slot = __aem_slot_get_locked(r);
			if (slot == AEM_NIL)
				break;
			e = &cq->cqes[(tail + i) & mask];
			memcpy(e, &hdr, offsetof(struct aem_cqe, data));
			e->slot = slot;
			put_sender(cq, tail + i, p);
			fill_run(p, i, 1, __aem_slot_ptr(r, slot), 0, len);
			r->slot_state[__aem_slot_d(r, slot)] = AEM_SLOT_USER;
			r->slot_token[__aem_slot_d(r, slot)] = p->id;
		}
		k = i;
	}
	/* These k entered the core; each later one is counted as it enters, below. */
	r->produced += k;
	if (s)
		s->produced += k;
	if (k) {
		if (k == n && final_mode) {
			cq->cqes[(tail + k - 1) & mask].flags |= AEM_CQE_F_FINAL;
			final = true;
		}
		cq->tail = tail + k;
		r->delivered += k;
		if (s)
			s->delivered += k;
		if (final && s) {
			/* The whole batch is in the ring (n == k): nothing below touches @s. */
			sub_end_locked(r, s);	/* before the tail: see sub_end_locked() */
			s = NULL;
		}
		aem_store_release(cq->ktail, tail + k);	/* pairs with aem_peek_batch()'s acquire */
		out->wake = true;
	}
	/*
	 * FIT: only what the ring takes now.  Otherwise the rest goes to the
	 * backlog or is dropped; a payload with no free slot ends the batch.
	 */
	if ((p->mode & AEM_POST_FIT) ||
	    (need_slot && k < room && k < n && !(p->mode & AEM_POST_HOLD)))
		n = k;
	/*
	 * Results answer SQEs the user submitted and are never dropped for
	 * the events' bound alone: submission stops consuming SQEs while the
	 * backlog holds two bounds' worth (see aem_core_submit), so a result
	 * always fits under AEM_RESULT_LIMIT; asynchronous call results are
	 * bounded by the call table.
	 */
	limit = result ? AEM_RESULT_LIMIT(r) :
		(p->mode & AEM_POST_MSG) ? AEM_MSG_BACKLOG(r) : r->backlog_limit;
	bl_bytes_max = (p->mode & AEM_POST_MSG) ? AEM_MSG_BL_BYTES : AEM_BL_BYTES_MAX;
	for (i = k; i < n; i++) {
		bool last = final_mode && i == n - 1;
		void *buf = NULL;

		slot = AEM_NIL;
		if (need_slot) {
			slot = __aem_slot_get_locked(r);
			if (slot == AEM_NIL && !(p->mode & AEM_POST_HOLD)) {
				n = i;
				break;
			}
		}
		e = NULL;
		if (r->nr_backlog < limit) {
			/*
			 * Slots come back only from the consumer: hold the bytes
			 * until one does, within the byte bound and the charge.
			 */
			if (need_slot && slot == AEM_NIL && r->bl_bytes + len <= bl_bytes_max &&
			    __aem_mem_charge_locked(r, len)) {
				buf = aem_zalloc_atomic(len ? len : 1);
				if (!buf)
					__aem_mem_uncharge_locked(r, len);
			}
			if (!need_slot || slot != AEM_NIL || buf)
				e = __aem_bl_append_locked(r, cq, s ? s->index : AEM_NIL, s ? s->gen : 0, buf);
		}
		if (!e) {
			if (buf) {
				aem_free(buf);
				__aem_mem_uncharge_locked(r, len);
			}
			if (slot != AEM_NIL)
				__aem_slot_put_locked(r, slot);
			if (p->mode & AEM_POST_KEEP) {
				/* Not produced: the poster is told (and keeps it), the target sees nothing. */
				n = i;
				break;
			}
			r->produced++;
			if (s)
				s->produced++;
			__aem_account_drop_locked(r, cq, s);
			out->dropped++;
			final |= last;
			continue;
		}
		r->produced++;
		if (s)
			s->produced++;
		memcpy(e, &hdr, offsetof(struct aem_cqe, data));
		memset(e->data, 0, sizeof(e->data));
		if (slot != AEM_NIL) {
			e->slot = slot;
			r->slot_token[__aem_slot_d(r, slot)] = p->id;
			fill_run(p, i, 1, __aem_slot_ptr(r, slot), 0, len);
		} else if (buf) {
			fill_run(p, i, 1, buf, 0, len);
			r->bl_bytes += len;
		} else {
			fill_run(p, i, 1, e->data, 0, len);
		}
		if (p->sender)
			cq->bl_tail->snd[e - cq->bl_tail->cqe] = *p->sender;	/* e is the tail chunk's */
		cq->backlog++;
		r->nr_backlog++;
		r->backlog++;
		aem_write_once(*cq->kflags, AEM_CQ_F_OVERFLOW);
		if (s)
			s->backlog++;
		if (last) {
			e->flags |= AEM_CQE_F_FINAL;
			if (s && !(s->state & AEM_SUB_DYING))
				s->state |= AEM_SUB_FINAL;
		}
	}
	out->produced = n;
	/*
	 * A dropped final event ends the subscription now, or once the events
	 * queued before it have left the backlog: then its counts are final.
	 */
	if (final && s) {
		if (s->backlog && !(s->state & AEM_SUB_DYING))
			s->state |= AEM_SUB_FINAL;
		else
			sub_end_locked(r, s);
	}
}

/*
 * A result with @s's counts (AEM_CQE_F_STATS, res 0): the answer to the
 * UNSUBSCRIBE @sqe, or with @sqe NULL the end result of a subscription
 * subscribed with AEM_SQE_F_END_STATS (user_data: the SUBSCRIBE's, which is
 * the tag).  Under cq_lock, before @s is freed.  Returns whether a tail
 * moved (wake after unlocking).
 */
bool __aem_post_counts_locked(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	struct aem_sub_counts c;
	struct aem_posted out;
	struct aem_post p = {
		.user_data = sqe ? sqe->user_data : s->user_data,
		.id = aem_sub_id(r, s),
		.flags = AEM_CQE_F_RESULT | AEM_CQE_F_STATS,
		.source = s->source,
		.cls = sqe ? (sqe->prio < r->nr_classes ? sqe->prio : 0) : s->prio,
		.len = sizeof(c),
		.n = 1,
		.data = &c,
	};

	__aem_sub_counts_locked(s, &c);
	__aem_post_locked(r, NULL, &p, &out);
	return out.wake;
}

/* Lock, post, unlock, wake: for posters that hold no completion lock. */
static void post(struct aem_ctx *r, struct aem_sub *s, const struct aem_post *p,
		 struct aem_posted *out)
{
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_post_locked(r, s, p, out);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (out->wake)
		__aem_wake(r, p->cls == 0);
}

/* A result (p->flags has AEM_CQE_F_RESULT) into the result ring of @r. */
void __aem_post_result(struct aem_ctx *r, const struct aem_post *p)
{
	struct aem_posted out;

	post(r, NULL, p, &out);
}

/* The result of @sqe: @res, and @id (a new subscription's) in the CQE's id. */
void __aem_sqe_result(struct aem_ctx *r, const struct aem_sqe *sqe, s32 res, u64 id)
{
	struct aem_post p = {
		.user_data = sqe->user_data,
		.id = id,
		.res = res,
		.flags = AEM_CQE_F_RESULT,
		.cls = sqe->prio < r->nr_classes ? sqe->prio : 0,
		.n = 1,
	};

	__aem_post_result(r, &p);
}

/*
 * @n successes (res 0) of SQEs with these user_data and classes (and ids,
 * new subscriptions', unless @id is NULL), in one lock round of @r's
 * result ring and one wake-up.
 */
void __aem_post_results(struct aem_ctx *r, const u64 *user_data, const u8 *cls, const u64 *id,
			u32 n)
{
	struct aem_post p = { .flags = AEM_CQE_F_RESULT, .n = 1 };
	struct aem_posted out;
	bool wake = false, urgent = false;
	unsigned long f;
	u32 i;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	for (i = 0; i < n; i++) {
		p.user_data = user_data[i];
		p.cls = cls[i] < r->nr_classes ? cls[i] : 0;
		p.id = id ? id[i] : 0;
		__aem_post_locked(r, NULL, &p, &out);
		wake |= out.wake;
		urgent |= out.wake && p.cls == 0;
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (wake)
		__aem_wake(r, urgent);
}

int aem_core_post(struct aem_ctx *r, struct aem_sub *s, const void *data, u32 len,
		  u32 cqe_flags, u64 id)
{
	struct aem_post p = {
		.user_data = s->user_data,
		.id = id ? id : aem_sub_id(r, s),
		.flags = cqe_flags & (AEM_CQE_F_CALL | AEM_CQE_F_TRUNC),
		.source = s->source,
		.cls = s->prio,
		.len = len,
		.n = 1,
		.mode = AEM_POST_HOLD | ((cqe_flags & AEM_CQE_F_FINAL) ? AEM_POST_FINAL : 0),
		.data = data,
	};
	struct aem_posted out;

	post(r, s, &p, &out);
	return out.dropped ? -ENOSPC : 0;
}

u32 aem_core_post_batch_run(struct aem_ctx *r, struct aem_sub *s, u32 n, u32 len,
			    aem_fill_run_fn fill, void *arg, u32 flags)
{
	struct aem_post p = {
		.user_data = s->user_data,
		.id = aem_sub_id(r, s),
		.source = s->source,
		.cls = s->prio,
		.len = len,
		.n = n,
		.mode = flags & (AEM_POST_FIT | AEM_POST_FINAL),
		.fill = fill,
		.arg = arg,
	};
	struct aem_posted out;

	post(r, s, &p, &out);
	return out.produced;
}

