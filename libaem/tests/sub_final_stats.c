/* SPDX-License-Identifier: MIT */
/*
 * A subscription's final counts outlive it.  The kernel side forgets an
 * ended subscription (its statistics are -ENOENT), so the counts travel in
 * results with AEM_CQE_F_STATS, read with aem_cqe_sub_stats():
 *
 *  - the answer to UNSUBSCRIBE carries them (backlog entries discarded and
 *    counted dropped first); a second UNSUBSCRIBE is -ENOENT and carries
 *    none; a silent one posts nothing;
 *  - a subscription subscribed with AEM_SQE_F_END_STATS that ends by
 *    itself (a generator's count, a one-shot timer) gets a second result
 *    for its SUBSCRIBE with them, readable once the final event has been
 *    (it is published first), also when the final event itself was dropped;
 *  - without the flag, or when an unsubscribe ended it, no such result.
 */
#include "aem_test.h"

#define TAG_GEN		0x51
#define TAG_MSG		0x52
#define TAG_TIMER	0x53

static struct aem_sub_stats counts_of(const struct aem_cqe *c)
{
	struct aem_sub_stats st;

	t_ok(aem_cqe_sub_stats(c, &st));
	t_eq(st.produced, st.delivered + st.backlog + st.dropped);
	return st;
}

/* The result waiting in the result ring now, without entering or waiting. */
static bool result_now(struct aem_ring *r, struct aem_cqe *out)
{
	unsigned head;

	if (!aem_result_peek(r, &head))
		return false;
	*out = *aem_result_at(r, head);
	aem_result_advance(r, 1);
	return true;
}

/*
 * A rate-0 generator of @n events (nothing dropped) with END_STATS: every
 * event arrives, then the end result says produced == delivered == n.
 */
static void gen_ends(uint64_t n)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_cqe c, end = { 0 };
	struct aem_sub_stats st, ss;
	uint64_t id = 0, received = 0;
	bool final = false, have_end = false;
	struct aem_sqe *sqe;
	struct aem_ring r;
	uint64_t deadline;

	t_setup(&r, &p);
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 0, n, 16, sizeof(struct aem_gen_event), 0, TAG_GEN);
	sqe->flags |= AEM_SQE_F_END_STATS;
	t_submit(&r);
	deadline = t_now_ns() + 20000 * T_MS;
	while (!final) {
		t_assert(t_now_ns() < deadline, "generator of %llu: %llu events read",
			 (unsigned long long)n, (unsigned long long)received);
		if (!t_next(&r, &c, 100))
			continue;
		if (c.flags & AEM_CQE_F_RESULT) {
			t_eq(c.user_data, TAG_GEN);
			if (!id) {
				t_eq(c.res, 0);
				t_assert(!(c.flags & AEM_CQE_F_STATS), "the subscribe answer carries counts");
				t_eq(aem_cqe_sub_stats(&c, &st), -ENODATA);
				id = c.id;
				continue;
			}
			t_assert(!have_end, "two end results");
			end = c;
			have_end = true;
			continue;
		}
		t_eq(c.user_data, TAG_GEN);
		received++;
		final = c.flags & AEM_CQE_F_FINAL;
		if (received == 1) {
			/* While it lives the ioctl reads the same counters. */
			ss = t_sub_stats(&r, c.id);
			t_assert(ss.produced <= n, "produced %llu", (unsigned long long)ss.produced);
		}
	}
	t_eq(received, n);
	/* Published before the final event: here now, no enter, no wait. */
	t_assert(have_end || result_now(&r, &end), "no end result once the final event was read");
	t_eq(end.flags, AEM_CQE_F_RESULT | AEM_CQE_F_STATS);
	t_eq(end.res, 0);
	t_eq(end.id, id);
	t_eq(end.source, AEM_SRC_GEN);
	st = counts_of(&end);
	t_eq(st.id, id);
	t_eq(st.produced, n);
	t_eq(st.delivered, n);
	t_eq(st.backlog, 0);
	t_eq(st.dropped, 0);
	t_eq(aem_sub_stats(&r, id, &ss), -ENOENT);
	t_expect_quiet(&r, 50, "after the end result");
	aem_teardown(&r);
}

/*
 * A flood against a slow reader and a small backlog drops events, maybe
 * the final one: the end result still comes, with produced == n and
 * delivered == what the reader got.
 */
static void gen_flood_ends(uint64_t n)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_sub_stats st;
	uint64_t received = 0, id = 0;
	bool have_end = false;
	struct aem_sqe *sqe;
	struct aem_ring r;
	struct aem_cqe c;
	uint64_t deadline;

	p.backlog_limit = 256;
	t_setup(&r, &p);
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 10000000, n, 256, sizeof(struct aem_gen_event), 0, TAG_GEN);
	sqe->flags |= AEM_SQE_F_END_STATS | AEM_SQE_F_SILENT;
	t_submit(&r);
	deadline = t_now_ns() + 20000 * T_MS;
	while (!have_end) {
		t_assert(t_now_ns() < deadline, "flood of %llu: no end result, %llu events read",
			 (unsigned long long)n, (unsigned long long)received);
		if (!t_next(&r, &c, 100))
			continue;
		if (c.flags & AEM_CQE_F_RESULT) {
			t_eq(c.user_data, TAG_GEN);
			st = counts_of(&c);
			have_end = true;
			continue;
		}
		id = c.id;
		received++;
		if (received % 16 == 0)
			usleep(1000);	/* slow: the ring and the backlog fill */
	}
	/* Events written before the end stay in the ring. */
	while (t_next(&r, &c, 50)) {
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "result after the end result");
		received++;
	}
	printf("flood: N %llu = delivered %llu + dropped %llu; read %llu\n",
	       (unsigned long long)n, (unsigned long long)st.delivered,
	       (unsigned long long)st.dropped, (unsigned long long)received);
	t_eq(st.id, id);
	t_eq(st.produced, n);
	t_eq(st.backlog, 0);
	t_eq(st.delivered, received);
	t_assert(st.dropped > 0, "nothing dropped with a 256-event backlog");
	aem_teardown(&r);
}

static void unsubscribe_answers(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_sub_stats st;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	uint64_t id, i;

	p.backlog_limit = 256;
	t_setup(&r, &p);

	/* 100 posts into a 64-entry ring: 64 delivered, 36 backlogged, then discarded. */
	id = t_sub_msg(&r, 1, 0, TAG_MSG);
	for (i = 0; i < 100; i++) {
		sqe = t_sqe(&r);
		aem_prep_post(sqe, AEM_ADDR(r.ring_id, 1), &i, sizeof(i), 0);
		sqe->flags |= AEM_SQE_F_SILENT;
		if (i % 32 == 31)
			t_submit(&r);
	}
	t_submit(&r);
	st = t_sub_stats(&r, id);
	t_eq(st.produced, 100);
	t_eq(st.delivered, 64);
	t_eq(st.backlog, 36);

	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x60);
	t_submit(&r);
	c = t_result(&r, 0x60, 5000);
	t_eq(c.res, 0);
	t_eq(c.flags, AEM_CQE_F_RESULT | AEM_CQE_F_STATS);
	t_eq(c.id, id);
	st = counts_of(&c);
	t_eq(st.id, id);
	t_eq(st.produced, 100);
	t_eq(st.delivered, 64);
	t_eq(st.backlog, 0);
	t_eq(st.dropped, 36);

	/* Again: the kernel side cannot tell a stale id from a wrong one. */
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x61);
	t_submit(&r);
	c = t_result(&r, 0x61, 5000);
	t_eq(c.res, -ENOENT);
	t_eq(aem_cqe_sub_stats(&c, &st), -ENODATA);
	t_eq(aem_sub_stats(&r, id, &st), -ENOENT);

	/* Silent: no answer, no counts. */
	id = t_sub_msg(&r, 2, 0, TAG_MSG + 1);
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(&r);
	t_eq(aem_sub_stats(&r, id, &st), -ENOENT);
	while (t_next(&r, &c, 20))	/* the 64 events of the first endpoint */
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "result (ud %#llx) after a silent unsubscribe",
			 (unsigned long long)c.user_data);

	/*
	 * END_STATS, then unsubscribed: the unsubscribe's answer is the one
	 * result with counts (a live rate-0 generator, stopped mid-flight).
	 */
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 0, 0, 8, sizeof(struct aem_gen_event), 0, TAG_GEN);
	sqe->flags |= AEM_SQE_F_END_STATS;
	t_submit(&r);
	c = t_result(&r, TAG_GEN, 5000);
	t_eq(c.res, 0);
	id = c.id;
	t_assert(t_next(&r, &c, 5000), "the generator produced nothing");
	t_assert(!(c.flags & AEM_CQE_F_RESULT), "result (ud %#llx) instead of an event",
		 (unsigned long long)c.user_data);
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x62);
	t_submit(&r);
	c = t_result(&r, 0x62, 5000);
	t_eq(c.flags, AEM_CQE_F_RESULT | AEM_CQE_F_STATS);
	st = counts_of(&c);
	t_eq(st.backlog, 0);
	t_assert(st.produced > 0, "the generator produced nothing before it was stopped");
	for (i = 1; t_next(&r, &c, 50); i++) {
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "result (ud %#llx flags %#x) after the unsubscribe",
			 (unsigned long long)c.user_data, c.flags);
		t_assert(!(c.flags & AEM_CQE_F_FINAL), "an unsubscribed generator's final event");
	}
	t_eq(i, st.delivered);
	aem_teardown(&r);
}

/* Without the flag a source's end is told by its final event alone. */
static void no_end_result_unasked(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_sqe *sqe;
	struct aem_ring r;
	struct aem_cqe c;
	unsigned n = 0;

	t_setup(&r, &p);
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 0, 10, 10, sizeof(struct aem_gen_event), 0, TAG_GEN);
	t_submit(&r);
	c = t_result(&r, TAG_GEN, 5000);
	t_eq(c.res, 0);
	while (n < 10 && t_next(&r, &c, 5000)) {
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "result (flags %#x) nobody asked for", c.flags);
		n++;
	}
	t_eq(n, 10);
	t_assert(c.flags & AEM_CQE_F_FINAL, "the 10th event is not final");
	t_expect_quiet(&r, 50, "a generator without END_STATS ended");
	aem_teardown(&r);
}

/* A one-shot timer: one event, final, then its counts. */
static void timer_ends(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_sub_stats st;
	struct aem_cqe c, end;
	struct aem_sqe *sqe;
	struct aem_ring r;
	uint64_t id;

	t_setup(&r, &p);
	sqe = t_sqe(&r);
	aem_prep_subscribe_timer(sqe, 2 * T_MS, 0, 0, TAG_TIMER);
	sqe->flags |= AEM_SQE_F_END_STATS;
	t_submit(&r);
	c = t_result(&r, TAG_TIMER, 5000);
	t_eq(c.res, 0);
	id = c.id;
	t_assert(t_next(&r, &c, 5000), "the one-shot timer did not fire");
	if (c.flags & AEM_CQE_F_RESULT) {
		end = c;	/* the end result came first: the event is next */
		t_assert(t_next(&r, &c, 5000), "no timer event after its end result");
	} else {
		t_assert(result_now(&r, &end), "no end result once the final event was read");
	}
	t_eq(c.user_data, TAG_TIMER);
	t_assert(c.flags & AEM_CQE_F_FINAL, "one-shot timer event not final");
	t_eq(end.user_data, TAG_TIMER);
	st = counts_of(&end);
	t_eq(st.id, id);
	t_eq(st.produced, 1);
	t_eq(st.delivered, 1);
	t_eq(end.source, AEM_SRC_TIMER);
	aem_teardown(&r);
}

int main(void)
{
	gen_ends(5000);
	gen_flood_ends(20000);
	unsubscribe_answers();
	no_end_result_unasked();
	timer_ends();
	return t_exit();
}
