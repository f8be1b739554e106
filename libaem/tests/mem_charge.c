/* SPDX-License-Identifier: MIT */
/*
 * A ring's kernel-side memory is charged to the ring's account beside its
 * regions (aem_ring_stats.charged), and refused past the account's limit:
 *  - the subscription table grows by whole chunks of 256 KiB (60-byte
 *    entries on the embedded backend, 64 on the module), then by 2 MiB
 *    blocks, no more;
 *  - past max_ring_mb (module parameter; embedded: AEM_MAX_RING_MB), and
 *    past RLIMIT_MEMLOCK without CAP_IPC_LOCK, SUBSCRIBE gets -ENOMEM,
 *    counted in refused[AEM_REFUSE_NOMEM], and the ring goes on working;
 *    a ring closed gives its charge back;
 *  - a backlog past the charge drops and counts events as at its bound
 *    (a generator), and holds POSTs in the SQ (refused[AEM_REFUSE_FULL]),
 *    losing none; results are kept, and submission stops instead.
 * On both backends; the module's parameter needs root (else that part is
 * skipped with a note).
 */
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include "aem_test.h"

#define CHUNK_BYTES	(256u << 10)	/* the table grows by a chunk of 256 KiB ... */
#define TABLE_GROUP_FROM 64	/* ... for its first 64 chunks, */
#define TABLE_GROUP	8	/* then by blocks of 8 chunks */

/* The bytes of a table entry (struct aem_sub, kmod/core/aem_core.h). */
static unsigned sub_bytes(const struct aem_ring *r)
{
	(void)r;
	return 60;
}

/* Entries a chunk holds: as many as fill it. */
static unsigned chunk_subs(const struct aem_ring *r)
{
	return CHUNK_BYTES / sub_bytes(r);
}
#define BUDGET_MB	2
#define HOUR_NS		(3600ull * 1000 * T_MS)

static const char *param = "/sys/module/aem/parameters/max_ring_mb";

static struct aem_params small_params(void)
{
	struct aem_params p = t_params(256, 256, 1);

	p.slot_count = 64;
	return p;
}

/* Write the module's max_ring_mb (when there is one); returns the old value, or -1. */
static long set_module_budget(long mb)
{
	FILE *f = fopen(param, "r+");
	long old = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &old) != 1)
		old = -1;
	rewind(f);
	fprintf(f, "%ld\n", mb);
	if (fclose(f) != 0)
		old = -1;
	return old;
}

/*
 * Set up @r with its account's budget at @mb MiB (both backends read the
 * budget at setup, so it is restored at once).  false when the module's
 * parameter cannot be written (not root).
 */
static bool setup_budget(struct aem_ring *r, struct aem_params *p, long mb)
{
	char v[32];
	long old;
	int ret;

	snprintf(v, sizeof(v), "%ld", mb);
	setenv("AEM_MAX_RING_MB", v, 1);
	old = set_module_budget(mb);
	ret = aem_setup(p, r);
	if (old >= 0)
		set_module_budget(old);
	unsetenv("AEM_MAX_RING_MB");
	if (ret < 0)
		t_fail("aem_setup under a %ld MiB budget: %s", mb, strerror(-ret));
	if (t_kernel(r) && old < 0) {
		aem_teardown(r);
		return false;
	}
	return true;
}

/*
 * Subscribe hour-long timers in batches until @max are live or one is
 * refused; returns how many were taken, *err the refusal (0: none).
 */
static unsigned subscribe_until_refused(struct aem_ring *r, unsigned max, int *err)
{
	unsigned ok = 0, asked = 0, answered = 0, head, got, i;

	*err = 0;
	while (ok < max && !*err) {
		unsigned batch = max - asked < 256 ? max - asked : 256;

		for (i = 0; i < batch; i++)
			aem_prep_subscribe_timer(t_sqe(r), HOUR_NS, 0, 0, ++asked);
		t_submit(r);
		while (answered < asked) {
			got = aem_result_peek(r, &head);
			if (!got) {
				int ret = aem_wait(r, 1, 1000 * T_MS);

				t_assert(ret == 0 || ret == -ETIME || ret == -EINTR, "aem_wait: %s",
					 strerror(-ret));
				t_assert(ret != -ETIME, "no answer to subscribe %u", answered + 1);
				continue;
			}
			for (i = 0; i < got; i++) {
				const struct aem_cqe *c = aem_result_at(r, head + i);

				if (c->res >= 0)
					ok++;
				else if (!*err)
					*err = c->res;
				else
					t_eq(c->res, *err);
			}
			answered += got;
			aem_result_advance(r, got);
		}
	}
	return ok;
}

/* The table grows in the charge by whole chunks, then blocks, and no more: at most 64 bytes a subscription. */
static void per_subscription(void)
{
	struct aem_params p = small_params();
	struct aem_ring_stats st;
	uint64_t c0, c1, c2;
	struct aem_ring r;
	unsigned n, CHUNK_SUBS;
	int err;

	p.sq_entries = 1024;
	t_setup(&r, &p);
	CHUNK_SUBS = chunk_subs(&r);
	c0 = t_stats(&r).charged;
	t_assert(c0 > 0, "nothing charged for the ring");
	/* The first chunk (with the timer wheel), the other single ones, then two blocks. */
	n = subscribe_until_refused(&r, CHUNK_SUBS, &err);
	t_eq(err, 0);
	c1 = t_stats(&r).charged;
	n += subscribe_until_refused(&r, (TABLE_GROUP_FROM + 2 * TABLE_GROUP) * CHUNK_SUBS - n, &err);
	t_eq(err, 0);
	st = t_stats(&r);
	c2 = st.charged;
	t_eq(st.subscriptions, (TABLE_GROUP_FROM + 2 * TABLE_GROUP) * CHUNK_SUBS);
	printf("charged: %llu bytes at setup, +%llu for the first %u subscriptions, "
	       "%.2f B per subscription after\n", (unsigned long long)c0,
	       (unsigned long long)(c1 - c0), CHUNK_SUBS,
	       (double)(c2 - c1) / ((TABLE_GROUP_FROM + 2 * TABLE_GROUP - 1) * CHUNK_SUBS));
	t_assert(c1 - c0 >= CHUNK_BYTES, "the first table chunk charged %llu bytes",
		 (unsigned long long)(c1 - c0));
	t_eq(c2 - c1, (TABLE_GROUP_FROM + 2ull * TABLE_GROUP - 1) * CHUNK_BYTES);
	t_assert(c2 - c1 <= 64ull * (n - CHUNK_SUBS), "%.2f B per subscription, want <= 64",
		 (double)(c2 - c1) / (n - CHUNK_SUBS));
	/* One more subscription takes a whole block. */
	t_eq(subscribe_until_refused(&r, 1, &err), 1);
	t_eq(t_stats(&r).charged - c2, (uint64_t)TABLE_GROUP * CHUNK_BYTES);
	aem_teardown(&r);
}

/* Past the ring's budget: SUBSCRIBE -ENOMEM, counted; the ring still works. */
static void refused_past(struct aem_ring *r, uint64_t limit, const char *what)
{
	struct aem_ring_stats st0, st;
	unsigned ok, CHUNK_SUBS = chunk_subs(r);
	struct aem_sqe *sqe;
	int err;

	st0 = t_stats(r);
	ok = subscribe_until_refused(r, 1U << 20, &err);
	st = t_stats(r);
	printf("%s: %u subscriptions, then %s; charged %llu of %llu bytes\n", what, ok,
	       strerror(-err), (unsigned long long)st.charged, (unsigned long long)limit);
	t_eq(err, -ENOMEM);
	t_assert(ok >= CHUNK_SUBS && ok % CHUNK_SUBS == 0,
		 "%u subscriptions: the table's chunks are used whole", ok);
	t_eq(st.subscriptions, ok);
	t_assert(st.refused[AEM_REFUSE_NOMEM] > st0.refused[AEM_REFUSE_NOMEM],
		 "refusals not counted as AEM_REFUSE_NOMEM");
	t_assert(st.charged <= limit, "charged %llu past the limit %llu",
		 (unsigned long long)st.charged, (unsigned long long)limit);
	t_assert(st.charged + CHUNK_BYTES > limit,
		 "charged %llu: another chunk would have fit in %llu",
		 (unsigned long long)st.charged, (unsigned long long)limit);
	/* The table stays full; everything else still works. */
	t_assert(subscribe_until_refused(r, 1, &err) == 0 && err == -ENOMEM, "table full: %d", err);
	sqe = t_sqe(r);
	aem_prep_nop(sqe);
	sqe->user_data = 2;
	t_eq(t_do(r, 2), 0);
}

static void budget(void)
{
	struct aem_params p = small_params();
	struct aem_ring r;

	if (!setup_budget(&r, &p, BUDGET_MB)) {
		t_note("max_ring_mb: cannot write %s (not root): skipped", param);
		return;
	}
	refused_past(&r, (uint64_t)BUDGET_MB << 20, "max_ring_mb");
	aem_teardown(&r);

	/* A ring whose regions alone are past the budget: E2BIG, as ever. */
	{
		struct aem_params big = t_params(256, AEM_MAX_CQ_ENTRIES, 1);
		char v[8] = "1";
		long old;
		int ret;

		setenv("AEM_MAX_RING_MB", v, 1);
		old = set_module_budget(1);
		ret = aem_setup(&big, &r);
		if (old >= 0)
			set_module_budget(old);
		unsetenv("AEM_MAX_RING_MB");
		if (ret == 0)
			aem_teardown(&r);
		t_eq(ret, -E2BIG);
	}
}

/* Drop CAP_IPC_LOCK from the effective set: RLIMIT_MEMLOCK applies again. */
static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	t_assert(syscall(SYS_capget, &hdr, data) == 0, "capget: %s", strerror(errno));
	data[CAP_IPC_LOCK / 32].effective &= ~(1U << (CAP_IPC_LOCK % 32));
	t_assert(syscall(SYS_capset, &hdr, data) == 0, "capset: %s", strerror(errno));
}

static void memlock_child(void *arg)
{
	struct rlimit rl = { .rlim_cur = 1U << 20, .rlim_max = 1U << 20 };
	struct aem_params p = small_params();
	struct aem_ring r;
	unsigned first, again;
	int err;

	(void)arg;
	drop_ipc_lock();
	t_assert(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s", strerror(errno));
	t_setup(&r, &p);
	refused_past(&r, rl.rlim_cur, "RLIMIT_MEMLOCK");
	first = (unsigned)t_stats(&r).subscriptions;
	aem_teardown(&r);
	/* The whole charge came back with the ring: the same again. */
	p = small_params();
	t_setup(&r, &p);
	again = subscribe_until_refused(&r, 1U << 20, &err);
	t_eq(err, -ENOMEM);
	t_eq(again, first);
	aem_teardown(&r);
}

static void memlock(void)
{
	int status;

	if (geteuid() != 0) {
		t_note("RLIMIT_MEMLOCK: not root: skipped");
		return;
	}
	status = t_child(memlock_child, NULL);
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "memlock child: status %#x", status);
}

/* Events into a backlog past the charge: dropped and counted, as past its bound. */
static void backlog_events(void)
{
	const unsigned count = 200000;
	struct aem_params p = t_params(64, 64, 1);
	uint64_t id, end, got = 0;
	struct aem_ring_stats st;
	struct aem_sub_stats ss;
	struct aem_sqe *sqe;
	struct aem_ring r;
	struct aem_cqe c;

	p.backlog_limit = AEM_MAX_BACKLOG;
	p.slot_count = 64;
	if (!setup_budget(&r, &p, BUDGET_MB))
		return;
	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 4000000, count, 1024, 16, 0, 7);
	t_submit(&r);
	c = t_result(&r, 7, 5000);
	t_ok(c.res);
	id = c.id;
	/* Nobody reads: the ring fills, then the backlog, then the charge stops it. */
	end = t_now_ns() + 20000 * T_MS;
	do {
		usleep(20000);
		ss = t_sub_stats(&r, id);
	} while (ss.produced < count && t_now_ns() < end);
	st = t_stats(&r);
	printf("backlog: produced %llu, backlog %llu, dropped %llu; charged %llu\n",
	       (unsigned long long)ss.produced, (unsigned long long)ss.backlog,
	       (unsigned long long)ss.dropped, (unsigned long long)st.charged);
	t_eq(ss.produced, count);
	t_assert(ss.dropped > 0, "nothing dropped with %llu backlogged",
		 (unsigned long long)ss.backlog);
	t_assert(ss.backlog < p.backlog_limit, "the bound, not the charge, stopped it");
	t_assert(st.charged <= (uint64_t)BUDGET_MB << 20, "charged %llu past the budget",
		 (unsigned long long)st.charged);
	/* Everything that was not dropped arrives. */
	end = t_now_ns() + 20000 * T_MS;
	while (got < ss.produced - ss.dropped && t_now_ns() < end) {
		if (!t_next(&r, &c, 100))
			continue;
		if (!(c.flags & AEM_CQE_F_RESULT))
			got++;
	}
	t_eq(got, ss.produced - ss.dropped);
	aem_teardown(&r);
}

/* POSTs into a backlog past the charge stay in the SQ: none lost. */
static void backlog_posts(void)
{
	struct aem_params p = t_params(64, 64, 1);
	const unsigned total = 100000;
	unsigned queued = 0, consumed = 0, got = 0, i;
	struct aem_ring_stats st;
	struct aem_sub_stats ss;
	struct aem_cqe c;
	struct aem_ring r;
	uint64_t id, addr, end;
	bool held = false;

	p.backlog_limit = AEM_MAX_BACKLOG;
	p.slot_count = 64;
	if (!setup_budget(&r, &p, BUDGET_MB))
		return;
	id = t_sub_msg(&r, 1, 0, 9);
	addr = AEM_ADDR(r.ring_id, 1);
	/* Post without reading until the target (this ring) holds one back. */
	while (consumed < total && !held) {
		struct aem_sqe *sqe;
		int ret;

		while (queued < total && (sqe = aem_get_sqe(&r))) {
			aem_prep_post(sqe, addr, &queued, sizeof(queued), 0);
			sqe->flags |= AEM_SQE_F_SILENT;
			queued++;
		}
		ret = aem_submit(&r);
		t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
		consumed += (unsigned)ret;
		held = consumed < queued;
	}
	st = t_stats(&r);
	ss = t_sub_stats(&r, id);
	printf("posts: %u consumed, %u queued; backlog %llu, dropped %llu, refused FULL %llu; charged %llu\n",
	       consumed, queued, (unsigned long long)ss.backlog, (unsigned long long)ss.dropped,
	       (unsigned long long)st.refused[AEM_REFUSE_FULL], (unsigned long long)st.charged);
	t_assert(held, "%u posts all taken under a %d MiB budget", consumed, BUDGET_MB);
	t_assert(st.refused[AEM_REFUSE_FULL] > 0, "the held POST was not counted");
	t_eq(ss.dropped, 0);
	t_assert(ss.backlog < p.backlog_limit, "the bound, not the charge, held it");
	/* Read everything: the held posts go on, every one arrives once. */
	end = t_now_ns() + 30000 * T_MS;
	while (got < queued && t_now_ns() < end) {
		if (t_next(&r, &c, 100) && !(c.flags & AEM_CQE_F_RESULT)) {
			t_eq(*(unsigned *)c.data, got);
			got++;
		}
		for (i = 0; i < 4 && consumed < queued; i++) {
			int ret = aem_submit(&r);

			t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
			consumed += (unsigned)ret;
		}
	}
	t_eq(got, queued);
	ss = t_sub_stats(&r, id);
	t_eq(ss.dropped, 0);
	t_eq(ss.delivered, queued);
	aem_teardown(&r);
}

/*
 * Results past the charge are kept: with the account used up and nobody
 * reading results, submission stops instead; every NOP is answered once.
 */
static void results_past(void)
{
	struct aem_params p = small_params();
	unsigned queued = 0, consumed = 0, answered = 0, head, got;
	struct aem_ring_stats st;
	struct aem_sqe *sqe;
	struct aem_ring r;
	uint64_t end;
	int err;

	if (!setup_budget(&r, &p, BUDGET_MB))
		return;
	subscribe_until_refused(&r, 1U << 20, &err);
	t_eq(err, -ENOMEM);
	/* NOPs, unread, until the kernel side stops taking them. */
	while (consumed == queued && queued < 200000) {
		int ret;

		while ((sqe = aem_get_sqe(&r))) {
			aem_prep_nop(sqe);
			sqe->user_data = ++queued;
		}
		ret = aem_submit(&r);
		t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
		consumed += (unsigned)ret;
	}
	st = t_stats(&r);
	printf("results: %u NOPs consumed of %u, backlog %llu; charged %llu\n", consumed, queued,
	       (unsigned long long)st.backlog, (unsigned long long)st.charged);
	t_assert(consumed < queued, "all %u NOPs consumed with nobody reading", queued);
	t_eq(st.dropped, 0);
	/* Read them: each answered once, in order, and the rest go in. */
	end = t_now_ns() + 30000 * T_MS;
	while (answered < queued && t_now_ns() < end) {
		unsigned i;
		int ret;

		while ((got = aem_result_peek(&r, &head))) {
			for (i = 0; i < got; i++) {
				const struct aem_cqe *c = aem_result_at(&r, head + i);

				t_eq(c->res, 0);
				t_eq(c->user_data, answered + 1);
				answered++;
			}
			aem_result_advance(&r, got);
		}
		ret = aem_submit(&r);
		t_assert(ret >= 0, "aem_submit: %s", strerror(-ret));
		consumed += (unsigned)ret;
		if (consumed == answered)
			aem_wait(&r, 1, 10 * T_MS);
	}
	t_eq(answered, queued);
	st = t_stats(&r);
	t_eq(st.dropped, 0);
	aem_teardown(&r);
}

int main(void)
{
	per_subscription();
	budget();
	memlock();
	backlog_events();
	backlog_posts();
	results_past();
	return T_EXIT_PASS;
}
