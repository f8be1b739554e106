/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The user-space host of the ring core (libaem's embedded backend): the
 * interface listed in aem_compat.h, on libc, pthreads and futexes.
 *
 * The core runs inside the application's process here, so "kernel-side
 * memory" is ordinary heap the application could in principle reach; the
 * trust rules still hold for the shared regions, which is what the tests
 * and fuzzers exercise.
 */
#ifndef AEM_COMPAT_USER_H
#define AEM_COMPAT_USER_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;

#ifndef likely
#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)
#endif

#define AEM_PAGE_SIZE	4096UL

/* ---- once, barriers ------------------------------------------------------ */

/* libaem's barriers, the same ones its view of the rings uses: one definition. */
#include "../../libaem/include/libaem_barrier.h"

#define aem_static_assert(e, msg)	_Static_assert(e, msg)

/* ---- atomics ------------------------------------------------------------- */

typedef struct { int v; } aem_atomic_t;

static inline int aem_atomic_read(const aem_atomic_t *a)
{
	return __atomic_load_n(&a->v, __ATOMIC_RELAXED);
}

static inline void aem_atomic_set(aem_atomic_t *a, int v)
{
	__atomic_store_n(&a->v, v, __ATOMIC_RELAXED);
}

static inline void aem_atomic_inc(aem_atomic_t *a)
{
	__atomic_fetch_add(&a->v, 1, __ATOMIC_SEQ_CST);
}

static inline int aem_atomic_dec_return(aem_atomic_t *a)
{
	return __atomic_sub_fetch(&a->v, 1, __ATOMIC_SEQ_CST);
}

static inline int aem_atomic_add_return(int i, aem_atomic_t *a)
{
	return __atomic_add_fetch(&a->v, i, __ATOMIC_SEQ_CST);
}

/* ---- locks --------------------------------------------------------------- */

/*
 * A pthread mutex, not a spinning lock: on a two-core virtual machine a
 * preempted holder would make spinners burn their whole slice.  Held only
 * for short, non-blocking sections, as in the kernel.
 */
typedef pthread_mutex_t aem_spinlock_t;

#define aem_spin_init(l)	pthread_mutex_init((l), NULL)
#define aem_spin_destroy(l)	pthread_mutex_destroy(l)
#define aem_spin_lock_irqsave(l, f)					\
	do { (f) = 0; pthread_mutex_lock(l); } while (0)
#define aem_spin_unlock_irqrestore(l, f)				\
	do { (void)(f); pthread_mutex_unlock(l); } while (0)

typedef pthread_mutex_t aem_mutex_t;

#define aem_mutex_init(m)	pthread_mutex_init((m), NULL)
#define aem_mutex_lock(m)	pthread_mutex_lock(m)
#define aem_mutex_unlock(m)	pthread_mutex_unlock(m)
#define aem_mutex_destroy(m)	pthread_mutex_destroy(m)

/* ---- memory -------------------------------------------------------------- */

/*
 * Allocation fault injection, for tests: every allocation of the core and
 * of the embedded backend asks __aem_fault_hit() first and fails when it
 * says so, as the kernel's failslab does to the module.  Off unless armed:
 * by a test through __aem_fault_nth()/__aem_fault_prob(), or by the
 * environment, read at the first allocation:
 *   AEM_FAULT_ALLOC=N         fail the Nth allocation (1: the first)
 *   AEM_FAULT_ALLOC=N+        fail the Nth and every later one
 *   AEM_FAULT_ALLOC=pP[:S]    fail each with probability P (0..1), seed S
 * The state is one weak object, shared by every file that includes this
 * header, so each program that compiles the core (libaem, goaem, the fuzz
 * harnesses) has exactly one without a source file of its own.  Not part
 * of libaem's ABI: libaem.so hides it; tests link libaem.a.
 */
struct aem_fault {
	u64		calls;		/* allocations asked for, armed or not */
	u64		failed;		/* allocations failed on purpose */
	u64		nth;		/* fail when calls reaches it; 0 never */
	u64		seed;		/* of the probability draws */
	u32		prob;		/* chance per allocation, in 2^-32 units */
	bool		sticky;		/* fail every allocation from nth on */
	pthread_once_t	env_once;
};

__attribute__((weak)) struct aem_fault __aem_fault = { .env_once = PTHREAD_ONCE_INIT };

static inline void __aem_fault_prob(double p, u64 seed)
{
	__atomic_store_n(&__aem_fault.seed, seed, __ATOMIC_RELAXED);
	__atomic_store_n(&__aem_fault.prob, p <= 0 ? 0 : p >= 1 ? UINT32_MAX : (u32)(p * 4294967296.0),
			 __ATOMIC_RELEASE);
}

/* Fail the @n-th allocation from now (1: the next), or from then on if @sticky; 0 disarms. */
static inline void __aem_fault_nth(u64 n, bool sticky)
{
	__aem_fault.sticky = sticky;
	__atomic_store_n(&__aem_fault.nth, n ? __atomic_load_n(&__aem_fault.calls, __ATOMIC_RELAXED) + n : 0,
			 __ATOMIC_RELEASE);
}

static inline void __aem_fault_env(void)
{
	const char *v = getenv("AEM_FAULT_ALLOC");
	char *end;

	if (!v || !*v)
		return;
	if (*v == 'p') {
		double p = strtod(v + 1, &end);

		__aem_fault_prob(p, *end == ':' ? strtoull(end + 1, NULL, 0) : 1);
	} else {
		unsigned long long n = strtoull(v, &end, 0);

		__aem_fault_nth(n, *end == '+');
	}
}

static inline bool __aem_fault_hit(void)
{
	u64 n, nth, x;
	u32 prob;

	pthread_once(&__aem_fault.env_once, __aem_fault_env);
	n = __atomic_add_fetch(&__aem_fault.calls, 1, __ATOMIC_RELAXED);
	nth = __atomic_load_n(&__aem_fault.nth, __ATOMIC_ACQUIRE);
	prob = __atomic_load_n(&__aem_fault.prob, __ATOMIC_ACQUIRE);
	if (likely(!nth && !prob))
		return false;
	if (nth && (n == nth || (n > nth && __aem_fault.sticky)))
		goto hit;
	if (!prob)
		return false;
	/* splitmix64 of (seed, n): the same seed fails the same allocations. */
	x = __aem_fault.seed + n * 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	x ^= x >> 31;
	if ((u32)(x >> 32) >= prob)
		return false;
hit:
	__atomic_add_fetch(&__aem_fault.failed, 1, __ATOMIC_RELAXED);
	return true;
}

static inline void *__aem_fault_calloc(size_t sz)
{
	return __aem_fault_hit() ? NULL : calloc(1, sz);
}

#define aem_zalloc(sz)		__aem_fault_calloc(sz)
#define aem_zalloc_atomic(sz)	__aem_fault_calloc(sz)
#define aem_kvzalloc(sz)	__aem_fault_calloc(sz)
#define aem_free(p)		free(p)
#define aem_kvfree(p)		free(p)

/*
 * A large table's block (the subscription table grows by 2 MiB blocks):
 * zeroed, 2 MiB aligned and backed by transparent huge pages where the
 * system gives them on request, since faulting in 4 KiB pages one at a
 * time costs more than setting up the entries they hold.  The block is
 * then populated writable in one call: its pages are charged already, and
 * faulting them in one by one as entries are taken (a read fault mapping
 * the zero page, then a write fault copying it) costs more than the
 * system's populating them at once.  Kernels before 5.14 refuse the
 * populate (EINVAL); the pages then fault in as before.
 */
#define AEM_TABLE_ALIGN		(2UL << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif

static inline void *aem_table_zalloc(size_t sz)
{
	size_t span = sz + AEM_TABLE_ALIGN;
	char *p, *a;

	if (__aem_fault_hit())
		return NULL;
	p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + AEM_TABLE_ALIGN - 1) & ~(uintptr_t)(AEM_TABLE_ALIGN - 1));
	if (a != p)
		munmap(p, (size_t)(a - p));
	munmap(a + sz, (size_t)(p + span - (a + sz)));
	madvise(a, sz, MADV_HUGEPAGE);	/* a hint: without it, 4 KiB pages */
	madvise(a, sz, MADV_POPULATE_WRITE);	/* a hint too: without it, faults */
	return a;
}

static inline void aem_table_free(void *p, size_t sz)
{
	munmap(p, sz);
}
/* The embedded backend's own growing tables (user space only). */
#define aem_realloc(p, sz)	(__aem_fault_hit() ? NULL : realloc((p), (sz)))

/* ---- time ---------------------------------------------------------------- */

static inline u64 aem_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (u64)ts.tv_sec * 1000000000ULL + (u64)ts.tv_nsec;
}

/* ---- futex --------------------------------------------------------------- */

static inline int __aem_futex(u32 *uaddr, int op, u32 val, const struct timespec *ts)
{
	return (int)syscall(SYS_futex, uaddr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

/* ---- completions (blocking calls) ---------------------------------------- */

struct aem_completion {
	u32	done;		/* futex word: 0 pending, 1 done, 2 pending with a sleeper */
};

static inline void aem_completion_init(struct aem_completion *c)
{
	c->done = 0;
}

/* A waiter that only spins (aem_completion_done) costs no system call. */
static inline void aem_complete(struct aem_completion *c)
{
	if (__atomic_exchange_n(&c->done, 1, __ATOMIC_RELEASE) == 2)
		__aem_futex(&c->done, FUTEX_WAKE, INT_MAX, NULL);
}

static inline bool aem_completion_done(struct aem_completion *c)
{
	return __atomic_load_n(&c->done, __ATOMIC_ACQUIRE) == 1;
}

/* 0 when completed, -ETIMEDOUT.  Signals restart the wait (as SA_RESTART). */
static inline int aem_wait_completion_timeout(struct aem_completion *c, u32 timeout_ms)
{
	u64 deadline = aem_now_ns() + (u64)timeout_ms * 1000000ULL;

	for (;;) {
		u32 pending = 0;
		u64 now;
		struct timespec ts;

		/* Announce the sleep (0 -> 2) so that aem_complete() wakes us. */
		if (!__atomic_compare_exchange_n(&c->done, &pending, 2, false,
						 __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE) &&
		    pending == 1)
			return 0;
		now = aem_now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		ts.tv_sec = (time_t)((deadline - now) / 1000000000ULL);
		ts.tv_nsec = (long)((deadline - now) % 1000000000ULL);
		__aem_futex(&c->done, FUTEX_WAIT, 2, &ts);
	}
}

/* One step of a bounded busy wait. */
#if defined(__x86_64__) || defined(__i386__)
#define aem_cpu_relax()		__builtin_ia32_pause()
#elif defined(__aarch64__)
#define aem_cpu_relax()		__asm__ __volatile__("yield" ::: "memory")
#else
#define aem_cpu_relax()		__asm__ __volatile__("" ::: "memory")
#endif

/* Threads of the process are preempted anyway. */
#define aem_cond_resched()	do { } while (0)

/* ---- modules, log -------------------------------------------------------- */

#define aem_module_get(owner)	((void)(owner), true)
#define aem_module_put(owner)	((void)(owner))

/* Rate limited to the first few reports: bad input from a test can repeat millions of times. */
#define aem_warn(fmt, ...)						\
	do {								\
		static int __aem_warned;				\
		if (__aem_warned < 8) {					\
			__aem_warned++;					\
			fprintf(stderr, "aem: " fmt "\n", ##__VA_ARGS__); \
		}							\
	} while (0)

#endif /* AEM_COMPAT_USER_H */
