/* SPDX-License-Identifier: MIT */
/*
 * One-shot timers: the subscribe result carries a subscription id; the
 * timer fires once, not early, with AEM_CQE_F_FINAL and a struct
 * aem_timer_event inline; afterwards its id is dead.  Timers fire in the
 * order of their deadlines, TIMER_SET re-arms a pending timer, and a zero
 * first expiry is refused.
 */
#include "aem_test.h"

static uint64_t sub_timer(struct aem_ring *r, uint64_t first_ns, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);
	struct aem_cqe c;

	aem_prep_subscribe_timer(sqe, first_ns, 0, 0, tag);
	t_submit(r);
	c = t_result(r, tag, 5000);
	if (c.res < 0)
		t_fail("subscribe timer %#llx: %s", (unsigned long long)tag, strerror(-c.res));
	t_eq(AEM_ID_KIND(c.id), AEM_ID_KIND_SUB);
	return c.id;
}

static void expect_fire(struct aem_ring *r, uint64_t tag, uint64_t not_before)
{
	struct aem_timer_event ev;
	struct aem_cqe c;
	unsigned len;
	void *d;

	t_assert(t_next(r, &c, 10000), "timer %#llx never fired", (unsigned long long)tag);
	t_assert(!(c.flags & AEM_CQE_F_RESULT), "result CQE ud %#llx res %d instead of timer %#llx",
		 (unsigned long long)c.user_data, c.res, (unsigned long long)tag);
	t_eq(c.user_data, tag);
	t_eq(c.source, AEM_SRC_TIMER);
	t_assert(c.flags & AEM_CQE_F_FINAL, "one-shot timer event flags %#x lack F_FINAL", c.flags);
	t_eq(c.res, sizeof(ev));
	d = aem_cqe_payload(r, &c, &len);
	t_assert(d && len == sizeof(ev), "timer payload len %u", len);
	memcpy(&ev, d, sizeof(ev));
	if (c.flags & AEM_CQE_F_SLOT)
		t_release(r, c.slot);
	t_eq(ev.expirations, 1);
	/* 1 ms of slack for the clock read before the subscribe was submitted */
	t_assert(ev.now_ns + T_MS >= not_before, "timer fired %llu ns early",
		 (unsigned long long)(not_before - ev.now_ns));
	t_assert(ev.now_ns <= t_now_ns(), "expiry time in the future");
}

int main(void)
{
	static const unsigned delay_ms[] = { 200, 40, 160, 80, 120 };
	struct aem_sub_stats ss;
	struct aem_sqe *sqe;
	struct aem_ring r;
	uint64_t t0, id, id2;
	unsigned i;

	t_setup(&r, NULL);

	/*
	 * Long enough that the two checks before it cannot race it: a 20 ms
	 * timer once fired before them in a TCG guest on a loaded host.
	 */
	t0 = t_now_ns();
	id = sub_timer(&r, 500 * T_MS, 0x7001);
	ss = t_sub_stats(&r, id);
	t_eq(ss.produced, 0);
	t_eq(t_stats(&r).subscriptions, 1);
	expect_fire(&r, 0x7001, t0 + 500 * T_MS);
	t_expect_quiet(&r, 100, "after a one-shot timer");

	/* The id is dead: every use is refused with -ENOENT. */
	t_eq(t_stats(&r).subscriptions, 0);
	t_eq(aem_sub_stats(&r, id, &ss), -ENOENT);
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x7002);
	t_eq(t_do(&r, 0x7002), -ENOENT);
	sqe = t_sqe(&r);
	aem_prep_timer_set(sqe, id, 10 * T_MS, 0);
	aem_sqe_set_data(sqe, 0x7003);
	t_eq(t_do(&r, 0x7003), -ENOENT);
	t_eq(t_stats(&r).refused[AEM_REFUSE_ID], 2);

	/* A new subscription does not reuse the old id. */
	id2 = sub_timer(&r, 3600000 * T_MS, 0x7004);
	t_assert(id2 != id, "freed id %#llx handed out again", (unsigned long long)id);
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 0x7005);
	t_eq(t_do(&r, 0x7005), -ENOENT);

	/* TIMER_SET brings a far timer in. */
	t0 = t_now_ns();
	sqe = t_sqe(&r);
	aem_prep_timer_set(sqe, id2, 30 * T_MS, 0);
	aem_sqe_set_data(sqe, 0x7006);
	t_eq(t_do(&r, 0x7006), 0);
	expect_fire(&r, 0x7004, t0 + 30 * T_MS);

	/* Deadline order, whatever the subscription order. */
	t0 = t_now_ns();
	for (i = 0; i < sizeof(delay_ms) / sizeof(delay_ms[0]); i++) {
		sqe = t_sqe(&r);
		aem_prep_subscribe_timer(sqe, delay_ms[i] * T_MS, 0, 0, delay_ms[i]);
		sqe->flags |= AEM_SQE_F_SILENT;
	}
	t_submit(&r);
	for (i = 40; i <= 200; i += 40)
		expect_fire(&r, i, t0 + i * T_MS);
	t_expect_quiet(&r, 50, "after five one-shot timers");

	/* first_ns must be > 0. */
	sqe = t_sqe(&r);
	aem_prep_subscribe_timer(sqe, 0, 0, 0, 0x7007);
	t_eq(t_do(&r, 0x7007), -EINVAL);

	aem_teardown(&r);
	return T_EXIT_PASS;
}
