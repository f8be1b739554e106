// SPDX-License-Identifier: MIT
/*
 * aem-smoke: a quick end-to-end check of the embedded backend while the
 * real suite (libaem/tests) grows: results and refusals, timers, the
 * generator, post, blocking and asynchronous calls, overflow accounting,
 * slot returns and index scribbles.  Exit 0 pass, 1 fail.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libaem.h"

static int failures;

#define CHECK(cond, ...)							\
	do {									\
		if (!(cond)) {							\
			failures++;						\
			fprintf(stderr, "FAIL %s:%d: %s: ", __func__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);				\
			fputc('\n', stderr);					\
		}								\
	} while (0)

static int setup(struct aem_ring *ring, unsigned cq, unsigned classes)
{
	struct aem_params p;

	memset(&p, 0, sizeof(p));
	p.flags = AEM_SETUP_EMBEDDED;
	p.cq_entries = cq;
	p.nr_classes = classes;
	p.backlog_limit = 64;
	return aem_setup(&p, ring);
}

/*
 * Next answer to an SQE from the result ring, waiting up to 2 s for one
 * (a ready event ends that wait too: answers to calls come late, the
 * others at submit); copies it out.
 */
static int next_result(struct aem_ring *ring, struct aem_cqe *out)
{
	unsigned head;

	if (!aem_result_peek(ring, &head) && aem_wait(ring, 1, 2000000000LL))
		return -1;
	if (!aem_result_peek(ring, &head))
		return -1;
	*out = *aem_result_at(ring, head);
	aem_result_advance(ring, 1);
	return 0;
}

/*
 * Next event of any class (urgent first), waiting up to 2 s; copies it out.
 * Unread results end every wait at once, so callers read them first.
 */
static int next_event(struct aem_ring *ring, struct aem_cqe *out)
{
	unsigned c;

	if (aem_wait(ring, 1, 2000000000LL))
		return -1;
	for (c = 0; c < ring->nr_classes; c++) {
		const struct aem_cqe *e;

		if (aem_peek_batch(ring, c, &e, 1)) {
			*out = *e;
			aem_cq_advance(ring, c, 1);
			return 0;
		}
	}
	return -1;
}

static void test_results(void)
{
	struct aem_ring ring;
	struct aem_ring_stats st;
	struct aem_cqe e;
	struct aem_sqe *sqe;

	CHECK(setup(&ring, 64, 2) == 0, "setup");
	sqe = aem_get_sqe(&ring);
	aem_prep_nop(sqe);
	sqe->user_data = 7;
	sqe = aem_get_sqe(&ring);
	sqe->opcode = 99;
	sqe->user_data = 8;
	sqe = aem_get_sqe(&ring);
	aem_prep_nop(sqe);
	sqe->arg = 1;
	sqe->user_data = 9;
	CHECK(aem_submit(&ring) == 3, "submit");
	CHECK(next_result(&ring, &e) == 0 && e.user_data == 7 && e.res == 0 &&
	      (e.flags & AEM_CQE_F_RESULT), "nop");
	CHECK(next_result(&ring, &e) == 0 && e.user_data == 8 && e.res == -EINVAL, "bad opcode");
	CHECK(next_result(&ring, &e) == 0 && e.user_data == 9 && e.res == -EINVAL, "bad field");
	aem_ring_stats(&ring, &st);
	CHECK(st.refused[AEM_REFUSE_OPCODE] == 1 && st.refused[AEM_REFUSE_FIELD] == 1,
	      "refused %llu %llu", (unsigned long long)st.refused[AEM_REFUSE_OPCODE],
	      (unsigned long long)st.refused[AEM_REFUSE_FIELD]);
	CHECK(*ring.sq.kflags & AEM_SQ_F_REFUSED, "sq refused flag");

	aem_teardown(&ring);
}

static void test_timer(void)
{
	struct aem_ring ring;
	struct aem_cqe e;
	struct aem_sqe *sqe;
	struct aem_timer_event te;
	uint64_t id = 0;
	int periodic = 0, oneshot = 0, i;

	CHECK(setup(&ring, 64, 2) == 0, "setup");
	sqe = aem_get_sqe(&ring);
	aem_prep_subscribe_timer(sqe, 3000000, 0, 0, 100);
	sqe = aem_get_sqe(&ring);
	aem_prep_subscribe_timer(sqe, 2000000, 2000000, 1, 200);
	CHECK(aem_submit(&ring) == 2, "submit");
	for (i = 0; i < 2; i++) {
		CHECK(next_result(&ring, &e) == 0 && e.res == 0, "subscribe res %d", e.res);
		if (e.user_data == 200)
			id = e.id;
	}
	for (i = 0; i < 40 && (periodic < 3 || !oneshot); i++) {
		if (next_event(&ring, &e))
			break;
		memcpy(&te, e.data, sizeof(te));
		CHECK(e.res == sizeof(te) && te.expirations >= 1, "timer payload");
		if (e.user_data == 100) {
			oneshot++;
			CHECK(e.flags & AEM_CQE_F_FINAL, "one-shot is final");
		} else {
			periodic++;
		}
	}
	CHECK(oneshot == 1 && periodic >= 3, "oneshot %d periodic %d", oneshot, periodic);
	sqe = aem_get_sqe(&ring);
	aem_prep_unsubscribe(sqe, id);
	sqe->user_data = 5;
	aem_submit(&ring);
	CHECK(next_result(&ring, &e) == 0, "unsubscribe result");
	CHECK(e.user_data == 5 && e.res == 0, "unsubscribe res %d", e.res);
	/* Stale id now. */
	sqe = aem_get_sqe(&ring);
	aem_prep_unsubscribe(sqe, id);
	sqe->user_data = 6;
	aem_submit(&ring);
	CHECK(next_result(&ring, &e) == 0, "second unsubscribe");
	CHECK(e.user_data == 6 && e.res == -ENOENT, "stale id res %d", e.res);
	aem_teardown(&ring);
}

/* Small ring, no consumer for a while: the backlog fills, then drops; the invariant holds. */
static void test_overflow(void)
{
	struct aem_ring ring;
	struct aem_sub_stats ss;
	struct aem_cqe e;
	struct aem_sqe *sqe;
	uint64_t id, seq = 0, got = 0;
	int i;

	CHECK(setup(&ring, 16, 1) == 0, "setup");
	sqe = aem_get_sqe(&ring);
	aem_prep_subscribe_gen(sqe, 1000000, 200, 50, 32, 0, 1);
	aem_submit(&ring);
	CHECK(next_result(&ring, &e) == 0 && e.res == 0, "result %d", e.res);
	id = e.id;
	for (i = 0; i < 100; i++) {
		aem_sub_stats(&ring, id, &ss);
		if (ss.dropped)
			break;
		usleep(2000);
	}
	if (aem_sub_stats(&ring, id, &ss) == 0) {
		CHECK(ss.produced == ss.delivered + ss.backlog + ss.dropped, "invariant");
		CHECK(ss.dropped > 0 && ss.backlog == 64 - 0, "backlog %llu dropped %llu",
		      (unsigned long long)ss.backlog, (unsigned long long)ss.dropped);
	}
	CHECK(*ring.cq[0].kflags & AEM_CQ_F_OVERFLOW, "overflow flag");
	/* Drain: order holds across the backlog. */
	for (i = 0; i < 400; i++) {
		uint64_t s;

		if (next_event(&ring, &e))
			break;
		memcpy(&s, e.data, sizeof(s));
		CHECK(s >= seq, "order %" PRIu64 " after %" PRIu64, s, seq);
		seq = s;
		got++;
		if (e.flags & AEM_CQE_F_FINAL)
			break;
	}
	CHECK(got > 16, "got %" PRIu64, got);
	aem_teardown(&ring);
}

struct handler {
	struct aem_ring *ring;
	int calls;
};

/* Answer calls on channel 5: reply = request with every byte + 1. */
static void *handler_main(void *arg)
{
	struct handler *h = arg;
	struct aem_cqe e;
	int i;

	for (i = 0; i < 100 && h->calls < 2; i++) {
		unsigned len, k;
		uint8_t *p;
		struct aem_sqe *sqe;

		if (next_event(h->ring, &e))
			continue;
		if (!(e.flags & AEM_CQE_F_CALL))
			continue;
		p = aem_cqe_payload(h->ring, &e, &len);
		for (k = 0; k < len; k++)
			p[k]++;
		sqe = aem_get_sqe(h->ring);
		aem_prep_writeback_slot(sqe, e.id, e.slot, len);
		sqe->flags |= AEM_SQE_F_SILENT;
		aem_submit(h->ring);
		h->calls++;
	}
	return NULL;
}

static void test_msg(void)
{
	struct aem_ring a, b;
	struct aem_cqe e;
	struct aem_sqe *sqe;
	struct handler h;
	pthread_t thr;
	char req[40], resp[64];
	int ret, i;

	CHECK(setup(&a, 64, 2) == 0, "setup a");
	CHECK(setup(&b, 64, 2) == 0, "setup b");
	sqe = aem_get_sqe(&b);
	aem_prep_subscribe_msg(sqe, 5, 0, 55);
	aem_submit(&b);
	CHECK(next_result(&b, &e) == 0 && e.res == 0, "msg subscribe");

	/* Post a -> b. */
	sqe = aem_get_sqe(&a);
	aem_prep_post(sqe, AEM_ADDR(b.ring_id, 5), "hello", 5, 1);
	sqe->user_data = 1;
	aem_submit(&a);
	CHECK(next_result(&a, &e) == 0 && e.res == 0 && e.user_data == 1, "post res %d", e.res);
	CHECK(next_event(&b, &e) == 0 && e.user_data == 55 && e.res == 5 &&
	      !memcmp(e.data, "hello", 5), "posted event");
	/* Post to a missing channel. */
	sqe = aem_get_sqe(&a);
	aem_prep_post(sqe, AEM_ADDR(b.ring_id, 6), "x", 1, 0);
	aem_submit(&a);
	CHECK(next_result(&a, &e) == 0 && e.res == -ENOENT, "missing channel %d", e.res);

	/* Blocking call and async call, answered by a handler thread on b. */
	h.ring = &b;
	h.calls = 0;
	pthread_create(&thr, NULL, handler_main, &h);
	memset(req, 1, sizeof(req));
	ret = aem_call(&a, AEM_ADDR(b.ring_id, 5), req, sizeof(req), resp, sizeof(resp), 0, 2000);
	CHECK(ret == (int)sizeof(req) && resp[0] == 2 && resp[39] == 2, "call ret %d", ret);
	sqe = aem_get_sqe(&a);
	aem_prep_call(sqe, AEM_ADDR(b.ring_id, 5), "abc", 3, 0, 2000);
	sqe->user_data = 77;
	aem_submit(&a);
	for (i = 0; i < 5; i++) {
		if (next_result(&a, &e) == 0 && e.user_data == 77)
			break;
	}
	CHECK(e.user_data == 77 && e.res == 3 && !memcmp(e.data, "bcd", 3), "async call res %d",
	      e.res);
	pthread_join(thr, NULL);

	/* Call with nobody answering: times out; a late writeback finds nothing. */
	ret = aem_call(&a, AEM_ADDR(b.ring_id, 5), "z", 1, resp, sizeof(resp), 0, 50);
	CHECK(ret == -ETIMEDOUT, "timeout ret %d", ret);
	CHECK(next_event(&b, &e) == 0 && (e.flags & AEM_CQE_F_CALL), "call event");
	sqe = aem_get_sqe(&b);
	aem_prep_writeback_slot(sqe, e.id, e.slot, 1);
	sqe->user_data = 3;
	aem_submit(&b);
	{
		struct aem_cqe r;

		CHECK(next_result(&b, &r) == 0 && r.user_data == 3 && r.res == -ENOENT,
		      "late writeback %d", r.res);
	}
	/* The refused writeback left the slot ours: one release is fine, a second and a send slot are not. */
	{
		struct aem_ring_stats st;

		aem_release_slot(&b, e.slot);
		aem_release_slot(&b, e.slot);
		aem_release_slot(&b, 0);
		aem_release_commit(&b);
		aem_submit(&b);
		aem_ring_stats(&b, &st);
		CHECK(st.refused[AEM_REFUSE_SLOT] == 2, "slot refusals %llu",
		      (unsigned long long)st.refused[AEM_REFUSE_SLOT]);
	}
	/* Closing b fails a pending call with -ECONNRESET. */
	aem_teardown(&b);
	ret = aem_call(&a, AEM_ADDR(b.ring_id, 5), "z", 1, resp, sizeof(resp), 0, 50);
	CHECK(ret == -ENOENT, "closed ring ret %d", ret);
	aem_teardown(&a);
}

int main(void)
{
	test_results();
	test_timer();
	test_overflow();
	test_msg();
	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("smoke: ok\n");
	return 0;
}
