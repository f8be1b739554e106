/* SPDX-License-Identifier: MIT */
/*
 * The synthetic generator: a bounded run delivers exactly `count` events,
 * seq 0..count-1 in order, the last with F_FINAL; payloads above the inline
 * size arrive in slots, which go back through the slot ring until the
 * kernel side holds them all again; GEN_SET changes a running generator;
 * bad generator arguments are refused.
 */
#include "aem_test.h"

static uint64_t sub_gen(struct aem_ring *r, uint64_t rate, uint64_t count, unsigned burst,
			unsigned len, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);
	struct aem_cqe c;

	aem_prep_subscribe_gen(sqe, rate, count, burst, len, 0, tag);
	t_submit(r);
	c = t_result(r, tag, 5000);
	if (c.res < 0)
		t_fail("subscribe generator: %s", strerror(-c.res));
	return c.id;
}

/* Collect a bounded run of @count events of @len bytes. */
static void expect_run(struct aem_ring *r, uint64_t tag, uint64_t count, unsigned len)
{
	struct aem_gen_event ev;
	struct aem_cqe c;
	uint64_t seq;
	unsigned got;
	uint8_t *d;

	for (seq = 0; seq < count; seq++) {
		t_assert(t_next(r, &c, 5000), "event %llu of %llu missing", (unsigned long long)seq,
			 (unsigned long long)count);
		t_eq(c.user_data, tag);
		t_eq(c.source, AEM_SRC_GEN);
		t_eq(c.res, len);
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "result CQE in the event stream");
		t_eq(!!(c.flags & AEM_CQE_F_SLOT), len > AEM_CQE_INLINE);
		t_eq(!!(c.flags & AEM_CQE_F_FINAL), seq == count - 1);
		d = aem_cqe_payload(r, &c, &got);
		t_assert(d && got == len, "payload %u bytes, want %u", got, len);
		memcpy(&ev, d, sizeof(ev));
		t_eq(ev.seq, seq);
		t_assert(ev.now_ns && ev.now_ns <= t_now_ns(), "bad production time");
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(r, c.slot);
	}
}

static void bad_gen(struct aem_ring *r, uint64_t rate, uint64_t count, unsigned burst,
		    unsigned len, uint64_t resv, const char *what)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_subscribe_gen(sqe, rate, count, burst, len, 0, 0xbad);
	sqe->gen.resv = resv;
	t_submit(r);
	int res = t_result(r, 0xbad, 5000).res;
	if (res != -EINVAL)
		t_fail("generator with %s: res %d, want -EINVAL", what, res);
}

int main(void)
{
	struct aem_params p = t_params(256, 4096, 1);
	struct aem_ring_stats st;
	struct aem_sub_stats ss;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	uint64_t id, last = 0;
	unsigned n = 0, i;

	p.slot_count = 64;	/* fewer slots than events: they must come back to be reused */
	t_setup(&r, &p);

	sub_gen(&r, 0, 100, 10, sizeof(struct aem_gen_event), 1);
	expect_run(&r, 1, 100, sizeof(struct aem_gen_event));
	sub_gen(&r, 1000000, 50, 1, AEM_CQE_INLINE, 2);
	expect_run(&r, 2, 50, AEM_CQE_INLINE);
	sub_gen(&r, 0, 1000, 7, 200, 3);
	expect_run(&r, 3, 1000, 200);
	sub_gen(&r, 0, 100, 100, p.slot_size, 4);
	expect_run(&r, 4, 100, p.slot_size);
	t_expect_quiet(&r, 50, "after bounded generators");

	aem_release_commit(&r);
	t_submit(&r);
	st = t_stats(&r);
	t_eq(st.slots_free, p.slot_count);
	t_eq(st.subscriptions, 0);
	/* Ring-wide counts may include result CQEs: at least the 1250 events, none lost. */
	t_assert(st.delivered >= 1250, "ring delivered %llu < 1250 events", (unsigned long long)st.delivered);
	t_eq(st.produced, st.delivered);
	t_eq(st.dropped, 0);
	t_eq(t_refused_total(&st), 0);

	/* One event a second, then GEN_SET to a fast bounded run. */
	id = sub_gen(&r, 1, 0, 1, 16, 5);
	sqe = t_sqe(&r);
	aem_prep_gen_set(sqe, id, 1000000, 100, 10, 64);
	aem_sqe_set_data(sqe, 6);
	t_submit(&r);
	for (i = 0; i < 1000; i++) {
		t_assert(t_next(&r, &c, 5000), "GEN_SET generator stalled after %u events", n);
		if (c.flags & AEM_CQE_F_RESULT) {
			t_eq(c.user_data, 6);
			t_eq(c.res, 0);
			continue;
		}
		struct aem_gen_event *ev = aem_cqe_payload(&r, &c, &(unsigned){ 0 });
		t_eq(c.user_data, 5);
		t_assert(ev, "no payload");
		t_assert(n == 0 || ev->seq == last + 1, "seq %llu after %llu",
			 (unsigned long long)ev->seq, (unsigned long long)last);
		last = ev->seq;
		n++;
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
		if (c.flags & AEM_CQE_F_FINAL)
			break;
	}
	t_assert(i < 1000 && n >= 50, "GEN_SET run: %u events, no F_FINAL", n);
	t_eq(aem_sub_stats(&r, id, &ss), -ENOENT);

	/* GEN_SET on a timer subscription is refused. */
	sqe = t_sqe(&r);
	aem_prep_subscribe_timer(sqe, 3600000 * T_MS, 0, 0, 7);
	t_submit(&r);
	c = t_result(&r, 7, 5000);
	t_assert(c.res >= 0, "subscribe timer: %s", strerror(-c.res));
	sqe = t_sqe(&r);
	aem_prep_gen_set(sqe, c.id, 10, 10, 1, 16);
	aem_sqe_set_data(sqe, 8);
	t_assert(t_do(&r, 8) < 0, "GEN_SET on a timer accepted");

	bad_gen(&r, 0, 10, 0, 16, 0, "burst 0");
	bad_gen(&r, 0, 10, 1, p.slot_size + 1, 0, "payload_len > slot_size");
	bad_gen(&r, 0, 10, 1, 16, 1, "non-zero resv");

	aem_teardown(&r);
	return T_EXIT_PASS;
}
