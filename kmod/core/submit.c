// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Submission: consume the SQ ring.  Each SQE is copied once, checked
 * against its opcode's table entry (opdef.c, sqe.c), then handed to its
 * handler; every consumed SQE is answered, by a result or a refusal.
 */
#include "aem_core_int.h"

static void refuse(struct aem_ctx *r, const struct aem_sqe *sqe, u32 reason, int err)
{
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	r->refused[reason]++;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	r->sq_dropped++;
	aem_write_once(*r->sq_kdropped, r->sq_dropped);
	aem_write_once(*r->sq_kflags, AEM_SQ_F_REFUSED);
	__aem_sqe_result(r, sqe, err, 0);
}

/*
 * Returns false for a POST its target cannot take now (-EAGAIN): it is not
 * consumed, the submission stops at it and it is counted refused (FULL).
 * Consecutive POSTs to one ring go through @run (msg.c), which holds that
 * ring across them; consecutive SUBSCRIBEs through @subs (op_sub.c), which
 * answers and arms those of timers together.  Anything else lets them go
 * first, so answers keep the order of their SQEs.
 */
static bool handle_sqe(struct aem_ctx *r, const struct aem_sqe *sqe, struct aem_post_run *run,
		       struct aem_sub_run *subs)
{
	const struct aem_op_def *def = __aem_op_def(sqe->opcode);
	u32 reason = AEM_REFUSE_FIELD;
	bool answered = false;
	int ret;

	if (!def) {
		reason = AEM_REFUSE_OPCODE;
		ret = -EINVAL;
	} else {
		ret = __aem_sqe_check(r, def, sqe, &reason);
		if (!ret && sqe->opcode == AEM_OP_POST) {
			__aem_sub_run_flush(subs);
			ret = __aem_post_run_add(run, r, sqe, &reason);
			if (!ret)
				return true;	/* answered by the run, unless silent */
		} else if (!ret && sqe->opcode == AEM_OP_SUBSCRIBE) {
			__aem_post_run_close(run);
			ret = __aem_sub_run_add(subs, sqe, &reason);
			if (!ret)
				return true;	/* answered by the run, unless silent */
		} else if (!ret) {
			__aem_post_run_close(run);
			__aem_sub_run_flush(subs);
			ret = def->issue(r, sqe, &reason, &answered);
		}
	}
	/* Our completion lock is taken below: the run's target lock goes first. */
	__aem_post_run_pause(run);
	__aem_sub_run_flush(subs);	/* the answers before this SQE's */
	if (ret == -EAGAIN) {
		unsigned long f;

		aem_spin_lock_irqsave(&r->cq_lock, f);
		r->refused[AEM_REFUSE_FULL]++;
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		return false;
	}
	if (ret < 0)
		refuse(r, sqe, reason, ret);
	else if (!answered && !(sqe->flags & AEM_SQE_F_SILENT))
		__aem_sqe_result(r, sqe, 0, 0);
	return true;
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

int aem_core_submit(struct aem_ctx *r, u32 to_submit)
{
	struct aem_post_run run = { .t = NULL };
	struct aem_sub_run subs = { .r = r };
	struct aem_sqe sqe;
	u32 head, tail, avail, i;
	unsigned long f;

	aem_smp_mb();	/* the user's CQ head and slot releases, then the flag: pairs with aem_core_want_room() */
	__aem_room_kick(r);
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
		/* The run's answers owed count for the charge too: post them first. */
		if (unlikely(run.nr_results && aem_read_once(r->mem_short)))
			__aem_post_run_pause(&run);
		if (unlikely(subs.nr_results && aem_read_once(r->mem_short)))
			__aem_sub_run_flush(&subs);
		/*
		 * Results past the ring's memory charge are kept (forced), not
		 * dropped: while some wait in the backlog and the charge is
		 * short, consume no more SQEs, so the excess stays one SQE's.
		 */
		if (unlikely(aem_read_once(r->mem_short) &&
			     aem_read_once(__aem_res_cq(r)->bl_head)))
			break;
		sqe_copy(&sqe, &r->sqes[(head + i) & r->sq_mask]);
		if (!handle_sqe(r, &sqe, &run, &subs))
			break;
	}
	/* The runs' answers before the SQEs they answer are released. */
	__aem_post_run_close(&run);
	__aem_sub_run_flush(&subs);
	__aem_sub_run_release(&subs);
	to_submit = i;
	if (to_submit) {
		aem_write_once(r->sq_head, head + to_submit);
		aem_store_release(r->sq_khead, head + to_submit);	/* pairs with aem_get_sqe()'s acquire */
		aem_write_once(r->sqes_done, r->sqes_done + to_submit);
	}
	aem_mutex_unlock(&r->submit_lock);
	return (int)to_submit;
}
