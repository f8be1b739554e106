// SPDX-License-Identifier: MIT
/*
 * aem-demo: subscribe to the generator and to a periodic timer, print what
 * arrives, stop after a bounded time.  Runs on whichever backend
 * aem_setup() picks (AEM_BACKEND=embedded to force the embedded one).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libaem.h"

#define TAG_GEN		1
#define TAG_TIMER	2
#define GEN_EVENTS	1000
#define TIMER_TICKS	5
#define RUN_LIMIT_S	10

int main(void)
{
	uint64_t gen_seen = 0, gen_last = 0, timer_seen = 0, gen_id = 0;
	struct aem_params p;
	struct aem_ring ring;
	struct aem_sqe *sqe;
	struct timespec start, now;
	int ret, refused = 0;
	unsigned c, i, head, nres;

	memset(&p, 0, sizeof(p));
	ret = aem_setup(&p, &ring);
	if (ret) {
		fprintf(stderr, "aem_setup: %s\n", strerror(-ret));
		return 1;
	}
	printf("backend %s, ring %u: sq %u, cq %u x %u classes, %u slots of %u bytes\n",
	       aem_backend_name(&ring), ring.ring_id, p.sq_entries, p.cq_entries,
	       p.nr_classes, p.slot_count, p.slot_size);

	sqe = aem_get_sqe(&ring);
	aem_prep_subscribe_gen(sqe, 100000, GEN_EVENTS, 64, 32, 1, TAG_GEN);
	sqe = aem_get_sqe(&ring);
	aem_prep_subscribe_timer(sqe, 10000000, 10000000, 0, TAG_TIMER);
	ret = aem_submit(&ring);
	if (ret != 2) {
		fprintf(stderr, "aem_submit: %d\n", ret);
		goto out;
	}

	/* Bounded by time, not by waits: each wait may return with a few events. */
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (gen_seen < GEN_EVENTS || timer_seen < TIMER_TICKS) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= RUN_LIMIT_S)
			break;
		ret = aem_wait(&ring, 1, 50000000);
		if (ret && ret != -ETIME) {
			fprintf(stderr, "aem_wait: %s\n", strerror(-ret));
			break;
		}
		/* Answers to the SQEs first: a subscription's id precedes its events. */
		nres = aem_result_peek(&ring, &head);
		for (i = 0; i < nres; i++) {
			const struct aem_cqe *r = aem_result_at(&ring, head + i);

			printf("result: tag %" PRIu64 " res %d id %#" PRIx64 "\n",
			       (uint64_t)r->user_data, r->res, (uint64_t)r->id);
			if (r->res < 0)
				refused = 1;
			else if (r->user_data == TAG_GEN)
				gen_id = r->id;
		}
		aem_result_advance(&ring, nres);
		if (refused)
			break;
		for (c = 0; c < ring.nr_classes; c++) {
			const struct aem_cqe *cqes[256];
			unsigned n = aem_peek_batch(&ring, c, cqes, 256);

			for (i = 0; i < n; i++) {
				const struct aem_cqe *e = cqes[i];
				unsigned len;
				void *pl = aem_cqe_payload(&ring, e, &len);

				if (e->user_data == TAG_TIMER) {
					struct aem_timer_event te;

					memcpy(&te, pl, sizeof(te));
					timer_seen++;
					printf("timer: expirations %" PRIu64 " at %" PRIu64 " ns\n",
					       (uint64_t)te.expirations, (uint64_t)te.now_ns);
				} else if (e->user_data == TAG_GEN) {
					struct aem_gen_event ge;

					memcpy(&ge, pl, sizeof(ge));
					gen_seen++;
					gen_last = ge.seq;
					if (e->flags & AEM_CQE_F_FINAL)
						printf("gen: final event seq %" PRIu64 "\n",
						       (uint64_t)ge.seq);
				}
				if (e->flags & AEM_CQE_F_SLOT)
					aem_release_slot(&ring, e->slot);
			}
			aem_cq_advance(&ring, c, n);
			aem_release_commit(&ring);
		}
	}
	printf("received %" PRIu64 " generator events (last seq %" PRIu64 "), %" PRIu64
	       " timer events\n", gen_seen, gen_last, timer_seen);
	if (gen_id) {
		struct aem_ring_stats rs;

		aem_ring_stats(&ring, &rs);
		printf("ring: produced %llu delivered %llu backlog %llu dropped %llu subs %llu\n",
		       (unsigned long long)rs.produced, (unsigned long long)rs.delivered,
		       (unsigned long long)rs.backlog, (unsigned long long)rs.dropped,
		       (unsigned long long)rs.subscriptions);
	}
	ret = gen_seen == GEN_EVENTS && timer_seen >= TIMER_TICKS ? 0 : 1;
out:
	aem_teardown(&ring);
	return ret ? 1 : 0;
}
