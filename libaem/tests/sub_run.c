/* SPDX-License-Identifier: MIT */
/*
 * Runs of SUBSCRIBEs in one submission: the kernel side answers
 * consecutive timer subscribes together and arms the timers after their
 * answers, and nothing about them may differ from subscribing one by one:
 *  - the answers come in SQE order, across more subscribes than one run
 *    holds, with refusals (a timer without a first expiry, a source that
 *    does not exist), Msg subscribes and a NOP in their places and a
 *    silent subscribe answered by nothing;
 *  - two Msg subscribes of one channel in one submission: the second is
 *    refused (EEXIST), as when they come one by one;
 *  - every timer fires once, its event carrying the id its answer gave.
 */
#include "aem_test.h"

#define N		100	/* more than a run's 32 */
#define BAD_TIMER	40
#define MSG_FIRST	50
#define MSG_AGAIN	51
#define BAD_SOURCE	60
#define NOP_AT		70
#define SILENT_AT	80
#define CHANNEL		7

static bool is_timer(unsigned i)
{
	return i != BAD_TIMER && i != MSG_FIRST && i != MSG_AGAIN && i != BAD_SOURCE && i != NOP_AT;
}

int main(void)
{
	struct aem_params p = t_params(256, 1024, 2);
	uint64_t ids[N] = { 0 };
	unsigned i, fired = 0, timers = 0;
	struct aem_ring r;
	struct aem_cqe c;

	t_setup(&r, &p);
	for (i = 0; i < N; i++) {
		struct aem_sqe *sqe = t_sqe(&r);
		uint64_t tag = i + 1;

		if (i == MSG_FIRST || i == MSG_AGAIN) {
			aem_prep_subscribe_msg(sqe, CHANNEL, 0, tag);
			continue;
		}
		if (i == NOP_AT) {
			aem_prep_nop(sqe);
			aem_sqe_set_data(sqe, tag);
			continue;
		}
		aem_prep_subscribe_timer(sqe, i == BAD_TIMER ? 0 : T_MS + i * 10000ull, 0, 1, tag);
		if (i == BAD_SOURCE)
			sqe->source = AEM_SRC_LAST;
		if (i == SILENT_AT)
			sqe->flags |= AEM_SQE_F_SILENT;
		timers += is_timer(i);
	}
	t_submit(&r);

	/* The answers, in SQE order: results come before events in t_next. */
	for (i = 0; i < N; i++) {
		if (i == SILENT_AT)
			continue;
		t_assert(t_next(&r, &c, 5000), "no answer for SQE %u", i);
		t_assert(c.flags & AEM_CQE_F_RESULT, "SQE %u: an event (tag %#llx) before its answer", i,
			 (unsigned long long)c.user_data);
		t_assert(c.user_data == i + 1, "answer of SQE %llu where SQE %u's was due",
			 (unsigned long long)c.user_data - 1, i);
		switch (i) {
		case BAD_TIMER:
			t_eq(c.res, -EINVAL);
			break;
		case MSG_AGAIN:
			t_eq(c.res, -EEXIST);
			break;
		case BAD_SOURCE:
			t_assert(c.res < 0, "a subscribe of source %u taken (res %d)", AEM_SRC_LAST, c.res);
			break;
		default:
			t_eq(c.res, 0);
			if (i != NOP_AT) {
				t_eq(AEM_ID_KIND(c.id), AEM_ID_KIND_SUB);
				ids[i] = c.id;
			}
		}
	}

	/* Every timer fires once, as the subscription its answer named. */
	while (fired < timers) {
		t_assert(t_next(&r, &c, 5000), "%u of %u timers fired", fired, timers);
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "a result (ud %#llx, res %d) after all answers",
			 (unsigned long long)c.user_data, c.res);
		t_eq(c.source, AEM_SRC_TIMER);
		t_assert(c.user_data >= 1 && c.user_data <= N && is_timer(c.user_data - 1),
			 "an event of tag %#llx", (unsigned long long)c.user_data);
		i = c.user_data - 1;
		if (i != SILENT_AT)
			t_assert(c.id == ids[i], "timer %u fired as %#llx, answered as %#llx", i,
				 (unsigned long long)c.id, (unsigned long long)ids[i]);
		ids[i] = ~0ull;	/* fired: a second event would not match */
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
		fired++;
	}
	t_expect_quiet(&r, 20, "after every timer fired once");
	aem_teardown(&r);
	return T_EXIT_PASS;
}
