/* SPDX-License-Identifier: MIT */
/*
 * aem_teardown() while other threads are inside libaem on the same ring:
 * threads waiting in aem_wait(), reading its stats, re-arming its fd,
 * posting and submitting through it.  Every one of them must end with
 * -ESHUTDOWN, never touch freed or unmapped memory (run under ASan), and on
 * the embedded backend a blocked waiter must be woken by the teardown, not
 * by its timeout.  After the teardown every call on the ring gets
 * -ESHUTDOWN and a second teardown does nothing.  Repeated with fresh
 * rings.
 */
#include <pthread.h>
#include "aem_test.h"

#define ROUNDS		20
#define SINK_CHANNEL	5
#define MAX_CALLS	1000000	/* per thread per round: bounds every loop */

static struct aem_ring sink;	/* where the poster's messages go: the target ring stays quiet */
static struct aem_ring *target;
static bool kernel;
static int64_t wait_ns;

/* Call @expr until it answers -ESHUTDOWN; an answer that fails @ok_cond fails the test. */
#define until_shutdown(ok_cond, expr) do {					\
	long __i;								\
	for (__i = 0; __i < MAX_CALLS; __i++) {					\
		int ret = (expr);						\
		if (ret == -ESHUTDOWN)						\
			return NULL;						\
		if (!(ok_cond))							\
			t_fail("%s during teardown: %d (%s)", #expr, ret,	\
			       ret < 0 ? strerror(-ret) : "ok");		\
	}									\
	t_fail("%s: no -ESHUTDOWN after %d calls", #expr, MAX_CALLS);		\
} while (0)

static void *waiter(void *arg)
{
	(void)arg;
	/*
	 * Nothing arrives on the target, so each wait sleeps.  On the embedded
	 * backend its timeout is longer than the test's limit: only the
	 * teardown can end it.  The module's waits cannot be woken by it, and
	 * it waits for them: there they time out soon.
	 */
	until_shutdown(ret == -EINTR || (ret == -ETIME && kernel), aem_wait(target, 1, wait_ns));
	return NULL;
}

static int stat_all(void)
{
	struct aem_ring_stats rs;
	struct aem_sub_stats ss;
	int ret = aem_ring_stats(target, &rs);

	if (ret)
		return ret;
	ret = aem_sub_stats(target, 1, &ss);	/* no such subscription */
	if (ret != -ENOENT)
		return ret ? ret : -EPROTO;
	return aem_ring_fd_arm(target);
}

static void *statter(void *arg)
{
	(void)arg;
	until_shutdown(ret == 0, stat_all());
	return NULL;
}

static int post_and_submit(void)
{
	static const char msg[100];
	struct aem_post_msg m[2] = { { msg, 8 }, { msg, sizeof(msg) } };
	/* Not lossy: a full sink stops the post without a result, so the target stays quiet. */
	int ret = aem_post_batch(target, AEM_ADDR(sink.ring_id, SINK_CHANNEL), m, 2, 0, 0);

	if (ret < 0)
		return ret;
	return aem_submit(target);
}

/* The only thread that submits: the SQ's local indices are single-writer. */
static void *poster(void *arg)
{
	(void)arg;
	until_shutdown(ret >= 0, post_and_submit());
	return NULL;
}

int main(void)
{
	void *(*fns[])(void *) = { waiter, waiter, statter, statter, poster };
	enum { NTHR = sizeof(fns) / sizeof(fns[0]) };
	struct aem_ring_stats st;
	struct aem_cqe c;
	int round, i;

	t_setup(&sink, NULL);
	t_sub_msg(&sink, SINK_CHANNEL, 0, 1);
	kernel = t_kernel(&sink);
	wait_ns = kernel ? 100 * (int64_t)T_MS : 600 * 1000 * (int64_t)T_MS;

	for (round = 0; round < ROUNDS; round++) {
		pthread_t thr[NTHR];

		/* On the heap, so that ASan sees any use of it after it is freed below. */
		target = calloc(1, sizeof(*target));
		t_assert(target, "calloc");
		t_setup(target, NULL);
		t_eq(aem_wait(target, 0, 0), 0);	/* leaves nothing counted in */
		for (i = 0; i < NTHR; i++)
			t_assert(!pthread_create(&thr[i], NULL, fns[i], NULL), "pthread_create");
		usleep(5000 + round * 1000);	/* let them get inside, waiters asleep */
		aem_teardown(target);
		for (i = 0; i < NTHR; i++)
			pthread_join(thr[i], NULL);

		t_eq(aem_submit(target), -ESHUTDOWN);
		t_eq(aem_wait(target, 1, 0), -ESHUTDOWN);
		t_eq(aem_wait(target, 0, 0), -ESHUTDOWN);
		t_eq(aem_ring_stats(target, &st), -ESHUTDOWN);
		aem_teardown(target);	/* nothing left to do */
		free(target);

		/* The sink never stopped working: drain what it holds. */
		while (t_next(&sink, &c, 0)) {
			if (c.flags & AEM_CQE_F_SLOT)
				t_release(&sink, c.slot);
		}
		aem_release_commit(&sink);
	}
	aem_teardown(&sink);
	return t_exit();
}
