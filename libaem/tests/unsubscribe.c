/* SPDX-License-Identifier: MIT */
/*
 * UNSUBSCRIBE: result 0; events already in the CQ ring stay readable; the
 * channel stops taking posts; the id dies (-ENOENT for every later use,
 * stats included) and a new subscription never answers to it; backlog
 * entries of an unsubscribed flood are discarded and counted as dropped;
 * an unsubscribe submitted while a rate-0 flood refills the ring as fast as
 * it is read stops it.
 */
#include "aem_test.h"

static int unsubscribe(struct aem_ring *r, uint64_t id, uint64_t ud)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, ud);
	t_submit(r);
	return t_result(r, ud, 5000).res;
}

int main(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_ring_stats st;
	struct aem_sub_stats ss;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	uint64_t id, id2, i;

	p.backlog_limit = 256;
	t_setup(&r, &p);

	id = t_sub_msg(&r, 1, 0, 0x100);
	t_eq(t_stats(&r).subscriptions, 1);
	for (i = 0; i < 3; i++) {
		sqe = t_sqe(&r);
		aem_prep_post(sqe, AEM_ADDR(r.ring_id, 1), &i, sizeof(i), 0);
		sqe->flags |= AEM_SQE_F_SILENT;
	}
	t_submit(&r);
	ss = t_sub_stats(&r, id);
	t_eq(ss.produced, 3);
	t_eq(ss.delivered, 3);

	/* The three events stay in their ring; the result comes in the result ring. */
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x101);
	t_submit(&r);
	t_assert(t_next(&r, &c, 5000), "no unsubscribe result");
	t_assert(c.flags & AEM_CQE_F_RESULT, "unsubscribe: event ud %#llx before the result",
		 (unsigned long long)c.user_data);
	t_eq(c.user_data, 0x101);
	t_eq(c.res, 0);
	for (i = 0; i < 3; i++) {
		t_assert(t_next(&r, &c, 5000), "event %llu gone after unsubscribe", (unsigned long long)i);
		t_eq(c.user_data, 0x100);
		t_eq(*(uint64_t *)c.data, i);
	}
	t_eq(t_stats(&r).subscriptions, 0);

	/* Dead id. */
	t_eq(aem_sub_stats(&r, id, &ss), -ENOENT);
	t_eq(unsubscribe(&r, id, 0x102), -ENOENT);
	sqe = t_sqe(&r);
	aem_prep_post(sqe, AEM_ADDR(r.ring_id, 1), "x", 1, 0);
	aem_sqe_set_data(sqe, 0x103);
	t_eq(t_do(&r, 0x103), -ENOENT);

	/* Same channel again: a new id; the old one still dead. */
	id2 = t_sub_msg(&r, 1, 0, 0x104);
	t_assert(id2 != id, "freed id %#llx reused as is", (unsigned long long)id);
	t_eq(unsubscribe(&r, id, 0x105), -ENOENT);
	t_sub_stats(&r, id2);
	t_eq(unsubscribe(&r, id2, 0x106), 0);

	/* Unsubscribe a flood with a full backlog: the backlog is counted as dropped. */
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 10000000, 0, 16, 16, 0, 0x200);
	t_submit(&r);
	c = t_result(&r, 0x200, 5000);
	t_assert(c.res >= 0, "subscribe generator: %s", strerror(-c.res));
	id = c.id;
	for (i = 0; i < 500; i++) {
		ss = t_sub_stats(&r, id);
		if (ss.backlog > 0)
			break;
		usleep(10000);
	}
	t_assert(ss.backlog > 0, "generator never filled the backlog");
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x201);
	t_submit(&r);
	/* The ring is full of events: the result may sit behind them. */
	for (i = 0; i < 100000; i++) {
		t_assert(t_next(&r, &c, 5000), "no unsubscribe result behind the flood");
		if (c.flags & AEM_CQE_F_RESULT)
			break;
		t_eq(c.user_data, 0x200);
	}
	t_eq(c.user_data, 0x201);
	t_eq(c.res, 0);
	st = t_stats(&r);
	t_eq(st.backlog, 0);
	t_eq(st.subscriptions, 0);
	t_assert(st.dropped > 0, "backlog of an unsubscribed flood not counted as dropped");
	while (t_next(&r, &c, 50))
		t_eq(c.user_data, 0x200);

	/*
	 * A rate-0 flood without end refills the ring as fast as we read it:
	 * an unsubscribe submitted in the middle of the reading stops it: after
	 * its result, what is left is at most what the ring and backlog held.
	 */
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 0, 0, 1, 16, 0, 0x300);
	t_submit(&r);
	c = t_result(&r, 0x300, 5000);
	t_assert(c.res >= 0, "subscribe rate-0 generator: %s", strerror(-c.res));
	id = c.id;
	for (i = 0; i < 1000; i++) {
		t_assert(t_next(&r, &c, 5000), "rate-0 flood: event %llu missing", (unsigned long long)i);
		t_eq(c.user_data, 0x300);
	}
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x301);
	t_submit(&r);
	for (i = 0; i < 1000000; i++) {
		t_assert(t_next(&r, &c, 5000), "no unsubscribe result while the flood ran");
		if (c.flags & AEM_CQE_F_RESULT)
			break;
		t_eq(c.user_data, 0x300);
	}
	t_eq(c.user_data, 0x301);
	t_eq(c.res, 0);
	for (i = 0; t_next(&r, &c, 50); i++) {
		t_assert(c.user_data == 0x300 && !(c.flags & AEM_CQE_F_RESULT),
			 "after the unsubscribe result: user_data %#llx flags %#x",
			 (unsigned long long)c.user_data, c.flags);
		t_assert(i < r.cq[0].ring_entries + p.backlog_limit,
			 "events keep coming after the unsubscribe result");
	}
	t_eq(t_stats(&r).subscriptions, 0);

	aem_teardown(&r);
	return T_EXIT_PASS;
}
