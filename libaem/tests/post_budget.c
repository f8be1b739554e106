/* SPDX-License-Identifier: MIT */
/*
 * A flood of posts from another ring never pushes the target's own sources
 * into drops: incoming posts may fill only half of the target's backlog
 * (past it the poster is refused AEM_REFUSE_FULL and waits), so the
 * target's own 1 ms timer, in the same class, loses nothing while the
 * target drains now and then.  Before the budget the flood held the whole
 * backlog and the timer lost most of its events.
 */
#include <pthread.h>
#include <sched.h>

#include "aem_test.h"

#define CHANNEL		7
#define BACKLOG		256
#define FLOOD_MS	1500

static uint32_t target_id;
static volatile bool stop;
static uint64_t posted, full_refusals;

static void *flooder(void *arg)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_post_msg m[16];
	struct aem_ring_stats st;
	struct aem_ring r;
	uint64_t v = 0;
	unsigned i;
	int ret;

	(void)arg;
	for (i = 0; i < 16; i++) {
		m[i].data = &v;
		m[i].len = sizeof(v);
	}
	t_setup(&r, &p);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		ret = aem_post_batch(&r, AEM_ADDR(target_id, CHANNEL), m, 16, 0, 0);
		t_assert(ret >= 0, "aem_post_batch: %s", strerror(-ret));
		posted += (unsigned)ret;
		if (ret < 16)
			sched_yield();
	}
	st = t_stats(&r);
	full_refusals = st.refused[AEM_REFUSE_FULL];
	t_eq(st.refused[AEM_REFUSE_ID] + st.refused[AEM_REFUSE_NOMEM], 0);
	aem_teardown(&r);
	return NULL;
}

/* Read everything that is ready (results, events), releasing slots. */
static unsigned drain(struct aem_ring *r)
{
	struct aem_cqe c;
	unsigned n = 0;

	while (t_next(r, &c, 0)) {
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(r, c.slot);
		n++;
	}
	return n;
}

int main(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_sub_stats ts, ms;
	struct aem_ring victim;
	uint64_t timer, msg, end;
	pthread_t th;

	p.backlog_limit = BACKLOG;
	t_setup(&victim, &p);
	t_eq(p.backlog_limit, BACKLOG);
	target_id = victim.ring_id;
	msg = t_sub_msg(&victim, CHANNEL, 0, 0xf00d);
	aem_prep_subscribe_timer(t_sqe(&victim), T_MS, T_MS, 0, 0x7173);
	t_submit(&victim);
	timer = t_result(&victim, 0x7173, 5000).id;

	t_assert(pthread_create(&th, NULL, flooder, NULL) == 0, "pthread_create");
	end = t_now_ns() + FLOOD_MS * T_MS;
	while (t_now_ns() < end) {
		usleep(5000);	/* a slow consumer: the flood fills the ring in between */
		drain(&victim);
	}
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	drain(&victim);

	ts = t_sub_stats(&victim, timer);
	ms = t_sub_stats(&victim, msg);
	printf("flood: %llu posted, %llu refused full; timer produced %llu delivered %llu backlog %llu dropped %llu\n",
	       (unsigned long long)posted, (unsigned long long)full_refusals,
	       (unsigned long long)ts.produced, (unsigned long long)ts.delivered,
	       (unsigned long long)ts.backlog, (unsigned long long)ts.dropped);
	t_assert(full_refusals > 0, "the flood never found the target full: it tested nothing");
	t_assert(ts.produced > 0, "the timer never fired");
	t_eq(ts.dropped, 0);
	t_eq(ms.produced, posted);
	t_eq(ms.dropped, 0);
	t_stats(&victim);
	aem_teardown(&victim);
	return t_exit();
}
