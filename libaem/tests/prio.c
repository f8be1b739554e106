/* SPDX-License-Identifier: MIT */
/*
 * Priority classes: each subscription's events land in the CQ ring of its
 * class; an urgent (class 0) event ends a wait at once even below the
 * wanted count, a class-1 event does not; a flood that fills class 1 (ring
 * and backlog) never keeps a class-0 event out of class 0.
 */
#include "aem_test.h"

static void sub_timer(struct aem_ring *r, uint64_t first_ns, unsigned prio, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_subscribe_timer(sqe, first_ns, 0, prio, tag);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(r);
}

int main(void)
{
	struct aem_params p = t_params(256, 64, 2);
	const struct aem_cqe *c;
	struct aem_sqe *sqe;
	struct aem_cqe e;
	struct aem_ring r;
	uint64_t t0, gen_id;
	unsigned i;
	int ret;

	p.backlog_limit = 1024;
	t_setup(&r, &p);

	/* A class-1 event does not end a wait for 100 events. */
	sub_timer(&r, 20 * T_MS, 1, 0x11);
	ret = aem_wait(&r, 100, 300 * T_MS);
	t_eq(ret, -ETIME);
	t_eq(aem_cq_ready(&r, 1), 1);
	t_eq(aem_cq_ready(&r, 0), 0);
	t_assert(aem_peek_batch(&r, 1, &c, 1) == 1, "class-1 timer event gone");
	t_eq(c->user_data, 0x11);
	t_eq(c->prio, 1);
	aem_cq_advance(&r, 1, 1);

	/* A class-0 event does, long before the timeout. */
	sub_timer(&r, 50 * T_MS, 0, 0x10);
	t0 = t_now_ns();
	ret = aem_wait(&r, 100, 10000 * T_MS);
	t_assert(ret >= 0, "wait for an urgent event: %s", strerror(-ret));
	t_assert(t_now_ns() - t0 < 5000 * T_MS, "urgent event did not end the wait early");
	t_eq(aem_cq_ready(&r, 0), 1);
	t_assert(aem_peek_batch(&r, 0, &c, 1) == 1, "class-0 timer event gone");
	t_eq(c->user_data, 0x10);
	t_eq(c->prio, 0);
	aem_cq_advance(&r, 0, 1);

	/* Flood class 1 past its ring and backlog. */
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 10000000, 0, 16, 16, 1, 0x61);
	t_submit(&r);
	e = t_result(&r, 0x61, 5000);
	t_assert(e.res >= 0, "subscribe generator: %s", strerror(-e.res));
	gen_id = e.id;
	for (i = 0; i < 500 && aem_cq_ready(&r, 1) < r.cq[1].ring_entries; i++)
		usleep(10000);
	t_eq(aem_cq_ready(&r, 1), r.cq[1].ring_entries);
	for (i = 0; i < 500 && !(aem_read_once(*r.cq[1].kflags) & AEM_CQ_F_OVERFLOW); i++)
		usleep(10000);

	/* An urgent message still lands in class 0 at once. */
	t_sub_msg(&r, 5, 0, 0x50);
	sqe = t_sqe(&r);
	aem_prep_post(sqe, AEM_ADDR(r.ring_id, 5), "urgent", 6, 0);
	aem_sqe_set_data(sqe, 0x5005);
	t_submit(&r);
	/* The message (and perhaps results) in class 0, however full class 1 is. */
	bool saw_msg = false;
	for (i = 0; i < 200 && !saw_msg; i++) {
		if (!aem_peek_batch(&r, 0, &c, 1)) {
			aem_wait(&r, 1, 10 * T_MS);
			continue;
		}
		if (!(c->flags & AEM_CQE_F_RESULT)) {
			unsigned len;
			const char *d = aem_cqe_payload(&r, c, &len);

			t_eq(c->user_data, 0x50);
			t_eq(c->prio, 0);
			t_assert(len == 6 && !memcmp(d, "urgent", 6), "urgent payload");
			saw_msg = true;
		} else {
			t_assert(c->res >= 0, "class-0 result ud %#llx res %d",
				 (unsigned long long)c->user_data, c->res);
		}
		aem_cq_advance(&r, 0, 1);
	}
	t_assert(saw_msg, "urgent message not in class 0");
	t_assert(aem_read_once(*r.cq[1].kflags) & AEM_CQ_F_OVERFLOW, "class 1 full but no OVERFLOW flag");
	t_eq(aem_read_once(*r.cq[0].kflags) & AEM_CQ_F_OVERFLOW, 0);

	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, gen_id);
	aem_sqe_set_data(sqe, 0x6e);
	t_submit(&r);
	aem_teardown(&r);
	return T_EXIT_PASS;
}
