/* SPDX-License-Identifier: MIT */
/*
 * Overflow accounting: a generator far faster than a slow consumer fills
 * the CQ ring, then the backlog, then drops.  Throughout,
 * delivered + backlog + dropped == produced for the subscription; the
 * ring shows AEM_CQ_F_OVERFLOW; order holds across the backlog (seq only
 * grows); when the producer slows down the backlog drains, the flag
 * clears, and every delivered event has been read.
 */
#include "aem_test.h"

#define CQ		256
#define BACKLOG		4096
#define TAG		0x0f

struct state {
	uint64_t received, last_seq, checks;
	bool any;
};

static void balance(struct aem_ring *r, uint64_t id, struct aem_sub_stats *ss, struct state *s)
{
	/* produced is counted where events enter the kernel side: this catches a lost one. */
	*ss = t_sub_stats(r, id);
	t_assert(ss->backlog <= BACKLOG, "backlog %llu beyond its bound %u",
		 (unsigned long long)ss->backlog, BACKLOG);
	t_assert(s->received <= ss->delivered, "read %llu events, only %llu delivered",
		 (unsigned long long)s->received, (unsigned long long)ss->delivered);
	s->checks++;
}

/* Read at most @max events; returns how many. */
static unsigned consume(struct aem_ring *r, unsigned max, struct state *s)
{
	const struct aem_cqe *batch[64];
	unsigned n, i, len;

	if (max > 64)
		max = 64;
	n = aem_peek_batch(r, 0, batch, max);
	for (i = 0; i < n; i++) {
		const struct aem_cqe *c = batch[i];
		const struct aem_gen_event *ev;

		if (c->flags & AEM_CQE_F_RESULT) {
			t_assert(c->res >= 0, "result ud %#llx res %d", (unsigned long long)c->user_data,
				 c->res);
			continue;
		}
		t_eq(c->user_data, TAG);
		ev = aem_cqe_payload(r, c, &len);
		t_assert(ev && len >= sizeof(*ev), "payload %u bytes", len);
		if (s->any && ev->seq <= s->last_seq)
			t_fail("seq %llu after %llu: order lost across the backlog",
			       (unsigned long long)ev->seq, (unsigned long long)s->last_seq);
		s->last_seq = ev->seq;
		s->any = true;
		s->received++;
	}
	aem_cq_advance(r, 0, n);
	return n;
}

int main(void)
{
	struct aem_params p = t_params(64, CQ, 1);
	struct aem_sub_stats ss;
	struct state s = { 0 };
	struct aem_ring_stats st;
	bool saw_overflow = false;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	uint64_t id, end;
	unsigned rounds;

	p.backlog_limit = BACKLOG;
	t_setup(&r, &p);
	t_eq(p.backlog_limit, BACKLOG);

	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 50000000, 0, 64, sizeof(struct aem_gen_event), 0, TAG);
	t_submit(&r);
	c = t_result(&r, TAG, 5000);
	t_assert(c.res >= 0, "subscribe generator: %s", strerror(-c.res));
	id = c.id;

	/* Slow consumer: a few events per millisecond, while the generator runs flat out. */
	end = t_now_ns() + 3000 * T_MS;
	for (rounds = 0; t_now_ns() < end; rounds++) {
		consume(&r, 8, &s);
		balance(&r, id, &ss, &s);
		if (aem_read_once(*r.cq[0].kflags) & AEM_CQ_F_OVERFLOW)
			saw_overflow = true;
		if (saw_overflow && ss.dropped > 0 && rounds >= 500)
			break;
		if (rounds % 16 == 0)
			aem_submit(&r);	/* enter: the kernel side may flush the backlog */
		usleep(1000);
	}
	printf("slow phase: %u rounds, produced %llu delivered %llu backlog %llu dropped %llu\n",
	       rounds, (unsigned long long)ss.produced, (unsigned long long)ss.delivered,
	       (unsigned long long)ss.backlog, (unsigned long long)ss.dropped);
	t_assert(saw_overflow, "CQ ring never showed AEM_CQ_F_OVERFLOW");
	t_assert(ss.dropped > 0, "nothing dropped with a %u-event backlog", BACKLOG);

	/* Slow the producer to a trickle; the consumer catches up. */
	sqe = t_sqe(&r);
	aem_prep_gen_set(sqe, id, 1, 0, 1, sizeof(struct aem_gen_event));
	aem_sqe_set_data(sqe, 0x5e7);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(&r);
	end = t_now_ns() + 10000 * T_MS;
	for (;;) {
		while (consume(&r, 64, &s))
			;
		balance(&r, id, &ss, &s);
		if (ss.backlog == 0 && !(aem_read_once(*r.cq[0].kflags) & AEM_CQ_F_OVERFLOW) &&
		    s.received == ss.delivered)
			break;
		t_assert(t_now_ns() < end, "backlog %llu never drained (read %llu of %llu delivered)",
			 (unsigned long long)ss.backlog, (unsigned long long)s.received,
			 (unsigned long long)ss.delivered);
		aem_submit(&r);
		aem_wait(&r, 1, 10 * T_MS);
	}
	printf("drained: %llu checks, produced %llu delivered %llu dropped %llu, read %llu\n",
	       (unsigned long long)s.checks, (unsigned long long)ss.produced,
	       (unsigned long long)ss.delivered, (unsigned long long)ss.dropped,
	       (unsigned long long)s.received);
	t_eq(s.received, ss.delivered);

	/* The class and ring counters agree with the subscription's. */
	st = t_stats(&r);
	t_assert(st.dropped >= ss.dropped, "ring dropped %llu < subscription dropped %llu",
		 (unsigned long long)st.dropped, (unsigned long long)ss.dropped);
	t_eq(aem_read_once(*r.cq[0].kdropped), (uint32_t)st.dropped);
	t_eq(st.backlog, 0);

	/* Unsubscribe; the ring balances still. */
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0xdead);
	t_submit(&r);
	for (;;) {
		t_assert(t_next(&r, &c, 5000), "no UNSUBSCRIBE result");
		if (c.flags & AEM_CQE_F_RESULT)
			break;
		s.received++;
	}
	t_eq(c.user_data, 0xdead);
	t_eq(c.res, 0);
	st = t_stats(&r);	/* balanced, or it fails */
	t_eq(st.subscriptions, 0);
	aem_teardown(&r);
	return T_EXIT_PASS;
}
