/* SPDX-License-Identifier: MIT */
/*
 * Producer lanes (aem_lane_*): a producer thread's records arrive in
 * order, none lost, through a lane smaller than what it posts; a full lane
 * says -EAGAIN and the reader's hand-back says the producer waits; the
 * sleep flag makes a post ask for a kick; malformed records and a
 * scribbled tail are refused and counted; a lane the reader ends (its
 * subscription's end) refuses posts and calls with -EPIPE and its records
 * are discarded and counted; bad geometry is -EINVAL.  No
 * ring is needed: the kernel side never reads a lane.
 */
#include <pthread.h>
#include "aem_test.h"

#define ENTRIES		16
#define REC		16
#define TOTAL		200000

static uint64_t mem[4096];	/* 8-aligned, larger than any lane here */

static void *producer(void *arg)
{
	struct aem_lane *p = arg;
	uint64_t k;

	for (k = 0; k < TOTAL; ) {
		int ret = aem_lane_post(p, &k, sizeof(k));

		if (ret == -EAGAIN) {
			sched_yield();
			continue;
		}
		if (ret < 0)
			t_fail("post %" PRIu64 ": %d", k, ret);
		k++;
	}
	aem_lane_close(p);
	return NULL;
}

int main(void)
{
	struct aem_lane cons, prod;
	struct aem_cqe cqes[8];
	struct aem_lane_rec *rec;
	uint64_t next = 0, v = 7, dropped;
	pthread_t thr;
	unsigned n, i;
	int ret;

	/* Geometry. */
	t_eq(aem_lane_init(&cons, mem, sizeof(mem), 3, REC, 0, 1), -EINVAL);
	t_eq(aem_lane_init(&cons, mem, sizeof(mem), ENTRIES, AEM_LANE_MAX_RECORD + 1, 0, 1), -EINVAL);
	t_eq(aem_lane_init(&cons, mem, 64, ENTRIES, REC, 0, 1), -EINVAL);
	t_eq(aem_lane_init(&cons, (char *)mem + 1, sizeof(mem) - 8, ENTRIES, REC, 0, 1), -EINVAL);
	t_eq(aem_lane_init(&cons, mem, sizeof(mem), ENTRIES, REC, 1, 42), 0);
	t_eq(aem_lane_attach(&prod, mem, aem_lane_size(ENTRIES, REC) - 1), -EINVAL);
	t_eq(aem_lane_attach(&prod, mem, sizeof(mem)), 0);
	t_eq(aem_lane_post(&prod, mem, REC + 1), -EINVAL);

	/* Full lane: -EAGAIN; the producer waiting is reported at hand-back. */
	for (i = 0; i < ENTRIES; i++)
		t_eq(aem_lane_post(&prod, &v, sizeof(v)), 0);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), -EAGAIN);
	aem_write_once(prod.kctl->prod_flags, AEM_LANE_P_WAITING);
	n = aem_lane_peek(&cons, cqes, 8, 99);
	t_eq(n, 8);
	t_eq(cqes[0].user_data, 99);
	t_eq(cqes[0].id, 42);
	t_eq(cqes[0].res, 8);
	t_eq(cqes[0].source, AEM_SRC_MSG);
	t_eq(cqes[0].prio, 1);
	t_eq(cqes[0].flags, 0);
	t_eq(aem_lane_advance(&cons, n), 1);
	aem_write_once(prod.kctl->prod_flags, 0);
	n = aem_lane_peek(&cons, cqes, 8, 99);
	t_eq(n, 8);
	t_eq(aem_lane_advance(&cons, n), 0);

	/* A sleeping reader: the post asks for a kick. */
	aem_lane_sleeping(&cons, 1);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), 1);
	aem_lane_sleeping(&cons, 0);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), 0);
	t_eq(aem_lane_advance(&cons, aem_lane_peek(&cons, cqes, 8, 99)), 0);

	/* Malformed records: skipped first in line, counted; good ones arrive. */
	for (i = 0; i < 4; i++)
		t_eq(aem_lane_post(&prod, &v, sizeof(v)), 0);
	rec = (struct aem_lane_rec *)(prod.krecs + (size_t)((prod.tail - 4) & prod.mask) * prod.stride);
	rec->len = 1u << 31;
	rec = (struct aem_lane_rec *)(prod.krecs + (size_t)((prod.tail - 2) & prod.mask) * prod.stride);
	rec->flags = 2;	/* neither zero nor AEM_LANE_REC_CALL */
	n = aem_lane_peek(&cons, cqes, 8, 99);
	t_eq(n, 1);	/* the first refused, the second good, the third ends the batch */
	t_eq(cons.malformed, 1);
	aem_lane_advance(&cons, n);
	n = aem_lane_peek(&cons, cqes, 8, 99);
	t_eq(n, 1);	/* the third refused, the fourth good */
	t_eq(cons.malformed, 2);
	aem_lane_advance(&cons, n);

	/* A tail scribbled far ahead: nothing read, counted. */
	aem_write_once(prod.kctl->tail, prod.tail + (1u << 20));
	t_eq(aem_lane_peek(&cons, cqes, 8, 99), 0);
	t_eq(cons.malformed, 3);
	aem_write_once(prod.kctl->tail, prod.tail);

	/*
	 * The subscription's end: the reader ends the lane; posts and a new
	 * call answer -EPIPE, a call posted before is answered -EPIPE by the
	 * discard, every record there is counted dropped and handed back
	 * (the waiting producer told), none delivered; sleeping keeps GONE.
	 */
	t_eq(aem_lane_init(&cons, mem, sizeof(mem), ENTRIES, REC, 0, 6), 0);
	t_eq(aem_lane_attach(&prod, mem, sizeof(mem)), 0);
	for (i = 0; i < 3; i++)
		t_eq(aem_lane_post(&prod, &v, sizeof(v)), 0);
	t_eq(aem_lane_call(&prod, &v, sizeof(v)), 0);
	t_eq(aem_lane_call_poll(&prod, &v, sizeof(v)), -EAGAIN);
	aem_write_once(prod.kctl->prod_flags, AEM_LANE_P_WAITING);
	aem_lane_end(&cons);
	aem_lane_sleeping(&cons, 1);
	aem_lane_sleeping(&cons, 0);
	t_eq(aem_read_once(cons.kctl->cons_flags), AEM_LANE_C_GONE);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), -EBUSY);	/* the call is still in flight */
	dropped = 0;
	t_eq(aem_lane_discard(&cons, &dropped), 1);	/* the producer waited: wake it */
	t_eq(dropped, 4);
	t_eq(aem_load_acquire(&prod.kctl->call), AEM_LANE_CALL(AEM_LANE_CALL_DONE, aem_lane_call_pos(&prod)));
	t_eq(aem_read_once(prod.kctl->call_res), -EPIPE);	/* answered by the discard */
	t_eq(aem_lane_call_poll(&prod, &v, sizeof(v)), -EPIPE);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), -EPIPE);
	t_eq(aem_lane_call(&prod, &v, sizeof(v)), -EPIPE);
	t_eq(aem_lane_discard(&cons, &dropped), 0);
	t_eq(dropped, 4);
	t_eq(cons.head, prod.tail);
	t_eq(cons.malformed, 0);
	aem_write_once(prod.kctl->tail, prod.tail + (1u << 20));	/* scribbled: nothing skipped, counted */
	t_eq(aem_lane_discard(&cons, &dropped), 0);
	t_eq(dropped, 4);
	t_eq(cons.malformed, 1);

	/* A producer thread through a small lane: in order, none lost. */
	t_eq(aem_lane_init(&cons, mem, sizeof(mem), ENTRIES, REC, 0, 5), 0);
	t_eq(aem_lane_attach(&prod, mem, sizeof(mem)), 0);
	ret = pthread_create(&thr, NULL, producer, &prod);
	t_eq(ret, 0);
	for (;;) {
		n = aem_lane_peek(&cons, cqes, 8, 0);
		for (i = 0; i < n; i++) {
			uint64_t k;

			t_eq(cqes[i].res, sizeof(k));
			memcpy(&k, cqes[i].data, sizeof(k));
			if (k != next)
				t_fail("record %" PRIu64 " where %" PRIu64 " was due", k, next);
			next++;
		}
		aem_lane_advance(&cons, n);
		if (!n) {
			if ((aem_load_acquire(&cons.kctl->prod_flags) & AEM_LANE_P_CLOSED) &&
			    aem_load_acquire(&cons.kctl->tail) == cons.head)
				break;
			sched_yield();
		}
	}
	pthread_join(thr, NULL);
	t_eq(next, TOTAL);
	t_eq(cons.malformed, 0);
	return T_EXIT_PASS;
}
