/* SPDX-License-Identifier: MIT */
/*
 * Tearing a ring down while others use it: threads keep posting to it and
 * calling into it (blocking and async), its generator and timers run, a
 * handler thread answers some calls, and then the ring goes away.  Posts
 * after that get -ENOENT, blocked calls -ECONNRESET or -ENOENT, nothing
 * crashes (run under ASan on the embedded backend, KASAN in the VM), and the
 * surviving rings keep working.  Repeated with fresh rings each round.
 */
#include <pthread.h>
#include "aem_test.h"

#define ROUNDS	30
#define CHANNEL	8

static struct aem_ring *target;
static _Atomic uint32_t target_id;
static _Atomic int stop_posting;

/* Post to the target's address until told to stop; every answer must be ok or -ENOENT. */
static void *poster(void *arg)
{
	struct aem_ring r;
	struct aem_cqe c;
	uint64_t n = 0;

	(void)arg;
	t_setup(&r, NULL);
	while (!stop_posting) {
		struct aem_sqe *sqe = aem_get_sqe(&r);

		if (sqe) {
			if (n % 4 == 3)
				aem_prep_call(sqe, AEM_ADDR(target_id, CHANNEL), &n, sizeof(n), 0, 20);
			else	/* lossy: the generator floods the target; a drop is -ENOSPC */
				aem_prep_post(sqe, AEM_ADDR(target_id, CHANNEL), &n, sizeof(n), n % 2);
			if (n % 4 != 3)
				sqe->flags |= AEM_SQE_F_LOSSY;
			aem_sqe_set_data(sqe, n++);
		}
		t_submit(&r);
		while (t_next(&r, &c, 0)) {
			t_assert(c.flags & AEM_CQE_F_RESULT, "poster ring got an event");
			if (c.res < 0 && c.res != -ENOENT && c.res != -ETIMEDOUT && c.res != -ECONNRESET &&
			    c.res != -ENOSPC)
				t_fail("post/call to a ring being torn down: %s", strerror(-c.res));
			if (c.flags & AEM_CQE_F_SLOT)
				t_release(&r, c.slot);
		}
		aem_release_commit(&r);
	}
	aem_teardown(&r);
	return NULL;
}

static void *caller(void *arg)
{
	struct aem_ring *any = arg;
	uint8_t resp[64];
	int ret;

	ret = aem_call(any, AEM_ADDR(target_id, CHANNEL), "wait", 4, resp, sizeof(resp), 0, 10000);
	/* -ENOSPC: the request was dropped at a full backlog (the generator floods it) */
	if (ret < 0 && ret != -ECONNRESET && ret != -ENOENT && ret != -ETIMEDOUT && ret != -ENOSPC)
		t_fail("blocking call into a ring being torn down: %s", strerror(-ret));
	return NULL;
}

/* Answer what arrives for a while, so some calls complete and some slots are user-held. */
static void *handler(void *arg)
{
	uint64_t end = t_now_ns() + (uintptr_t)arg * T_MS;
	struct aem_cqe c;

	while (t_now_ns() < end) {
		if (!t_next(target, &c, 5))
			continue;
		if ((c.flags & AEM_CQE_F_CALL) && (c.user_data & 1)) {
			struct aem_sqe *sqe = aem_get_sqe(target);

			if (sqe) {
				aem_prep_writeback_slot(sqe, c.id, c.slot, c.res > 0 ? (unsigned)c.res : 0);
				sqe->flags |= AEM_SQE_F_SILENT;
				t_submit(target);
				continue;
			}
		}
		if ((c.flags & AEM_CQE_F_SLOT) && (c.user_data & 2))
			t_release(target, c.slot);	/* and keep some slots */
	}
	return NULL;
}

int main(void)
{
	pthread_t posters[2], callers[4], h;
	struct aem_ring keeper, ring;
	struct aem_sqe *sqe;
	unsigned round, i;

	t_setup(&keeper, NULL);
	t_sub_msg(&keeper, 1, 0, 0x1);
	for (round = 0; round < ROUNDS; round++) {
		struct aem_params p = t_params(256, 256, 2);

		p.slot_count = 16;
		t_setup(&ring, &p);
		target = &ring;
		t_sub_msg(&ring, CHANNEL, round % 2, 0x3);	/* tag bits 0, 1: answer calls, release slots */
		sqe = t_sqe(&ring);
		aem_prep_subscribe_gen(sqe, 1000000, 0, 8, 64, 1, 0x10);
		sqe->flags |= AEM_SQE_F_SILENT;
		for (i = 0; i < 8; i++) {
			sqe = t_sqe(&ring);
			aem_prep_subscribe_timer(sqe, (1 + i) * T_MS, T_MS, i % 2, 0x20 + i);
			sqe->flags |= AEM_SQE_F_SILENT;
		}
		t_submit(&ring);
		target_id = ring.ring_id;

		stop_posting = 0;
		for (i = 0; i < 2; i++)
			t_assert(pthread_create(&posters[i], NULL, poster, NULL) == 0, "pthread_create");
		for (i = 0; i < 4; i++)
			t_assert(pthread_create(&callers[i], NULL, caller, &keeper) == 0, "pthread_create");
		t_assert(pthread_create(&h, NULL, handler, (void *)(uintptr_t)(5 + round % 20)) == 0,
			 "pthread_create");
		pthread_join(h, NULL);

		aem_teardown(&ring);
		for (i = 0; i < 4; i++)
			pthread_join(callers[i], NULL);
		usleep(5000);	/* posts now meet a closed address */
		stop_posting = 1;
		for (i = 0; i < 2; i++)
			pthread_join(posters[i], NULL);
	}

	/* The survivor still works. */
	sqe = t_sqe(&keeper);
	aem_prep_post(sqe, AEM_ADDR(keeper.ring_id, 1), "ok", 2, 0);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(&keeper);
	struct aem_cqe c;
	t_assert(t_next(&keeper, &c, 5000), "no message to the surviving ring");
	t_assert(c.user_data == 0x1 && !(c.flags & AEM_CQE_F_RESULT), "ud %#llx res %d flags %#x",
		 (unsigned long long)c.user_data, c.res, c.flags);
	aem_teardown(&keeper);
	return T_EXIT_PASS;
}
