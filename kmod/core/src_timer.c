// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * AEM_SRC_TIMER: one-shot and periodic timers on a hierarchical timing
 * wheel per ring, threaded through the 60-byte struct aem_sub itself:
 *   priv[0]  absolute expiry, CLOCK_MONOTONIC ns
 *   priv[1]  interval ns (bits 0..52) | bucket (bits 53..63)
 *   link[0]  next, link[1] prev (table indices; AEM_NIL ends a list)
 * so a timer costs no memory beyond its subscription, arming and
 * cancelling are O(1), and a tick touches only the bucket that is due
 * (plus an amortised cascade): idle timers cost nothing per tick.
 *
 * Wheel: level 0 has 256 one-tick buckets; levels 1-4 have 64 buckets of
 * 2^8, 2^14, 2^20, 2^26 ticks; beyond 2^32 ticks (~52 days) a timer waits
 * in a "far" list re-sorted once per level-4 revolution.  A tick is
 * AEM_TIMER_TICK_NS; timers fire at the first tick at or after their
 * expiry, never early.
 *
 * Host-driver contract:
 *  - call aem_sources_init() once, then register aem_timer_source_ops;
 *  - call aem_timer_tick(now) about every AEM_TIMER_TICK_NS while it
 *    returns true, from one thread or timer context (spinlocks only);
 *  - when it returns false, sleep until aem_host_timer_kick() (called when
 *    the first timer is armed or an asynchronous call starts pending);
 *  - aem_timer_tick also expires asynchronous calls (aem_core_expire_calls).
 *
 * Events: struct aem_timer_event inline (16 bytes).  A one-shot timer's
 * event carries AEM_CQE_F_FINAL (the subscription ends).  A periodic
 * timer's expirations say how many periods passed since its last event.
 * Writeback to a timer's token, or AEM_OP_TIMER_SET, re-arms it: payload
 * struct aem_timer_args (16+ bytes: first_ns, interval_ns) or one __u64
 * interval (first expiry one interval from now); first_ns == 0 and
 * interval_ns == 0 disarms the timer without ending it.
 *
 * Locks: wheels_lock (list of wheels) -> wheel->lock -> ring cq_lock.
 * Events are posted under the wheel lock, so cancel (which takes it) never
 * races a firing in progress.
 */
#include "aem_sources.h"

#define L0_BITS		8
#define L0_SIZE		(1U << L0_BITS)
#define LN_BITS		6
#define LN_SIZE		(1U << LN_BITS)
#define LEVELS		4		/* above level 0 */
#define WHEEL_SPAN	(1ULL << (L0_BITS + LEVELS * LN_BITS))	/* 2^32 ticks */

#define B_FAR		(L0_SIZE + LEVELS * LN_SIZE)
#define B_NONE		0x7ffU
#define B_SHIFT		53
#define IVAL_MASK	((1ULL << B_SHIFT) - 1)
#define AEM_NIL		0xffffffffU

struct aem_wheel {
	struct aem_wheel	*next, *prev;	/* wheels_lock */
	struct aem_ctx		*r;
	aem_spinlock_t		lock;
	u64			cur;		/* next tick to process */
	u64			armed;		/* timers linked in this wheel */
	u32			bucket[B_FAR + 1];	/* list heads by bucket id */
};

static aem_spinlock_t wheels_lock;
static struct aem_wheel *wheels;
static aem_atomic_t timers_armed;

static u32 bucket_of(const struct aem_sub *s)
{
	return (u32)(s->priv[1] >> B_SHIFT);
}

static void set_bucket(struct aem_sub *s, u32 b)
{
	s->priv[1] = (s->priv[1] & IVAL_MASK) | ((u64)b << B_SHIFT);
}

static u64 expiry_tick(u64 ns)
{
	return (ns + AEM_TIMER_TICK_NS - 1) >> AEM_TIMER_TICK_SHIFT;
}

static u32 pick_bucket(struct aem_wheel *w, u64 exp)
{
	u64 delta;
	u32 lvl;

	if (exp < w->cur)
		exp = w->cur;
	delta = exp - w->cur;
	if (delta < L0_SIZE)
		return (u32)(exp & (L0_SIZE - 1));
	for (lvl = 1; lvl <= LEVELS; lvl++) {
		u32 shift = L0_BITS + lvl * LN_BITS;

		if (delta < (1ULL << shift))
			return L0_SIZE + (lvl - 1) * LN_SIZE +
			       (u32)((exp >> (shift - LN_BITS)) & (LN_SIZE - 1));
	}
	return B_FAR;
}

static void link_timer(struct aem_wheel *w, struct aem_sub *s)
{
	u32 b = pick_bucket(w, expiry_tick(s->priv[0]));
	u32 head = w->bucket[b];

	s->link[0] = head;
	s->link[1] = AEM_NIL;
	if (head != AEM_NIL)
		aem_sub_at(w->r, head)->link[1] = s->index;
	w->bucket[b] = s->index;
	set_bucket(s, b);
}

static void unlink_timer(struct aem_wheel *w, struct aem_sub *s)
{
	u32 b = bucket_of(s);

	if (s->link[1] != AEM_NIL)
		aem_sub_at(w->r, s->link[1])->link[0] = s->link[0];
	else
		w->bucket[b] = s->link[0];
	if (s->link[0] != AEM_NIL)
		aem_sub_at(w->r, s->link[0])->link[1] = s->link[1];
	s->link[0] = s->link[1] = AEM_NIL;
	set_bucket(s, B_NONE);
}

/* Re-sort one bucket of a higher level into lower ones. */
static void cascade(struct aem_wheel *w, u32 b)
{
	u32 idx = w->bucket[b];

	w->bucket[b] = AEM_NIL;
	while (idx != AEM_NIL) {
		struct aem_sub *s = aem_sub_at(w->r, idx);

		idx = s->link[0];
		link_timer(w, s);
	}
}

static void fire(struct aem_wheel *w, struct aem_sub *s, u64 now)
{
	u64 ival = s->priv[1] & IVAL_MASK, exp = s->priv[0];
	struct aem_timer_event ev;

	ev.now_ns = now;
	ev.expirations = 1;
	if (!ival) {
		/* One-shot: unlinked already; after the post @s is the core's. */
		w->armed--;
		aem_atomic_dec_return(&timers_armed);
		aem_core_post(w->r, s, &ev, sizeof(ev), AEM_CQE_F_FINAL, 0);
		return;
	}
	if (now >= exp + ival)
		ev.expirations += (now - exp) / ival;
	s->priv[0] = exp + ev.expirations * ival;
	link_timer(w, s);
	aem_core_post(w->r, s, &ev, sizeof(ev), 0, 0);
}

/* Process tick @t of @w: cascade, then fire its level-0 bucket. */
static void run_tick(struct aem_wheel *w, u64 t, u64 now)
{
	u32 idx, lvl;

	if (!(t & (L0_SIZE - 1))) {
		for (lvl = 1; lvl <= LEVELS; lvl++) {
			u32 shift = L0_BITS + (lvl - 1) * LN_BITS;
			u32 slot = (u32)((t >> shift) & (LN_SIZE - 1));

			cascade(w, L0_SIZE + (lvl - 1) * LN_SIZE + slot);
			if (slot)
				break;
		}
		if (lvl > LEVELS)
			cascade(w, B_FAR);
	}
	idx = w->bucket[t & (L0_SIZE - 1)];
	w->bucket[t & (L0_SIZE - 1)] = AEM_NIL;
	w->cur = t + 1;
	while (idx != AEM_NIL) {
		struct aem_sub *s = aem_sub_at(w->r, idx);

		idx = s->link[0];
		s->link[0] = s->link[1] = AEM_NIL;
		set_bucket(s, B_NONE);
		fire(w, s, now);
	}
}

bool aem_timer_tick(u64 now_ns)
{
	u64 tick = now_ns >> AEM_TIMER_TICK_SHIFT;
	struct aem_wheel *w;
	unsigned long f, g;

	aem_spin_lock_irqsave(&wheels_lock, g);
	for (w = wheels; w; w = w->next) {
		aem_spin_lock_irqsave(&w->lock, f);
		while (w->armed && w->cur <= tick)
			run_tick(w, w->cur, now_ns);
		if (!w->armed)
			w->cur = tick + 1;	/* nothing to cascade: jump */
		aem_spin_unlock_irqrestore(&w->lock, f);
	}
	aem_spin_unlock_irqrestore(&wheels_lock, g);
	aem_core_expire_calls(now_ns);
	return aem_atomic_read(&timers_armed) > 0 || aem_core_calls_pending();
}

u64 aem_timer_armed(void)
{
	return (u64)aem_atomic_read(&timers_armed);
}

/* Arm @s to expire at @exp_ns (then every @ival ns); under w->lock. Returns true on 0 -> 1. */
static bool arm_locked(struct aem_wheel *w, struct aem_sub *s, u64 exp_ns, u64 ival)
{
	s->priv[0] = exp_ns;
	s->priv[1] = ival | ((u64)B_NONE << B_SHIFT);
	link_timer(w, s);
	w->armed++;
	return aem_atomic_add_return(1, &timers_armed) == 1;
}

static bool disarm_locked(struct aem_wheel *w, struct aem_sub *s)
{
	if (bucket_of(s) == B_NONE)
		return false;
	unlink_timer(w, s);
	w->armed--;
	aem_atomic_dec_return(&timers_armed);
	return true;
}

static int parse_args(const void *data, u32 len, u64 *first, u64 *ival)
{
	struct aem_timer_args a;

	memset(&a, 0, sizeof(a));
	if (len == sizeof(u64)) {
		memcpy(&a.interval_ns, data, sizeof(u64));
		a.first_ns = a.interval_ns;
	} else if (len >= 2 * sizeof(u64)) {
		memcpy(&a, data, len < sizeof(a) ? len : sizeof(a));
		if (a.resv[0] || a.resv[1])
			return -EINVAL;
		if (!a.first_ns)
			a.first_ns = a.interval_ns;
	} else {
		return -EINVAL;
	}
	if (a.interval_ns > IVAL_MASK || a.first_ns > (1ULL << 62))
		return -EINVAL;
	*first = a.first_ns;
	*ival = a.interval_ns;
	return 0;
}

static int timer_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	void **priv = aem_ctx_src_priv(r, &aem_timer_source_ops);
	struct aem_wheel *w;
	unsigned long g;
	u32 i;

	if (!sqe->timer.first_ns || sqe->timer.resv[0] || sqe->timer.resv[1] ||
	    sqe->timer.interval_ns > IVAL_MASK || sqe->timer.first_ns > (1ULL << 62))
		return -EINVAL;
	/* Arguments wait in the sub until start(): the result CQE must come first. */
	s->priv[0] = sqe->timer.first_ns;
	s->priv[1] = sqe->timer.interval_ns | ((u64)B_NONE << B_SHIFT);
	s->link[0] = s->link[1] = AEM_NIL;
	if (*priv)
		return 0;
	if (aem_core_charge(r, sizeof(*w)))
		return -ENOMEM;
	w = aem_zalloc(sizeof(*w));
	if (!w) {
		aem_core_uncharge(r, sizeof(*w));
		return -ENOMEM;
	}
	w->r = r;
	aem_spin_init(&w->lock);
	for (i = 0; i <= B_FAR; i++)
		w->bucket[i] = AEM_NIL;
	w->cur = aem_now_ns() >> AEM_TIMER_TICK_SHIFT;
	aem_spin_lock_irqsave(&wheels_lock, g);
	w->next = wheels;
	if (wheels)
		wheels->prev = w;
	wheels = w;
	aem_spin_unlock_irqrestore(&wheels_lock, g);
	*priv = w;
	return 0;
}

/* start() of @n timers of @r (a run of SUBSCRIBEs: op_sub.c), in one round of the wheel's lock. */
void __aem_timers_start(struct aem_ctx *r, struct aem_sub *const *subs, u32 n)
{
	struct aem_wheel *w = *aem_ctx_src_priv(r, &aem_timer_source_ops);
	u64 now = aem_core_submit_clock(r);
	bool kick = false;
	unsigned long f;
	u32 i;

	aem_spin_lock_irqsave(&w->lock, f);
	for (i = 0; i < n; i++)
		kick |= arm_locked(w, subs[i], now + subs[i]->priv[0], subs[i]->priv[1] & IVAL_MASK);
	aem_spin_unlock_irqrestore(&w->lock, f);
	if (kick)
		aem_host_timer_kick();
}

static void timer_start(struct aem_ctx *r, struct aem_sub *s)
{
	__aem_timers_start(r, &s, 1);
}

static void timer_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_wheel *w = *aem_ctx_src_priv(r, &aem_timer_source_ops);
	unsigned long f;

	aem_spin_lock_irqsave(&w->lock, f);
	disarm_locked(w, s);
	aem_spin_unlock_irqrestore(&w->lock, f);
}

static int timer_writeback(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
			   const void *data, u32 len)
{
	struct aem_wheel *w = *aem_ctx_src_priv(r, &aem_timer_source_ops);
	u64 first, ival;
	unsigned long f;
	bool kick = false;
	int ret;

	(void)sqe;
	ret = parse_args(data, len, &first, &ival);
	if (ret)
		return ret;
	aem_spin_lock_irqsave(&w->lock, f);
	/* A one-shot may have fired (and ended) since the core looked it up. */
	if (!aem_sub_active(r, s)) {
		aem_spin_unlock_irqrestore(&w->lock, f);
		return -ENOENT;
	}
	disarm_locked(w, s);
	if (first)
		kick = arm_locked(w, s, aem_core_submit_clock(r) + first, ival);
	else
		s->priv[1] = ival | ((u64)B_NONE << B_SHIFT);
	aem_spin_unlock_irqrestore(&w->lock, f);
	if (kick)
		aem_host_timer_kick();
	return 0;
}

static void timer_ring_release(struct aem_ctx *r)
{
	void **priv = aem_ctx_src_priv(r, &aem_timer_source_ops);
	struct aem_wheel *w = *priv;
	unsigned long g;

	if (!w)
		return;
	/* The tick walks the list under wheels_lock: once out, no tick sees @w. */
	aem_spin_lock_irqsave(&wheels_lock, g);
	if (w->prev)
		w->prev->next = w->next;
	else
		wheels = w->next;
	if (w->next)
		w->next->prev = w->prev;
	aem_spin_unlock_irqrestore(&wheels_lock, g);
	aem_free(w);
	aem_core_uncharge(r, sizeof(*w));
	*priv = NULL;
}

const struct aem_source_ops aem_timer_source_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_TIMER,
	.name		= "timer",
	.subscribe	= timer_subscribe,
	.unsubscribe	= timer_unsubscribe,
	.writeback	= timer_writeback,
	.start		= timer_start,
	.ring_release	= timer_ring_release,
};

void __aem_gen_init(void);

int aem_sources_init(void)
{
	aem_spin_init(&wheels_lock);
	aem_atomic_set(&timers_armed, 0);
	__aem_gen_init();
	return 0;
}
