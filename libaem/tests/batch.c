/* SPDX-License-Identifier: MIT */
/*
 * Batching: a full SQ ring goes in with one aem_submit; aem_get_sqe says
 * "full" rather than overwriting; the results are peeked in the result ring
 * as one batch and freed with one aem_result_advance; the indices wrap many
 * times.
 */
#include "aem_test.h"

#define SQ	256
#define CQ	1024
#define ROUNDS	64	/* the SQ ring wraps 64 times, the result ring (2 * SQ) 32 */

int main(void)
{
	struct aem_params p = t_params(SQ, CQ, 2);
	struct aem_sqe *sqe;
	struct aem_ring r;
	unsigned round, i, n, cls, head;
	uint64_t ud = 0, want = 0;
	int ret;

	t_setup(&r, &p);
	for (round = 0; round < ROUNDS; round++) {
		for (i = 0; i < SQ; i++) {
			sqe = aem_get_sqe(&r);
			t_assert(sqe, "round %u: SQ full after %u of %u", round, i, SQ);
			aem_prep_nop(sqe);
			aem_sqe_set_data(sqe, ud++);
		}
		t_assert(aem_get_sqe(&r) == NULL, "round %u: SQE beyond ring size handed out", round);

		if (round % 2) {
			t_eq(t_submit(&r), SQ);
			ret = aem_wait(&r, SQ, 5000 * T_MS);
			t_assert(ret >= 0, "round %u: aem_wait(%u): %s", round, SQ, strerror(-ret));
		} else {
			/* Publish without entering, then submit-and-wait in one go. */
			t_eq(aem_sq_flush(&r), SQ);
			ret = aem_submit_and_wait(&r, SQ, 5000 * T_MS);
			t_assert(ret >= 0, "round %u: aem_submit_and_wait: %s", round, strerror(-ret));
			t_assert(ret == SQ, "round %u: aem_submit_and_wait consumed %d of %u (flushed)",
				 round, ret, SQ);
		}

		/* Every result lands in the result ring, in order; no event ring sees one. */
		n = aem_result_peek(&r, &head);
		t_assert(n == SQ, "round %u: peeked %u results, want %u", round, n, SQ);
		for (i = 0; i < n; i++, want++) {
			const struct aem_cqe *c = aem_result_at(&r, head + i);

			t_eq(c->user_data, want);
			t_eq(c->res, 0);
			t_assert(c->flags & AEM_CQE_F_RESULT, "no F_RESULT");
		}
		aem_result_advance(&r, n);
		t_eq(aem_result_peek(&r, &head), 0);
		for (cls = 0; cls < r.nr_classes; cls++)
			t_eq(aem_cq_ready(&r, cls), 0);
	}
	t_eq(t_stats(&r).sqes, (uint64_t)SQ * ROUNDS);

	/* Batches larger than the result ring: results wait in the backlog, none lost. */
	for (round = 0; round < 2 * CQ / SQ; round++) {
		for (i = 0; i < SQ; i++) {
			sqe = t_sqe(&r);
			aem_prep_nop(sqe);
			aem_sqe_set_data(sqe, ud++);
		}
		t_eq(t_submit(&r), SQ);
	}
	for (i = 0; i < 2 * CQ; i++, want++) {
		struct aem_cqe c;

		t_assert(t_next(&r, &c, 5000), "result %u of %u missing", i, 2 * CQ);
		t_eq(c.user_data, want);
	}
	t_expect_quiet(&r, 20, "after the backlogged results");
	aem_teardown(&r);
	return T_EXIT_PASS;
}
