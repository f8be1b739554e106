/* SPDX-License-Identifier: MIT */
/*
 * Order within a class: messages posted to one channel arrive in the order
 * they were posted, also when posts to two classes interleave, also across
 * two rings, and each lands in the CQ ring of its class.
 */
#include "aem_test.h"

#define N	3000

static void post_seq(struct aem_ring *from, uint64_t addr, uint64_t seq, unsigned prio)
{
	struct aem_sqe *sqe = aem_get_sqe(from);

	if (!sqe) {
		t_submit(from);
		sqe = t_sqe(from);
	}
	aem_prep_post(sqe, addr, &seq, sizeof(seq), prio);
	sqe->flags |= AEM_SQE_F_SILENT;
}

/* Read @n events of @cls only, checking tag, class and sequence. */
static void expect_seq(struct aem_ring *r, unsigned cls, uint64_t tag, uint64_t first, unsigned n,
		       unsigned step)
{
	uint64_t want = first, end = t_now_ns() + 10000 * T_MS;
	const struct aem_cqe *c;
	unsigned got = 0;
	unsigned len;

	while (got < n) {
		if (!aem_peek_batch(r, cls, &c, 1)) {
			t_assert(t_now_ns() < end, "class %u: %u of %u events after 10 s", cls, got, n);
			aem_submit(r);
			aem_wait(r, 1, 10 * T_MS);
			continue;
		}
		t_assert(!(c->flags & AEM_CQE_F_RESULT), "class %u: result CQE res %d ud %#llx for a silent post",
			 cls, c->res, (unsigned long long)c->user_data);
		t_eq(c->user_data, tag);
		t_eq(c->source, AEM_SRC_MSG);
		t_eq(c->prio, cls);
		t_eq(c->res, sizeof(uint64_t));
		uint64_t *seq = aem_cqe_payload(r, c, &len);
		t_assert(seq && len == sizeof(*seq), "payload len %u", len);
		if (*seq != want)
			t_fail("class %u: event %u carries seq %llu, want %llu", cls, got,
			       (unsigned long long)*seq, (unsigned long long)want);
		aem_cq_advance(r, cls, 1);
		want += step;
		got++;
	}
}

int main(void)
{
	struct aem_params p = t_params(1024, 8192, 2);
	struct aem_ring a, b;
	uint64_t i;

	t_setup(&a, &p);
	p = t_params(1024, 8192, 2);
	t_setup(&b, &p);
	t_sub_msg(&a, 10, 0, 0xa0);
	t_sub_msg(&a, 11, 1, 0xa1);
	t_sub_msg(&b, 20, 1, 0xb1);

	/* One class, to ourselves. */
	for (i = 0; i < N; i++)
		post_seq(&a, AEM_ADDR(a.ring_id, 11), i, 1);
	t_submit(&a);
	expect_seq(&a, 1, 0xa1, 0, N, 1);

	/* Two classes interleaved: each class keeps its own order. */
	for (i = 0; i < 2 * N; i++)
		post_seq(&a, AEM_ADDR(a.ring_id, 10 + (i & 1)), i, i & 1);
	t_submit(&a);
	t_eq(aem_cq_ready(&a, 0), N);
	t_eq(aem_cq_ready(&a, 1), N);
	expect_seq(&a, 1, 0xa1, 1, N, 2);
	expect_seq(&a, 0, 0xa0, 0, N, 2);

	/* Ring to ring. */
	for (i = 0; i < N; i++)
		post_seq(&a, AEM_ADDR(b.ring_id, 20), i, 1);
	t_submit(&a);
	expect_seq(&b, 1, 0xb1, 0, N, 1);

	t_expect_quiet(&a, 20, "ring a after all posts");
	t_expect_quiet(&b, 20, "ring b after all posts");
	aem_teardown(&b);
	aem_teardown(&a);
	return T_EXIT_PASS;
}
