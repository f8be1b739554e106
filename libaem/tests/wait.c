/* SPDX-License-Identifier: MIT */
/*
 * Waiting: aem_wait on an empty ring times out with -ETIME (not before the
 * timeout), returns at once when enough CQEs are ready, wakes when another
 * thread posts, returns -EINTR on a signal; and a ping-pong of blocking
 * waits between two rings loses no wake-up (the Dekker pairing), in the
 * urgent class and in a class that may coalesce wake-ups.
 */
#include <pthread.h>
#include <signal.h>
#include "aem_test.h"

#define ROUNDS	3000

static struct aem_ring ra, rb;

static void *post_later(void *arg)
{
	struct aem_sqe *sqe;

	(void)arg;
	usleep(50000);
	sqe = t_sqe(&rb);
	aem_prep_post(sqe, AEM_ADDR(ra.ring_id, 1), "x", 1, 0);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(&rb);
	return NULL;
}

/* Wait for one message on @self's class @cls, then (if @reply) post one to @peer. */
static void bounce(struct aem_ring *self, struct aem_ring *peer, unsigned channel, unsigned cls,
		   unsigned round, bool reply, const char *who)
{
	const struct aem_cqe *c;
	struct aem_sqe *sqe;
	int ret;

	while (!aem_peek_batch(self, cls, &c, 1)) {
		ret = aem_wait(self, 1, 5000 * T_MS);
		if (ret == -ETIME && !aem_cq_ready(self, cls))
			t_fail("%s: round %u class %u: no wake-up within 5 s (lost wake-up?)", who, round, cls);
		t_assert(ret >= 0 || ret == -ETIME || ret == -EINTR, "aem_wait: %s", strerror(-ret));
	}
	t_eq(c->user_data, channel);
	aem_cq_advance(self, cls, 1);
	if (!reply)
		return;
	sqe = t_sqe(self);
	aem_prep_post(sqe, AEM_ADDR(peer->ring_id, channel), &round, sizeof(round), cls);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(self);
}

static void *pong(void *arg)
{
	unsigned i, cls;

	(void)arg;
	for (cls = 0; cls < 2; cls++)
		for (i = 0; i < ROUNDS; i++)
			bounce(&rb, &ra, 10 + cls, cls, i, true, "pong");
	return NULL;
}

static volatile sig_atomic_t signalled;

static void on_signal(int sig)
{
	(void)sig;
	signalled = 1;
}

static void *wait_for_signal(void *arg)
{
	int *ret = arg;

	aem_write_once(*ret, aem_wait(&ra, 1, 10000 * T_MS));
	return NULL;
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_signal };	/* no SA_RESTART */
	struct aem_sqe *sqe;
	struct aem_cqe c;
	unsigned i, cls;
	pthread_t th;
	uint64_t t0;
	int ret;

	t_setup(&ra, NULL);
	t_setup(&rb, NULL);
	t_sub_msg(&ra, 1, 0, 1);
	for (cls = 0; cls < 2; cls++) {
		t_sub_msg(&ra, 10 + cls, cls, 10 + cls);
		t_sub_msg(&rb, 10 + cls, cls, 10 + cls);
	}

	/* Empty ring: -ETIME, not early. */
	t0 = t_now_ns();
	t_eq(aem_wait(&ra, 1, 50 * T_MS), -ETIME);
	t_assert(t_now_ns() - t0 >= 45 * T_MS, "aem_wait(50 ms) returned after %llu us",
		 (unsigned long long)((t_now_ns() - t0) / 1000));
	t_eq(aem_wait(&ra, 1, 0), -ETIME);

	/* Ready: at once. */
	sqe = t_sqe(&ra);
	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 2);
	t_submit(&ra);
	t0 = t_now_ns();
	ret = aem_wait(&ra, 1, 10000 * T_MS);
	t_assert(ret >= 0, "aem_wait with a CQE ready: %s", strerror(-ret));
	t_assert(t_now_ns() - t0 < 5000 * T_MS, "aem_wait slept with a CQE ready");
	t_assert(t_next(&ra, &c, 0) && c.user_data == 2, "NOP result");

	/* submit_and_wait. */
	sqe = t_sqe(&ra);
	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 3);
	ret = aem_submit_and_wait(&ra, 1, 5000 * T_MS);
	t_assert(ret == 1, "aem_submit_and_wait: %d", ret);
	t_assert(t_next(&ra, &c, 0) && c.user_data == 3, "NOP result after submit_and_wait");

	/* Woken by a post from another thread. */
	t_assert(pthread_create(&th, NULL, post_later, NULL) == 0, "pthread_create");
	t0 = t_now_ns();
	ret = aem_wait(&ra, 1, 10000 * T_MS);
	pthread_join(th, NULL);
	t_assert(ret >= 0, "aem_wait for a post: %s", strerror(-ret));
	t_assert(t_now_ns() - t0 < 9000 * T_MS, "post did not wake the waiter");
	t_assert(t_next(&ra, &c, 0) && c.user_data == 1, "posted message");

	/*
	 * A signal ends the wait with -EINTR.  Signal until the waiter returns:
	 * one that lands before it sleeps (a slow VM) is simply missed.
	 */
	sigaction(SIGUSR1, &sa, NULL);
	t0 = t_now_ns();
	ret = 1;
	t_assert(pthread_create(&th, NULL, wait_for_signal, &ret) == 0, "pthread_create");
	for (i = 0; i < 100 && aem_read_once(ret) == 1; i++) {
		usleep(50000);
		pthread_kill(th, SIGUSR1);
	}
	pthread_join(th, NULL);
	t_assert(signalled, "signal not delivered");
	if (ret != -EINTR)
		t_fail("aem_wait(10 s) with %u signals sent: %d (%s) after %.2f s, want -EINTR", i, ret,
		       ret < 0 ? strerror(-ret) : "ok", (t_now_ns() - t0) / 1e9);

	/* Ping-pong with blocking waits on both sides. */
	t0 = t_now_ns();
	t_assert(pthread_create(&th, NULL, pong, NULL) == 0, "pthread_create");
	for (cls = 0; cls < 2; cls++) {
		sqe = t_sqe(&ra);
		aem_prep_post(sqe, AEM_ADDR(rb.ring_id, 10 + cls), &cls, sizeof(cls), cls);
		sqe->flags |= AEM_SQE_F_SILENT;
		t_submit(&ra);
		for (i = 0; i < ROUNDS; i++)
			bounce(&ra, &rb, 10 + cls, cls, i, i + 1 < ROUNDS, "ping");
	}
	pthread_join(th, NULL);
	printf("%u blocking round trips in %.2f s\n", 2 * ROUNDS, (t_now_ns() - t0) / 1e9);

	aem_teardown(&rb);
	aem_teardown(&ra);
	return T_EXIT_PASS;
}
