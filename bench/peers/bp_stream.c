// SPDX-License-Identifier: MIT
/*
 * The stream harness: producers on their own threads, the consumer on the
 * calling thread, a start barrier so that the clock starts with the first
 * send, and one kind-specific set of operations per peer.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bp.h"
#include "bp_stream.h"

void bp_prod_init(struct bp_prod *pr, const struct bp_params *p, uint32_t id,
		  uint32_t nprod, uint64_t start)
{
	memset(pr, 0, sizeof(*pr));
	pr->p = p;
	pr->id = id;
	pr->start = start;
	pr->check = BP_CHECK_EVERY;
	if (p->max_events) {
		pr->quota = p->max_events / nprod;
		if (id < p->max_events % nprod)
			pr->quota++;
	} else {
		pr->quota = UINT64_MAX;
	}
	if (p->rate > 0)
		pr->ns_per_event = 1e9 * nprod / p->rate;
}

uint32_t bp_prod_next(struct bp_prod *pr)
{
	const struct bp_params *p = pr->p;
	uint64_t left = pr->quota - pr->sent;
	uint32_t n = p->batch ? p->batch : 1;

	if (n > left)
		n = (uint32_t)left;
	if (!n)
		return 0;
	if (pr->ns_per_event > 0) {
		uint64_t target = pr->start +
				  (uint64_t)(pr->ns_per_event * (double)pr->sent);
		uint64_t now = bp_now();

		if (now >= p->deadline_ns)
			return 0;
		/* sleep through long gaps, spin through the last stretch */
		if (target > now + 200000) {
			uint64_t wake = target - 100000;
			struct timespec ts = {
				.tv_sec = (time_t)(wake / 1000000000u),
				.tv_nsec = (long)(wake % 1000000000u),
			};

			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		}
		while (bp_now() < target)
			bp_relax();
		return n;
	}
	pr->check -= n;
	if (pr->check <= 0) {
		pr->check = BP_CHECK_EVERY;
		if (bp_now() >= p->deadline_ns)
			return 0;
	}
	return n;
}

int bp_ring_init(struct bp_ring *ring, uint32_t entries, uint32_t esize)
{
	size_t len = (size_t)entries * esize;
	void *mem;

	if (!entries || (entries & (entries - 1)))
		return -EINVAL;
	memset(ring, 0, sizeof(*ring));
	/* shared mapping, as two processes would have it */
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	ring->slots = mem;
	ring->mask = entries - 1;
	ring->esize = esize;
	return 0;
}

void bp_ring_free(struct bp_ring *ring)
{
	if (ring->slots)
		munmap(ring->slots, (size_t)(ring->mask + 1) * ring->esize);
	ring->slots = NULL;
}

struct bp_thread {
	struct bp_stream *s;
	uint32_t id;
	int err;
};

static void *bp_producer_main(void *arg)
{
	struct bp_thread *t = arg;
	struct bp_stream *s = t->s;
	struct bp_prod pr;
	uint32_t spins = 0;
	bool last;

	atomic_fetch_add(&s->ready, 1);
	while (!atomic_load_explicit(&s->go, memory_order_acquire))
		bp_spin(&spins);
	bp_prod_init(&pr, s->p, t->id, s->nprod, s->start);
	if (!s->abort)
		t->err = s->ops->produce(s, &pr);
	atomic_fetch_add(&s->produced, pr.sent);
	/* seq_cst: the consumer's sleep check reads done after its flag store */
	last = atomic_fetch_add(&s->done, 1) + 1 == s->nprod;
	if (s->ops->finish)
		s->ops->finish(s, &pr, last);
	return NULL;
}

static const struct bp_stream_ops *bp_ops_of(int kind)
{
	switch (kind) {
	case BP_SPSC:
		return &bp_spsc_ops;
	case BP_EVENTFD_SHM:
		return &bp_eventfd_ops;
	case BP_PIPE:
		return &bp_pipe_ops;
	case BP_UNIX_DGRAM:
		return &bp_unix_ops;
#ifdef BP_HAVE_URING
	case BP_URING_MSG:
		return &bp_uring_msg_ops;
	case BP_URING_NOP:
		return &bp_uring_nop_ops;
#endif
	}
	return NULL;
}

int bp_stream_run(int kind, const struct bp_params *params, struct bp_result *r)
{
	/* a copy: the deadline is set once every thread is ready */
	struct bp_params lp = *params, *p = &lp;
	const struct bp_stream_ops *ops = bp_ops_of(kind);
	struct bp_thread threads[BP_MAX_PRODUCERS];
	pthread_t tids[BP_MAX_PRODUCERS];
	struct bp_stream *s;
	struct bp_cons c;
	uint32_t i, started = 0;
	int ret;

	memset(r, 0, sizeof(*r));
	if (!ops)
		return kind == BP_URING_MSG || kind == BP_URING_NOP ? -ENOSYS : -EINVAL;
	if (!p->producers || p->producers > BP_MAX_PRODUCERS || !p->duration_ns)
		return -EINVAL;
	if (p->producers > ops->max_producers)
		return -EOPNOTSUPP;
	if (p->sample_every && (!p->samples || !p->max_samples))
		return -EINVAL;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->p = p;
	s->r = r;
	s->ops = ops;
	s->nprod = p->producers;
	s->esize = bp_event_size(p->payload);
	s->entries = p->ring_entries ? p->ring_entries : 4096;
	ret = ops->setup(s);
	if (ret) {
		ops->teardown(s);
		goto err_free;
	}

	for (i = 0; i < s->nprod; i++) {
		threads[i] = (struct bp_thread){ .s = s, .id = i };
		ret = -pthread_create(&tids[i], NULL, bp_producer_main,
				      &threads[i]);
		if (ret)
			goto err_stop;
		started++;
	}
	while (atomic_load(&s->ready) < s->nprod)
		sched_yield();
	bp_cons_init(&c, p, r);
	s->start = bp_now();
	lp.deadline_ns = s->start + p->duration_ns;
	atomic_store_explicit(&s->go, 1, memory_order_release);
	ret = ops->consume(s, &c);
	r->elapsed_ns = bp_now() - s->start;

	for (i = 0; i < started; i++) {
		pthread_join(tids[i], NULL);
		if (!ret && threads[i].err)
			ret = threads[i].err;
	}
	r->produced = atomic_load(&s->produced);
	r->dropped = atomic_load(&s->dropped);
	ops->teardown(s);
	free(s);
	return ret;

err_stop:
	/*
	 * Threads already started wait at the barrier: let them run with an
	 * expired quota, then reap them.
	 */
	s->nprod = started;
	s->start = bp_now();
	s->abort = 1;
	atomic_store_explicit(&s->go, 1, memory_order_release);
	for (i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	ops->teardown(s);
err_free:
	free(s);
	return ret;
}
