/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the hostile-use tests of /dev/aem, run inside the vmtest VM.
 * They speak the raw ABI (kmod/uapi/aem.h) rather than libaem, so that they
 * can do what libaem never would: scribble on indices, map regions the
 * wrong way, write back tokens that are not theirs.
 *
 * Each test is one program: exit 0 pass, 1 fail, 77 skip, with one line
 * saying why.  "Pass" means the device answered with a clear errno or a
 * counted refusal; the harness separately fails the run on any kernel
 * report in the log.
 */
#ifndef AEM_VMT_H
#define AEM_VMT_H

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
#include "aem.h"

/* Line-buffered stdout into the harness's file: a killed test has said what it printed. */
__attribute__((constructor)) static void t_line_buffered(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

#define T_PASS	0
#define T_FAIL	1
#define T_SKIP	77

#define t_fail(fmt, ...) do {							\
	fprintf(stderr, "FAIL %s:%d: " fmt "\n", __FILE__, __LINE__, ##__VA_ARGS__);	\
	exit(T_FAIL);								\
} while (0)

#define t_skip(fmt, ...) do {							\
	printf("SKIP: " fmt "\n", ##__VA_ARGS__);				\
	exit(T_SKIP);								\
} while (0)

#define t_assert(cond, fmt, ...) do {						\
	if (!(cond))								\
		t_fail("%s: " fmt, #cond, ##__VA_ARGS__);			\
} while (0)

#define t_eq(a, b) do {								\
	long long __a = (long long)(a), __b = (long long)(b);			\
	if (__a != __b)								\
		t_fail("%s is %lld, want %s (%lld)", #a, __a, #b, __b);		\
} while (0)

#define T_MS	((uint64_t)1000000)

static inline uint64_t t_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

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
	uint64_t s = e ? strtoull(e, NULL, 0) : (uint64_t)t_now_ns();

	if (!s)
		s = 1;
	printf("seed 0x%" PRIx64 " (AEM_TEST_SEED to repeat)\n", s);
	return s;
}

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

				arr[t & (so->ring_entries - 1)] = out->slot;
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

#endif /* AEM_VMT_H */
