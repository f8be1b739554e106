/* SPDX-License-Identifier: MIT */
/*
 * bp.h - the C side of the benchmark peers.
 *
 * Every measured loop runs here, whole: one cgo call moves all the events of
 * a run and returns counts and nanoseconds, so the cgo crossing is paid once
 * per run, never per event.  Functions return 0 or -errno.
 *
 * An event is a 16-byte header (sequence, send timestamp) followed by the
 * payload; a record is at least 32 bytes, so the default 16-byte payload
 * gives the 32-byte events of the design targets.
 */
#ifndef BP_H
#define BP_H

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define BP_HDR		16u
#define BP_MIN_EVENT	32u
#define BP_CACHELINE	64
#define BP_MAX_PRODUCERS 64u
/* Producers look at the clock once per this many events when not paced. */
#define BP_CHECK_EVERY	4096
/* Fan-in: the producer id sits in the top bits of the sequence. */
#define BP_SEQ_SHIFT	48
#define BP_SEQ_MASK	((UINT64_C(1) << BP_SEQ_SHIFT) - 1)

struct bp_params {
	uint64_t max_events;	/* events over all producers, 0: unbounded */
	uint64_t duration_ns;	/* producers stop this long after the start */
	uint64_t deadline_ns;	/* set by the run: start + duration_ns */
	uint64_t *samples;	/* latency samples in ns, filled by the consumer */
	uint64_t max_samples;
	double rate;		/* events/s over all producers, 0: flat out */
	uint32_t batch;		/* events per publish / submit / write */
	uint32_t payload;	/* bytes after the header */
	uint32_t producers;
	uint32_t sample_every;	/* stamp every n-th event of a producer, 0: none */
	uint32_t busy;		/* consumers spin instead of sleeping */
	uint32_t ring_entries;	/* power of two, 0: default */
};

struct bp_result {
	uint64_t events;	/* consumed and verified */
	uint64_t produced;
	uint64_t dropped;	/* refused by the transport */
	uint64_t errors;	/* out of order or corrupted */
	uint64_t elapsed_ns;	/* first send to last receive */
	uint64_t nsamples;
	uint64_t checksum;	/* keeps the consumer's reads alive */
};

/* Stream kinds (bp_stream_run) */
enum {
	BP_SPSC = 1,
	BP_EVENTFD_SHM,
	BP_PIPE,
	BP_UNIX_DGRAM,
	BP_URING_MSG,
	BP_URING_NOP,
};

/* Round-trip kinds (bp_call_run) */
enum {
	BP_CALL_FUTEX = 1,
	BP_CALL_SPIN,
	BP_CALL_PIPE,
	BP_CALL_EVENTFD,
	BP_CALL_UNIX,
	BP_CALL_URING,
	BP_CALL_SPSC,
};

int bp_stream_run(int kind, const struct bp_params *p, struct bp_result *r);
int bp_call_run(int kind, const struct bp_params *p, struct bp_result *r);

/* ---- helpers shared by the loops ---- */

static inline uint64_t bp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void bp_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/*
 * One step of a wait for another thread: pause, and every
 * BP_SPINS_PER_YIELD steps give the CPU away.  On two cores shared with
 * other work a spinning waiter often sits on the CPU of the very thread it
 * waits for; without the yield each hand-over would cost a time slice.
 */
#define BP_SPINS_PER_YIELD 256

static inline void bp_spin(uint32_t *spins)
{
	if (++*spins % BP_SPINS_PER_YIELD == 0)
		sched_yield();
	else
		bp_relax();
}

static inline uint32_t bp_event_size(uint32_t payload)
{
	uint32_t size = (BP_HDR + payload + 7u) & ~7u;

	return size < BP_MIN_EVENT ? BP_MIN_EVENT : size;
}

static inline void bp_fill(uint8_t *ev, uint64_t seq, uint64_t ts,
			   uint32_t payload)
{
	uint64_t pat = (uint8_t)seq * UINT64_C(0x0101010101010101);

	memcpy(ev, &seq, 8);
	memcpy(ev + 8, &ts, 8);
	/* the default payload is two words: skip the memset call for it */
	if (payload == 16) {
		memcpy(ev + 16, &pat, 8);
		memcpy(ev + 24, &pat, 8);
	} else if (payload) {
		memset(ev + BP_HDR, (uint8_t)seq, payload);
	}
}

/*
 * One producer's pacing and stopping rule.  bp_prod_next() says how many
 * events to send now; 0 means stop.  It stamps nothing itself.
 */
struct bp_prod {
	const struct bp_params *p;
	uint64_t quota;		/* events this producer may send */
	uint64_t sent;
	uint64_t start;
	double ns_per_event;	/* 0: not paced */
	int64_t check;
	uint32_t id;
};

void bp_prod_init(struct bp_prod *pr, const struct bp_params *p, uint32_t id,
		  uint32_t nprod, uint64_t start);
uint32_t bp_prod_next(struct bp_prod *pr);

static inline uint64_t bp_seq(const struct bp_prod *pr, uint64_t n)
{
	return ((uint64_t)pr->id << BP_SEQ_SHIFT) | n;
}

/* Stamp the events whose per-producer number is a multiple of sample_every. */
static inline uint64_t bp_stamp(const struct bp_params *p, uint64_t n)
{
	if (p->sample_every && n % p->sample_every == 0)
		return bp_now();
	return 0;
}

/* What a consumer keeps while it verifies. */
struct bp_cons {
	const struct bp_params *p;
	struct bp_result *r;
	uint64_t expect[BP_MAX_PRODUCERS];
};

static inline void bp_cons_init(struct bp_cons *c, const struct bp_params *p,
				struct bp_result *r)
{
	memset(c, 0, sizeof(*c));
	c->p = p;
	c->r = r;
}

static inline void bp_sample(struct bp_cons *c, uint64_t ts)
{
	struct bp_result *r = c->r;

	if (ts && r->nsamples < c->p->max_samples) {
		uint64_t now = bp_now();

		c->p->samples[r->nsamples++] = now > ts ? now - ts : 0;
	}
}

/* Account one received (seq, ts) pair; the payload was checked by the caller. */
static inline void bp_take(struct bp_cons *c, uint64_t seq, uint64_t ts)
{
	uint32_t id = (uint32_t)(seq >> BP_SEQ_SHIFT);

	if (id >= BP_MAX_PRODUCERS || (seq & BP_SEQ_MASK) != c->expect[id]) {
		c->r->errors++;
		if (id < BP_MAX_PRODUCERS)
			c->expect[id] = (seq & BP_SEQ_MASK) + 1;
	} else {
		c->expect[id]++;
	}
	c->r->events++;
	c->r->checksum += seq;
	bp_sample(c, ts);
}

static inline void bp_take_event(struct bp_cons *c, const uint8_t *ev)
{
	uint64_t seq, ts;
	uint32_t payload = c->p->payload;

	memcpy(&seq, ev, 8);
	memcpy(&ts, ev + 8, 8);
	if (payload && (ev[BP_HDR] != (uint8_t)seq ||
			ev[BP_HDR + payload - 1] != (uint8_t)seq))
		c->r->errors++;
	bp_take(c, seq, ts);
}

/* Single-producer/single-consumer ring of fixed-size records. */
struct bp_ring {
	/* written by the producer, read by the consumer */
	_Alignas(BP_CACHELINE) _Atomic uint64_t tail;
	/* written by the consumer, read by the producer */
	_Alignas(BP_CACHELINE) _Atomic uint64_t head;
	/* consumer says it is about to sleep (eventfd peer) */
	_Alignas(BP_CACHELINE) _Atomic uint32_t sleeping;
	_Alignas(BP_CACHELINE) uint32_t mask;
	uint32_t esize;
	uint8_t *slots;
};

int bp_ring_init(struct bp_ring *ring, uint32_t entries, uint32_t esize);
void bp_ring_free(struct bp_ring *ring);

static inline uint8_t *bp_ring_slot(struct bp_ring *ring, uint64_t idx)
{
	return ring->slots + (size_t)(idx & ring->mask) * ring->esize;
}

#endif
