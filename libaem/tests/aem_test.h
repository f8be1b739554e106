/* SPDX-License-Identifier: MIT */
/*
 * The C test helpers, for the libaem suite and the hostile-use tests of
 * /dev/aem in the VM (tests/vm).  Each test is one program for one
 * behaviour: exit 0 pass, 1 fail, 77 skip, and one line saying why on
 * failure or skip.
 *
 * t_*: libaem tests, on whichever backend aem_setup() picks
 * (AEM_BACKEND=kernel|embedded), so nothing here assumes one.
 * vr_*: the raw ABI (kmod/uapi/aem.h) on the device, without libaem, so
 * that a test can do what libaem never would: scribble on indices, map
 * regions the wrong way, write back tokens that are not its own.  There
 * "pass" means the device answered with a clear errno or a counted
 * refusal; the VM harness fails the run on any kernel report in the log.
 */
#ifndef AEM_TEST_H
#define AEM_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "libaem.h"

/*
 * Line-buffered stdout even into a file or pipe: a test killed by its
 * runner's time limit has still said what it printed (its seed, above all).
 */
__attribute__((constructor)) static void t_line_buffered(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

#define T_EXIT_PASS	0
#define T_EXIT_FAIL	1
#define T_EXIT_SKIP	77

/* The seed t_seed() handed out, for t_fail's line (0: none). */
static uint64_t t_seed_used;

#define t_fail(fmt, ...) do {							\
	fprintf(stderr, "FAIL %s:%d: " fmt "\n", __FILE__, __LINE__, ##__VA_ARGS__);	\
	if (t_seed_used)							\
		fprintf(stderr, "FAIL %s:%d: seed %#" PRIx64 " (AEM_TEST_SEED reproduces)\n", \
			__FILE__, __LINE__, t_seed_used);			\
	exit(T_EXIT_FAIL);							\
} while (0)

#define t_skip(fmt, ...) do {							\
	printf("SKIP: " fmt "\n", ##__VA_ARGS__);				\
	exit(T_EXIT_SKIP);							\
} while (0)

/* A sub-test that cannot run here: say so and carry on with the rest. */
#define t_note(fmt, ...)	printf("note: " fmt "\n", ##__VA_ARGS__)

#define t_assert(cond, fmt, ...) do {						\
	if (!(cond))								\
		t_fail("%s: " fmt, #cond, ##__VA_ARGS__);			\
} while (0)

/*
 * A check whose failure leaves the test able to go on: reported now, the
 * test fails at t_exit().  For independent cases, so one run lists them all.
 */
static int t_soft_failures;
#define t_expect(cond, fmt, ...) do {						\
	if (!(cond)) {								\
		fprintf(stderr, "FAIL %s:%d: " fmt "\n", __FILE__, __LINE__, ##__VA_ARGS__);	\
		t_soft_failures++;						\
	}									\
} while (0)

static inline int t_exit(void)
{
	return t_soft_failures ? T_EXIT_FAIL : T_EXIT_PASS;
}

/* Two integers must be equal; both are printed on failure. */
#define t_eq(a, b) do {								\
	long long __a = (long long)(a), __b = (long long)(b);			\
	if (__a != __b)								\
		t_fail("%s is %lld, want %s (%lld)", #a, __a, #b, __b);		\
} while (0)

/* A call that returns -errno on failure must succeed; yields its value. */
#define t_ok(expr) ({								\
	long __r = (long)(expr);						\
	if (__r < 0)								\
		t_fail("%s: %s", #expr, strerror((int)-__r));			\
	__r;									\
})

static inline uint64_t t_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define T_MS	1000000ull

/* xorshift64*: reproducible garbage from a printed seed. */
static inline uint64_t t_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t t_seed(void)
{
	const char *e = getenv("AEM_TEST_SEED");
	uint64_t s = e ? strtoull(e, NULL, 0) : (t_now_ns() ^ (uint64_t)getpid() << 32);

	if (!s)
		s = 1;
	printf("seed %#" PRIx64 " (AEM_TEST_SEED reproduces)\n", s);
	t_seed_used = s;
	return s;
}

/* Set up @r; @p may be NULL for all defaults. */
static inline void t_setup(struct aem_ring *r, struct aem_params *p)
{
	struct aem_params d;
	int ret;

	if (!p) {
		memset(&d, 0, sizeof(d));
		p = &d;
	}
#ifdef T_API_VERSION
	/* A test built against an older ABI's value (the Makefile's *_v2, *_v3): it states it. */
	if (!p->api_version)
		p->api_version = T_API_VERSION;
#endif
	ret = aem_setup(p, r);
	if (ret < 0)
		t_fail("aem_setup: %s (AEM_BACKEND=%s)", strerror(-ret),
		       getenv("AEM_BACKEND") ? getenv("AEM_BACKEND") : "unset");
}

/* Params with the given sizes, everything else default. */
static inline struct aem_params t_params(unsigned sq, unsigned cq, unsigned classes)
{
	struct aem_params p;

	memset(&p, 0, sizeof(p));
	p.sq_entries = sq;
	p.cq_entries = cq;
	p.nr_classes = classes;
	return p;
}

static inline struct aem_sqe *t_sqe(struct aem_ring *r)
{
	struct aem_sqe *sqe = aem_get_sqe(r);

	if (!sqe)
		t_fail("aem_get_sqe: SQ ring full");
	return sqe;
}

/* Submit everything queued; every SQE must be consumed. */
static inline int t_submit(struct aem_ring *r)
{
	unsigned want = r->sq.sqe_tail - r->sq.sqe_head;
	int ret = aem_submit(r);

	if (ret < 0)
		t_fail("aem_submit: %s", strerror(-ret));
	if ((unsigned)ret < want)
		t_fail("aem_submit consumed %d of %u SQEs", ret, want);
	return ret;
}

/*
 * The kernel side counts produced where an event enters it, apart from
 * what became of it, so every read of the counters checks that no event
 * was lost or counted twice.
 */
#define t_balanced(st, what) do {						\
	if ((st)->delivered + (st)->backlog + (st)->dropped != (st)->produced)	\
		t_fail("%s: delivered %llu + backlog %llu + dropped %llu != produced %llu", \
		       (what), (unsigned long long)(st)->delivered,		\
		       (unsigned long long)(st)->backlog,			\
		       (unsigned long long)(st)->dropped,			\
		       (unsigned long long)(st)->produced);			\
} while (0)

/* Ring statistics; the ring-wide counters must balance. */
static inline struct aem_ring_stats t_stats(struct aem_ring *r)
{
	struct aem_ring_stats st;

	t_ok(aem_ring_stats(r, &st));
	t_balanced(&st, "ring");
	return st;
}

/* End a caller/handler pair: every slot back with its ring, then teardown. */
static inline void t_teardown_pair(struct aem_ring *a, struct aem_ring *b)
{
	struct aem_ring *rings[2] = { a, b };
	int i;

	for (i = 0; i < 2; i++) {
		aem_release_commit(rings[i]);
		t_submit(rings[i]);
		t_eq(t_stats(rings[i]).slots_free, rings[i]->slot_count);
	}
	aem_teardown(a);
	aem_teardown(b);
}

/* Statistics of a live subscription; its counters must balance. */
static inline struct aem_sub_stats t_sub_stats(struct aem_ring *r, uint64_t id)
{
	struct aem_sub_stats ss;

	t_ok(aem_sub_stats(r, id, &ss));
	t_balanced(&ss, "subscription");
	return ss;
}

/* Return a delivery slot; commits and submits when the slot ring is full. */
static inline void t_release(struct aem_ring *r, unsigned slot)
{
	int i;

	for (i = 0; i < 1000; i++) {
		if (aem_release_slot(r, slot) == 0)
			return;
		aem_release_commit(r);
		aem_submit(r);
		usleep(1000);
	}
	t_fail("slot return ring stays full");
}

/*
 * Next CQE, results first, then events class 0 first, copied to @out; false when none came within
 * @timeout_ms.  Between looks it enters the kernel side (flushing the
 * backlog, reclaiming released slots) and waits.
 */
static inline bool t_next_who(struct aem_ring *r, struct aem_cqe *out, unsigned timeout_ms,
			      struct aem_sender *who);

static inline bool t_next(struct aem_ring *r, struct aem_cqe *out, unsigned timeout_ms)
{
	return t_next_who(r, out, timeout_ms, NULL);
}

/* t_next, and an event's sender into @who (zeroed when it has none), read before the CQE is released. */
static inline bool t_next_who(struct aem_ring *r, struct aem_cqe *out, unsigned timeout_ms,
			      struct aem_sender *who)
{
	uint64_t end = t_now_ns() + timeout_ms * T_MS;
	const struct aem_cqe *c;
	unsigned cls;
	int ret;

	for (;;) {
		unsigned head;

		if (aem_result_peek(r, &head)) {
			*out = *aem_result_at(r, head);
			aem_result_advance(r, 1);
			return true;
		}
		for (cls = 0; cls < r->nr_classes; cls++) {
			if (aem_peek_batch(r, cls, &c, 1)) {
				*out = *c;
				if (who && aem_cqe_sender(r, cls, c, who) < 0)
					memset(who, 0, sizeof(*who));
				aem_cq_advance(r, cls, 1);
				return true;
			}
		}
		uint64_t now = t_now_ns();
		if (now >= end)
			return false;
		uint64_t left = end - now;
		if (left > 20 * T_MS)
			left = 20 * T_MS;
		aem_release_commit(r);
		ret = aem_submit(r);
		if (ret < 0)
			t_fail("aem_submit: %s", strerror(-ret));
		ret = aem_wait(r, 1, (int64_t)left);
		if (ret < 0 && ret != -ETIME && ret != -EINTR)
			t_fail("aem_wait: %s", strerror(-ret));
	}
}

/*
 * The result CQE of the SQE with @user_data.  Events seen on the way are
 * dropped (their slots released); another result fails the test, since
 * tests know what they submitted.
 */
static inline struct aem_cqe t_result(struct aem_ring *r, uint64_t user_data, unsigned timeout_ms)
{
	uint64_t end = t_now_ns() + timeout_ms * T_MS;
	struct aem_cqe c;

	while (t_now_ns() < end) {
		if (!t_next(r, &c, 50))
			continue;
		if (!(c.flags & AEM_CQE_F_RESULT)) {
			if (c.flags & AEM_CQE_F_SLOT)
				t_release(r, c.slot);
			continue;
		}
		if (c.user_data != user_data)
			t_fail("result for user_data %#llx (res %d) while waiting for %#llx",
			       (unsigned long long)c.user_data, c.res,
			       (unsigned long long)user_data);
		return c;
	}
	t_fail("no result CQE for user_data %#llx within %u ms",
	       (unsigned long long)user_data, timeout_ms);
}

/* Submit the one queued SQE and return its result's res. */
static inline int t_do(struct aem_ring *r, uint64_t user_data)
{
	t_submit(r);
	return t_result(r, user_data, 5000).res;
}

/* Subscribe a message endpoint on @channel; returns the subscription id. */
static inline uint64_t t_sub_msg(struct aem_ring *r, unsigned channel, unsigned prio, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);
	struct aem_cqe c;

	aem_prep_subscribe_msg(sqe, channel, prio, tag);
	t_submit(r);
	c = t_result(r, tag, 5000);
	if (c.res < 0)
		t_fail("subscribe msg channel %u: %s", channel, strerror(-c.res));
	t_assert(AEM_ID_KIND(c.id) == AEM_ID_KIND_SUB, "subscription id %#llx has kind %u",
		 (unsigned long long)c.id, AEM_ID_KIND(c.id));
	return c.id;
}

/* Nothing may be ready in any class for @ms. */
static inline void t_expect_quiet(struct aem_ring *r, unsigned ms, const char *what)
{
	struct aem_cqe c;

	if (t_next(r, &c, ms))
		t_fail("%s: unexpected CQE user_data %#llx res %d flags %#x source %u",
		       what, (unsigned long long)c.user_data, c.res, c.flags, c.source);
}

static inline uint64_t t_refused_total(const struct aem_ring_stats *st)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < AEM_REFUSE_NR; i++)
		n += st->refused[i];
	return n;
}

static inline bool t_kernel(const struct aem_ring *r)
{
	return r->backend == AEM_BACKEND_KERNEL;
}

/*
 * A remote lane's producer, as the protocol says: post (or, with @call,
 * call); on a full lane WAITING, a full barrier, look again, sleep in the
 * module (up to @wait_ms) only if still full, then clear WAITING.  Returns
 * the post's answer (-EAGAIN: try again); counts the sleeps that were
 * woken and those that timed out.
 */
static inline int t_lane_put_or_wait(struct aem_lane_remote *lr, const void *rec, unsigned len,
				     bool call, unsigned wait_ms, unsigned *woke, unsigned *timeouts)
{
	int ret = call ? aem_lane_call(&lr->lane, rec, len) : aem_lane_post(&lr->lane, rec, len);

	if (ret != -EAGAIN)
		return ret;
	aem_write_once(lr->lane.kctl->prod_flags, AEM_LANE_P_WAITING);
	aem_smp_mb();	/* pairs with the consumer's barrier between head and its WAITING load */
	ret = call ? aem_lane_call(&lr->lane, rec, len) : aem_lane_post(&lr->lane, rec, len);
	if (ret == -EAGAIN) {
		int w = aem_lane_wait_room(lr, wait_ms);

		if (w == 0)
			(*woke)++;
		else if (w == -ETIMEDOUT)
			(*timeouts)++;
		else
			t_fail("aem_lane_wait_room: %s", strerror(-w));
	}
	aem_write_once(lr->lane.kctl->prod_flags, 0);
	return ret;
}

/* ---------------------------------------------------------------------- */
/* The raw ABI on /dev/aem                                                */

/* One ring on the device, every region mapped. */
struct vring {
	int			fd;
	struct aem_params	p;
	void			*region[AEM_NR_REGIONS];
	size_t			size[AEM_NR_REGIONS];
	uint32_t		sq_tail;	/* local copy of what we published */
};

static const uint64_t vr_off[AEM_NR_REGIONS] = {
	AEM_OFF_RINGS, AEM_OFF_SQES, AEM_OFF_CQES, AEM_OFF_PAYLOAD,
};

static inline uint32_t *vr_u32(struct vring *r, uint32_t off)
{
	return (uint32_t *)((char *)r->region[AEM_REGION_RINGS] + off);
}

static inline int vr_open(void)
{
	int fd = open(AEM_DEVICE_PATH, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		t_skip("%s: no such device (module not loaded)", AEM_DEVICE_PATH);
	return fd < 0 ? -errno : fd;
}

/* Set up with @p (zeroed fields: defaults) and map everything; -errno. */
static inline int vr_setup(struct vring *r, const struct aem_params *p)
{
	int i, ret;

	memset(r, 0, sizeof(*r));
	r->fd = vr_open();
	if (r->fd < 0)
		return r->fd;
	if (p)
		r->p = *p;
	if (ioctl(r->fd, AEM_IOC_SETUP, &r->p) < 0) {
		ret = -errno;
		goto err;
	}
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		int prot = PROT_READ | (i == AEM_REGION_CQES ? 0 : PROT_WRITE);

		r->size[i] = r->p.region_size[i];
		if (!r->size[i])
			continue;
		r->region[i] = mmap(NULL, r->size[i], prot, MAP_SHARED, r->fd, (off_t)vr_off[i]);
		if (r->region[i] == MAP_FAILED) {
			ret = -errno;
			r->region[i] = NULL;
			goto err;
		}
	}
	return 0;
err:
	for (i = 0; i < AEM_NR_REGIONS; i++)
		if (r->region[i])
			munmap(r->region[i], r->size[i]);
	close(r->fd);
	r->fd = -1;
	return ret;
}

static inline void vr_setup_or_die(struct vring *r, const struct aem_params *p)
{
	int ret = vr_setup(r, p);

	if (ret)
		t_fail("setup: %s", strerror(-ret));
}

static inline void vr_close(struct vring *r)
{
	int i;

	for (i = 0; i < AEM_NR_REGIONS; i++)
		if (r->region[i])
			munmap(r->region[i], r->size[i]);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

/* Next SQE, zeroed; the caller fills it and vr_submit() publishes. */
static inline struct aem_sqe *vr_sqe(struct vring *r)
{
	uint32_t head = __atomic_load_n(vr_u32(r, r->p.sq_off.head), __ATOMIC_ACQUIRE);
	struct aem_sqe *sqe;

	if (r->sq_tail - head >= r->p.sq_entries)
		return NULL;
	sqe = (struct aem_sqe *)r->region[AEM_REGION_SQES] + (r->sq_tail & (r->p.sq_entries - 1));
	r->sq_tail++;
	memset(sqe, 0, sizeof(*sqe));
	return sqe;
}

/* AEM_IOC_ENTER: publish our tail, submit @n, wait for @min CQEs. -errno. */
static inline int vr_enter(struct vring *r, uint32_t n, uint32_t min, int64_t timeout_ns)
{
	struct aem_enter e = {
		.to_submit = n,
		.min_complete = min,
		.flags = min ? AEM_ENTER_GETEVENTS : 0,
		.timeout_ns = timeout_ns,
	};

	__atomic_store_n(vr_u32(r, r->p.sq_off.tail), r->sq_tail, __ATOMIC_RELEASE);
	if (ioctl(r->fd, AEM_IOC_ENTER, &e) < 0)
		return -errno;
	return (int)e.submitted;
}

/* Pop one CQE of the completion ring at @o into @out; false when it is empty. */
static inline bool vr_reap_ring(struct vring *r, const struct aem_ring_offsets *o, struct aem_cqe *out)
{
	uint32_t head = *vr_u32(r, o->head);
	uint32_t tail = __atomic_load_n(vr_u32(r, o->tail), __ATOMIC_ACQUIRE);
	const struct aem_cqe *cqes = (const struct aem_cqe *)((char *)r->region[AEM_REGION_CQES] + o->array);

	if (head == tail)
		return false;
	*out = cqes[head & *vr_u32(r, o->ring_mask)];
	__atomic_store_n(vr_u32(r, o->head), head + 1, __ATOMIC_RELEASE);
	return true;
}

/* Pop one CQE of class @cls into @out; false when the class is empty. */
static inline bool vr_reap(struct vring *r, unsigned cls, struct aem_cqe *out)
{
	return vr_reap_ring(r, &r->p.cq_off[cls], out);
}

/* Pop the next result, else the next CQE from the most urgent non-empty class. */
static inline bool vr_reap_any(struct vring *r, struct aem_cqe *out)
{
	unsigned c;

	if (vr_reap_ring(r, &r->p.res_off, out))
		return true;
	for (c = 0; c < r->p.nr_classes; c++)
		if (vr_reap(r, c, out))
			return true;
	return false;
}

/* Wait up to @ms for one CQE matching @pred (NULL: any); false on timeout. */
static inline bool vr_wait_cqe(struct vring *r, struct aem_cqe *out, int ms,
			       bool (*pred)(const struct aem_cqe *, void *), void *arg)
{
	uint64_t end = t_now_ns() + (uint64_t)ms * T_MS;

	for (;;) {
		while (vr_reap_any(r, out)) {
			if (out->flags & AEM_CQE_F_SLOT) {
				/* Give the slot back so a long test never runs dry. */
				const struct aem_ring_offsets *so = &r->p.slot_off;
				uint32_t *arr = vr_u32(r, so->array);
				uint32_t t = *vr_u32(r, so->tail);

				arr[t & *vr_u32(r, so->ring_mask)] = out->slot;	/* the mask's value, not its offset */
				__atomic_store_n(vr_u32(r, so->tail), t + 1, __ATOMIC_RELEASE);
			}
			if (!pred || pred(out, arg))
				return true;
		}
		int64_t left = (int64_t)(end - t_now_ns());
		if (left <= 0)
			return false;
		vr_enter(r, 0, 1, left);
	}
}

/* Submit one SQE already filled and wait for its result CQE (by user_data). */
static bool vr_is_result(const struct aem_cqe *c, void *arg)
{
	return (c->flags & AEM_CQE_F_RESULT) && c->user_data == *(uint64_t *)arg;
}

static inline int32_t vr_result(struct vring *r, uint64_t user_data, struct aem_cqe *out)
{
	struct aem_cqe c;

	if (vr_enter(r, 1, 0, 0) < 0)
		t_fail("enter: %s", strerror(errno));
	if (!vr_wait_cqe(r, &c, 5000, vr_is_result, &user_data))
		t_fail("no result CQE for user_data %" PRIu64, user_data);
	if (out)
		*out = c;
	return c.res;
}

/* NOP round trip: the ring still works. */
static inline void vr_nop_ok(struct vring *r)
{
	struct aem_sqe *sqe = vr_sqe(r);

	t_assert(sqe, "SQ ring full");
	sqe->opcode = AEM_OP_NOP;
	sqe->user_data = 0x4e4f50;
	t_eq(vr_result(r, 0x4e4f50, NULL), 0);
}

static inline void vr_stats(struct vring *r, struct aem_ring_stats *st)
{
	if (ioctl(r->fd, AEM_IOC_RING_STATS, st) < 0)
		t_fail("RING_STATS: %s", strerror(errno));
}

/*
 * Bytes a ring of @p is charged to its user (aem_ring_stats.charged: its
 * regions and kernel-side state), with @subs timers subscribed (the
 * subscription table's chunks come with the first).
 */
static inline uint64_t vr_charge(const struct aem_params *p, unsigned subs)
{
	struct aem_ring_stats st;
	struct vring r;
	unsigned i;

	vr_setup_or_die(&r, p);
	for (i = 0; i < subs; i++) {
		struct aem_sqe *sqe = vr_sqe(&r);

		sqe->opcode = AEM_OP_SUBSCRIBE;
		sqe->source = AEM_SRC_TIMER;
		sqe->timer.first_ns = 3600ull * 1000 * T_MS;
		sqe->user_data = i + 1;
		if (vr_result(&r, i + 1, NULL) != 0)
			t_fail("subscribe timer %u refused", i + 1);
	}
	vr_stats(&r, &st);
	vr_close(&r);
	return st.charged;
}

static inline uint64_t vr_refused(struct vring *r)
{
	struct aem_ring_stats st;
	uint64_t n = 0;
	int i;

	vr_stats(r, &st);
	for (i = 0; i < AEM_REFUSE_NR; i++)
		n += st.refused[i];
	return n;
}

/* Run @fn in a child; returns its wait status. */
static inline int t_child(void (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		t_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) < 0)
		t_fail("waitpid: %s", strerror(errno));
	return status;
}

#endif /* AEM_TEST_H */
