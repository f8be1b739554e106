/* SPDX-License-Identifier: MIT */
/*
 * A count-bounded generator accounts for every one of its N events.
 *
 * The kernel side counts produced where an event enters it, apart from
 * delivered, backlog and dropped; so at the end N == produced ==
 * delivered + dropped, and the reader has received exactly `delivered`
 * events, seq strictly increasing, the last one (seq N - 1, F_FINAL)
 * unless it was among the dropped.
 *
 *  - rate 0: the generator fills only the room the CQ ring has, so nothing
 *    is dropped and the reader gets seq 0..N-1, every one;
 *  - a fast rate against a reader that takes 16 events a millisecond: the
 *    CQ ring and the backlog fill and events are dropped.
 *
 * The subscription ends with its final event, after which its statistics
 * are gone (-ENOENT): it is subscribed with AEM_SQE_F_SILENT on a ring of
 * its own, so the ring-wide counters, which stay, are the subscription's
 * (no result CQE is ever posted there).  While it lives, every round also
 * checks the subscription's own counters balance.
 */
#include "aem_test.h"

#define TAG		0x6e
#define CQ		64
#define BACKLOG		1024

struct reader {
	uint64_t	received;
	uint64_t	next_seq;	/* lowest seq the next event may carry */
	uint64_t	sub_id;		/* from the first event (the subscribe is silent) */
	bool		final;
	bool		ended;		/* subscription statistics went -ENOENT */
	unsigned	sub_checks;
};

/* Read at most @max events; @dense: no seq may be skipped. */
static unsigned consume(struct aem_ring *r, struct reader *rd, unsigned max, uint64_t n, bool dense)
{
	const struct aem_cqe *batch[64];
	unsigned k, i, len;

	k = aem_peek_batch(r, 0, batch, max < 64 ? max : 64);
	for (i = 0; i < k; i++) {
		const struct aem_cqe *c = batch[i];
		const struct aem_gen_event *ev;

		t_assert(!(c->flags & AEM_CQE_F_RESULT), "result CQE (res %d) on a silent ring", c->res);
		t_assert(!rd->final, "event after the final one");
		t_eq(c->user_data, TAG);
		t_eq(c->source, AEM_SRC_GEN);
		ev = aem_cqe_payload(r, c, &len);
		t_assert(ev && len == sizeof(*ev), "payload %u bytes", len);
		if (dense)
			t_eq(ev->seq, rd->next_seq);
		else
			t_assert(ev->seq >= rd->next_seq && ev->seq < n, "seq %llu, want %llu..%llu",
				 (unsigned long long)ev->seq, (unsigned long long)rd->next_seq,
				 (unsigned long long)n - 1);
		t_eq(!!(c->flags & AEM_CQE_F_FINAL), ev->seq == n - 1);
		if (!rd->sub_id)
			rd->sub_id = c->id;
		t_eq(c->id, rd->sub_id);
		rd->next_seq = ev->seq + 1;
		rd->final = c->flags & AEM_CQE_F_FINAL;
		rd->received++;
	}
	aem_cq_advance(r, 0, k);
	return k;
}

/* While the subscription lives its counters balance; once gone it stays gone. */
static void check_sub(struct aem_ring *r, struct reader *rd, uint64_t n)
{
	struct aem_sub_stats ss;
	int ret;

	if (!rd->sub_id)
		return;
	ret = aem_sub_stats(r, rd->sub_id, &ss);
	if (ret == -ENOENT) {
		rd->ended = true;
		return;
	}
	t_ok(ret);
	t_assert(!rd->ended, "subscription statistics back after -ENOENT");
	t_balanced(&ss, "subscription");
	t_assert(ss.produced <= n, "produced %llu of a %llu-event generator",
		 (unsigned long long)ss.produced, (unsigned long long)n);
	t_assert(rd->received <= ss.delivered, "read %llu, only %llu delivered",
		 (unsigned long long)rd->received, (unsigned long long)ss.delivered);
	rd->sub_checks++;
}

static void run(uint64_t rate, uint64_t n, unsigned burst, const char *what)
{
	struct aem_params p = t_params(64, CQ, 1);
	struct aem_ring_stats st;
	struct reader rd = { 0 };
	struct aem_sqe *sqe;
	struct aem_ring r;
	bool dense = rate == 0;
	uint64_t end;

	p.backlog_limit = BACKLOG;
	t_setup(&r, &p);
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, rate, n, burst, sizeof(struct aem_gen_event), 0, TAG);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(&r);

	end = t_now_ns() + 20000 * T_MS;
	for (;;) {
		/* Rate 0 drains as fast as it can; otherwise a slow reader makes the flood overflow. */
		if (dense)
			while (consume(&r, &rd, 64, n, dense))
				;
		else
			consume(&r, &rd, 16, n, dense);
		check_sub(&r, &rd, n);
		st = t_stats(&r);	/* fails unless the ring balances */
		if (st.produced == n && st.backlog == 0 && rd.received == st.delivered)
			break;
		t_assert(t_now_ns() < end, "%s: produced %llu of %llu, backlog %llu, read %llu of %llu delivered",
			 what, (unsigned long long)st.produced, (unsigned long long)n,
			 (unsigned long long)st.backlog, (unsigned long long)rd.received,
			 (unsigned long long)st.delivered);
		aem_submit(&r);	/* enter: the kernel side flushes the backlog */
		if (dense)
			aem_wait(&r, 1, 10 * T_MS);
		else
			usleep(1000);
	}
	check_sub(&r, &rd, n);
	printf("%s: N %llu = delivered %llu + dropped %llu; read %llu; %u subscription checks\n",
	       what, (unsigned long long)n, (unsigned long long)st.delivered,
	       (unsigned long long)st.dropped, (unsigned long long)rd.received, rd.sub_checks);
	t_eq(st.produced, n);
	t_eq(st.delivered + st.dropped, n);
	t_eq(rd.received, st.delivered);
	t_eq(aem_read_once(*r.cq[0].kdropped), (uint32_t)st.dropped);
	t_assert(rd.ended, "%s: subscription still live after its last event", what);
	t_eq(st.subscriptions, 0);
	t_expect_quiet(&r, 50, what);
	if (dense) {
		t_eq(st.dropped, 0);
		t_assert(rd.final, "%s: no F_FINAL", what);
	} else {
		t_assert(st.dropped > 0, "%s: nothing dropped with a %u-event backlog", what, BACKLOG);
		/* The final event is either the last one read or among the dropped. */
		t_assert(rd.final || rd.next_seq < n, "%s: seq %llu read without F_FINAL", what,
			 (unsigned long long)n - 1);
	}
	aem_teardown(&r);
}

int main(void)
{
	run(0, 200000, 64, "rate 0");
	run(10000000, 100000, 256, "flood");
	return T_EXIT_PASS;
}
