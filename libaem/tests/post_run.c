/* SPDX-License-Identifier: MIT */
/*
 * Runs of POSTs in one submission: the kernel side takes consecutive
 * posts to one ring together (its lock once per run), and nothing about
 * them may differ from posting them one by one:
 *  - a run to one ring arrives in order, channel by channel, and the
 *    posts that want an answer get theirs in SQE order;
 *  - a run mixing targets, with refused entries in the middle (no such
 *    ring or channel, a bad length or class) and another opcode: each bad
 *    one refused with its reason, every good one delivered, the answers
 *    in SQE order;
 *  - a target that fills mid-run: the posts before it are delivered, the
 *    rest stays in the SQ (counted refused FULL once) and goes in once
 *    the consumer drains, all in order;
 *  - lossy posts past the target's budget dropped, each told and counted;
 *  - producers on their own rings posting at once to one consumer: each
 *    one's order kept, nothing lost;
 *  - (embedded backend) an allocation failing at each point of a run: the
 *    post that needed it stays in the SQ, nothing is dropped or reordered.
 */
#include <pthread.h>
#include <sched.h>

#include "aem_test.h"
#include "../../kmod/core/compat_user.h"

#define CH_A		1
#define CH_B		2
#define TAG_A		0xa1
#define TAG_B		0xa2

static void post_u32(struct aem_ring *r, uint64_t addr, uint32_t v, uint64_t ud, bool silent,
		     bool lossy)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_post(sqe, addr, &v, sizeof(v), 0);
	aem_sqe_set_data(sqe, ud);
	if (silent)
		sqe->flags |= AEM_SQE_F_SILENT;
	if (lossy)
		sqe->flags |= AEM_SQE_F_LOSSY;
}

/* The next event of @r: from @tag, its payload a u32, which it returns. */
static uint32_t next_u32(struct aem_ring *r, uint64_t tag, const char *what)
{
	struct aem_cqe c;
	uint32_t v;

	t_assert(t_next(r, &c, 5000), "%s: no event", what);
	t_assert(!(c.flags & AEM_CQE_F_RESULT), "%s: result ud %#llx res %d, want an event", what,
		 (unsigned long long)c.user_data, c.res);
	t_assert(c.user_data == tag, "%s: event of %#llx, want %#llx", what,
		 (unsigned long long)c.user_data, (unsigned long long)tag);
	t_eq(c.res, (int32_t)sizeof(v));
	memcpy(&v, c.data, sizeof(v));
	return v;
}

/* The next result of @r, which must answer @ud with @res. */
static void want_result(struct aem_ring *r, uint64_t ud, int32_t res)
{
	struct aem_cqe c;

	t_assert(t_next(r, &c, 5000), "no result for %#llx", (unsigned long long)ud);
	t_assert(c.flags & AEM_CQE_F_RESULT, "event of %#llx while waiting for the result of %#llx",
		 (unsigned long long)c.user_data, (unsigned long long)ud);
	if (c.user_data != ud || c.res != res)
		t_fail("result %#llx res %d, want %#llx res %d (answers out of SQE order?)",
		       (unsigned long long)c.user_data, c.res, (unsigned long long)ud, res);
}

/* A ring of 256 SQEs and two classes of 1024 CQEs. */
static void roomy_ring(struct aem_ring *r)
{
	struct aem_params p = t_params(256, 1024, 2);

	t_setup(r, &p);
}

/* Channel @ch of @r subscribed, its events tagged @tag: its address. */
static uint64_t listen_on(struct aem_ring *r, unsigned ch, uint64_t tag)
{
	t_sub_msg(r, ch, 0, tag);
	return AEM_ADDR(r->ring_id, ch);
}

/* 200 posts to two channels of one ring, half silent: in order, answers in order. */
static void one_target(void)
{
	struct aem_ring prod, cons;
	uint64_t a, b;
	unsigned i;

	roomy_ring(&prod);
	roomy_ring(&cons);
	a = listen_on(&cons, CH_A, TAG_A);
	b = listen_on(&cons, CH_B, TAG_B);
	for (i = 0; i < 200; i++)
		post_u32(&prod, i % 3 ? a : b, i, 0x1000 + i, i % 2, false);
	t_eq(t_submit(&prod), 200);
	for (i = 0; i < 200; i += 2)
		want_result(&prod, 0x1000 + i, 0);
	t_expect_quiet(&prod, 20, "after the answers of the run");
	/* One class: one ring, the events in SQE order whatever their channel. */
	for (i = 0; i < 200; i++)
		t_eq(next_u32(&cons, i % 3 ? TAG_A : TAG_B, "one target"), i);
	t_expect_quiet(&cons, 20, "after the run's events");
	{
		struct aem_ring_stats st = t_stats(&cons);

		t_balanced(&st, "consumer");
	}
	t_teardown_pair(&prod, &cons);
}

/* Two targets, refusals and a NOP in the middle of the posts. */
static void mixed_run(void)
{
	struct aem_ring prod, ta, tb;
	struct aem_ring_stats before, after;
	uint64_t a, b, ud = 100;
	struct aem_sqe *sqe;
	unsigned i, want_a = 0;
	static const uint8_t junk[AEM_SQE_INLINE];
	struct { uint64_t ud; int32_t res; } answers[32];
	unsigned nans = 0;

	roomy_ring(&prod);
	roomy_ring(&ta);
	roomy_ring(&tb);
	a = listen_on(&ta, CH_A, TAG_A);
	b = listen_on(&tb, CH_A, TAG_B);
#define GOOD(addr)	do { post_u32(&prod, (addr), (uint32_t)ud, ud, false, false); \
			     answers[nans].ud = ud++; answers[nans++].res = 0; } while (0)
#define BAD(res_)	do { aem_sqe_set_data(sqe, ud); answers[nans].ud = ud++; \
			     answers[nans++].res = (res_); } while (0)
	for (i = 0; i < 5; i++)
		GOOD(a);
	sqe = t_sqe(&prod);
	aem_prep_post(sqe, AEM_ADDR(0xfffffff0u, CH_A), "x", 1, 0);
	BAD(-ENOENT);					/* no such ring */
	for (i = 0; i < 3; i++)
		GOOD(a);
	sqe = t_sqe(&prod);
	aem_prep_post(sqe, AEM_ADDR(ta.ring_id, 99), "x", 1, 0);
	BAD(-ENOENT);					/* no such channel there */
	sqe = t_sqe(&prod);
	aem_prep_post(sqe, a, junk, 0, 0);
	sqe->len = AEM_SQE_INLINE + 1;
	BAD(-EINVAL);					/* inline payload too long */
	for (i = 0; i < 5; i++)
		GOOD(b);
	sqe = t_sqe(&prod);
	aem_prep_post(sqe, a, "x", 1, 0);
	sqe->prio = (uint8_t)prod.nr_classes;
	BAD(-EINVAL);					/* no such class */
	for (i = 0; i < 3; i++)
		GOOD(a);
	sqe = t_sqe(&prod);
	aem_prep_nop(sqe);
	answers[nans].ud = ud;
	answers[nans++].res = 0;
	aem_sqe_set_data(sqe, ud++);			/* another opcode between posts */
	for (i = 0; i < 2; i++)
		GOOD(a);
#undef GOOD
#undef BAD
	before = t_stats(&prod);
	t_eq(t_submit(&prod), (int)nans);
	after = t_stats(&prod);
	t_eq(after.refused[AEM_REFUSE_ID], before.refused[AEM_REFUSE_ID] + 2);
	t_eq(after.refused[AEM_REFUSE_FIELD], before.refused[AEM_REFUSE_FIELD] + 2);
	t_eq(after.refused[AEM_REFUSE_FULL], before.refused[AEM_REFUSE_FULL]);
	for (i = 0; i < nans; i++)
		want_result(&prod, answers[i].ud, answers[i].res);
	t_expect_quiet(&prod, 20, "after the answers");
	/* Target A: posts 100..104, 106..108, 117..119, 121..122; B: 111..115. */
	for (i = 100; i < ud; i++) {
		if ((i >= 100 && i <= 104) || (i >= 106 && i <= 108) || (i >= 117 && i <= 119) ||
		    i >= 121) {
			t_eq(next_u32(&ta, TAG_A, "target A"), i);
			want_a++;
		}
	}
	t_eq(want_a, 13);
	for (i = 111; i <= 115; i++)
		t_eq(next_u32(&tb, TAG_B, "target B"), i);
	t_expect_quiet(&ta, 20, "target A after its posts");
	t_expect_quiet(&tb, 20, "target B after its posts");
	aem_teardown(&tb);
	t_teardown_pair(&prod, &ta);
}

/* Drain @cons's events from TAG_A, checking that they continue at *next. */
static void drain_in_order(struct aem_ring *cons, uint32_t *next, const char *what)
{
	struct aem_cqe c;
	uint32_t v;

	while (t_next(cons, &c, 20)) {
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "%s: result res %d in the consumer", what, c.res);
		t_eq(c.user_data, TAG_A);
		memcpy(&v, c.data, sizeof(v));
		if (v != *next)
			t_fail("%s: event %u, want %u", what, v, *next);
		(*next)++;
	}
}

/*
 * A producer ring of @sq entries and a consumer whose one class ring holds
 * @cq entries and whose backlog @backlog (half of it for messages), with
 * a subscriber at CH_A: its address in *addr; returns the subscription.
 */
static uint64_t small_target(struct aem_ring *prod, struct aem_ring *cons, unsigned sq,
			     unsigned cq, unsigned backlog, uint64_t *addr)
{
	struct aem_params p = t_params(16, cq, 1);

	p.backlog_limit = backlog;
	t_setup(cons, &p);
	p = t_params(sq, 64, 1);
	t_setup(prod, &p);
	*addr = AEM_ADDR(cons->ring_id, CH_A);
	return t_sub_msg(cons, CH_A, 0, TAG_A);
}

/*
 * @count silent posts, of which the first submission took @took: the
 * consumer drains, the producer submits again, until every one is in;
 * all arrive in order, none dropped.  Tears both rings down.
 */
static void finish_posts(struct aem_ring *prod, struct aem_ring *cons, uint64_t sub,
			 unsigned count, unsigned took, const char *what)
{
	struct aem_sub_stats ss;
	uint32_t next = 0;
	unsigned rounds;
	int ret;

	for (rounds = 0; took < count; rounds++) {
		t_assert(rounds < 1000, "%s: stalled at %u of %u posts", what, took, count);
		drain_in_order(cons, &next, what);
		ret = aem_submit(prod);
		t_assert(ret >= 0, "%s: aem_submit: %s", what, strerror(-ret));
		took += (unsigned)ret;
	}
	drain_in_order(cons, &next, what);
	t_eq(next, count);
	ss = t_sub_stats(cons, sub);
	t_eq(ss.produced, count);
	t_eq(ss.delivered, count);
	t_eq(ss.dropped, 0);
	t_eq(*prod->sq.kdropped, 0);
	t_expect_quiet(prod, 20, "silent posts");
	t_teardown_pair(prod, cons);
}

/* A target that fills mid-run: the rest of the run stays in the SQ until it drains. */
static void fills_mid_run(void)
{
	struct aem_ring_stats before, after, st;
	struct aem_ring prod, cons;
	struct aem_sub_stats ss;
	uint64_t sub, addr;
	unsigned i, took;
	int ret;

	sub = small_target(&prod, &cons, 256, 16, 64, &addr);
	for (i = 0; i < 200; i++)
		post_u32(&prod, addr, i, 0x3000 + i, true, false);
	before = t_stats(&prod);
	ret = aem_submit(&prod);
	t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
	took = (unsigned)ret;
	after = t_stats(&prod);
	/* The ring's 16 and what the budget for messages lets into the backlog. */
	t_assert(took >= cons.cq[0].ring_entries && took < 200, "the run took %u of 200", took);
	t_note("a target of %u entries took %u posts of a run of 200", cons.cq[0].ring_entries, took);
	t_eq(after.refused[AEM_REFUSE_FULL], before.refused[AEM_REFUSE_FULL] + 1);
	t_eq(*prod.sq.kdropped, 0);
	t_eq(prod.sq.sqe_tail - *prod.sq.khead, 200 - took);	/* the rest waits in the SQ */
	ss = t_sub_stats(&cons, sub);
	t_eq(ss.produced, took);
	t_eq(ss.dropped, 0);
	st = t_stats(&cons);
	t_balanced(&st, "full target");
	finish_posts(&prod, &cons, sub, 200, took, "fills mid-run");
}

/* Lossy posts past a full target's budget: dropped, each told (-ENOSPC) and counted. */
static void lossy_run(void)
{
	struct aem_ring_stats before, after, st;
	struct aem_ring prod, cons;
	struct aem_sub_stats ss;
	unsigned i, dropped = 0, got;
	uint32_t next = 0, v;
	uint64_t sub, addr;
	struct aem_cqe c;

	sub = small_target(&prod, &cons, 256, 16, 64, &addr);
	for (i = 0; i < 200; i++)
		post_u32(&prod, addr, i, 0x4000 + i, false, true);
	before = t_stats(&prod);
	t_eq(t_submit(&prod), 200);
	after = t_stats(&prod);
	for (i = 0; i < 200; i++) {
		t_assert(t_next(&prod, &c, 5000), "no answer for lossy post %u", i);
		t_eq(c.user_data, 0x4000 + i);
		t_assert(c.res == 0 || c.res == -ENOSPC, "lossy post %u: res %d", i, c.res);
		dropped += c.res == -ENOSPC;
	}
	t_assert(dropped > 0, "200 lossy posts into a ring of 16 with a budget: none dropped");
	t_eq(after.refused[AEM_REFUSE_NOMEM], before.refused[AEM_REFUSE_NOMEM] + dropped);
	t_eq(*prod.sq.kdropped, dropped);
	ss = t_sub_stats(&cons, sub);
	t_eq(ss.produced, 200);
	t_eq(ss.dropped, dropped);
	st = t_stats(&cons);
	t_balanced(&st, "lossy target");
	/* What was not dropped arrives, in order (a drop is a gap, never a swap). */
	for (got = 0; t_next(&cons, &c, 50); got++) {
		t_eq(c.user_data, TAG_A);
		memcpy(&v, c.data, sizeof(v));
		t_assert(v >= next, "lossy: event %u after %u", v, next);
		next = v + 1;
	}
	t_eq(got, 200 - dropped);
	t_teardown_pair(&prod, &cons);
}

/* ---- producers on their own rings, at once ------------------------------ */

#define PRODUCERS	3
#define EACH		30000u
#define BATCH		64

static uint64_t fanin_addr;

static void *producer(void *arg)
{
	unsigned g = (unsigned)(uintptr_t)arg, i = 0, queued = 0, idle = 0;
	struct aem_params p = t_params(BATCH, 64, 1);
	uint64_t end = t_now_ns() + 60000 * T_MS;
	struct aem_ring r;
	int ret;

	t_setup(&r, &p);
	while (i < EACH) {
		/* Keep the SQ full of the next posts; what the target cannot take stays queued. */
		while (queued < BATCH && i + queued < EACH) {
			struct aem_sqe *sqe = t_sqe(&r);
			uint32_t v = g << 24 | (i + queued);

			aem_prep_post(sqe, fanin_addr, &v, sizeof(v), 0);
			sqe->flags |= AEM_SQE_F_SILENT;
			queued++;
		}
		ret = aem_submit(&r);
		t_assert(ret >= 0, "producer %u: aem_submit: %s", g, strerror(-ret));
		i += (unsigned)ret;
		queued -= (unsigned)ret;
		if (!ret) {
			t_assert(t_now_ns() < end, "producer %u: stalled at %u of %u", g, i, EACH);
			if (++idle > 8)
				usleep(100);
			else
				sched_yield();
		} else {
			idle = 0;
		}
	}
	t_eq(*r.sq.kdropped, 0);
	aem_teardown(&r);
	return NULL;
}

static void producers_at_once(void)
{
	struct aem_params p = t_params(64, 256, 1);
	uint32_t next[PRODUCERS] = { 0 }, v, g, seq;
	unsigned got = 0, idle = 0;
	pthread_t th[PRODUCERS];
	struct aem_sub_stats ss;
	struct aem_ring cons;
	struct aem_cqe c;
	uint64_t sub;

	t_setup(&cons, &p);
	sub = t_sub_msg(&cons, CH_A, 0, TAG_A);
	fanin_addr = AEM_ADDR(cons.ring_id, CH_A);
	for (g = 0; g < PRODUCERS; g++)
		t_assert(pthread_create(&th[g], NULL, producer, (void *)(uintptr_t)g) == 0,
			 "pthread_create");
	while (got < PRODUCERS * EACH) {
		if (!t_next(&cons, &c, 100)) {
			t_assert(++idle < 300, "stalled at %u of %u events", got, PRODUCERS * EACH);
			continue;
		}
		idle = 0;
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "result res %d in the consumer", c.res);
		memcpy(&v, c.data, sizeof(v));
		g = v >> 24;
		seq = v & 0xffffff;
		t_assert(g < PRODUCERS, "event from producer %u", g);
		if (seq != next[g])
			t_fail("producer %u: event %u, want %u (lost, reordered or twice)", g, seq,
			       next[g]);
		next[g]++;
		got++;
	}
	for (g = 0; g < PRODUCERS; g++)
		pthread_join(th[g], NULL);
	ss = t_sub_stats(&cons, sub);
	t_eq(ss.produced, PRODUCERS * EACH);
	t_eq(ss.delivered, PRODUCERS * EACH);
	t_eq(ss.dropped, 0);
	t_expect_quiet(&cons, 20, "after every producer's events");
	aem_teardown(&cons);
}

/* ---- allocation failures within a run (embedded backend) ---------------- */

/*
 * A target of 16 entries with room for 64 messages in its backlog: a run
 * of 120 posts needs backlog chunks.  Each allocation in turn fails: the
 * post that needed it stays in the SQ, the ones before it are delivered,
 * and a later submit delivers the rest, in order, none dropped.
 */
static void alloc_failures(void)
{
	unsigned n, hits = 0;

	for (n = 1; n <= 64; n++) {
		struct aem_ring prod, cons;
		uint64_t sub, addr;
		unsigned i;
		u64 failed;
		int ret;

		sub = small_target(&prod, &cons, 128, 16, 128, &addr);
		for (i = 0; i < 120; i++)
			post_u32(&prod, addr, i, 0x6000 + i, true, false);
		failed = __atomic_load_n(&__aem_fault.failed, __ATOMIC_RELAXED);
		__aem_fault_nth(n, false);
		ret = aem_submit(&prod);
		__aem_fault_nth(0, false);
		t_assert(ret >= 0, "allocation %u failed: aem_submit: %s", n, strerror(-ret));
		finish_posts(&prod, &cons, sub, 120, (unsigned)ret, "allocation failure");
		if (__atomic_load_n(&__aem_fault.failed, __ATOMIC_RELAXED) == failed)
			break;	/* the run made fewer than n allocations: every one has failed once */
		hits++;
	}
	t_assert(hits > 0 && n <= 64, "allocation failures: %u hit, stopped at %u", hits, n);
	t_note("allocation failures: each of the run's %u allocations failed once", hits);
}

/* ---- the backlog's kept chunks give way to the charge (embedded) -------- */

/* Hour-long timers on @r, one per submission, until one is refused: how many. */
static unsigned timers_until_refused(struct aem_ring *r)
{
	unsigned n;
	int res;

	for (n = 0; n < 1U << 20; n++) {
		struct aem_sqe *sqe = t_sqe(r);

		aem_prep_subscribe_timer(sqe, 3600ull * 1000 * T_MS, 0, 0, 0x7000 + n);
		res = t_do(r, 0x7000 + n);
		if (res < 0) {
			t_eq(res, -ENOMEM);
			return n;
		}
	}
	t_fail("a million timers under a 2 MiB budget");
}

/* A consumer under a 2 MiB budget (AEM_MAX_RING_MB), subscribed at CH_A. */
static uint64_t budget_ring(struct aem_ring *r)
{
	struct aem_params p = t_params(64, 64, 1);
	int ret;

	p.backlog_limit = AEM_MAX_BACKLOG;
	setenv("AEM_MAX_RING_MB", "2", 1);
	ret = aem_setup(&p, r);
	unsetenv("AEM_MAX_RING_MB");
	t_assert(ret == 0, "aem_setup under a 2 MiB budget: %s", strerror(-ret));
	return listen_on(r, CH_A, TAG_A);
}

/*
 * A backlog that grew deep and drained leaves its chunks kept for the
 * next burst, still charged; a charge that needs their room takes it: a
 * ring that went through such a burst takes as many subscriptions as a
 * fresh one.
 */
static void spares_give_way(void)
{
	unsigned fresh, after, queued = 0, taken = 0;
	struct aem_ring_stats st;
	struct aem_ring prod, cons;
	uint32_t next = 0;
	uint64_t addr;
	int ret;

	budget_ring(&cons);
	fresh = timers_until_refused(&cons);
	aem_teardown(&cons);

	addr = budget_ring(&cons);
	roomy_ring(&prod);
	/* Post without reading until the consumer holds one back. */
	while (taken == queued && queued < 1U << 20) {
		struct aem_sqe *sqe;

		while ((sqe = aem_get_sqe(&prod))) {
			aem_prep_post(sqe, addr, &queued, sizeof(queued), 0);
			sqe->flags |= AEM_SQE_F_SILENT;
			queued++;
		}
		ret = aem_submit(&prod);
		t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
		taken += (unsigned)ret;
	}
	st = t_stats(&cons);
	t_assert(st.backlog > 64 * 43, "backlog of %llu: too shallow to keep chunks",
		 (unsigned long long)st.backlog);
	while (taken < queued) {
		drain_in_order(&cons, &next, "burst");
		ret = aem_submit(&prod);
		t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
		taken += (unsigned)ret;
	}
	drain_in_order(&cons, &next, "burst");
	t_eq(next, queued);
	after = timers_until_refused(&cons);
	t_note("spare chunks: %u subscriptions fresh, %u after a backlog of %llu", fresh, after,
	       (unsigned long long)st.backlog);
	t_eq(after, fresh);
	t_teardown_pair(&prod, &cons);
}

int main(void)
{
	struct aem_ring probe;
	bool kernel;

	t_setup(&probe, NULL);
	kernel = t_kernel(&probe);
	aem_teardown(&probe);
	one_target();
	mixed_run();
	fills_mid_run();
	lossy_run();
	producers_at_once();
	if (!kernel && !getenv("AEM_FAULT_ALLOC")) {
		alloc_failures();
		spares_give_way();
	} else {
		t_note("allocation failures and the budget: embedded backend without AEM_FAULT_ALLOC only (fault_alloc and mem_charge cover the module)");
	}
	return t_exit();
}
