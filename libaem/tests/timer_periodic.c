/* SPDX-License-Identifier: MIT */
/*
 * Periodic timers: events keep coming without F_FINAL, expiry times move
 * forward, the subscription's counters balance; TIMER_SET turns a periodic
 * timer into a far one-shot (it goes quiet) and back; UNSUBSCRIBE stops it
 * for good and its id dies; TIMER_SET on a non-timer subscription is refused.
 */
#include "aem_test.h"

#define TAG	0x9e

static void check_balance(struct aem_ring *r, uint64_t id)
{
	t_sub_stats(r, id);	/* fails unless delivered + backlog + dropped == produced */
}

/* Read @n timer events (non-final); returns the last expiry time. */
static uint64_t expect_ticks(struct aem_ring *r, unsigned n, uint64_t after)
{
	struct aem_timer_event ev;
	struct aem_cqe c;
	unsigned i, len;
	void *d;

	for (i = 0; i < n; i++) {
		t_assert(t_next(r, &c, 5000), "tick %u of %u missing", i, n);
		t_eq(c.user_data, TAG);
		t_eq(c.source, AEM_SRC_TIMER);
		t_assert(!(c.flags & (AEM_CQE_F_FINAL | AEM_CQE_F_RESULT)), "tick flags %#x", c.flags);
		d = aem_cqe_payload(r, &c, &len);
		t_assert(d && len == sizeof(ev), "tick payload %u bytes", len);
		memcpy(&ev, d, sizeof(ev));
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(r, c.slot);
		t_assert(ev.expirations >= 1, "tick with 0 expirations");
		t_assert(ev.now_ns > after, "tick time went backwards");
		after = ev.now_ns;
	}
	return after;
}

/*
 * Drain ticks already in flight (at most @max), then expect silence.  The
 * bound is loose: on a loaded machine the 10 ms timer fires several times
 * between the last tick read and the SQE that stops it; the silence after
 * is what proves it stopped.
 */
static void expect_stopped(struct aem_ring *r, unsigned max, const char *what)
{
	struct aem_cqe c;
	unsigned n = 0;

	while (t_next(r, &c, 100)) {
		t_eq(c.user_data, TAG);
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(r, c.slot);
		t_assert(++n <= max, "%s: still ticking (%u events)", what, n);
	}
	t_expect_quiet(r, 200, what);
}

int main(void)
{
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	uint64_t id, msg_id, last;

	t_setup(&r, NULL);

	sqe = t_sqe(&r);
	aem_prep_subscribe_timer(sqe, 10 * T_MS, 10 * T_MS, 0, TAG);
	t_submit(&r);
	c = t_result(&r, TAG, 5000);
	t_assert(c.res >= 0, "subscribe periodic timer: %s", strerror(-c.res));
	id = c.id;

	last = expect_ticks(&r, 10, 0);
	check_balance(&r, id);

	/* Re-arm as a one-shot an hour away: it goes quiet but stays alive. */
	sqe = t_sqe(&r);
	aem_prep_timer_set(sqe, id, 3600000 * T_MS, 0);
	aem_sqe_set_data(sqe, 1);
	t_eq(t_do(&r, 1), 0);
	expect_stopped(&r, 100, "re-armed one hour away");
	check_balance(&r, id);

	/* And back to periodic. */
	sqe = t_sqe(&r);
	aem_prep_timer_set(sqe, id, 5 * T_MS, 5 * T_MS);
	aem_sqe_set_data(sqe, 2);
	t_eq(t_do(&r, 2), 0);
	expect_ticks(&r, 5, last);

	/* TIMER_SET on a message subscription is refused. */
	msg_id = t_sub_msg(&r, 1, 0, 0x3);
	sqe = t_sqe(&r);
	aem_prep_timer_set(sqe, msg_id, 5 * T_MS, 0);
	aem_sqe_set_data(sqe, 3);
	t_submit(&r);
	for (;;) {
		t_assert(t_next(&r, &c, 5000), "no result for TIMER_SET on a msg subscription");
		if (c.flags & AEM_CQE_F_RESULT)
			break;
		t_eq(c.user_data, TAG);
	}
	t_eq(c.user_data, 3);
	t_assert(c.res < 0, "TIMER_SET on a message subscription accepted");

	/* Unsubscribe: result 0, no more ticks, the id is dead. */
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 4);
	t_submit(&r);
	for (;;) {
		t_assert(t_next(&r, &c, 5000), "no result for UNSUBSCRIBE");
		if (c.flags & AEM_CQE_F_RESULT)
			break;
		t_eq(c.user_data, TAG);
	}
	t_eq(c.user_data, 4);
	t_eq(c.res, 0);
	expect_stopped(&r, 100, "after UNSUBSCRIBE");
	struct aem_sub_stats ss;
	t_eq(aem_sub_stats(&r, id, &ss), -ENOENT);
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id);
	aem_sqe_set_data(sqe, 5);
	t_eq(t_do(&r, 5), -ENOENT);

	aem_teardown(&r);
	return T_EXIT_PASS;
}
