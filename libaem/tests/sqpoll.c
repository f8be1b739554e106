/* SPDX-License-Identifier: MIT */
/*
 * AEM_SETUP_SQPOLL: a poller on the kernel side consumes the SQ.  While it
 * is busy, posts are consumed with no entry into the kernel side; after
 * its idle time it sets AEM_SQ_F_NEED_WAKEUP and sleeps, a post published
 * then waits (never lost) until the wake-up enter, which clears the flag;
 * results come as always; teardown ends the poller whether it runs,
 * sleeps or waits at a full target; bad setups are refused with -EINVAL;
 * a backend whose probe lacks the flag refuses it; a subscription that
 * needs the subscriber's own task (an fd) is served by the embedded
 * poller (same process) and refused with -EOPNOTSUPP by the module's
 * (a kernel thread); a post the poller consumes names the ring's creator
 * as its sender, not the poller.
 */
#include <sys/socket.h>
#include "aem_test.h"

#define T_SQ		256
#define T_POSTS		1000
#define T_BUSY_IDLE_MS	5000	/* longer than the busy part of the test: it never sleeps there */
#define T_SLEEPY_IDLE_MS 100

static unsigned sq_flags(struct aem_ring *r)
{
	return __atomic_load_n(r->sq.kflags, __ATOMIC_ACQUIRE);
}

static unsigned sq_head(struct aem_ring *r)
{
	return __atomic_load_n(r->sq.khead, __ATOMIC_ACQUIRE);
}

/* Wait, without entering, until the poller has consumed everything published. */
static bool consumed_within(struct aem_ring *r, unsigned ms)
{
	uint64_t end = t_now_ns() + ms * T_MS;

	while (sq_head(r) != r->sq.sqe_tail) {
		if (t_now_ns() >= end)
			return false;
		usleep(100);
	}
	return true;
}

/* Wait until the poller announces its sleep. */
static bool asleep_within(struct aem_ring *r, unsigned ms)
{
	uint64_t end = t_now_ns() + ms * T_MS;

	while (!(sq_flags(r) & AEM_SQ_F_NEED_WAKEUP)) {
		if (t_now_ns() >= end)
			return false;
		usleep(1000);
	}
	return true;
}

static void setup_sqpoll(struct aem_ring *r, unsigned idle_ms)
{
	struct aem_params p = t_params(T_SQ, 1024, 2);

	p.flags = AEM_SETUP_SQPOLL;
	p.sq_idle_ms = idle_ms;
	t_setup(r, &p);
	t_assert(r->features & AEM_FEAT_SQPOLL, "features %#x lack AEM_FEAT_SQPOLL", r->features);
}

static void post_one(struct aem_ring *r, uint64_t addr, uint64_t seq)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_post(sqe, addr, &seq, sizeof(seq), 0);
	sqe->flags |= AEM_SQE_F_SILENT;
}

/* @n events with payloads first..first+n-1 arrive at @rx in order. */
static void expect_posts(struct aem_ring *rx, uint64_t tag, uint64_t first, unsigned n)
{
	struct aem_cqe c;
	uint64_t v;
	unsigned i;

	for (i = 0; i < n; i++) {
		t_assert(t_next(rx, &c, 5000), "post %u of %u never arrived", i, n);
		t_eq(c.user_data, tag);
		memcpy(&v, c.data, sizeof(v));
		t_eq(v, first + i);
	}
}

static void busy_without_enters(struct aem_ring *rx, uint64_t addr, uint64_t tag)
{
	struct aem_ring a;
	uint64_t before;
	unsigned i;

	setup_sqpoll(&a, T_BUSY_IDLE_MS);
	before = aem_thread_enters();
	for (i = 0; i < T_POSTS; i++) {
		post_one(&a, addr, i);
		/* A batch every 8 posts: the poller consumes as they come. */
		if (i % 8 == 7 || i == T_POSTS - 1)
			t_assert(aem_submit(&a) >= 0, "aem_submit");
		if (a.sq.sqe_tail - sq_head(&a) >= T_SQ - 8)
			t_assert(consumed_within(&a, 5000), "the poller consumed nothing for 5 s");
	}
	t_assert(consumed_within(&a, 5000), "the poller left %u SQEs", a.sq.sqe_tail - sq_head(&a));
	t_expect(aem_thread_enters() == before, "%llu entries into the kernel side for %u posts to a busy poller",
		 (unsigned long long)(aem_thread_enters() - before), T_POSTS);
	t_expect(!(sq_flags(&a) & AEM_SQ_F_NEED_WAKEUP), "NEED_WAKEUP set while busy");
	expect_posts(rx, tag, 0, T_POSTS);
	aem_teardown(&a);
}

static void sleep_and_wake(struct aem_ring *rx, uint64_t addr, uint64_t tag)
{
	struct aem_ring a;
	uint64_t before;
	unsigned head;
	struct aem_cqe c;

	setup_sqpoll(&a, T_SLEEPY_IDLE_MS);
	t_assert(asleep_within(&a, 10 * T_SLEEPY_IDLE_MS + 5000), "NEED_WAKEUP not set after the idle time");

	/* Published while the poller sleeps: stays in the SQ, not lost. */
	head = sq_head(&a);
	post_one(&a, addr, 7);
	aem_sq_flush(&a);
	usleep(3 * T_SLEEPY_IDLE_MS * 1000);
	t_expect(sq_head(&a) == head, "a sleeping poller consumed an SQE without a wake-up");
	t_expect(!t_next(rx, &c, 0), "an event arrived before the wake-up");

	/* The submit helper sees the flag and enters once with AEM_ENTER_SQ_WAKEUP. */
	before = aem_thread_enters();
	t_assert(aem_submit(&a) == 1, "aem_submit: one SQE waits for the poller");
	t_expect(aem_thread_enters() == before + 1, "%llu entries to wake the poller, want 1",
		 (unsigned long long)(aem_thread_enters() - before));
	t_assert(consumed_within(&a, 5000), "the woken poller did not consume the post");
	t_expect(!(sq_flags(&a) & AEM_SQ_F_NEED_WAKEUP), "NEED_WAKEUP still set after the wake-up");
	expect_posts(rx, tag, 7, 1);

	/* It sleeps again, and wakes again: the protocol holds more than once. */
	t_assert(asleep_within(&a, 10 * T_SLEEPY_IDLE_MS + 5000), "NEED_WAKEUP not set after the second idle time");
	post_one(&a, addr, 8);
	t_assert(aem_submit(&a) == 1, "aem_submit after the second sleep");
	t_assert(consumed_within(&a, 5000), "the post after the second sleep was not consumed");
	expect_posts(rx, tag, 8, 1);

	/* Results come as on any ring. */
	{
		struct aem_sqe *sqe = t_sqe(&a);

		aem_prep_nop(sqe);
		aem_sqe_set_data(sqe, 0x90);
	}
	t_eq(t_do(&a, 0x90), 0);
	aem_teardown(&a);
}

/* Teardown joins the poller while it runs, while it sleeps, and while it waits at a full target. */
static void teardowns(uint64_t addr)
{
	struct aem_ring a, full;
	struct aem_params p;
	uint64_t full_addr;
	unsigned i;

	setup_sqpoll(&a, T_BUSY_IDLE_MS);
	for (i = 0; i < 64; i++)
		post_one(&a, addr, 1000 + i);
	aem_submit(&a);
	aem_teardown(&a);	/* running, maybe mid-batch */

	setup_sqpoll(&a, 10);
	t_assert(asleep_within(&a, 5000), "NEED_WAKEUP not set after 10 ms idle");
	aem_teardown(&a);	/* asleep */

	/* A target with room for 1 event and a backlog of 1024: the rest wait at the SQ head. */
	p = t_params(16, 1, 1);
	p.backlog_limit = 1;
	t_setup(&full, &p);
	t_sub_msg(&full, 9, 0, 0xf0);
	full_addr = AEM_ADDR(full.ring_id, 9);
	setup_sqpoll(&a, T_BUSY_IDLE_MS);
	for (i = 0; i < 32; i++)
		post_one(&a, full_addr, i);
	aem_submit(&a);
	usleep(50 * 1000);
	t_expect(sq_head(&a) != a.sq.sqe_tail, "a full target took all 32 posts");
	aem_teardown(&a);	/* waiting at the full target */
	aem_teardown(&full);
}

/* The sender of a post the poller consumed: this process and its euid. */
static void sender_is_creator(struct aem_ring *rx, uint64_t addr, uint64_t tag)
{
	struct aem_sender who;
	struct aem_ring a;
	struct aem_cqe c;

	uint64_t v = 0;

	setup_sqpoll(&a, T_BUSY_IDLE_MS);
	post_one(&a, addr, 42);
	t_assert(aem_submit(&a) == 1, "aem_submit");
	/* Posts of the rings torn down before may arrive first: skip them. */
	while (v != 42) {
		t_assert(t_next_who(rx, &c, 5000, &who), "the post never arrived");
		t_eq(c.user_data, tag);
		memcpy(&v, c.data, sizeof(v));
	}
	t_assert(c.flags & AEM_CQE_F_SENDER, "no sender with the event (flags %#x)", c.flags);
	t_expect(who.pid == getpid(), "sender pid %d, want this process %d", who.pid, (int)getpid());
	t_expect(who.uid == geteuid(), "sender uid %u, want %u", who.uid, (unsigned)geteuid());
	t_expect(who.ring_id == a.ring_id, "sender ring %u, want %u", who.ring_id, a.ring_id);
	aem_teardown(&a);
}

/* The module's poller has no fd table of the subscriber: refused clearly, nothing else changes. */
static void task_context(void)
{
	struct aem_ring a;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	int sv[2];

	t_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	setup_sqpoll(&a, T_BUSY_IDLE_MS);
	sqe = t_sqe(&a);
	aem_prep_subscribe_fd(sqe, sv[0], AEM_FD_READABLE, 0, 0xfd);
	t_submit(&a);
	c = t_result(&a, 0xfd, 5000);
	if (t_kernel(&a)) {
		t_expect(c.res == -EOPNOTSUPP, "fd subscription through the module's poller: %d, want -EOPNOTSUPP",
			 c.res);
	} else {
		t_expect(c.res == 0 && AEM_ID_KIND(c.id) == AEM_ID_KIND_SUB,
			 "fd subscription through the embedded poller: res %d id %#llx", c.res,
			 (unsigned long long)c.id);
	}
	/* The ring goes on: a NOP after it is answered. */
	sqe = t_sqe(&a);
	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 0x91);
	t_eq(t_do(&a, 0x91), 0);
	aem_teardown(&a);
	close(sv[0]);
	close(sv[1]);
}

static void refusals(void)
{
	struct aem_params p;
	struct aem_probe pr;
	struct aem_ring r;
	int ret;

	p = t_params(0, 0, 0);
	p.flags = AEM_SETUP_SQPOLL;
	p.sq_idle_ms = AEM_MAX_SQ_IDLE_MS + 1;
	t_expect((ret = aem_setup(&p, &r)) == -EINVAL, "sq_idle_ms past the bound: %d, want -EINVAL", ret);

	p = t_params(0, 0, 0);
	p.sq_idle_ms = 10;
	t_expect((ret = aem_setup(&p, &r)) == -EINVAL, "sq_idle_ms without the flag: %d, want -EINVAL", ret);

	/* The bound itself is taken, and 0 is the default. */
	p = t_params(0, 0, 0);
	p.flags = AEM_SETUP_SQPOLL;
	p.sq_idle_ms = AEM_MAX_SQ_IDLE_MS;
	t_setup(&r, &p);
	t_eq(p.sq_idle_ms, AEM_MAX_SQ_IDLE_MS);
	aem_teardown(&r);
	p = t_params(0, 0, 0);
	p.flags = AEM_SETUP_SQPOLL;
	t_setup(&r, &p);
	t_eq(p.sq_idle_ms, AEM_DEFAULT_SQ_IDLE_MS);
	aem_teardown(&r);

	/* Without the flag: no poller, no feature, sq_idle_ms 0. */
	p = t_params(0, 0, 0);
	t_setup(&r, &p);
	t_expect(!(r.features & AEM_FEAT_SQPOLL), "AEM_FEAT_SQPOLL without AEM_SETUP_SQPOLL");
	t_eq(p.sq_idle_ms, 0);
	aem_teardown(&r);

	/* The probe says whether the backend serves it; one that does not refuses it. */
	t_assert(aem_probe(NULL, 0, &pr) == 0, "aem_probe");
	if (!(pr.setup_flags & AEM_SETUP_SQPOLL)) {
		p = t_params(0, 0, 0);
		p.flags = AEM_SETUP_SQPOLL;
		t_expect(aem_setup(&p, &r) < 0, "a backend without AEM_SETUP_SQPOLL in its probe took it");
	}
}

int main(void)
{
	struct aem_params p = t_params(T_SQ, 2048, 2);
	struct aem_probe pr;
	struct aem_ring rx;
	uint64_t addr;

	t_assert(aem_probe(NULL, 0, &pr) == 0, "aem_probe");
	if (!(pr.setup_flags & AEM_SETUP_SQPOLL)) {
		refusals();
		t_skip("this backend does not serve AEM_SETUP_SQPOLL (probe setup_flags %#x)", pr.setup_flags);
	}
	t_setup(&rx, &p);
	t_sub_msg(&rx, 1, 0, 0xa1);
	addr = AEM_ADDR(rx.ring_id, 1);

	refusals();
	busy_without_enters(&rx, addr, 0xa1);
	sleep_and_wake(&rx, addr, 0xa1);
	teardowns(addr);
	sender_is_creator(&rx, addr, 0xa1);
	task_context();
	aem_teardown(&rx);
	return t_exit();
}
