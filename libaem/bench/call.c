// SPDX-License-Identifier: MIT
/*
 * aem-bench-call: the cost of one call round trip on the embedded backend,
 * 16-byte requests answered in place from the request's slot.
 *
 *  - "async": one thread does it all, in turn: the caller submits a CALL
 *    SQE, the handler ring reads the call event and submits its
 *    writeback, the caller reads the reply from its result ring.  Nobody
 *    waits or wakes, so the figure is the submission, delivery and answer
 *    path alone, and it is the same under callgrind on a loaded machine
 *    (instructions per call are the load-independent measure).
 *  - "block": aem_call() from the main thread; a handler thread sleeps in
 *    aem_wait() and answers.  This adds the caller's sleep and both
 *    wake-ups.
 *
 *   aem-bench-call [-n calls] [-m async|block|both]
 *
 * Prints calls and ns per call for each mode.  Every loop is bounded by a
 * deadline as well as the count.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libaem.h"

#define CHANNEL		7
#define TAG		0xca11
#define REQ_LEN		16
#define DEADLINE_NS	(20ULL * 1000000000ULL)	/* per mode */
#define WAIT_NS		(100ULL * 1000000ULL)	/* one aem_wait; the deadline bounds the whole */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "aem-bench-call: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void ring_setup(struct aem_ring *r)
{
	struct aem_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	p.sq_entries = 64;
	p.cq_entries = 256;
	p.nr_classes = 1;
	p.flags = AEM_SETUP_EMBEDDED;
	ret = aem_setup(&p, r);
	if (ret)
		die("aem_setup", ret);
}

/* The next result CQE of @r, or NULL past @end. */
static int next_result(struct aem_ring *r, struct aem_cqe *out, uint64_t end)
{
	unsigned head;

	while (!aem_result_peek(r, &head)) {
		if (now_ns() > end)
			return -ETIMEDOUT;
		aem_wait(r, 1, WAIT_NS);
	}
	*out = *aem_result_at(r, head);
	aem_result_advance(r, 1);
	return 0;
}

static void subscribe(struct aem_ring *srv)
{
	struct aem_sqe *sqe = aem_get_sqe(srv);
	struct aem_cqe c;
	int ret;

	aem_prep_subscribe_msg(sqe, CHANNEL, 0, TAG);
	aem_sqe_set_data(sqe, TAG);
	aem_submit(srv);
	ret = next_result(srv, &c, now_ns() + DEADLINE_NS);
	if (ret || c.res < 0)
		die("subscribe", ret ? ret : c.res);
}

/* Answer one call event of @srv in place; false when none is ready. */
static bool answer_one(struct aem_ring *srv)
{
	const struct aem_cqe *c;
	struct aem_sqe *sqe;
	unsigned len;
	uint8_t *d;

	if (!aem_peek_batch(srv, 0, &c, 1))
		return false;
	d = aem_cqe_payload(srv, c, &len);
	if (!d || !(c->flags & AEM_CQE_F_CALL))
		die("call event", EPROTO);
	d[0]++;
	sqe = aem_get_sqe(srv);
	aem_prep_writeback_slot(sqe, c->id, c->slot, len);
	sqe->flags |= AEM_SQE_F_SILENT;
	aem_cq_advance(srv, 0, 1);
	aem_submit(srv);
	return true;
}

static void report(const char *mode, unsigned long n, uint64_t ns)
{
	printf("%-6s %10lu calls  %8.0f ns/call\n", mode, n, n ? (double)ns / n : 0.0);
}

static void run_async(unsigned long calls)
{
	struct aem_ring srv, cli;
	uint8_t req[REQ_LEN] = { 0 };
	uint64_t addr, t0, end;
	struct aem_cqe c;
	unsigned long i;
	int ret;

	ring_setup(&srv);
	ring_setup(&cli);
	subscribe(&srv);
	addr = AEM_ADDR(srv.ring_id, CHANNEL);
	t0 = now_ns();
	end = t0 + DEADLINE_NS;
	for (i = 0; i < calls && now_ns() < end; i++) {
		struct aem_sqe *sqe = aem_get_sqe(&cli);

		req[0] = (uint8_t)i;
		aem_prep_call(sqe, addr, req, sizeof(req), 0, 1000);
		aem_sqe_set_data(sqe, i);
		aem_submit(&cli);
		if (!answer_one(&srv))
			die("no call event", EPROTO);
		ret = next_result(&cli, &c, end);
		if (ret)
			die("reply", ret);
		if (c.res != REQ_LEN || c.user_data != i)
			die("reply", c.res < 0 ? c.res : EPROTO);
		if (c.flags & AEM_CQE_F_SLOT)
			aem_release_slot(&cli, c.slot);
		aem_release_commit(&cli);
	}
	report("async", i, now_ns() - t0);
	aem_teardown(&cli);
	aem_teardown(&srv);
}

static struct aem_ring block_srv;
static atomic_int block_stop;

static void *handler(void *arg)
{
	uint64_t end = now_ns() + DEADLINE_NS + 1000000000ULL;

	(void)arg;
	while (!atomic_load(&block_stop) && now_ns() < end) {
		if (!answer_one(&block_srv))
			aem_wait(&block_srv, 1, WAIT_NS);
	}
	return NULL;
}

static void run_block(unsigned long calls)
{
	uint8_t req[REQ_LEN] = { 0 }, resp[REQ_LEN];
	struct aem_ring cli;
	uint64_t addr, t0, end;
	unsigned long i;
	pthread_t th;
	int ret;

	ring_setup(&block_srv);
	ring_setup(&cli);
	subscribe(&block_srv);
	addr = AEM_ADDR(block_srv.ring_id, CHANNEL);
	if (pthread_create(&th, NULL, handler, NULL))
		die("pthread_create", errno);
	t0 = now_ns();
	end = t0 + DEADLINE_NS;
	for (i = 0; i < calls && now_ns() < end; i++) {
		req[0] = (uint8_t)i;
		ret = aem_call(&cli, addr, req, sizeof(req), resp, sizeof(resp), 0, 1000);
		if (ret != REQ_LEN || resp[0] != (uint8_t)(i + 1))
			die("aem_call", ret < 0 ? ret : EPROTO);
	}
	report("block", i, now_ns() - t0);
	atomic_store(&block_stop, 1);
	pthread_join(th, NULL);
	aem_teardown(&cli);
	aem_teardown(&block_srv);
}

int main(int argc, char **argv)
{
	unsigned long calls = 100000;
	const char *mode = "both";
	int opt;

	while ((opt = getopt(argc, argv, "n:m:")) != -1) {
		switch (opt) {
		case 'n':
			calls = strtoul(optarg, NULL, 0);
			break;
		case 'm':
			mode = optarg;
			break;
		default:
			fprintf(stderr, "usage: aem-bench-call [-n calls] [-m async|block|both]\n");
			return 2;
		}
	}
	if (!strcmp(mode, "async") || !strcmp(mode, "both"))
		run_async(calls);
	if (!strcmp(mode, "block") || !strcmp(mode, "both"))
		run_block(calls);
	return 0;
}
