// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The opcodes on subscriptions: NOP, SUBSCRIBE, UNSUBSCRIBE, WRITEBACK
 * (to a subscription's token; a call's token goes to msg.c), TIMER_SET and
 * GEN_SET.  The opcode table (opdef.c) has checked the fields they do not
 * use; each checks its own.
 */
#include "aem_core_int.h"
#include "aem_sources.h"

/* Sources see at most this many bytes of a writeback: their arguments, never bulk data. */
#define AEM_SRC_WB_MAX	64

int __aem_op_nop(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	(void)r;
	(void)sqe;
	(void)reason;
	(void)answered;
	return 0;
}

u64 aem_core_submit_clock(struct aem_ctx *r)
{
	/* sqes_done moves at the end of each submission that consumed SQEs: one read per submission. */
	if (r->clock_at != r->sqes_done + 1) {
		r->clock_ns = aem_now_ns();
		r->clock_at = r->sqes_done + 1;
	}
	return r->clock_ns;
}

static u32 sub_state(const struct aem_sqe *sqe)
{
	return (sqe->flags & AEM_SQE_F_END_STATS) ? AEM_SUB_END_STATS : 0;
}

/*
 * The run's stash, back to the free list, the entry next in line last, so
 * that the list keeps its order (struct aem_sub_run).
 */
void __aem_sub_run_release(struct aem_sub_run *run)
{
	unsigned long f;
	u32 i;

	if (!run->nr_stash)
		return;
	aem_spin_lock_irqsave(&run->r->cq_lock, f);
	for (i = 0; i < run->nr_stash; i++)
		__aem_sub_free_locked(run->r, run->stash[i]);
	aem_spin_unlock_irqrestore(&run->r->cq_lock, f);
	run->nr_stash = 0;
}

/* A timer's entry from the run's stash, refilled AEM_SUB_RUN at a time; NULL as __aem_sub_alloc's. */
static struct aem_sub *stash_take(struct aem_sub_run *run, const struct aem_sqe *sqe)
{
	u32 state = sub_state(sqe);

	if (run->nr_stash && run->stash_state != state)
		__aem_sub_run_release(run);
	if (!run->nr_stash) {
		u32 n = __aem_sub_alloc_n(run->r, AEM_SRC_TIMER, state, run->stash, AEM_SUB_RUN);
		u32 i;

		/* Taken in list order; used from the end of the stash, so turn it round. */
		for (i = 0; i < n / 2; i++) {
			struct aem_sub *t = run->stash[i];

			run->stash[i] = run->stash[n - 1 - i];
			run->stash[n - 1 - i] = t;
		}
		run->nr_stash = n;
		run->stash_state = state;
	}
	return run->nr_stash ? run->stash[--run->nr_stash] : NULL;
}

/*
 * SUBSCRIBE up to its answer: the entry taken and set up by its source,
 * not started, so that no event of it comes before the answer names it.
 */
static int subscribe_prepare(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason,
			     struct aem_sub_run *run, struct aem_sub **sp,
			     const struct aem_source_ops **opsp)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s;
	unsigned long f;
	u8 slot = 0;
	int ret;

	NEED(sqe->source && sqe->source < AEM_SRC_LAST);
	/* Version 4 names an implementation in arg (0: the newest); before, arg stays zero. */
	NEED(r->api_version >= 4 || !sqe->arg);
	if (run && run->src_ops && run->src_id == sqe->source && run->src_impl == sqe->arg) {
		ops = run->src_ops;	/* kept by this submission's run (struct aem_sub_run) */
		slot = run->src_slot;
	} else {
		ops = __aem_source_get(sqe->source, sqe->arg, r->api_version, &slot);
		if (run && ops) {
			run->src_ops = ops;
			run->src_id = sqe->source;
			run->src_impl = sqe->arg;
			run->src_slot = slot;
		}
	}
	if (!ops) {
		*reason = AEM_REFUSE_FIELD;
		return -EOPNOTSUPP;
	}
	s = run && ops == &aem_timer_source_ops ? stash_take(run, sqe)
						  : __aem_sub_alloc(r, sqe->source, sub_state(sqe));
	if (!s) {
		aem_module_put(ops->owner);
		*reason = AEM_REFUSE_NOMEM;
		return -ENOMEM;
	}
	s->user_data = sqe->user_data;
	s->prio = sqe->prio;
	s->impl = slot;
	ret = ops->subscribe(r, s, sqe);
	if (ret) {
		aem_spin_lock_irqsave(&r->cq_lock, f);
		__aem_sub_free_locked(r, s);
		aem_spin_unlock_irqrestore(&r->cq_lock, f);
		aem_module_put(ops->owner);
		*reason = ret == -ENOMEM || ret == -ENOSPC ? AEM_REFUSE_NOMEM : AEM_REFUSE_FIELD;
		return ret;
	}
	*sp = s;
	*opsp = ops;
	return 0;
}

static void subscribe_answer_start(struct aem_ctx *r, const struct aem_sqe *sqe,
				   struct aem_sub *s, const struct aem_source_ops *ops)
{
	/* The result names the id before any event of the subscription can. */
	if (!(sqe->flags & AEM_SQE_F_SILENT))
		__aem_sqe_result(r, sqe, 0, aem_sub_id(r, s));
	if (ops->start)
		ops->start(r, s);
}

int __aem_op_subscribe(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s;
	int ret;

	ret = subscribe_prepare(r, sqe, reason, NULL, &s, &ops);
	if (ret)
		return ret;
	subscribe_answer_start(r, sqe, s, ops);
	*answered = true;
	return 0;
}

/*
 * One SUBSCRIBE into @run: answered and started when the run is flushed.
 * Only the core's timers wait there: a timer's set-up looks at no other
 * subscription, where another source's may (a Msg subscribe checks its
 * channel against the started ones) or may produce before any start().
 * Any other subscribe has the run flushed, then is answered and started
 * at once, as __aem_op_subscribe() does.
 */
int __aem_sub_run_add(struct aem_sub_run *run, const struct aem_sqe *sqe, u32 *reason)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s;
	int ret;

	ret = subscribe_prepare(run->r, sqe, reason, run, &s, &ops);
	if (ret)
		return ret;
	if (ops != &aem_timer_source_ops || run->nr_subs == AEM_SUB_RUN)
		__aem_sub_run_flush(run);
	if (ops != &aem_timer_source_ops) {
		subscribe_answer_start(run->r, sqe, s, ops);
		return 0;
	}
	if (!(sqe->flags & AEM_SQE_F_SILENT)) {
		run->res_user_data[run->nr_results] = sqe->user_data;
		run->res_cls[run->nr_results] = sqe->prio < run->r->nr_classes ? sqe->prio : 0;
		run->res_id[run->nr_results++] = aem_sub_id(run->r, s);
	}
	run->subs[run->nr_subs++] = s;
	return 0;
}

/* The run's answers, in one round of the result ring, then its timers start, in one of the wheel. */
void __aem_sub_run_flush(struct aem_sub_run *run)
{
	if (run->nr_results)
		__aem_post_results(run->r, run->res_user_data, run->res_cls, run->res_id,
				   run->nr_results);
	if (run->nr_subs)
		__aem_timers_start(run->r, run->subs, run->nr_subs);
	run->nr_results = run->nr_subs = 0;
}

/*
 * End @s, which its caller marked AEM_SUB_DYING: the source stops, its
 * backlog entries are discarded (counted dropped), optionally a final
 * event says so, and the entry is freed.  Its final counts answer the
 * UNSUBSCRIBE @sqe (unless silent); with a final event (the source is
 * unloaded) they go to the SUBSCRIBE that asked for them.
 */
void __aem_sub_unsubscribe(struct aem_ctx *r, struct aem_sub *s, bool final_event,
			   const struct aem_sqe *sqe)
{
	const struct aem_source_ops *ops = __aem_source_ops(s->source, s->impl);
	struct aem_posted out = { .wake = false };
	unsigned long f;

	/* DYING is set: the source's own final post will not free @s under us. */
	if (ops)
		ops->unsubscribe(r, s);
	aem_spin_lock_irqsave(&r->cq_lock, f);
	__aem_discard_backlog_locked(r, s);
	if (final_event) {
		struct aem_post p = {
			.user_data = s->user_data,
			.id = aem_sub_id(r, s),
			.source = s->source,
			.cls = s->prio,
			.n = 1,
			.mode = AEM_POST_FINAL | AEM_POST_HOLD,
		};

		__aem_post_locked(r, s, &p, &out);
		if (s->state & AEM_SUB_END_STATS)
			out.wake |= __aem_post_counts_locked(r, s, NULL);
	}
	if (sqe && !(sqe->flags & AEM_SQE_F_SILENT))
		out.wake |= __aem_post_counts_locked(r, s, sqe);
	__aem_sub_free_locked(r, s);
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (ops)
		aem_module_put(ops->owner);
	if (out.wake)
		__aem_wake(r, sqe != NULL);	/* a waiter's answer: at once, as results are */
}

int __aem_op_unsubscribe(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	struct aem_sub *s;
	unsigned long f;

	aem_spin_lock_irqsave(&r->cq_lock, f);
	s = __aem_sub_lookup_locked(r, sqe->target);
	if (s)
		s->state |= AEM_SUB_DYING;
	aem_spin_unlock_irqrestore(&r->cq_lock, f);
	if (!s) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	/* Answered inside, with the final counts, before the entry is freed. */
	__aem_sub_unsubscribe(r, s, false, sqe);
	*answered = true;
	return 0;
}

int __aem_op_writeback(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	const struct aem_source_ops *ops;
	u8 buf[AEM_SRC_WB_MAX];
	const void *data;
	struct aem_sub *s;
	u32 took, len;
	int ret;

	if (AEM_ID_KIND(sqe->target) == AEM_ID_KIND_CALL)
		return __aem_writeback_call(r, sqe, reason);
	NEED(!sqe->arg);	/* only a caller can be answered with an errno */
	if (AEM_ID_KIND(sqe->target) != AEM_ID_KIND_SUB) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	s = __aem_sub_lookup(r, sqe->target);
	if (!s) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	ops = __aem_source_ops(s->source, s->impl);
	if (ops && ops->io)
		return __aem_io_writeback(r, s, ops, sqe, reason, answered);
	if (!ops || !ops->writeback) {
		*reason = AEM_REFUSE_FIELD;
		return -EOPNOTSUPP;
	}
	ret = __aem_sqe_payload(r, sqe, true, &data, &took, reason);
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

/* TIMER_SET / GEN_SET: the source of @source re-reads its arguments. */
static int op_set(struct aem_ctx *r, const struct aem_sqe *sqe, u8 source, u32 *reason)
{
	const struct aem_source_ops *ops;
	struct aem_sub *s;
	int ret;

	s = __aem_sub_lookup(r, sqe->target);
	if (!s) {
		*reason = AEM_REFUSE_ID;
		return -ENOENT;
	}
	ops = __aem_source_ops(s->source, s->impl);
	NEED(s->source == source && ops && ops->writeback);
	ret = ops->writeback(r, s, sqe, sqe->data, sizeof(sqe->data));
	if (ret)
		*reason = ret == -ENOENT ? AEM_REFUSE_ID : AEM_REFUSE_FIELD;
	return ret;
}

int __aem_op_timer_set(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	(void)answered;
	return op_set(r, sqe, AEM_SRC_TIMER, reason);
}

int __aem_op_gen_set(struct aem_ctx *r, const struct aem_sqe *sqe, u32 *reason, bool *answered)
{
	(void)answered;
	return op_set(r, sqe, AEM_SRC_GEN, reason);
}
