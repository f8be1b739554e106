// SPDX-License-Identifier: MIT
/*
 * aem-bench-deliver: generator -> consumer delivery on the embedded
 * backend, 32-byte payloads, consumed in batches by
 *  - "spin": a consumer that busy-polls the CQ ring and never enters;
 *  - "wait": a consumer that blocks in aem_wait() whenever the ring is
 *    empty (the realistic mode: the generator thread, which sleeps while
 *    the ring is full, and the consumer wake each other);
 * beside them, in the same run, a plain C single-producer /
 * single-consumer ring of 32-byte events (the ceiling of any shared ring
 * on this machine).  Prints events/s for each and the ratios to the ring.
 *
 *   aem-bench-deliver [-n events] [-b burst] [-q cq_entries] [-r rounds (<= 64)]
 *                     [-m spin|wait|both] [-w work]
 *
 * -w gives every consumer, the plain ring's too, a handler of that many
 * dependent multiply-adds per event: a consumer slower than the producer
 * lets the ring fill, which is when the producer's sleep and wake-up count.
 *
 * Every loop is bounded by a deadline as well as the event count.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libaem.h"

#define PAYLOAD		32
#define DEADLINE_NS	(20ULL * 1000000000ULL)	/* per measurement */
#define PEEK_MAX	1024
#define WAIT_NS		(100ULL * 1000000ULL)	/* one aem_wait; the deadline bounds the whole */
#define FLOOD_BURST	256	/* kmod/core/src_gen.c: a rate-0 generator's smallest burst */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static unsigned work;	/* -w: handler work per event */
static volatile uint64_t work_sink;	/* keeps the handlers' work */

/* The handler: a chain the compiler cannot drop or vectorise away. */
static inline uint64_t handle(uint64_t acc, uint64_t seq)
{
	unsigned i;

	for (i = 0; i < work; i++)
		acc = acc * 0x9e3779b97f4a7c15ULL + seq;
	return acc;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* ---------------------------------------------------------------------- */
/* AEM: generator (rate 0, burst b) -> consumer spinning or waiting       */

struct result {
	uint64_t	events;
	uint64_t	ns;
	bool		ok;
};

__attribute__((noinline))	/* its own line in a profile */
static struct result run_aem(uint64_t n, unsigned burst, unsigned cq_entries, bool block)
{
	struct result res = { 0, 0, false };
	uint64_t expect = 0, t0, t1 = 0, deadline, checksum = 0, acc = 0;
	struct aem_params p;
	struct aem_ring ring;
	struct aem_sqe *sqe;
	bool final = false;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = AEM_SETUP_EMBEDDED;
	p.cq_entries = cq_entries;
	p.nr_classes = 1;
	ret = aem_setup(&p, &ring);
	if (ret) {
		fprintf(stderr, "aem_setup: %s\n", strerror(-ret));
		return res;
	}
	sqe = aem_get_sqe(&ring);
	aem_prep_subscribe_gen(sqe, 0, n, burst, PAYLOAD, 0, 1);
	t0 = now_ns();
	deadline = t0 + DEADLINE_NS;
	if (aem_submit(&ring) != 1) {
		fprintf(stderr, "aem_submit failed\n");
		goto out;
	}
	while (!final) {
		unsigned i, head, k = aem_cq_peek(&ring, 0, &head);

		if (!k) {
			if (block) {
				ret = aem_wait(&ring, 1, WAIT_NS);
				if ((ret < 0 && ret != -ETIME && ret != -EINTR) || now_ns() > deadline)
					break;
				continue;
			}
			cpu_relax();
			if (!(++checksum & 0xffff) && now_ns() > deadline)
				break;
			continue;
		}
		if (k > PEEK_MAX)
			k = PEEK_MAX;
		for (i = 0; i < k; i++) {
			const struct aem_cqe *e = aem_cq_at(&ring, 0, head + i);
			uint64_t seq;

			if (e->flags & (AEM_CQE_F_RESULT | AEM_CQE_F_FINAL)) {
				if (e->flags & AEM_CQE_F_RESULT)
					continue;
				final = true;
			}
			memcpy(&seq, e->data, sizeof(seq));
			if (seq != expect) {
				fprintf(stderr, "aem: seq %" PRIu64 ", expected %" PRIu64 "\n", seq, expect);
				goto out;
			}
			acc = handle(acc, seq);
			expect++;
		}
		aem_cq_advance(&ring, 0, k);
	}
	t1 = now_ns();
	work_sink += acc;
	res.events = expect;
	res.ns = t1 - t0;
	res.ok = final && expect == n;
out:
	aem_teardown(&ring);
	return res;
}

/* ---------------------------------------------------------------------- */
/* Plain SPSC ring of 32-byte events, batched like the generator            */

struct ev32 {
	uint64_t seq, now, pad[2];
};

struct spsc {
	_Alignas(64) _Atomic uint32_t head;	/* consumer-written */
	_Alignas(64) _Atomic uint32_t tail;	/* producer-written */
	_Alignas(64) uint32_t mask;
	struct ev32 *ev;
	uint64_t n;
	unsigned burst;
	uint64_t deadline;
};

static void *spsc_producer(void *arg)
{
	struct spsc *q = arg;
	uint32_t tail = 0, entries = q->mask + 1, stamped = 0;
	uint64_t seq = 0, spins = 0, now = now_ns();

	while (seq < q->n) {
		uint32_t head = atomic_load_explicit(&q->head, memory_order_acquire);
		uint32_t room = entries - (tail - head), k, i;

		if (!room) {
			cpu_relax();
			if (!(++spins & 0xffff) && now_ns() > q->deadline)
				break;
			continue;
		}
		/* One timestamp per ring's worth, as the generator's one per step. */
		if (stamped >= entries) {
			now = now_ns();
			stamped = 0;
		}
		k = room < q->burst ? room : q->burst;
		if (k > q->n - seq)
			k = (uint32_t)(q->n - seq);
		for (i = 0; i < k; i++) {
			struct ev32 *e = &q->ev[(tail + i) & q->mask];

			e->seq = seq + i;
			e->now = now;
			e->pad[0] = e->pad[1] = 0;
		}
		tail += k;
		seq += k;
		stamped += k;
		atomic_store_explicit(&q->tail, tail, memory_order_release);
	}
	return NULL;
}

__attribute__((noinline))
static struct result run_spsc(uint64_t n, unsigned burst, unsigned entries)
{
	struct result res = { 0, 0, false };
	struct spsc q;
	pthread_t thr;
	uint64_t t0, expect = 0, spins = 0, acc = 0;
	uint32_t head = 0;

	memset(&q, 0, sizeof(q));
	q.mask = entries - 1;
	q.n = n;
	/* Published like the generator at rate 0: at least FLOOD_BURST events a tail store. */
	q.burst = burst > FLOOD_BURST ? burst : FLOOD_BURST;
	if (posix_memalign((void **)&q.ev, 64, sizeof(struct ev32) * entries))
		return res;
	memset(q.ev, 0, sizeof(struct ev32) * entries);
	t0 = now_ns();
	q.deadline = t0 + DEADLINE_NS;
	if (pthread_create(&thr, NULL, spsc_producer, &q)) {
		free(q.ev);
		return res;
	}
	while (expect < n) {
		uint32_t tail = atomic_load_explicit(&q.tail, memory_order_acquire);
		uint32_t k = tail - head, i;

		if (!k) {
			cpu_relax();
			if (!(++spins & 0xffff) && now_ns() > q.deadline)
				break;
			continue;
		}
		if (k > PEEK_MAX)
			k = PEEK_MAX;
		for (i = 0; i < k; i++) {
			const struct ev32 *e = &q.ev[(head + i) & q.mask];

			if (e->seq != expect) {
				fprintf(stderr, "spsc: seq %" PRIu64 ", expected %" PRIu64 "\n",
					e->seq, expect);
				goto out;
			}
			acc = handle(acc, e->seq);
			expect++;
		}
		head += k;
		atomic_store_explicit(&q.head, head, memory_order_release);
	}
	res.ok = expect == n;
	work_sink += acc;
out:
	res.ns = now_ns() - t0;
	res.events = expect;
	pthread_join(thr, NULL);
	free(q.ev);
	return res;
}

static double rate(const struct result *r)
{
	return r->ns ? (double)r->events * 1e9 / (double)r->ns : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One figure across the rounds. */
struct series {
	const char	*name;
	bool		on;
	double		best;
	double		ratios[64];	/* to the plain ring of the same round */
};

static void series_add(struct series *x, unsigned round, const struct result *r, double ring)
{
	double v = rate(r);

	x->ratios[round] = ring ? v / ring : 0;
	if (v > x->best)
		x->best = v;
	printf("   aem %-4s %8.2f M events/s  ratio %.2f%s", x->name, v / 1e6, x->ratios[round],
	       r->ok ? "" : " (incomplete)");
}

int main(int argc, char **argv)
{
	uint64_t n = 20000000;
	unsigned burst = 256, cq = 16384, rounds = 3, i, m;
	struct series modes[2] = { { .name = "spin", .on = true }, { .name = "wait", .on = true } };
	double best_spsc = 0;
	const char *mode = "both";
	int opt, fail = 0;

	while ((opt = getopt(argc, argv, "n:b:q:r:m:w:")) != -1) {
		switch (opt) {
		case 'n': n = strtoull(optarg, NULL, 0); break;
		case 'b': burst = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'q': cq = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': rounds = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'm': mode = optarg; break;
		case 'w': work = (unsigned)strtoul(optarg, NULL, 0); break;
		default:
			fprintf(stderr, "usage: %s [-n events] [-b burst] [-q cq_entries] [-r rounds] "
				"[-m spin|wait|both] [-w work]\n", argv[0]);
			return 2;
		}
	}
	if (!strcmp(mode, "spin"))
		modes[1].on = false;
	else if (!strcmp(mode, "wait"))
		modes[0].on = false;
	else if (strcmp(mode, "both"))
		n = 0;
	if (!n || !burst || cq < 2 || (cq & (cq - 1)) || !rounds || rounds > 64) {
		fprintf(stderr, "bad arguments (cq_entries must be a power of two; -m spin, wait or both)\n");
		return 2;
	}
	printf("events %" PRIu64 ", payload %d bytes, burst %u, ring %u entries, %u rounds, consumer %s, "
	       "work %u\n", n, PAYLOAD, burst, cq, rounds, mode, work);
	for (i = 0; i < rounds; i++) {
		struct result a[2], s;

		for (m = 0; m < 2; m++)
			if (modes[m].on)
				a[m] = run_aem(n, burst, cq, m == 1);
		s = run_spsc(n, burst, cq);
		fail |= !s.ok;
		printf("round %u: spsc %8.2f M events/s%s", i + 1, rate(&s) / 1e6, s.ok ? "" : " (incomplete)");
		for (m = 0; m < 2; m++) {
			if (!modes[m].on)
				continue;
			fail |= !a[m].ok;
			series_add(&modes[m], i, &a[m], rate(&s));
		}
		printf("\n");
		if (rate(&s) > best_spsc)
			best_spsc = rate(&s);
	}
	/* Rounds run back to back on a noisy machine: the median ratio is the figure to quote. */
	printf("best:    spsc %8.2f M events/s", best_spsc / 1e6);
	for (m = 0; m < 2; m++)
		if (modes[m].on)
			printf("   aem %-4s %8.2f M events/s", modes[m].name, modes[m].best / 1e6);
	printf("\nmedian ratio to spsc of rounds:");
	for (m = 0; m < 2; m++) {
		if (!modes[m].on)
			continue;
		qsort(modes[m].ratios, rounds, sizeof(modes[m].ratios[0]), cmp_double);
		printf("   %s %.2f", modes[m].name, modes[m].ratios[rounds / 2]);
	}
	printf("\n");
	return fail;
}
