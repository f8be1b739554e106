/* SPDX-License-Identifier: MIT */
/*
 * A million active timers in one ring: subscribe them in batches (an hour
 * away), check they are all active and what they cost in memory (the
 * ring's charge: 64 bytes a subscription), re-arm them all with TIMER_SET
 * to fire at 2 M a second, in waves that keep at most half the completion
 * ring's worth due and unread (however slowly the consumer runs on a
 * loaded machine, nothing overflows), and collect every one exactly once,
 * with nothing dropped and nothing left active.  On the module past a
 * million, a million of them, spread over the table, are re-armed and
 * fired (a TCG guest is slow); the rest end with the ring.  AEM_TEST_TIMERS=n changes the count;
 * timer_ten_million.c is this program with ten million.
 */
#include <sys/resource.h>
#include <sys/utsname.h>
#include "aem_test.h"

#ifndef TIMERS_DEFAULT
#define TIMERS_DEFAULT	1000000
#endif
#define TABLE_CHUNK	4096	/* the kernel side's subscription table grows by this many ... */
#define TABLE_GROUP_FROM 64	/* ... for its first 64 chunks, */
#define TABLE_GROUP	8	/* then by blocks of 8 chunks */

/* Entries of the table that holds @n subscriptions: whole chunks, then whole blocks. */
static uint64_t table_entries(uint64_t n)
{
	uint64_t chunks = (n + TABLE_CHUNK - 1) / TABLE_CHUNK;

	if (chunks > TABLE_GROUP_FROM)
		chunks = TABLE_GROUP_FROM + (chunks - TABLE_GROUP_FROM + TABLE_GROUP - 1) / TABLE_GROUP * TABLE_GROUP;
	return chunks * TABLE_CHUNK;
}
#define FIRE_PER_MS	2000	/* re-armed timers due per millisecond, at most */
#define FIRE_KERNEL_MAX	1000000	/* re-armed on the module, at most */

/* Anonymous memory only: the shared ring pages are counted once per mapping. */
static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

static long mem_available_kib(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long kib = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Reap whatever is ready: subscribe results fill @ids, timer events @seen. */
static void reap(struct aem_ring *r, uint64_t *ids, uint8_t *seen, unsigned n, unsigned *results,
		 unsigned *fired)
{
	unsigned head, got, i;

	while ((got = aem_result_peek(r, &head))) {
		for (i = 0; i < got; i++) {
			const struct aem_cqe *c = aem_result_at(r, head + i);
			uint64_t tag = c->user_data;

			if (tag < 1 || tag > n)
				t_fail("result with unknown tag %#llx res %d flags %#x",
				       (unsigned long long)tag, c->res, c->flags);
			if (c->res < 0)
				t_fail("timer %llu refused: %s", (unsigned long long)tag,
				       strerror(-c->res));
			t_assert(!ids[tag - 1], "two results for timer %llu", (unsigned long long)tag);
			ids[tag - 1] = c->id;
			(*results)++;
		}
		aem_result_advance(r, got);
	}
	while ((got = aem_cq_peek(r, 0, &head))) {
		for (i = 0; i < got; i++) {
			const struct aem_cqe *c = aem_cq_at(r, 0, head + i);
			uint64_t tag = c->user_data;

			if (tag < 1 || tag > n)
				t_fail("event with unknown tag %#llx res %d flags %#x",
				       (unsigned long long)tag, c->res, c->flags);
			t_assert(c->source == AEM_SRC_TIMER && (c->flags & AEM_CQE_F_FINAL),
				 "timer %llu event flags %#x source %u", (unsigned long long)tag,
				 c->flags, c->source);
			t_assert(!seen[tag - 1], "timer %llu fired twice", (unsigned long long)tag);
			t_assert(!(c->flags & AEM_CQE_F_SLOT), "timer event in a slot");
			seen[tag - 1] = 1;
			(*fired)++;
		}
		aem_cq_advance(r, 0, got);
	}
}

/* A dropped timer event never arrives: say so at once, not at the time bound. */
static void check_no_drop(struct aem_ring *r, unsigned fired, unsigned rearmed)
{
	struct aem_ring_stats st = t_stats(r);

	t_assert(!st.dropped, "%llu timer events dropped (%u of %u re-armed read; backlog %llu)",
		 (unsigned long long)st.dropped, fired, rearmed, (unsigned long long)st.backlog);
}

int main(void)
{
	const char *env = getenv("AEM_TEST_TIMERS");
	unsigned n = env ? (unsigned)strtoul(env, NULL, 0) : TIMERS_DEFAULT;
	struct aem_params p = t_params(8192, AEM_MAX_CQ_ENTRIES, 1);
	unsigned results = 0, fired = 0, i, batch;
	struct aem_ring_stats st;
	long rss0, rss1, avail0, avail1;
	uint64_t t0, end, *ids, charged0, charged1 = 0;
	unsigned spread, stride, armed, window, rearmed;
	struct aem_ring r;
	uint8_t *seen;
	int ret;

	if (!n || n > AEM_MAX_SUBS)
		t_fail("AEM_TEST_TIMERS=%u: want 1..%u", n, AEM_MAX_SUBS);
	/*
	 * The debug kernel (release "*-aem-debug": KASAN and lockdep under TCG)
	 * is far too slow for ten million: there the million of timer_million.
	 */
	if (!env && n > 1000000) {
		struct utsname u;

		if (uname(&u) == 0 && strstr(u.release, "-aem-debug")) {
			printf("debug kernel %s: 1000000 timers, not %u\n", u.release, n);
			n = 1000000;
		}
	}
	ids = calloc(n, sizeof(*ids));
	seen = calloc(n, 1);
	t_assert(ids && seen, "out of memory");

	/* A 64 MiB CQ ring: the module charges it to RLIMIT_MEMLOCK; raise it as far as we may. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_MEMLOCK, &rl);
	}
	t_setup(&r, &p);
	memset(ids, 0, n * sizeof(*ids));
	memset(seen, 0, n);
	rss0 = rss_kib();
	avail0 = mem_available_kib();
	charged0 = t_stats(&r).charged;

	t0 = t_now_ns();
	for (i = 0; i < n; i += batch) {
		struct aem_sqe *sqe;
		unsigned j;

		batch = n - i < TABLE_CHUNK ? n - i : TABLE_CHUNK;
		for (j = 0; j < batch; j++) {
			sqe = aem_get_sqe(&r);
			if (!sqe) {
				t_submit(&r);
				sqe = t_sqe(&r);
			}
			aem_prep_subscribe_timer(sqe, 3600000ull * T_MS, 0, 0, i + j + 1);
		}
		t_submit(&r);
		reap(&r, ids, seen, n, &results, &fired);
		/* After the first chunk of the table (and the timer wheel): the rest is per subscription. */
		if (i == 0 && batch == TABLE_CHUNK)
			charged1 = t_stats(&r).charged;
	}
	/* Bounds, not speeds: generous for a loaded TCG guest, growing with the count. */
	end = t_now_ns() + (60000 + n / 100) * T_MS;
	while (results < n && t_now_ns() < end) {
		aem_wait(&r, 1, 10 * T_MS);
		reap(&r, ids, seen, n, &results, &fired);
	}
	t_eq(results, n);
	t_eq(fired, 0);
	st = t_stats(&r);
	t_eq(st.subscriptions, n);
	rss1 = rss_kib();
	avail1 = mem_available_kib();
	printf("%u timers subscribed in %.2f s; RssAnon +%ld KiB (%.1f B/timer), MemAvailable -%ld KiB (%.1f B/timer)\n",
	       n, (t_now_ns() - t0) / 1e9, rss1 - rss0, (rss1 - rss0) * 1024.0 / n,
	       avail0 - avail1, (avail0 - avail1) * 1024.0 / n);
	/*
	 * The kernel side's own count: the table grows 64 bytes a timer (a
	 * partly used last chunk aside), on both backends.
	 */
	if (charged1 && n > TABLE_CHUNK) {
		/* Entries of the chunks added after the first. */
		uint64_t table = table_entries(n) - TABLE_CHUNK;

		printf("charged: %llu bytes for the ring, +%llu for the first %u timers, then %.2f B/timer\n",
		       (unsigned long long)charged0, (unsigned long long)(charged1 - charged0),
		       TABLE_CHUNK, (double)(st.charged - charged1) / (n - TABLE_CHUNK));
		t_assert(st.charged - charged1 <= 64 * table, "%llu bytes charged for %u timers",
			 (unsigned long long)(st.charged - charged1), n - TABLE_CHUNK);
	}
	/* A sanity bound, not a target: the design budget is 64 bytes a timer. */
	if (!t_kernel(&r))
		t_assert((rss1 - rss0) * 1024.0 / n < 512, "%.1f bytes of anonymous memory per idle timer",
			 (rss1 - rss0) * 1024.0 / n);
	else
		t_assert((avail0 - avail1) * 1024.0 / n < 1024, "%.1f bytes of memory per idle timer",
			 (avail0 - avail1) * 1024.0 / n);

	/*
	 * Re-arm them to fire at FIRE_PER_MS, in waves of half the completion
	 * ring: all of them, but for more than a million on the module (a TCG
	 * guest) every stride-th, a million spread over the table; the rest go
	 * with the ring.  A wave waits until the consumer has read as many as
	 * it holds: a slow consumer slows the test, it never overflows a ring.
	 */
	stride = t_kernel(&r) && n > FIRE_KERNEL_MAX ? (n + FIRE_KERNEL_MAX - 1) / FIRE_KERNEL_MAX : 1;
	armed = (n + stride - 1) / stride;
	window = p.cq_entries / 2;
	spread = window / FIRE_PER_MS ? window / FIRE_PER_MS : 1;	/* ms over which a wave is due */
	rearmed = 0;
	t0 = t_now_ns();
	for (i = 0; i < n; i += stride) {
		struct aem_sqe *sqe;

		/* The next wave once the consumer has read enough of this one. */
		while (rearmed - fired >= window) {
			t_submit(&r);
			ret = aem_wait(&r, 1, 20 * T_MS);
			t_assert(ret >= 0 || ret == -ETIME || ret == -EINTR, "aem_wait: %s", strerror(-ret));
			reap(&r, ids, seen, n, &results, &fired);
			check_no_drop(&r, fired, rearmed);
		}
		sqe = aem_get_sqe(&r);
		if (!sqe) {
			t_submit(&r);
			reap(&r, ids, seen, n, &results, &fired);
			sqe = t_sqe(&r);
		}
		aem_prep_timer_set(sqe, ids[i], (1 + rearmed % window % spread) * T_MS, 0);
		sqe->flags |= AEM_SQE_F_SILENT;
		aem_sqe_set_data(sqe, i + 1);
		rearmed++;
	}
	t_submit(&r);
	end = t_now_ns() + (120000 + n / 50) * T_MS;
	while (fired < armed && t_now_ns() < end) {
		ret = aem_wait(&r, 4096, 20 * T_MS);
		t_assert(ret >= 0 || ret == -ETIME || ret == -EINTR, "aem_wait: %s", strerror(-ret));
		aem_submit(&r);
		reap(&r, ids, seen, n, &results, &fired);
		check_no_drop(&r, fired, armed);
	}
	printf("%u of %u timers fired in %.2f s after re-arming\n", fired, armed, (t_now_ns() - t0) / 1e9);
	t_eq(results, n);
	t_eq(fired, armed);
	st = t_stats(&r);
	t_eq(st.dropped, 0);
	t_eq(st.backlog, 0);
	/* Ring-wide counts may include the n subscribe results. */
	t_assert(st.delivered >= armed, "ring delivered %llu < %u timer events",
		 (unsigned long long)st.delivered, armed);
	t_eq(st.produced, st.delivered);
	t_eq(st.subscriptions, n - armed);
	t_eq(t_refused_total(&st), 0);

	aem_teardown(&r);
	free(ids);
	free(seen);
	return T_EXIT_PASS;
}
