/* SPDX-License-Identifier: MIT */
/*
 * aem_get_sqes: many SQEs at once, clamped to the free room, zeroed, in
 * ring order; a mixed batch (subscribes, then posts and unsubscribes)
 * prepared at once goes in with one aem_submit and every entry gets its
 * result; the SQ indices wrap many times.
 */
#include "aem_test.h"

#define SQ	8

static unsigned results(struct aem_ring *r, int64_t res_of[], uint64_t id_of[], unsigned want)
{
	unsigned got = 0, head, n, i;

	for (int spins = 0; got < want && spins < 1000; spins++) {
		n = aem_result_peek(r, &head);
		for (i = 0; i < n; i++) {
			const struct aem_cqe *c = aem_result_at(r, head + i);

			t_assert(c->user_data < 64, "result with user_data %llu", (unsigned long long)c->user_data);
			res_of[c->user_data] = c->res;
			id_of[c->user_data] = c->id;
		}
		aem_result_advance(r, n);
		got += n;
		if (got < want)
			(void)aem_wait(r, 1, 100 * T_MS);
	}
	return got;
}

int main(void)
{
	struct aem_params p = t_params(SQ, 64, 1);
	struct aem_sqe *v[2 * SQ];
	int64_t res_of[64];
	uint64_t id_of[64];
	struct aem_ring r;
	unsigned i, n, round, head;

	t_setup(&r, &p);
	memset(r.sq.sqes, 0xa5, SQ * sizeof(struct aem_sqe));	/* handed out zeroed regardless */

	/* Clamped to the room; in ring order; zeroed. */
	n = aem_get_sqes(&r, v, 3);
	t_eq(n, 3);
	n = aem_get_sqes(&r, v + 3, 2 * SQ);
	t_eq(n, SQ - 3);
	t_eq(aem_get_sqes(&r, v, 1), 0);
	t_assert(aem_get_sqe(&r) == NULL, "aem_get_sqe past a full ring");
	for (i = 0; i < SQ; i++) {
		const uint8_t *b = (const uint8_t *)v[i];

		t_assert(v[i] == &r.sq.sqes[i & r.sq.ring_mask], "SQE %u out of order", i);
		for (unsigned k = 0; k < sizeof(*v[i]); k++)
			t_assert(!b[k], "SQE %u byte %u not zeroed", i, k);
	}

	/* Four subscribes (and four NOPs), one submit. */
	for (i = 0; i < SQ; i++) {
		if (i < 4)
			aem_prep_subscribe_msg(v[i], 10 + i, 0, i);
		else
			aem_prep_nop(v[i]);
		aem_sqe_set_data(v[i], i);
	}
	t_eq(t_submit(&r), SQ);
	t_eq(results(&r, res_of, id_of, SQ), SQ);
	for (i = 0; i < SQ; i++)
		t_eq(res_of[i], 0);

	/* Posts to the four channels, then their unsubscribes: one batch, one submit. */
	t_eq(aem_get_sqes(&r, v, SQ), SQ);
	for (i = 0; i < 4; i++) {
		char msg = (char)('a' + i);

		aem_prep_post(v[i], AEM_ADDR(r.ring_id, 10 + i), &msg, 1, 0);
		aem_sqe_set_data(v[i], 20 + i);
		aem_prep_unsubscribe(v[4 + i], id_of[i]);
		aem_sqe_set_data(v[4 + i], 30 + i);
	}
	t_eq(t_submit(&r), SQ);
	t_eq(results(&r, res_of, id_of, SQ), SQ);
	for (i = 0; i < 4; i++) {
		t_eq(res_of[20 + i], 0);
		t_eq(res_of[30 + i], 0);
	}
	n = aem_cq_peek(&r, 0, &head);
	t_eq(n, 4);
	for (i = 0; i < n; i++) {
		const struct aem_cqe *c = aem_cq_at(&r, 0, head + i);

		t_eq(c->user_data, i);	/* the subscription's tag: posted in order */
		t_eq(c->data[0], 'a' + i);
	}
	aem_cq_advance(&r, 0, n);

	/* A post to a channel that is gone is refused in its own result. */
	t_eq(aem_get_sqes(&r, v, 1), 1);
	aem_prep_post(v[0], AEM_ADDR(r.ring_id, 10), "x", 1, 0);
	aem_sqe_set_data(v[0], 40);
	t_eq(t_submit(&r), 1);
	t_eq(results(&r, res_of, id_of, 1), 1);
	t_eq(res_of[40], -ENOENT);

	/* Wrap the indices many times, a partial batch each round. */
	for (round = 0; round < 500; round++) {
		unsigned want = 1 + round % SQ;

		t_eq(aem_get_sqes(&r, v, want), want);
		for (i = 0; i < want; i++) {
			aem_prep_nop(v[i]);
			aem_sqe_set_data(v[i], i);
			v[i]->flags = AEM_SQE_F_SILENT;
		}
		t_eq(t_submit(&r), (int)want);
	}
	t_eq(aem_result_peek(&r, &head), 0);
	aem_teardown(&r);
	return t_exit();
}
