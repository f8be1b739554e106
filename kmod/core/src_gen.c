// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * AEM_SRC_GEN: a synthetic event generator for load tests.
 *
 * Arguments (struct aem_gen_args): rate in events/s (0: as fast as the CQ
 * ring takes them; nothing is backlogged or dropped then), count (0:
 * unbounded), burst (events per step, >= 1), payload_len (<= slot_size).
 * Every payload starts with struct aem_gen_event (seq 0, 1, 2, ... and the
 * time of the step); the rest is zero.  Each burst is one
 * aem_core_post_batch_run (one lock round and one tail store): payloads of
 * up to AEM_CQE_INLINE bytes inline, longer ones in a delivery slot each;
 * the fill loop runs over whole runs of CQEs.  The event with
 * seq == count - 1 carries AEM_CQE_F_FINAL and ends the subscription.
 * AEM_OP_GEN_SET replaces rate/burst/payload_len and sets count to "this
 * many more events from now" (0: unbounded).
 *
 * At a rate, a step posts the bursts that are due (at most one).  At rate
 * 0 a step fills the room the CQ ring has, up to GEN_STEP_EVENTS events,
 * burst after burst (a burst of at least GEN_FLOOD_BURST events there: a
 * post costs a lock round, a barrier and the consumer's head line, far
 * more than an event, and a rate-0 burst only sets how often the tail is
 * published), with the one
 * timestamp of the step, and stops when the ring is full: it asks the
 * core to kick the driver when the consumer makes room
 * (aem_core_want_room: the consumer's next enter, wait or poll arming does
 * it, once) and returns a fallback time for consumers that only ever
 * busy-poll.  So a blocked generator costs no CPU and no clock reads, and
 * the consumer's wake of it is one futex wake per full ring, not a poll.
 *
 * Host-driver contract:
 *  - call aem_sources_init() once, then register aem_gen_source_ops;
 *  - one thread calls aem_gen_step(now) and then waits until the time it
 *    returns: <= now means call again at once (a rate-0 generator made
 *    progress), AEM_GEN_IDLE means no generator is active: sleep until
 *    aem_host_gen_kick() (called when a generator starts);
 *  - aem_gen_step takes the generator mutex: thread context only.
 *
 * Locks: gen_mutex -> ring cq_lock.  Every generator is produced under
 * gen_mutex, which unsubscribe also takes, so unsubscribe never races a
 * step in progress.
 */
#include "aem_sources.h"

#define NSEC_PER_SEC		1000000000ULL
#define GEN_MAX_RATE		10000000000ULL	/* keeps the due-count arithmetic in 64 bits */
#define GEN_MAX_BURST		65536
/*
 * Rate 0, the ring full and no room since: look again after this long
 * even without a kick (a consumer that only busy-polls never enters),
 * doubling while steps keep finding no room, up to 20 us << 5 = 640 us
 * (an abandoned ring that nobody enters costs next to nothing).
 */
#define GEN_ROOM_WAIT_NS	20000ULL
#define GEN_ROOM_WAIT_STEPS	6
/*
 * Rate 0: the smallest burst, then events and bursts per step.  One thread
 * steps every generator, so a flood's step is what a generator beside it
 * waits for: 4096 events keep a step to tens of microseconds (65536 made
 * it about a millisecond, and an urgent class's 10 k/s generator fell
 * behind under a class-1 flood, its events coming in late clumps), and
 * with another generator active a step is a quarter of that, so the other
 * one's events wait a quarter as long; a flood alone keeps the longer step
 * (fewer rounds of the thread's loop per event).
 */
#define GEN_FLOOD_BURST		256U
#define GEN_STEP_EVENTS		4096U
#define GEN_STEP_EVENTS_SHARED	1024U
#define GEN_STEP_BURSTS		1024U

struct aem_gen {
	struct aem_gen		*next, *prev;
	struct aem_ctx		*r;
	struct aem_sub		*s;
	u64			rate;
	u64			limit;		/* seq at which it ends; 0: never */
	u64			seq;		/* next seq */
	u64			base_seq;	/* seq at base_ns (rate accounting) */
	u64			base_ns;
	u32			burst;
	u32			len;
	u32			idle;		/* rate 0: steps in a row that found no room */
};

static aem_mutex_t gen_mutex;
static struct aem_gen *gens;

void __aem_gen_init(void);
void __aem_gen_init(void)
{
	aem_mutex_init(&gen_mutex);
}

struct gen_fill {
	u64	seq;
	u64	now;
	u32	len;
};

/*
 * Runs of payloads: the common case (len 32, inline) is four stores per
 * event, no call and no branch per event.
 */
static void gen_fill(void *arg, u64 first, u32 count, u8 *dst, u32 stride)
{
	const struct gen_fill *g = arg;
	u64 seq = g->seq + first, now = g->now;
	u32 i, len = g->len;

	if (likely(len == AEM_CQE_INLINE && stride == sizeof(struct aem_cqe))) {
		u64 *w = (u64 *)dst;

		for (i = 0; i < count; i++, w += sizeof(struct aem_cqe) / sizeof(u64)) {
			w[0] = seq + i;
			w[1] = now;
			w[2] = 0;
			w[3] = 0;
		}
		return;
	}
	for (i = 0; i < count; i++, dst += stride) {
		u64 w[4] = { seq + i, now, 0, 0 };

		if (len <= sizeof(w)) {
			memcpy(dst, w, len);
		} else {
			memcpy(dst, w, sizeof(w));
			memset(dst + sizeof(w), 0, len - sizeof(w));
		}
	}
}

static int check_args(const struct aem_gen_args *a)
{
	if (a->resv || !a->burst || a->burst > GEN_MAX_BURST || a->rate > GEN_MAX_RATE)
		return -EINVAL;
	return 0;
}

/* Events due by @now under the rate; divisions per step, never per event. */
static u64 gen_due(const struct aem_gen *g, u64 now)
{
	u64 el, target;

	if (!g->rate)
		return g->burst;
	el = now > g->base_ns ? now - g->base_ns : 0;
	target = g->base_seq + (el / NSEC_PER_SEC) * g->rate +
		 (el % NSEC_PER_SEC) * g->rate / NSEC_PER_SEC;
	return target > g->seq ? target - g->seq : 0;
}

static u64 gen_next_ns(const struct aem_gen *g)
{
	u64 n = g->seq + 1 - g->base_seq;

	return g->base_ns + (n / g->rate) * NSEC_PER_SEC + (n % g->rate) * NSEC_PER_SEC / g->rate;
}

static void gen_unlink(struct aem_gen *g)
{
	if (g->prev)
		g->prev->next = g->next;
	else
		gens = g->next;
	if (g->next)
		g->next->prev = g->prev;
}

/*
 * Post @n events of @g, the last one ending it when @final.  Returns the
 * events posted; *ended says @g is gone (freed: do not touch it).
 */
static u32 gen_post(struct aem_gen *g, u32 n, bool final, u64 now, u32 flags, bool *ended)
{
	struct gen_fill fill = { .seq = g->seq, .now = now, .len = g->len };
	struct aem_sub *s = g->s;
	u32 done;

	/*
	 * A final batch may end @s inside the post: drop our hold first (a
	 * new subscription may reuse the entry at once), restore it if the
	 * final event did not make it.  gen_mutex keeps unsubscribe out.
	 */
	if (final)
		s->priv[0] = 0;
	if (fill.len > aem_ctx_slot_size(g->r))
		fill.len = aem_ctx_slot_size(g->r);
	done = aem_core_post_batch_run(g->r, s, n, g->len, gen_fill, &fill,
				       flags | (final ? AEM_POST_FINAL : 0));
	g->seq += done;
	*ended = final && done == n;
	if (*ended) {
		gen_unlink(g);
		aem_core_uncharge(g->r, sizeof(*g));
		aem_free(g);
	} else if (final) {
		s->priv[0] = (u64)(uintptr_t)g;
	}
	return done;
}

/* Events of the next burst of at most @due (<= 2^32 - 1); *final when they end @g. */
static u32 gen_burst(const struct aem_gen *g, u64 due, bool *final)
{
	*final = g->limit && g->seq + due >= g->limit;
	if (*final)
		due = g->limit - g->seq;
	return (u32)due;
}

/*
 * Rate 0: fill the CQ ring's room, burst after burst, all with the step's
 * timestamp.  Returns now after progress (the host steps again at once,
 * with a fresh timestamp: the ring may have room again), a fallback time
 * when the ring stayed full (the consumer's kick ends the wait early).
 */
static u64 gen_flood(struct aem_gen *g, u64 now)
{
	u32 burst = g->burst > GEN_FLOOD_BURST ? g->burst : GEN_FLOOD_BURST;
	u32 step = g->next || g->prev ? GEN_STEP_EVENTS_SHARED : GEN_STEP_EVENTS;
	u32 made = 0, i;
	bool final, ended;

	for (i = 0; i < GEN_STEP_BURSTS && made < step; i++) {
		u32 n = gen_burst(g, burst, &final);
		u32 done = gen_post(g, n, final, now, AEM_POST_FIT, &ended);

		if (ended)
			return AEM_GEN_IDLE;
		made += done;
		/*
		 * Short: the ring is full, or out of delivery slots.  Ask to be
		 * kicked when the consumer makes room; it may have made some
		 * already, then go on.
		 */
		if (done < n && !aem_core_want_room(g->r, g->s, g->len)) {
			if (made)
				break;
			if (g->idle < GEN_ROOM_WAIT_STEPS)
				g->idle++;
			return now + (GEN_ROOM_WAIT_NS << (g->idle - 1));
		}
	}
	g->idle = 0;
	return now;
}

/* One step of @g; returns when it wants the next one. Under gen_mutex. */
static u64 gen_produce(struct aem_gen *g, u64 now)
{
	bool final, ended;
	u32 n, done;
	u64 due;

	if (!g->rate)
		return gen_flood(g, now);
	due = gen_due(g, now);
	n = gen_burst(g, due < g->burst ? due : g->burst, &final);
	if (!n)
		return gen_next_ns(g);
	done = gen_post(g, n, final, now, 0, &ended);
	if (ended)
		return AEM_GEN_IDLE;
	if (!done)	/* out of slots: look again soon */
		return now + GEN_ROOM_WAIT_NS;
	if (done < n)	/* partly: the consumer is returning slots, keep going */
		return now;
	return done == g->burst ? now : gen_next_ns(g);
}

u64 aem_gen_step(u64 now_ns)
{
	struct aem_gen *g, *next;
	u64 soonest = AEM_GEN_IDLE;

	aem_mutex_lock(&gen_mutex);
	for (g = gens; g; g = next) {
		u64 t;

		next = g->next;
		t = gen_produce(g, now_ns);
		if (t < soonest)
			soonest = t;
	}
	aem_mutex_unlock(&gen_mutex);
	return soonest;
}

static int gen_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	struct aem_gen *g;
	int ret = check_args(&sqe->gen);

	if (ret)
		return ret;
	if (sqe->gen.payload_len > aem_ctx_slot_size(r))
		return -EINVAL;
	/* Counted against the ring's account: a generator's state is its own, beyond the 64 bytes. */
	if (aem_core_charge(r, sizeof(*g)))
		return -ENOMEM;
	g = aem_zalloc(sizeof(*g));
	if (!g) {
		aem_core_uncharge(r, sizeof(*g));
		return -ENOMEM;
	}
	g->r = r;
	g->s = s;
	g->rate = sqe->gen.rate;
	g->limit = sqe->gen.count;
	g->burst = sqe->gen.burst;
	g->len = sqe->gen.payload_len;
	s->priv[0] = (u64)(uintptr_t)g;
	return 0;
}

static void gen_start(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_gen *g = (struct aem_gen *)(uintptr_t)s->priv[0];

	(void)r;
	aem_mutex_lock(&gen_mutex);
	g->base_ns = aem_now_ns();
	g->next = gens;
	if (gens)
		gens->prev = g;
	gens = g;
	aem_mutex_unlock(&gen_mutex);
	aem_host_gen_kick();
}

static void gen_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_gen *g;

	aem_mutex_lock(&gen_mutex);
	g = (struct aem_gen *)(uintptr_t)s->priv[0];
	if (g) {
		gen_unlink(g);
		s->priv[0] = 0;
		aem_core_uncharge(r, sizeof(*g));
		aem_free(g);
	}
	aem_mutex_unlock(&gen_mutex);
}

static int gen_writeback(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
			 const void *data, u32 len)
{
	struct aem_gen_args a;
	struct aem_gen *g;
	int ret = -ENOENT;

	(void)sqe;
	if (len < sizeof(a))
		return -EINVAL;
	memcpy(&a, data, sizeof(a));
	if (check_args(&a) || a.payload_len > aem_ctx_slot_size(r))
		return -EINVAL;
	aem_mutex_lock(&gen_mutex);
	g = (struct aem_gen *)(uintptr_t)s->priv[0];
	if (g && aem_sub_active(r, s)) {
		g->rate = a.rate;
		g->burst = a.burst;
		g->len = a.payload_len;
		g->limit = a.count ? g->seq + a.count : 0;
		g->base_seq = g->seq;
		g->base_ns = aem_now_ns();
		ret = 0;
	}
	aem_mutex_unlock(&gen_mutex);
	if (!ret)
		aem_host_gen_kick();
	return ret;
}

/*
 * The ring is going: its generators are unsubscribed already, but a step
 * that just posted a generator's final event may still be inside the post
 * (waking @r).  Steps run under gen_mutex, so taking it is the fence.
 */
static void gen_ring_release(struct aem_ctx *r)
{
	(void)r;
	aem_mutex_lock(&gen_mutex);
	aem_mutex_unlock(&gen_mutex);
}

const struct aem_source_ops aem_gen_source_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_GEN,
	.name		= "gen",
	.subscribe	= gen_subscribe,
	.unsubscribe	= gen_unsubscribe,
	.writeback	= gen_writeback,
	.start		= gen_start,
	.ring_release	= gen_ring_release,
};
