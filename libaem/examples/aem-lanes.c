// SPDX-License-Identifier: MIT
/*
 * aem-lanes: producer threads post to one reader through lanes of their
 * own, without a system call or a lock per record, while a timer ticks on
 * the reader's ring; one of them also calls the reader and waits for its
 * answer.  The reader reads the ring's classes and its lanes together
 * (struct aem_lane_set) and sleeps in poll() on the ring's fd and an
 * eventfd its producers write when a post finds it asleep.
 *
 *   build/aem-lanes [RECORDS_PER_PRODUCER]
 *
 * Exit 0 when every record arrived once, in order per producer, and every
 * call was answered; 1 otherwise.  Either backend (AEM_BACKEND picks).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "libaem.h"

#define PRODUCERS	4
#define LANE_ENTRIES	256
#define CALLS		1000
#define TAG_TIMER	1
#define TAG_LANE	100	/* + the producer's number */

struct record {
	uint32_t producer;
	uint32_t seq;
};

struct producer {
	struct aem_lane	lane;		/* the producer's view */
	void		*mem;
	uint32_t	id, count;
	int		wake_fd;	/* the reader's eventfd */
	int		failed;
};

/* The reader sleeps: tell it.  One write per sleep seen, not per record. */
static void kick(struct producer *p)
{
	uint64_t one = 1;

	if (write(p->wake_fd, &one, sizeof(one)) != sizeof(one))
		p->failed = 1;
}

static void *produce(void *arg)
{
	struct producer *p = arg;
	struct record r = { p->id, 0 };
	int ret;

	while (r.seq < p->count) {
		ret = aem_lane_post(&p->lane, &r, sizeof(r));
		if (ret == -EAGAIN) {		/* full: the reader is behind */
			sched_yield();
			continue;
		}
		if (ret < 0) {
			fprintf(stderr, "producer %u: post: %s\n", p->id, strerror(-ret));
			p->failed = 1;
			break;
		}
		if (ret == 1)
			kick(p);
		r.seq++;
	}
	/* Producer 0 also calls: the reader answers each with seq * 2. */
	for (uint32_t k = 0; p->id == 0 && !p->failed && k < CALLS; k++) {
		uint32_t answer;

		while ((ret = aem_lane_call(&p->lane, &k, sizeof(k))) == -EAGAIN)
			sched_yield();
		if (ret == 1)
			kick(p);
		while ((ret = aem_lane_call_poll(&p->lane, &answer, sizeof(answer))) == -EAGAIN)
			sched_yield();
		if (ret != sizeof(answer) || answer != k * 2) {
			fprintf(stderr, "call %u: %d, answer %u\n", k, ret, answer);
			p->failed = 1;
		}
	}
	aem_lane_close(&p->lane);	/* the reader lets go of it once drained */
	return NULL;
}

int main(int argc, char **argv)
{
	uint32_t per = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 0) : 100000;
	struct producer p[PRODUCERS];
	uint32_t next[PRODUCERS] = { 0 };
	struct aem_lane_set *set;
	struct aem_params params;
	struct aem_ring ring;
	pthread_t thr[PRODUCERS];
	uint64_t records = 0, ticks = 0, answered = 0, sleeps = 0;
	int wake_fd, ret, bad = 0;
	unsigned i;

	memset(&params, 0, sizeof(params));
	params.nr_classes = 2;
	ret = aem_setup(&params, &ring);
	if (ret) {
		fprintf(stderr, "aem_setup: %s\n", strerror(-ret));
		return 1;
	}
	wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	set = malloc(sizeof(*set));
	if (wake_fd < 0 || !set) {
		perror("eventfd/malloc");
		return 1;
	}
	aem_lane_set_init(set, &ring);
	aem_prep_subscribe_timer(aem_get_sqe(&ring), 1000000, 1000000, 1, TAG_TIMER);	/* class 1, every ms */
	aem_submit(&ring);

	/* Lanes: the reader lays each out, its producer attaches to it. */
	for (i = 0; i < PRODUCERS; i++) {
		size_t size = aem_lane_size(LANE_ENTRIES, sizeof(struct record));
		struct aem_lane reader_view;

		memset(&p[i], 0, sizeof(p[i]));
		p[i].id = i;
		p[i].count = per;
		p[i].wake_fd = wake_fd;
		if (posix_memalign(&p[i].mem, 64, size) ||
		    aem_lane_init(&reader_view, p[i].mem, size, LANE_ENTRIES, sizeof(struct record),
				  i == 0 ? 0 : 1, 0) ||	/* producer 0's records are urgent: class 0 */
		    aem_lane_attach(&p[i].lane, p[i].mem, size) ||
		    aem_lane_set_add(set, &reader_view, TAG_LANE + i) < 0) {
			fprintf(stderr, "lane %u: set-up failed\n", i);
			return 1;
		}
	}
	for (i = 0; i < PRODUCERS; i++)
		pthread_create(&thr[i], NULL, produce, &p[i]);

	/* The reader: classes in order, the ring's events and the lanes' side by side. */
	while (set->detached < PRODUCERS) {
		unsigned got = 0, head;

		for (unsigned cls = 0; cls < 2; cls++) {
			const struct aem_cqe *ev[64];
			struct aem_cqe rec[64];
			unsigned n = aem_peek_batch(&ring, cls, ev, 64);

			for (unsigned k = 0; k < n; k++) {
				ticks += ev[k]->user_data == TAG_TIMER;
				if (ev[k]->flags & AEM_CQE_F_SLOT)
					aem_release_slot(&ring, ev[k]->slot);
			}
			aem_cq_advance(&ring, cls, n);
			aem_release_commit(&ring);
			got += n;

			n = aem_lane_set_peek(set, cls, rec, 64);
			for (unsigned k = 0; k < n; k++) {
				struct record r;
				uint32_t v;

				if (rec[k].flags & AEM_CQE_F_CALL) {
					memcpy(&v, rec[k].data, sizeof(v));
					v *= 2;
					answered += aem_lane_set_reply(set, &rec[k], &v, sizeof(v), 0) == 0;
					continue;
				}
				memcpy(&r, rec[k].data, sizeof(r));
				if (r.producer >= PRODUCERS || r.seq != next[r.producer] ||
				    rec[k].user_data != TAG_LANE + r.producer) {
					bad++;
					continue;
				}
				next[r.producer]++;
				records++;
			}
			got += n;
		}
		while (aem_result_peek(&ring, &head))	/* the timer's SUBSCRIBE answer */
			aem_result_advance(&ring, 1);
		if (got)
			continue;
		/* Nothing ready: flag the lanes asleep, look once more, then poll. */
		aem_ring_fd_drain(&ring);
		if (!aem_lane_set_sleeping(set, 1) && !aem_cq_ready(&ring, 0) && !aem_cq_ready(&ring, 1)) {
			struct pollfd pfd[2] = { { aem_ring_fd(&ring), POLLIN, 0 }, { wake_fd, POLLIN, 0 } };
			uint64_t drained;

			poll(pfd, 2, 1000);
			if (read(wake_fd, &drained, sizeof(drained)) < 0 && errno != EAGAIN)
				bad++;
			sleeps++;
		}
		aem_lane_set_sleeping(set, 0);
	}
	for (i = 0; i < PRODUCERS; i++) {
		pthread_join(thr[i], NULL);
		bad += p[i].failed || next[i] != per;
		free(p[i].mem);	/* the set let go of it: its producer closed it and it was drained */
	}
	printf("libaem %s backend: %" PRIu64 " records from %u producer lanes, in order; %" PRIu64
	       " calls answered; %" PRIu64 " timer ticks beside them; the reader slept %" PRIu64 " times\n",
	       aem_backend_name(&ring), records, PRODUCERS, answered, ticks, sleeps);
	aem_lane_set_close(set);
	free(set);
	close(wake_fd);
	aem_teardown(&ring);
	if (bad || answered != CALLS) {
		fprintf(stderr, "FAIL: %d records or producers wrong, %" PRIu64 " of %u calls answered\n",
			bad, answered, CALLS);
		return 1;
	}
	return 0;
}
