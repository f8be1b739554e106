// SPDX-License-Identifier: MIT
/*
 * Shared-memory ring peers.
 *
 * spsc_ring: one plain single-producer/single-consumer ring per producer; the
 * producer publishes its tail once per batch, the consumer its head once per
 * drained run; the consumer spins.  No system call anywhere: the ceiling of
 * any shared ring on this machine.
 *
 * eventfd_shm: the same rings, and an eventfd the consumer sleeps on when
 * every ring is empty.  A producer writes the eventfd only when the consumer
 * said it is going to sleep (the Dekker pair below), so a busy stream makes
 * no system call and an idle one pays one wake-up per event.
 */
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bp.h"
#include "bp_stream.h"

struct bp_shm {
	struct bp_ring rings[BP_MAX_PRODUCERS];
	_Alignas(BP_CACHELINE) _Atomic uint32_t sleeping;
	int efd;
};

static int bp_shm_setup_common(struct bp_stream *s, bool wake)
{
	struct bp_shm *shm;
	uint32_t i;
	int ret;

	shm = calloc(1, sizeof(*shm));
	if (!shm)
		return -ENOMEM;
	shm->efd = -1;
	s->priv = shm;
	for (i = 0; i < s->nprod; i++) {
		ret = bp_ring_init(&shm->rings[i], s->entries, s->esize);
		if (ret)
			return ret; /* teardown frees what was made */
	}
	if (wake) {
		shm->efd = eventfd(0, EFD_CLOEXEC);
		if (shm->efd < 0)
			return -errno;
	}
	return 0;
}

static int bp_spsc_setup(struct bp_stream *s)
{
	return bp_shm_setup_common(s, false);
}

static int bp_eventfd_setup(struct bp_stream *s)
{
	return bp_shm_setup_common(s, true);
}

static void bp_shm_teardown(struct bp_stream *s)
{
	struct bp_shm *shm = s->priv;
	uint32_t i;

	if (!shm)
		return;
	for (i = 0; i < BP_MAX_PRODUCERS; i++)
		bp_ring_free(&shm->rings[i]);
	if (shm->efd >= 0)
		close(shm->efd);
	free(shm);
	s->priv = NULL;
}

static void bp_shm_wake(struct bp_shm *shm)
{
	uint64_t one = 1;

	if (shm->efd < 0)
		return;
	/* pairs with the consumer's fence between its flag store and tail load */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&shm->sleeping, memory_order_relaxed)) {
		if (write(shm->efd, &one, sizeof(one)) < 0)
			bp_relax();
	}
}

static int bp_shm_produce(struct bp_stream *s, struct bp_prod *pr)
{
	struct bp_shm *shm = s->priv;
	struct bp_ring *ring = &shm->rings[pr->id];
	const struct bp_params *p = s->p;
	uint64_t tail = 0, head = 0;
	uint64_t entries = (uint64_t)ring->mask + 1;
	uint32_t n, i, spins = 0;

	while ((n = bp_prod_next(pr))) {
		if (n > entries)
			n = (uint32_t)entries;
		/* refresh the cached head only when the ring looks full */
		while (tail + n - head > entries) {
			head = atomic_load_explicit(&ring->head,
						    memory_order_acquire);
			if (tail + n - head > entries)
				bp_spin(&spins);
		}
		for (i = 0; i < n; i++) {
			uint64_t k = pr->sent + i;

			bp_fill(bp_ring_slot(ring, tail + i), bp_seq(pr, k),
				bp_stamp(p, k), p->payload);
		}
		tail += n;
		/* pairs with the consumer's acquire load of tail */
		atomic_store_explicit(&ring->tail, tail, memory_order_release);
		pr->sent += n;
		bp_shm_wake(shm);
	}
	return 0;
}

static void bp_shm_finish(struct bp_stream *s, struct bp_prod *pr, bool last)
{
	struct bp_shm *shm = s->priv;
	uint64_t one = 1;

	(void)pr;
	(void)last;
	/* done was bumped seq_cst: a sleeping consumer must see it */
	if (shm->efd >= 0 && write(shm->efd, &one, sizeof(one)) < 0)
		bp_relax();
}

/* Drain every ring once; returns how many events were taken. */
static uint64_t bp_shm_drain(struct bp_stream *s, struct bp_cons *c,
			     uint64_t *heads)
{
	struct bp_shm *shm = s->priv;
	uint64_t taken = 0;
	uint32_t i;

	for (i = 0; i < s->nprod; i++) {
		struct bp_ring *ring = &shm->rings[i];
		uint64_t head = heads[i];
		uint64_t tail = atomic_load_explicit(&ring->tail,
						     memory_order_acquire);

		if (tail == head)
			continue;
		taken += tail - head;
		for (; head != tail; head++)
			bp_take_event(c, bp_ring_slot(ring, head));
		heads[i] = head;
		/* pairs with the producer's acquire load of head */
		atomic_store_explicit(&ring->head, head, memory_order_release);
	}
	return taken;
}

static bool bp_shm_empty(struct bp_stream *s, const uint64_t *heads)
{
	struct bp_shm *shm = s->priv;
	uint32_t i;

	for (i = 0; i < s->nprod; i++)
		if (atomic_load(&shm->rings[i].tail) != heads[i])
			return false;
	return true;
}

static int bp_shm_consume(struct bp_stream *s, struct bp_cons *c)
{
	struct bp_shm *shm = s->priv;
	uint64_t heads[BP_MAX_PRODUCERS] = { 0 };
	uint64_t val;
	uint32_t spins = 0;

	for (;;) {
		if (bp_shm_drain(s, c, heads))
			continue;
		if (bp_all_done(s)) {
			/* done is set after the last tail store */
			if (!bp_shm_drain(s, c, heads))
				return 0;
			continue;
		}
		if (shm->efd < 0) {
			bp_spin(&spins);
			continue;
		}
		atomic_store_explicit(&shm->sleeping, 1, memory_order_relaxed);
		/* Dekker: flag store before tail loads, pairs with bp_shm_wake */
		atomic_thread_fence(memory_order_seq_cst);
		if (bp_shm_empty(s, heads) && !bp_all_done(s)) {
			if (read(shm->efd, &val, sizeof(val)) < 0 &&
			    errno != EINTR) {
				atomic_store(&shm->sleeping, 0);
				return -errno;
			}
		}
		atomic_store_explicit(&shm->sleeping, 0, memory_order_relaxed);
	}
}

const struct bp_stream_ops bp_spsc_ops = {
	.max_producers = BP_MAX_PRODUCERS,
	.setup = bp_spsc_setup,
	.produce = bp_shm_produce,
	.consume = bp_shm_consume,
	.teardown = bp_shm_teardown,
};

const struct bp_stream_ops bp_eventfd_ops = {
	.max_producers = BP_MAX_PRODUCERS,
	.setup = bp_eventfd_setup,
	.produce = bp_shm_produce,
	.finish = bp_shm_finish,
	.consume = bp_shm_consume,
	.teardown = bp_shm_teardown,
};
