/* SPDX-License-Identifier: MIT */
/*
 * Back-pressure on POST: producer threads, each with its own ring, post a
 * million events to one consumer ring with default options (single posts
 * through aem_submit, and aem_post_batch); nothing is dropped and each
 * producer's events arrive in its order.  A full target stops the SQ at
 * the POST (counted refused, not dropped); AEM_SQE_F_LOSSY drops and
 * counts exactly.
 *
 * Under injected allocation failures (AEM_FAULT_ALLOC, failslab) a POST
 * whose backlog entry cannot be allocated stays in the producer's SQ as
 * one the target cannot take now, so still nothing is missing: a gap in
 * a producer's sequence passes only as far as the consumer's dropped
 * counters account for it (they would, were such a POST dropped), and
 * the test says so; an unaccounted gap fails.
 */
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "aem_test.h"

#define PRODUCERS	4
#define TOTAL		1000000u
#define EACH		(TOTAL / PRODUCERS)
#define BATCH		32
#define CHANNEL		9

static uint64_t target;

/* Wait for the consumer to make room: yield, then sleep up to 1 ms. */
static void backoff(unsigned *tries)
{
	struct timespec ts = { 0, 1000L };

	if (++*tries <= 8) {
		sched_yield();
		return;
	}
	ts.tv_nsec <<= *tries - 8 < 10 ? *tries - 8 : 10;
	nanosleep(&ts, NULL);
}

static void put_seq(uint8_t *b, unsigned g, unsigned seq)
{
	memcpy(b, &g, 4);
	memcpy(b + 4, &seq, 4);
}

static void *producer(void *arg)
{
	unsigned g = (unsigned)(uintptr_t)arg, i = 0, tries = 0;
	struct aem_params p = t_params(64, 64, 1);
	uint8_t bufs[BATCH][8];
	struct aem_post_msg msgs[BATCH];
	struct aem_ring_stats st;
	struct aem_ring r;
	int ret;

	t_setup(&r, &p);
	while (i < EACH) {
		if (g % 2) {	/* odd producers batch */
			unsigned n = EACH - i < BATCH ? EACH - i : BATCH, k;

			for (k = 0; k < n; k++) {
				put_seq(bufs[k], g, i + k);
				msgs[k].data = bufs[k];
				msgs[k].len = 8;
			}
			ret = aem_post_batch(&r, target, msgs, n, 0, 0);
			t_assert(ret >= 0, "aem_post_batch: %s", strerror(-ret));
		} else {	/* even ones post one by one: the SQE stays until taken */
			struct aem_sqe *sqe = aem_get_sqe(&r);

			t_assert(sqe, "SQ full with one POST at most in it");
			put_seq(bufs[0], g, i);
			aem_prep_post(sqe, target, bufs[0], 8, 0);
			sqe->flags |= AEM_SQE_F_SILENT;
			for (ret = 0; ret == 0;) {
				ret = aem_submit(&r);
				t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
				if (!ret)
					backoff(&tries);
			}
		}
		if (ret)
			tries = 0;
		else
			backoff(&tries);
		i += (unsigned)ret;
	}
	st = t_stats(&r);
	t_eq(st.refused[AEM_REFUSE_ID] + st.refused[AEM_REFUSE_NOMEM], 0);
	t_eq(*r.sq.kdropped, 0);
	aem_teardown(&r);
	return NULL;
}

static void fanin(void)
{
	struct aem_params p = t_params(64, 1024, 1);
	unsigned next[PRODUCERS] = { 0 }, got = 0, gaps = 0, idle = 0, g, seq;
	pthread_t th[PRODUCERS];
	struct aem_sub_stats ss;
	struct aem_cqe c;
	struct aem_ring cons;
	uint64_t sub;

	t_setup(&cons, &p);
	sub = t_sub_msg(&cons, CHANNEL, 0, 0xfa);
	target = AEM_ADDR(cons.ring_id, CHANNEL);
	for (g = 0; g < PRODUCERS; g++)
		t_assert(pthread_create(&th[g], NULL, producer, (void *)(uintptr_t)g) == 0, "pthread_create");
	/* Every event arrives, or its loss is counted in the ring's dropped (read live). */
	while (got + *cons.cq[0].kdropped < TOTAL) {
		if (!t_next(&cons, &c, 100)) {
			t_assert(++idle < 200, "stalled at %u of %u events (%u dropped)", got, TOTAL,
				 *cons.cq[0].kdropped);
			continue;
		}
		idle = 0;
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "result res %d in the consumer", c.res);
		memcpy(&g, c.data, 4);
		memcpy(&seq, c.data + 4, 4);
		t_assert(g < PRODUCERS, "producer %u", g);
		if (seq < next[g])
			t_fail("producer %u: event %u after %u (reordered or twice)", g, seq, next[g] - 1);
		gaps += seq - next[g];
		if (gaps > *cons.cq[0].kdropped)
			t_fail("producer %u: event %u, want %u: %u event(s) missing, %u counted dropped",
			       g, seq, next[g], gaps, *cons.cq[0].kdropped);
		next[g] = seq + 1;
		got++;
	}
	for (g = 0; g < PRODUCERS; g++)
		pthread_join(th[g], NULL);
	ss = t_sub_stats(&cons, sub);
	t_eq(ss.produced, TOTAL);
	t_eq(ss.delivered, got);
	t_eq(ss.dropped, TOTAL - got);
	/* Missing at a stream's end is a gap too. */
	for (g = 0; g < PRODUCERS; g++)
		gaps += EACH - next[g];
	t_eq(gaps, ss.dropped);
	if (ss.dropped)
		printf("post_fanin: %llu event(s) dropped and counted\n", (unsigned long long)ss.dropped);
	/* A POST that waits rather than drop: a drop here is a lost event. */
	t_eq(ss.dropped, 0);
	aem_teardown(&cons);
}

/* A full target: the POST stays at the SQ head; with LOSSY it is dropped and counted. */
static void full_target(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_ring prod, cons;
	struct aem_ring_stats before, after;
	struct aem_sub_stats ss;
	struct aem_post_msg m = { "x", 1 };
	unsigned sent = 0, lossy = 0, i;
	uint64_t sub, addr;
	int ret;

	p.backlog_limit = 64;
	t_setup(&cons, &p);
	p = t_params(64, 64, 1);
	t_setup(&prod, &p);
	sub = t_sub_msg(&cons, CHANNEL, 0, 0xf1);
	addr = AEM_ADDR(cons.ring_id, CHANNEL);
	for (i = 0; i < 10000; i++) {
		ret = aem_post_batch(&prod, addr, &m, 1, 0, 0);
		t_assert(ret >= 0, "aem_post_batch: %s", strerror(-ret));
		if (!ret)
			break;
		sent++;
	}
	t_assert(sent > 0 && sent < 10000, "took %u posts", sent);
	before = t_stats(&prod);
	t_eq(aem_post_batch(&prod, addr, &m, 1, 0, 0), 0);
	after = t_stats(&prod);
	t_eq(after.refused[AEM_REFUSE_FULL], before.refused[AEM_REFUSE_FULL] + 1);
	t_eq(*prod.sq.kdropped, 0);
	t_eq(*prod.sq.khead, prod.sq.sqe_tail);	/* the refused entry was taken back */
	ss = t_sub_stats(&cons, sub);
	t_eq(ss.produced, sent);
	t_eq(ss.dropped, 0);

	/* aem_submit leaves a refused POST at the SQ head; it goes once there is room. */
	{
		struct aem_sqe *sqe = t_sqe(&prod);
		struct aem_cqe c;

		aem_prep_post(sqe, addr, "y", 1, 0);
		sqe->flags |= AEM_SQE_F_SILENT;
		t_eq(aem_submit(&prod), 0);
		t_assert(t_next(&cons, &c, 5000), "no event");
		t_eq(aem_submit(&prod), 1);
		sent++;
	}

	for (i = 0; i < 1000; i++) {
		ret = aem_post_batch(&prod, addr, &m, 1, 0, AEM_SQE_F_LOSSY);
		t_eq(ret, 1);
		lossy++;
	}
	ss = t_sub_stats(&cons, sub);
	t_eq(ss.produced, sent + lossy);
	t_eq(ss.dropped, lossy);
	t_eq(aem_post_batch(&prod, addr, &m, 1, 0, AEM_SQE_F_SLOT), -EINVAL);
	aem_teardown(&prod);
	aem_teardown(&cons);
}

int main(void)
{
	full_target();
	fanin();
	return t_exit();
}
