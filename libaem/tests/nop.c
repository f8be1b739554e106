/* SPDX-License-Identifier: MIT */
/*
 * AEM_OP_NOP: one result CQE per SQE (res 0, F_RESULT, user_data echoed, in
 * submission order); AEM_SQE_F_SILENT suppresses it on success but never an
 * error; the SQ ring's refusal flag and counter follow refusals.
 */
#include "aem_test.h"

int main(void)
{
	struct aem_ring_stats st0, st;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	int i;

	t_setup(&r, NULL);
	st0 = t_stats(&r);
	t_eq(st0.sqes, 0);
	t_eq(t_refused_total(&st0), 0);
	t_eq(*r.sq.kflags & AEM_SQ_F_REFUSED, 0);

	for (i = 0; i < 3; i++) {
		sqe = t_sqe(&r);
		aem_prep_nop(sqe);
		aem_sqe_set_data(sqe, 100 + i);
	}
	t_eq(t_submit(&r), 3);
	for (i = 0; i < 3; i++) {
		t_assert(t_next(&r, &c, 5000), "no result for NOP %d", i);
		t_eq(c.user_data, 100 + i);
		t_eq(c.res, 0);
		t_assert(c.flags & AEM_CQE_F_RESULT, "NOP result flags %#x lack F_RESULT", c.flags);
		t_assert(!(c.flags & (AEM_CQE_F_SLOT | AEM_CQE_F_CALL | AEM_CQE_F_FINAL)),
			 "NOP result flags %#x", c.flags);
	}
	t_expect_quiet(&r, 50, "after three NOPs");

	/* Silent success: only the second NOP answers. */
	sqe = t_sqe(&r);
	aem_prep_nop(sqe);
	sqe->flags = AEM_SQE_F_SILENT;
	aem_sqe_set_data(sqe, 200);
	sqe = t_sqe(&r);
	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 201);
	t_eq(t_submit(&r), 2);
	t_assert(t_next(&r, &c, 5000), "no result for the loud NOP");
	t_eq(c.user_data, 201);
	t_expect_quiet(&r, 50, "after a silent NOP");

	st = t_stats(&r);
	t_eq(st.sqes, 5);
	t_eq(t_refused_total(&st), 0);

	/* A refused SQE answers even when silent, and is counted. */
	sqe = t_sqe(&r);
	aem_prep_nop(sqe);
	sqe->flags = AEM_SQE_F_SILENT | 0x80;
	aem_sqe_set_data(sqe, 300);
	t_eq(t_do(&r, 300), -EINVAL);
	st = t_stats(&r);
	t_eq(st.refused[AEM_REFUSE_FIELD], 1);
	t_eq(t_refused_total(&st), 1);
	t_assert(aem_read_once(*r.sq.kflags) & AEM_SQ_F_REFUSED, "AEM_SQ_F_REFUSED not set");
	t_eq(aem_read_once(*r.sq.kdropped), 1);

	/* Still usable afterwards. */
	sqe = t_sqe(&r);
	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 400);
	t_eq(t_do(&r, 400), 0);
	t_eq(t_stats(&r).sqes, 7);

	aem_teardown(&r);
	return T_EXIT_PASS;
}
