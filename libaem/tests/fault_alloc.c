/* SPDX-License-Identifier: MIT */
/*
 * Allocation failures, one at a time: for each phase of a ring's life
 * (setup, subscribe, post, call, backlog, timers) fail its 1st allocation,
 * then its 2nd, ... until a run of the phase reaches no Nth allocation
 * (every allocation it makes has been failed once).  Each failure must
 * surface as an errno to the caller or as a counted loss
 * (produced == delivered + backlog + dropped, and every event read that
 * was counted delivered); the ring must work afterwards; no file
 * descriptor may leak (heap leaks: LeakSanitizer under SANITIZE=1); every
 * wait is bounded, so a hang fails the test.
 *
 * Embedded backend: the core's allocation hook (kmod/core/compat_user.h).
 * Kernel backend: the kernel's fail-nth (/proc/thread-self/fail-nth) on
 * slab allocations, sleeping ones included (failslab's ignore-gfp-wait=N);
 * page allocations are left alone (fail_page_alloc's ignore-gfp-wait=Y),
 * or this program's own page faults would count.  Skipped on a kernel
 * without CONFIG_FAULT_INJECTION_DEBUG_FS (the stock kernels;
 * tools/vmtest/debug.config has it).  A phase there may make more
 * allocations than the sweep's cap (the kernel's own, in the system
 * calls): it is swept up to the cap.
 *
 * AEM_FAULT_PHASE=name runs one phase; AEM_FAULT_MAX caps N (default 400,
 * 150 on the kernel backend).
 */
#include <dirent.h>
#include "aem_test.h"
#include "../../kmod/core/compat_user.h"

#define MAX_N_DEFAULT	400
#define CH_POST		7
#define CH_CALL		9
#define WAIT_MS		5000

static bool kernel_mode;
static int nth_fd = -1;
static u64 failed_before;

/* ---- the two fault injectors ------------------------------------------- */

static void write_knob(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		t_skip("cannot set %s (debugfs not mounted, or no CONFIG_FAULT_INJECTION_DEBUG_FS): %s",
		       path, strerror(errno));
	close(fd);
}

static void kernel_init(void)
{
	nth_fd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	if (nth_fd < 0)
		t_skip("no /proc/thread-self/fail-nth: kernel without CONFIG_FAULT_INJECTION");
	/* Quiet: a forced failure's stack trace would read as a report. */
	write_knob("/sys/kernel/debug/failslab/verbose", "0");
	write_knob("/sys/kernel/debug/failslab/ignore-gfp-wait", "N");
	write_knob("/sys/kernel/debug/fail_page_alloc/ignore-gfp-wait", "Y");
}

/* Fail the @n-th allocation from now on (kernel: of this thread). */
static void fault_arm(unsigned n)
{
	if (kernel_mode) {
		char buf[16];
		int len = snprintf(buf, sizeof(buf), "%u", n);

		if (pwrite(nth_fd, buf, (size_t)len, 0) != len)
			t_fail("fail-nth: %s", strerror(errno));
	} else {
		failed_before = __atomic_load_n(&__aem_fault.failed, __ATOMIC_RELAXED);
		__aem_fault_nth(n, false);
	}
}

/* Disarm; true when the armed failure happened. */
static bool fault_disarm(void)
{
	if (kernel_mode) {
		char buf[16] = "";

		if (pread(nth_fd, buf, sizeof(buf) - 1, 0) < 0)
			t_fail("fail-nth read: %s", strerror(errno));
		if (pwrite(nth_fd, "0", 1, 0) != 1)
			t_fail("fail-nth: %s", strerror(errno));
		return atoi(buf) == 0;
	}
	__aem_fault_nth(0, false);
	return __atomic_load_n(&__aem_fault.failed, __ATOMIC_RELAXED) != failed_before;
}

/* ---- checks ------------------------------------------------------------- */

/* The errnos an allocation failure may surface as. */
static void allowed(int err, const char *what, unsigned n)
{
	switch (-err) {
	case ENOMEM:
	case ENOSPC:
	case EAGAIN:
	case ENFILE:
	case EMFILE:
		return;
	}
	t_fail("%s with allocation %u failed: %s (%d), want ENOMEM or another out-of-resource errno",
	       what, n, strerror(-err), err);
}

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	t_assert(d, "opendir /proc/self/fd: %s", strerror(errno));
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Enter the kernel side and wait a little; a submit refused for memory is not an error here. */
static void pump(struct aem_ring *r)
{
	int ret;

	aem_release_commit(r);
	ret = aem_submit(r);
	if (ret < 0 && ret != -ENOMEM && ret != -EAGAIN)
		t_fail("aem_submit: %s", strerror(-ret));
	ret = aem_wait(r, 1, 2 * (int64_t)T_MS);
	if (ret < 0 && ret != -ETIME && ret != -EINTR)
		t_fail("aem_wait: %s", strerror(-ret));
}

static void give_back(struct aem_ring *r, const struct aem_cqe *c)
{
	if (c->flags & AEM_CQE_F_SLOT)
		t_release(r, c->slot);
}

/* Submit everything queued; the SQEs must all be consumed. */
static void submit_all(struct aem_ring *r)
{
	uint64_t end = t_now_ns() + WAIT_MS * T_MS;

	while (r->sq.sqe_tail != r->sq.sqe_head) {
		t_assert(t_now_ns() < end, "SQEs never consumed");
		pump(r);
	}
}

/*
 * Collect the results of @n SQEs with user_data base .. base + n - 1 into
 * res[]; events met on the way are counted in *events and given back.
 */
static void results(struct aem_ring *r, uint64_t base, unsigned n, int *res, unsigned *events)
{
	unsigned got = 0, i;
	struct aem_cqe c;

	for (i = 0; i < n; i++)
		res[i] = INT32_MIN;
	while (got < n) {
		t_assert(t_next(r, &c, WAIT_MS), "%u of %u results within %u ms", got, n, WAIT_MS);
		if (!(c.flags & AEM_CQE_F_RESULT)) {
			if (events)
				(*events)++;
			give_back(r, &c);
			continue;
		}
		t_assert(c.user_data >= base && c.user_data < base + n, "stray result ud %#llx res %d",
			 (unsigned long long)c.user_data, c.res);
		t_assert(res[c.user_data - base] == INT32_MIN, "two results for ud %#llx",
			 (unsigned long long)c.user_data);
		res[c.user_data - base] = c.res;
		got++;
		give_back(r, &c);
	}
}

/* A NOP round trip: the ring still works once nothing fails. */
static void still_works(struct aem_ring *r)
{
	struct aem_sqe *sqe = t_sqe(r);
	int res;

	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 0x4e4f50);
	submit_all(r);
	results(r, 0x4e4f50, 1, &res, NULL);
	t_eq(res, 0);
	t_stats(r);
}

/* Both rings balance and still work; then they go. */
static void finish_pair(struct aem_ring *a, struct aem_ring *b)
{
	t_stats(a);
	t_stats(b);
	still_works(a);
	still_works(b);
	aem_teardown(a);
	aem_teardown(b);
}

static int setup(struct aem_ring *r, unsigned cq, unsigned backlog)
{
	struct aem_params p = t_params(512, cq, 2);

	p.backlog_limit = backlog;
	p.slot_count = 64;
	p.send_slots = 4;
	return aem_setup(&p, r);
}

/* Subscribe the message source on @ch; the subscription id or -errno. */
static int64_t sub_msg(struct aem_ring *r, unsigned ch)
{
	struct aem_sqe *sqe = t_sqe(r);
	int res;

	aem_prep_subscribe_msg(sqe, ch, 0, 0x5b);
	submit_all(r);
	{
		struct aem_cqe c;

		t_assert(t_next(r, &c, WAIT_MS), "no SUBSCRIBE result");
		t_assert(c.flags & AEM_CQE_F_RESULT, "event before the SUBSCRIBE result");
		res = c.res;
		if (res >= 0)
			return (int64_t)c.id;
	}
	return res;
}

/* Read every event of the message subscription on @r, checking each payload's sequence tag. */
static unsigned drain_msgs(struct aem_ring *r, uint64_t sub, unsigned ms)
{
	struct aem_sub_stats ss;
	unsigned got = 0, len;
	struct aem_cqe c;
	uint64_t end = t_now_ns() + ms * T_MS;

	for (;;) {
		while (t_next(r, &c, 1)) {
			const uint8_t *d;

			if (c.flags & AEM_CQE_F_RESULT) {
				give_back(r, &c);
				continue;
			}
			d = aem_cqe_payload(r, &c, &len);
			t_assert(d && len >= 8, "message of %u bytes", len);
			got++;
			give_back(r, &c);
		}
		ss = t_sub_stats(r, sub);
		if (ss.backlog == 0 && got == ss.delivered)
			return got;
		t_assert(got <= ss.delivered, "read %u events, %llu delivered", got,
			 (unsigned long long)ss.delivered);
		t_assert(t_now_ns() < end, "backlog %llu never drained (read %u of %llu)",
			 (unsigned long long)ss.backlog, got, (unsigned long long)ss.delivered);
	}
}

/* ---- phases: each returns whether the armed failure happened ------------ */

static bool phase_setup(unsigned n)
{
	struct aem_ring r;
	int ret;
	bool hit;

	fault_arm(n);
	ret = setup(&r, 64, 0);
	hit = fault_disarm();
	if (ret < 0) {
		allowed(ret, "aem_setup", n);
		t_assert(hit, "aem_setup failed (%s) with no failed allocation", strerror(-ret));
		return hit;
	}
	still_works(&r);
	aem_teardown(&r);
	return hit;
}

#define NSUBS	4100	/* past the first subscription chunk (4096) */

static bool phase_subscribe(unsigned n)
{
	static int res[NSUBS + 3];
	struct aem_ring_stats st;
	struct aem_sqe *sqe;
	unsigned i, ok = 0;
	struct aem_ring r;
	bool hit;

	t_ok(setup(&r, 64, 0));
	fault_arm(n);
	for (i = 0; i < NSUBS + 3; i++) {
		sqe = t_sqe(&r);
		if (i == 0)
			aem_prep_subscribe_msg(sqe, 1, 0, 0);
		else if (i == 1)
			aem_prep_subscribe_gen(sqe, 1, 1, 1, 16, 1, 0);
		else if (i == 2)
			aem_prep_subscribe_msg(sqe, 2, 1, 0);
		else
			aem_prep_subscribe_timer(sqe, 3600 * 1000 * T_MS, 0, 1, 0);
		aem_sqe_set_data(sqe, 0x1000 + i);
		if (r.sq.sqe_tail - r.sq.sqe_head == 256 || i == NSUBS + 2) {
			unsigned batch = r.sq.sqe_tail - r.sq.sqe_head;

			submit_all(&r);
			results(&r, 0x1000 + i + 1 - batch, batch, res + i + 1 - batch, NULL);
		}
	}
	hit = fault_disarm();
	for (i = 0; i < NSUBS + 3; i++) {
		if (res[i] < 0)
			allowed(res[i], "SUBSCRIBE", n);
		else
			ok++;
	}
	t_ok(aem_ring_stats(&r, &st));
	t_eq(st.subscriptions, ok);
	t_assert(hit || ok == NSUBS + 3, "%u subscriptions refused with no failed allocation",
		 NSUBS + 3 - ok);
	still_works(&r);
	aem_teardown(&r);
	return hit;
}

/* @count posts from @a to @b's channel, half inline, half from send slots; returns how many were accepted. */
static unsigned post_some(struct aem_ring *a, uint64_t addr, unsigned count, unsigned n)
{
	static int res[512];
	unsigned i, ok = 0, events = 0;

	t_assert(count <= 512, "too many posts");
	for (i = 0; i < count; i++) {
		struct aem_sqe *sqe = t_sqe(a);
		uint64_t seq = i;

		if (i % 2) {
			uint8_t *s = aem_send_slot(a, 0);

			t_assert(s, "no send slot");
			memset(s, 0x5a, 200);
			memcpy(s, &seq, sizeof(seq));
			aem_prep_post_slot(sqe, addr, 0, 200, 0);
		} else {
			aem_prep_post(sqe, addr, &seq, sizeof(seq), 0);
		}
		aem_sqe_set_data(sqe, 0x2000 + i);
		/* A send slot may be reused once its post is submitted. */
		submit_all(a);
	}
	results(a, 0x2000, count, res, &events);
	for (i = 0; i < count; i++) {
		if (res[i] < 0)
			allowed(res[i], "POST", n);
		else
			ok++;
	}
	return ok;
}

static bool phase_post_backlog(unsigned n, bool backlog)
{
	/*
	 * Post: more slot-sized posts than delivery slots, so payloads wait in
	 * kernel memory.  Backlog: a CQ ring of 16 and the half of a backlog
	 * of 128 that messages from another ring may fill hold 80; a post
	 * beyond them would wait for the consumer (a producer is never
	 * dropped), so 76 fill two of the backlog's chunks.
	 */
	unsigned count = backlog ? 76 : 160, ok, got;
	struct aem_sub_stats ss;
	struct aem_ring a, b;
	int64_t sub;
	bool hit;

	t_ok(setup(&a, 256, 0));
	t_ok(setup(&b, backlog ? 16 : 1024, backlog ? 128 : 0));
	sub = sub_msg(&b, CH_POST);
	t_assert(sub >= 0, "subscribe: %s", strerror((int)-sub));
	fault_arm(n);
	ok = post_some(&a, AEM_ADDR(b.ring_id, CH_POST), count, n);
	if (backlog) {
		/* The consumer enters once while still behind: the backlog is flushed into a full ring. */
		aem_submit(&b);
	}
	hit = fault_disarm();
	got = drain_msgs(&b, (uint64_t)sub, WAIT_MS);
	ss = t_sub_stats(&b, (uint64_t)sub);
	/*
	 * A POST is never dropped: one whose backlog entry or held payload
	 * cannot be allocated stays in the poster's SQ, as when its target is
	 * full, and goes in on a later submit; one refused with an errno was
	 * not produced.  So every post accepted was produced, and only those.
	 */
	if (getenv("AEM_FAULT_VERBOSE"))
		printf("  n=%u: %u of %u accepted; produced %llu delivered %llu dropped %llu\n", n, ok,
		       count, (unsigned long long)ss.produced, (unsigned long long)ss.delivered,
		       (unsigned long long)ss.dropped);
	t_assert(ss.produced == ok && ss.dropped == 0,
		 "%u of %u posts accepted, %llu produced, %llu dropped (allocation %u failed: %s)", ok,
		 count, (unsigned long long)ss.produced, (unsigned long long)ss.dropped, n,
		 hit ? "yes" : "no");
	t_eq(got, ss.delivered);
	finish_pair(&a, &b);
	return hit;
}

static bool phase_post(unsigned n)
{
	return phase_post_backlog(n, false);
}

static bool phase_backlog(unsigned n)
{
	return phase_post_backlog(n, true);
}

#define NCALLS	8

static bool phase_call(unsigned n)
{
	int res[NCALLS], answered = 0, wb_done = 0, wb_ud = 0x3100;
	struct aem_ring a, b;
	unsigned i, got = 0, len;
	struct aem_cqe c;
	uint64_t end;
	int64_t sub;
	bool hit;

	t_ok(setup(&a, 256, 0));
	t_ok(setup(&b, 256, 0));
	sub = sub_msg(&b, CH_CALL);
	t_assert(sub >= 0, "subscribe: %s", strerror((int)-sub));
	for (i = 0; i < NCALLS; i++)
		res[i] = INT32_MIN;
	fault_arm(n);
	for (i = 0; i < NCALLS; i++) {
		struct aem_sqe *sqe = t_sqe(&a);
		uint64_t v = i;

		aem_prep_call(sqe, AEM_ADDR(b.ring_id, CH_CALL), &v, sizeof(v), 0, 3000);
		aem_sqe_set_data(sqe, 0x3000 + i);
	}
	submit_all(&a);
	/* Serve and collect, bounded: every call ends by its timeout whatever was lost. */
	end = t_now_ns() + 10000 * T_MS;
	while (got < NCALLS) {
		t_assert(t_now_ns() < end, "%u of %u calls ended within 10 s", got, NCALLS);
		while (t_next(&b, &c, 0)) {
			const uint8_t *d;
			uint64_t v;

			if (c.flags & AEM_CQE_F_RESULT) {
				/* A writeback refused (the call may have gone) is an answer too. */
				give_back(&b, &c);
				wb_done++;
				continue;
			}
			t_assert(c.flags & AEM_CQE_F_CALL, "message event without F_CALL");
			d = aem_cqe_payload(&b, &c, &len);
			t_assert(d && len == sizeof(v), "call request of %u bytes", len);
			memcpy(&v, d, sizeof(v));
			v = ~v;
			struct aem_sqe *sqe = t_sqe(&b);
			aem_prep_writeback(sqe, c.id, &v, sizeof(v));
			aem_sqe_set_data(sqe, (uint64_t)wb_ud++);
			give_back(&b, &c);
			answered++;
		}
		pump(&b);
		while (t_next(&a, &c, 0)) {
			t_assert(c.flags & AEM_CQE_F_RESULT, "event on the calling ring");
			i = (unsigned)(c.user_data - 0x3000);
			t_assert(i < NCALLS && res[i] == INT32_MIN, "stray or repeated call result ud %#llx",
				 (unsigned long long)c.user_data);
			res[i] = c.res;
			if (c.res >= 0) {
				const uint8_t *d = aem_cqe_payload(&a, &c, &len);
				uint64_t v;

				t_assert(d && len == sizeof(v), "reply of %u bytes", len);
				memcpy(&v, d, sizeof(v));
				t_eq(v, ~(uint64_t)i);
			}
			give_back(&a, &c);
			got++;
		}
	}
	/* Every writeback is answered too. */
	while (wb_done < answered) {
		t_assert(t_next(&b, &c, WAIT_MS), "%d of %d writebacks answered", wb_done, answered);
		t_assert(c.flags & AEM_CQE_F_RESULT, "a call event after every call ended");
		give_back(&b, &c);
		wb_done++;
	}
	hit = fault_disarm();
	for (i = 0; i < NCALLS; i++)
		if (res[i] < 0 && res[i] != -ETIMEDOUT)
			allowed(res[i], "CALL", n);
		else if (res[i] < 0)
			t_assert(hit, "call %u timed out with no failed allocation", i);
	finish_pair(&a, &b);
	return hit;
}

#define NTIMERS	16

static bool phase_timers(unsigned n)
{
	int res[NTIMERS];
	uint64_t ids[NTIMERS];
	unsigned fired[NTIMERS] = { 0 }, i, events = 0;
	struct aem_ring r;
	struct aem_cqe c;
	uint64_t end;
	bool hit;

	t_ok(setup(&r, 256, 0));
	fault_arm(n);
	for (i = 0; i < NTIMERS; i++) {
		struct aem_sqe *sqe = t_sqe(&r);

		/* One-shot timers 1..4 ms out; the last two periodic, 2 ms. */
		if (i >= NTIMERS - 2)
			aem_prep_subscribe_timer(sqe, 2 * T_MS, 2 * T_MS, 0, 0x4000 + i);
		else
			aem_prep_subscribe_timer(sqe, (1 + i % 4) * T_MS, 0, 0, 0x4000 + i);
		aem_sqe_set_data(sqe, 0x4000 + i);
	}
	submit_all(&r);
	/* Results and firings interleave: collect both. */
	for (i = 0; i < NTIMERS; i++)
		res[i] = INT32_MIN;
	end = t_now_ns() + 200 * T_MS;
	while (t_now_ns() < end) {
		if (!t_next(&r, &c, 10))
			continue;
		i = (unsigned)(c.user_data - 0x4000);
		t_assert(i < NTIMERS, "stray CQE ud %#llx", (unsigned long long)c.user_data);
		if (c.flags & AEM_CQE_F_RESULT) {
			t_assert(res[i] == INT32_MIN, "two results for timer %u", i);
			res[i] = c.res;
			ids[i] = c.id;
		} else {
			fired[i]++;
			events++;
		}
		give_back(&r, &c);
	}
	hit = fault_disarm();
	for (i = 0; i < NTIMERS; i++) {
		t_assert(res[i] != INT32_MIN, "no SUBSCRIBE result for timer %u", i);
		if (res[i] < 0) {
			allowed(res[i], "SUBSCRIBE timer", n);
			t_eq(fired[i], 0);
			continue;
		}
		struct aem_sub_stats ss;

		if (i < NTIMERS - 2) {
			/* A one-shot timer has ended: its final counts went with its event. */
			t_assert(fired[i] == 1 || hit, "one-shot timer %u fired %u times", i, fired[i]);
			continue;
		}
		ss = t_sub_stats(&r, ids[i]);
		t_assert(fired[i] <= ss.delivered, "timer %u: read %u, %llu delivered", i, fired[i],
			 (unsigned long long)ss.delivered);
	}
	t_stats(&r);
	still_works(&r);
	aem_teardown(&r);
	return hit;
}

static const struct {
	const char *name;
	bool (*run)(unsigned n);
} phases[] = {
	{ "setup", phase_setup },
	{ "subscribe", phase_subscribe },
	{ "post", phase_post },
	{ "call", phase_call },
	{ "backlog", phase_backlog },
	{ "timers", phase_timers },
};

int main(void)
{
	const char *only = getenv("AEM_FAULT_PHASE");
	unsigned max_n = getenv("AEM_FAULT_MAX") ? (unsigned)atoi(getenv("AEM_FAULT_MAX")) : 0;
	struct aem_ring probe;
	unsigned i, n, fds;

	t_ok(setup(&probe, 64, 0));
	kernel_mode = t_kernel(&probe);
	aem_teardown(&probe);
	if (!max_n)
		max_n = kernel_mode ? 150 : MAX_N_DEFAULT;
	if (kernel_mode)
		kernel_init();
	else if (getenv("AEM_FAULT_ALLOC"))
		t_skip("AEM_FAULT_ALLOC is set: this test arms the hook itself");
	fds = count_fds();
	for (i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
		uint64_t t0 = t_now_ns();

		if (only && strcmp(only, phases[i].name))
			continue;
		for (n = 1; n <= max_n; n++) {
			if (!phases[i].run(n))
				break;
			t_eq(count_fds(), fds);
		}
		/* The embedded backend's phases make few allocations: all of them must be reached. */
		t_assert(n <= max_n || kernel_mode, "phase %s still reaches allocation %u", phases[i].name,
			 max_n);
		printf("%-9s %3u allocation(s) failed one by one%s, each an errno or a counted loss (%llu ms)\n",
		       phases[i].name, n - 1, n > max_n ? " (the cap; more follow)" : "",
		       (unsigned long long)((t_now_ns() - t0) / T_MS));
		t_eq(count_fds(), fds);
	}
	if (nth_fd >= 0)
		close(nth_fd);
	return t_exit();
}
