// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The overflow backlog seen from outside the posting path (post.c fills
 * and drains it): whether a post would be dropped now (a POST waits
 * instead), the flush at every enter and wait, an unsubscribe's discard,
 * and teardown.
 */
#include "aem_core_int.h"

/*
 * Would one event of @len bytes in class @cls be dropped now, within the
 * backlog's bound or, for a message from another ring (@budget, posted
 * with AEM_POST_MSG), within the messages' budget?  Under cq_lock.  The
 * class's backlog is flushed first (*wake: a tail moved), as posting
 * would.  Errs towards "yes" (a payload that needs a slot, once the
 * backlog is at its bound): the answer makes a POST wait, never lose.
 * Within the bound, an event bound for the backlog is dropped when the
 * ring's account refuses the memory (a new chunk; a payload held on the
 * heap): then too the answer is "yes".
 */
bool __aem_post_would_drop_locked(struct aem_ctx *r, u8 cls, u32 len, bool budget, bool *wake)
{
	struct aem_cq_core *cq = &r->cq[cls];
	bool need_slot = len > AEM_CQE_INLINE, to_backlog;
	u64 bytes = 0;

	if (cq->bl_head && __aem_flush_class_locked(r, cq))
		*wake = true;
	if (need_slot && r->bl_bytes + len > (budget ? AEM_MSG_BL_BYTES : AEM_BL_BYTES_MAX))
		return true;
	to_backlog = cq->bl_head || !__aem_cq_room_locked(r, cq);
	if (r->nr_backlog >= (budget ? AEM_MSG_BACKLOG(r) : r->backlog_limit))
		return need_slot || to_backlog;
	if (need_slot && !r->nr_free)
		bytes = len;	/* it may wait for a slot on the heap */
	else if (!to_backlog)
		return false;
	if (!r->bl_spare && (!cq->bl_tail || cq->bl_tail->tail == AEM_BL_CHUNK))
		bytes += AEM_BL_CHUNK_BYTES;
	return bytes && !__aem_mem_room_locked(r, bytes);
}

void aem_core_flush_backlog(struct aem_ctx *r)
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
	__aem_slot_reclaim_locked(r);
	for (c = 0; c <= r->nr_classes; c++) {	/* the class rings and the result ring */
		if (r->cq[c].bl_head && __aem_flush_class_locked(r, &r->cq[c])) {
			moved = true;
			urgent |= c == 0;
		}
	}
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (moved)
		__aem_wake(r, urgent);
}

/* Unsubscribe: its backlog entries are discarded and counted dropped. Under cq_lock. */
void __aem_discard_backlog_locked(struct aem_ctx *r, struct aem_sub *s)
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
					__aem_bl_buf_free_locked(r, b, i);
				} else if (b->cqe[i].flags & AEM_CQE_F_SLOT) {
					__aem_slot_put_locked(r, b->cqe[i].slot);
				}
				cq->backlog--;
				r->nr_backlog--;
				r->backlog--;
				s->backlog--;
				__aem_account_drop_locked(r, cq, s);
			}
		}
		if (!cq->backlog)
			aem_write_once(*cq->kflags, 0);	/* only discarded entries are left */
	}
}

/* Ring teardown: the backlog's chunks and the payloads they hold. */
void __aem_backlog_free(struct aem_ctx *r)
{
	u32 c, i;

	for (c = 0; c <= r->nr_classes; c++) {
		while (r->cq[c].bl_head) {
			struct aem_bl_chunk *b = r->cq[c].bl_head;

			r->cq[c].bl_head = b->next;
			for (i = b->head; i < b->tail; i++)
				aem_free(b->buf[i]);
			aem_free(b);
		}
	}
	while (r->bl_spare) {
		struct aem_bl_chunk *b = r->bl_spare;

		r->bl_spare = b->next;
		aem_free(b);
	}
	r->nr_bl_spare = 0;
}
