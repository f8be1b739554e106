/* SPDX-License-Identifier: MIT */
/*
 * Timer churn: threads arm short one-shot timers one after another, so the
 * timer module's tick stops and starts again all the time, from different
 * CPUs, while a tick may be running.  Every timer fires (a lost kick would
 * leave one waiting for ever) and none fires early.
 */
#include <pthread.h>
#include "aem_test.h"

#define THREADS	3
#define ROUNDS	300

static int failed;

static bool is_timer(const struct aem_cqe *c, void *arg)
{
	return !(c->flags & AEM_CQE_F_RESULT) && c->source == AEM_SRC_TIMER;
}

static void *churn(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	struct vring r;
	int i;

	vr_setup_or_die(&r, NULL);
	for (i = 0; i < ROUNDS && !__atomic_load_n(&failed, __ATOMIC_RELAXED); i++) {
		uint64_t delay = 1 + t_rand(&seed) % (3 * T_MS), t0 = t_now_ns();
		struct aem_sqe *sqe = vr_sqe(&r);
		struct aem_timer_event ev;
		struct aem_cqe c;
		int32_t res;

		sqe->opcode = AEM_OP_SUBSCRIBE;
		sqe->source = AEM_SRC_TIMER;
		sqe->timer.first_ns = delay;
		sqe->user_data = (uint64_t)i + 1;
		res = vr_result(&r, (uint64_t)i + 1, NULL);
		if (res == -EOPNOTSUPP)
			t_skip("aem_timer not loaded");
		t_eq(res, 0);
		if (!vr_wait_cqe(&r, &c, 10000, is_timer, NULL)) {
			__atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
			t_fail("thread %lu round %d: a %" PRIu64 " ns timer never fired",
			       (unsigned long)(uintptr_t)arg, i, delay);
		}
		t_eq(c.user_data, (uint64_t)i + 1);
		t_assert(c.flags & AEM_CQE_F_FINAL, "one-shot without F_FINAL");
		memcpy(&ev, c.data, sizeof(ev));
		t_assert(ev.now_ns - t0 + 50000 >= delay || t_now_ns() - t0 >= delay,
			 "fired early: %" PRIu64 " ns timer", delay);
	}
	vr_close(&r);
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	uintptr_t i;

	for (i = 0; i < THREADS; i++)
		t_assert(pthread_create(&th[i], NULL, churn, (void *)i) == 0, "pthread_create");
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	return failed ? T_EXIT_FAIL : T_EXIT_PASS;
}
