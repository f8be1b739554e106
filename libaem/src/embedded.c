// SPDX-License-Identifier: MIT
/*
 * The embedded backend: the ring core (kmod/core) run inside the process.
 *
 * Host side of the core: aem_host_wake() (futex on a private sequence word
 * plus one eventfd write per poll arming), the timer thread driving
 * aem_timer_tick() every wheel tick while anything is armed, and the
 * generator thread driving aem_gen_step().  Both threads start at the
 * first kick and are joined when the last embedded ring is torn down.
 * A ring set up with AEM_SETUP_SQPOLL has a thread of its own, its
 * submission poller, started at setup and joined at teardown.
 *
 * Regions live in one memfd: the core writes through its own read-write
 * mapping of the whole file; setup.c maps the application's view region
 * by region with the CQES region PROT_READ.
 *
 * Each ring has a memory budget (aem_host_charge), the module's rule kept
 * per ring: its regions and the core's state within AEM_MAX_RING_MB and,
 * without CAP_IPC_LOCK, RLIMIT_MEMLOCK, both read at setup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../kmod/core/aem_core.h"
#include "../../kmod/core/aem_sources.h"
#include "emb_sources.h"
#include "aem_int.h"

struct __aem_emb {
	struct aem_ctx	*core;
	void		*map;		/* the core's mapping of the whole memfd */
	size_t		map_len;
	int		payload_fd;	/* the memfd, kept for aem_payload_fd() */
	uint64_t	payload_off;	/* the PAYLOAD region's offset in it */
	int		efd;
	uint32_t	wseq;		/* futex word: bumped by every wake */
	int		nwait;		/* threads in __aem_emb_wait */
	int		wake_armed;	/* a waiter sleeps and nobody woke it yet */
	bool		down;		/* teardown has begun: waits end with -ESHUTDOWN */
	/* The ring's account (aem_host_charge): regions and the core's state */
	uint64_t	charged;	/* bytes; under the core's completion lock */
	uint64_t	budget;		/* bytes; fixed at setup */
	/* The submission poller (AEM_SETUP_SQPOLL) */
	pthread_t	sqp_thr;
	bool		sqp_running;
	bool		sqp_stop;
	uint32_t	sqp_kick;	/* futex word: bumped by every wake-up */
	uint32_t	sqp_asleep;	/* in a futex wait on sqp_kick: a wake-up must wake it */
};

/* ---------------------------------------------------------------------- */
/* Process-wide host state                                                */

struct driver {
	pthread_t	thr;
	bool		running;
	bool		stop;
	uint32_t	kick;		/* futex word */
	uint32_t	asleep;		/* in a futex wait on kick: a kick must wake it */
};

/*
 * Dekker with drv_kick(): the driver announces its sleep, then the futex
 * compares the kick word; the kicker bumps the word, then loads the
 * announcement.  Either the futex sees the new word or the kicker sees the
 * sleeper, so a driver that is ticking (the timer's, while timers or
 * asynchronous calls are pending) costs a kick no system call.
 */
static void drv_sleep(struct driver *d, uint32_t seq, const struct timespec *ts)
{
	__atomic_store_n(&d->asleep, 1, __ATOMIC_SEQ_CST);
	__aem_futex(&d->kick, FUTEX_WAIT, seq, ts);
	__atomic_store_n(&d->asleep, 0, __ATOMIC_RELAXED);
}

static pthread_mutex_t host_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static int host_init_err;
static int host_rings;
static struct driver timer_drv, gen_drv;

static void sleep_until(uint64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000000ULL),
			       .tv_nsec = (long)(t % 1000000000ULL) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static bool drv_stopping(struct driver *d)
{
	return __atomic_load_n(&d->stop, __ATOMIC_ACQUIRE);
}

static void *timer_main(void *arg)
{
	struct driver *d = arg;

	for (;;) {
		/* kick before stop: drv_stop sets stop, then bumps kick; read the other way
		 * round, a stop landing between the two reads would be slept through. */
		uint32_t seq = __atomic_load_n(&d->kick, __ATOMIC_ACQUIRE);
		uint64_t now;

		if (drv_stopping(d))
			break;
		now = aem_now_ns();
		if (aem_timer_tick(now))
			sleep_until(((now >> AEM_TIMER_TICK_SHIFT) + 1) << AEM_TIMER_TICK_SHIFT);
		else
			drv_sleep(d, seq, NULL);	/* a kick bumps seq first */
	}
	return NULL;
}

/*
 * The generator's step returns when it wants the next one: at once after
 * progress, a generator's next due time at a rate, or, for a rate-0
 * generator facing a full ring, a fallback: it has asked the core to kick
 * us when the consumer makes room (its next enter, wait or poll arming),
 * so we sleep on the kick word until then.  No yield loop: a sleeping
 * generator wakes once per kick.
 */
#define GEN_TIMER_SLACK_NS	1000UL	/* a 20 us fallback must not become 70 us */

static void *gen_main(void *arg)
{
	struct driver *d = arg;

	prctl(PR_SET_TIMERSLACK, GEN_TIMER_SLACK_NS, 0, 0, 0);
	for (;;) {
		/* Before the step: a kick after this (room, a new generator) ends the sleep below.
		 * kick before stop, as in timer_main. */
		uint32_t seq = __atomic_load_n(&d->kick, __ATOMIC_ACQUIRE);
		uint64_t now, next, nap;
		struct timespec ts;

		if (drv_stopping(d))
			break;
		now = aem_now_ns();
		next = aem_gen_step(now);

		if (next == AEM_GEN_IDLE) {
			drv_sleep(d, seq, NULL);
			continue;
		}
		if (next <= now)
			continue;
		nap = next - now;
		ts.tv_sec = (time_t)(nap / 1000000000ULL);
		ts.tv_nsec = (long)(nap % 1000000000ULL);
		drv_sleep(d, seq, &ts);
	}
	return NULL;
}

static void drv_kick(struct driver *d, void *(*fn)(void *))
{
	if (!__atomic_load_n(&d->running, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&host_mu);
		if (!d->running && host_rings > 0) {
			d->stop = false;
			if (pthread_create(&d->thr, NULL, fn, d) == 0)
				__atomic_store_n(&d->running, true, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&host_mu);
	}
	__atomic_add_fetch(&d->kick, 1, __ATOMIC_SEQ_CST);	/* then the load: pairs with drv_sleep() */
	if (__atomic_load_n(&d->asleep, __ATOMIC_SEQ_CST))
		__aem_futex(&d->kick, FUTEX_WAKE, INT_MAX, NULL);
}

/* Under host_mu.  The drivers never take host_mu, so joining here cannot deadlock. */
static void drv_stop(struct driver *d)
{
	if (!d->running)
		return;
	__atomic_store_n(&d->stop, true, __ATOMIC_RELEASE);
	__atomic_add_fetch(&d->kick, 1, __ATOMIC_RELEASE);
	__aem_futex(&d->kick, FUTEX_WAKE, INT_MAX, NULL);
	pthread_join(d->thr, NULL);
	__atomic_store_n(&d->running, false, __ATOMIC_RELEASE);
}

void aem_host_timer_kick(void)
{
	drv_kick(&timer_drv, timer_main);
}

void aem_host_gen_kick(void)
{
	drv_kick(&gen_drv, gen_main);
}

/* One process, one user: the euid, no namespace (a post's check always passes). */
void aem_host_cred_get(struct aem_cred *c)
{
	c->uid = (u32)geteuid();
	c->ns = NULL;
}

void aem_host_cred_put(struct aem_cred *c)
{
	(void)c;
}

u32 aem_host_random_u32(void)
{
	static u64 state;
	u32 v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	/* No entropy yet: ids need only differ, not be secret, in one process. */
	return (u32)(__atomic_add_fetch(&state, 0x9e3779b97f4a7c15ull, __ATOMIC_RELAXED) >> 32);
}

int __aem_emb_grant(struct __aem_emb *e, uint32_t uid, uint32_t flags)
{
	return aem_core_grant(e->core, uid, flags);
}

void aem_host_wake(struct aem_ctx *r, void *host, bool urgent)
{
	struct __aem_emb *e = host;
	uint64_t one = 1;

	(void)urgent;
	/*
	 * One futex wake per sleep, not per post: a producer posting event
	 * after event while the waiter is still waking up pays nothing more.
	 * The waiter arms before its Dekker barrier, so a wake that finds it
	 * unarmed happened before the waiter re-checked the tails.
	 */
	if (__atomic_load_n(&e->nwait, __ATOMIC_SEQ_CST) &&
	    __atomic_exchange_n(&e->wake_armed, 0, __ATOMIC_SEQ_CST)) {
		__atomic_add_fetch(&e->wseq, 1, __ATOMIC_SEQ_CST);
		__aem_futex(&e->wseq, FUTEX_WAKE, INT_MAX, NULL);
	}
	if (aem_core_poll_take(r)) {
		ssize_t n = write(e->efd, &one, sizeof(one));

		(void)n;	/* EAGAIN: the counter is already non-zero, the fd readable */
	}
}

/* ---------------------------------------------------------------------- */
/* The ring's memory account: the module's rule, per ring                  */

#define EMB_DEFAULT_RING_MB	1024	/* the module's max_ring_mb default */

/* The module's max_ring_mb: AEM_MAX_RING_MB in the environment, else its default. */
static uint64_t emb_max_ring_bytes(void)
{
	const char *v = getenv("AEM_MAX_RING_MB");
	char *end;
	unsigned long long mb;

	if (!v || !*v)
		return (uint64_t)EMB_DEFAULT_RING_MB << 20;
	errno = 0;
	mb = strtoull(v, &end, 10);
	if (errno || *end || mb > (UINT64_MAX >> 20))
		return (uint64_t)EMB_DEFAULT_RING_MB << 20;
	return (uint64_t)mb << 20;
}

/* Whether the process may lock memory without limit (CAP_IPC_LOCK in its effective set). */
static bool emb_memlock_exempt(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		return false;
	return data[CAP_IPC_LOCK / 32].effective & (1U << (CAP_IPC_LOCK % 32));
}

/*
 * The budget of a ring of @regions bytes: max_ring_mb's, and RLIMIT_MEMLOCK's
 * unless exempt, as the module would charge it (there per user, here per
 * ring).  -E2BIG past max_ring_mb, -ENOMEM past RLIMIT_MEMLOCK, as setup
 * on the module.
 */
static int emb_budget(uint64_t regions, uint64_t *budget)
{
	uint64_t max = emb_max_ring_bytes();
	struct rlimit rl;

	if (regions > max)
		return -E2BIG;
	if (!emb_memlock_exempt() && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < max)
		max = (uint64_t)rl.rlim_cur;
	if (regions > max)
		return -ENOMEM;
	*budget = max;
	return 0;
}

int aem_host_charge(void *host, u64 bytes, bool force)
{
	struct __aem_emb *e = host;
	bool over = e->charged + bytes > e->budget;

	if (over && !force)
		return -ENOMEM;
	e->charged += bytes;
	return over ? AEM_CHARGE_OVER : 0;
}

void aem_host_uncharge(void *host, u64 bytes)
{
	struct __aem_emb *e = host;

	e->charged -= bytes;
}

/*
 * Every ring of this backend lives in this process: the sender is this
 * process, its pid and effective uid.  System calls are dear here (a
 * getpid and a geteuid cost microseconds in some virtual machines), so
 * the uid is read once per submission, not per post: each entry into
 * the core from a thread (submit, call) invalidates the thread's copy,
 * and the first message it posts reads it.  A uid changed between two
 * submissions is seen at the next.  The pid changes only in a fork's
 * child, which forgets the process's copy.
 */
static __thread struct {
	bool	valid;
	uid_t	uid;
} sender_cache;

static pid_t sender_pid;	/* 0: not read since start or the last fork */

static void sender_forget(void)
{
	sender_cache.valid = false;
}

static void sender_forget_pid(void)
{
	__atomic_store_n(&sender_pid, 0, __ATOMIC_RELAXED);
}

void aem_host_sender(void *target_host, struct aem_sender *out)
{
	pid_t pid = __atomic_load_n(&sender_pid, __ATOMIC_RELAXED);

	(void)target_host;
	if (!pid) {
		pid = getpid();
		__atomic_store_n(&sender_pid, pid, __ATOMIC_RELAXED);
	}
	if (!sender_cache.valid) {
		sender_cache.uid = geteuid();
		sender_cache.valid = true;
	}
	out->pid = pid;
	out->uid = sender_cache.uid;
}

static void host_init(void)
{
	if (pthread_atfork(NULL, NULL, sender_forget_pid)) {
		host_init_err = -ENOMEM;
		return;
	}
	host_init_err = aem_core_init();
	if (!host_init_err)
		host_init_err = aem_sources_init();
	if (!host_init_err)
		host_init_err = aem_core_register_source(&aem_timer_source_ops);
	if (!host_init_err)
		host_init_err = aem_core_register_source(&aem_gen_source_ops);
	if (!host_init_err)
		host_init_err = aem_core_register_source(&__aem_fd_source_ops);
	if (!host_init_err)
		host_init_err = aem_core_register_source(&__aem_proc_source_ops);
	if (!host_init_err)
		host_init_err = aem_core_register_source(&__aem_sock_source_ops);
}

/* ---------------------------------------------------------------------- */
/* The submission poller: one thread per AEM_SETUP_SQPOLL ring            */

/*
 * A POST whose target is full stays at the SQ head: the poller looks again
 * after a pause that doubles while it finds no room, so a stalled ring
 * costs a wake-up a millisecond, not a core.
 */
#define SQP_STALL_NS_MIN	20000ULL
#define SQP_STALL_NS_MAX	1000000ULL

static void sqp_nap(uint64_t ns)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ns };

	nanosleep(&ts, NULL);
}

static bool sqp_stopping(struct __aem_emb *e)
{
	return __atomic_load_n(&e->sqp_stop, __ATOMIC_ACQUIRE);
}

static void *sqp_main(void *arg)
{
	struct __aem_emb *e = arg;
	uint64_t idle_ns = (uint64_t)aem_core_sq_idle_ms(e->core) * 1000000ULL;
	uint64_t last = aem_now_ns(), stall = 0;

	while (!sqp_stopping(e)) {
		uint32_t seq;

		sender_forget();	/* each round is a submission of its own (aem_host_sender) */
		if (aem_core_sqpoll_round(e->core) > 0) {
			last = aem_now_ns();
			stall = 0;
			continue;
		}
		if (aem_core_sq_pending(e->core)) {
			stall = stall ? stall * 2 : SQP_STALL_NS_MIN;
			if (stall > SQP_STALL_NS_MAX)
				stall = SQP_STALL_NS_MAX;
			sqp_nap(stall);
			continue;
		}
		stall = 0;
		if (aem_now_ns() - last < idle_ns) {
			/*
			 * The user-space cond_resched(): a poller that found no work
			 * lets the threads that share its core run (a producer, on a
			 * busy machine), and looks again when it is scheduled.
			 */
			sched_yield();
			continue;
		}
		/* kick before the flag: a wake-up after this read ends the futex wait below */
		seq = __atomic_load_n(&e->sqp_kick, __ATOMIC_SEQ_CST);
		if (aem_core_sqpoll_sleep_begin(e->core)) {
			/* Dekker with sqp_wake(), as drv_sleep() with drv_kick() */
			__atomic_store_n(&e->sqp_asleep, 1, __ATOMIC_SEQ_CST);
			if (!sqp_stopping(e))
				__aem_futex(&e->sqp_kick, FUTEX_WAIT, seq, NULL);
			__atomic_store_n(&e->sqp_asleep, 0, __ATOMIC_RELAXED);
			aem_core_sqpoll_sleep_end(e->core);
		}
		last = aem_now_ns();
	}
	return NULL;
}

/* AEM_ENTER_SQ_WAKEUP: the futex only when the poller sleeps in it. */
static void sqp_wake(struct __aem_emb *e)
{
	__atomic_add_fetch(&e->sqp_kick, 1, __ATOMIC_SEQ_CST);	/* then the load: pairs with sqp_main() */
	if (__atomic_load_n(&e->sqp_asleep, __ATOMIC_SEQ_CST))
		__aem_futex(&e->sqp_kick, FUTEX_WAKE, INT_MAX, NULL);
}

static int sqp_start(struct __aem_emb *e)
{
	int ret = pthread_create(&e->sqp_thr, NULL, sqp_main, e);

	if (ret)
		return -ret;
	e->sqp_running = true;
	return 0;
}

/* Before the core goes: the poller is the ring's SQ consumer. */
static void sqp_stop(struct __aem_emb *e)
{
	if (!e->sqp_running)
		return;
	__atomic_store_n(&e->sqp_stop, true, __ATOMIC_RELEASE);
	__atomic_add_fetch(&e->sqp_kick, 1, __ATOMIC_SEQ_CST);
	__aem_futex(&e->sqp_kick, FUTEX_WAKE, INT_MAX, NULL);
	pthread_join(e->sqp_thr, NULL);
	e->sqp_running = false;
}

void __aem_emb_sq_wakeup(struct __aem_emb *e)
{
	if (e->sqp_running)
		sqp_wake(e);
}

/* ---------------------------------------------------------------------- */
/* Rings                                                                  */

int __aem_emb_create(struct aem_params *p, struct __aem_emb **out, int *memfd,
		     uint64_t off[AEM_NR_REGIONS], int *efd)
{
	void *regions[AEM_NR_REGIONS];
	struct aem_layout l;
	struct __aem_emb *e;
	size_t total = 0;
	u32 ring_id, i;
	int fd = -1, ret;

	pthread_once(&host_once, host_init);
	if (host_init_err)
		return host_init_err;
	ret = aem_core_layout(p, p->flags & AEM_SETUP_SQPOLL ? AEM_FEAT_SQPOLL : 0, &l);
	if (ret)
		return ret;
	/*
	 * The boost is the module's: it raises a task sleeping in its enter.
	 * Here nothing would apply it, so the flag is refused, not ignored
	 * (goaem boosts its handler threads itself, WithBoost).
	 */
	if (p->flags & AEM_SETUP_BOOST)
		return -EOPNOTSUPP;
	e = aem_zalloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->efd = -1;
	e->payload_fd = -1;
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		off[i] = total;
		total += l.region_size[i];
	}
	ret = emb_budget(total, &e->budget);
	if (ret)
		goto err;
	e->charged = total;
	fd = memfd_create("aem", MFD_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto err;
	}
	if (ftruncate(fd, (off_t)total) < 0) {
		ret = -errno;
		goto err;
	}
	e->map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (e->map == MAP_FAILED) {
		ret = -errno;
		e->map = NULL;
		goto err;
	}
	e->map_len = total;
	for (i = 0; i < AEM_NR_REGIONS; i++)
		regions[i] = (char *)e->map + off[i];
	e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->efd < 0) {
		ret = -errno;
		goto err;
	}
	e->payload_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);	/* setup.c closes fd once mapped */
	if (e->payload_fd < 0) {
		ret = -errno;
		goto err;
	}
	e->payload_off = off[AEM_REGION_PAYLOAD];
	pthread_mutex_lock(&host_mu);
	host_rings++;
	pthread_mutex_unlock(&host_mu);
	ret = aem_core_ring_create(p, &l, regions, e, &e->core, &ring_id);
	if (ret) {
		pthread_mutex_lock(&host_mu);
		host_rings--;
		pthread_mutex_unlock(&host_mu);
		goto err;
	}
	/* Armed from the start: a poller that never drained still hears the first event. */
	aem_core_poll_arm(e->core);
	if (aem_core_sqpoll(e->core)) {
		ret = sqp_start(e);
		if (ret) {
			aem_core_ring_destroy(e->core);
			pthread_mutex_lock(&host_mu);
			host_rings--;
			pthread_mutex_unlock(&host_mu);
			goto err;
		}
	}
	p->ring_id = ring_id;
	*out = e;
	*memfd = fd;
	*efd = e->efd;
	return 0;
err:
	if (e->efd >= 0)
		close(e->efd);
	if (e->payload_fd >= 0)
		close(e->payload_fd);
	if (e->map)
		munmap(e->map, e->map_len);
	if (fd >= 0)
		close(fd);
	free(e);
	return ret;
}

void __aem_emb_destroy(struct __aem_emb *e)
{
	sqp_stop(e);
	aem_core_ring_destroy(e->core);
	munmap(e->map, e->map_len);
	close(e->efd);
	close(e->payload_fd);
	free(e);
	pthread_mutex_lock(&host_mu);
	if (--host_rings == 0) {
		drv_stop(&timer_drv);
		drv_stop(&gen_drv);
		__aem_fd_source_stop();
		__aem_proc_source_stop();
		__aem_sock_source_stop();
	}
	pthread_mutex_unlock(&host_mu);
}

void __aem_emb_shutdown(struct __aem_emb *e)
{
	/* down before the bump: a waiter that reads the new wseq sees down */
	__atomic_store_n(&e->down, true, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&e->wseq, 1, __ATOMIC_SEQ_CST);
	__aem_futex(&e->wseq, FUTEX_WAKE, INT_MAX, NULL);
}

int __aem_emb_submit(struct __aem_emb *e, unsigned to_submit)
{
	/* The poller is the SQ's only consumer: an enter wakes it, and moves the backlog. */
	if (e->sqp_running) {
		sqp_wake(e);
		to_submit = 0;
	}
	sender_forget();
	return aem_core_submit(e->core, to_submit);
}

int __aem_emb_wait(struct __aem_emb *e, unsigned min, int64_t timeout_ns)
{
	uint64_t deadline = timeout_ns > 0 ? aem_now_ns() + (uint64_t)timeout_ns : 0;
	int ret = 0;

	for (;;) {
		struct timespec ts, *tsp = NULL;
		uint32_t seq;

		aem_core_flush_backlog(e->core);
		if (aem_core_cq_ready(e->core, min))
			return 0;
		if (timeout_ns == 0)
			return -ETIME;
		if (timeout_ns > 0) {
			uint64_t now = aem_now_ns();

			if (now >= deadline)
				return -ETIME;
			ts.tv_sec = (time_t)((deadline - now) / 1000000000ULL);
			ts.tv_nsec = (long)((deadline - now) % 1000000000ULL);
			tsp = &ts;
		}
		seq = __atomic_load_n(&e->wseq, __ATOMIC_SEQ_CST);
		/* after reading seq: a shutdown after this read changes wseq, so the sleep below ends */
		if (__atomic_load_n(&e->down, __ATOMIC_SEQ_CST))
			return -ESHUTDOWN;
		__atomic_store_n(&e->wake_armed, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&e->nwait, 1, __ATOMIC_SEQ_CST);
		aem_core_wait_begin(e->core);	/* Dekker: announce, mb, re-check */
		if (aem_core_cq_ready(e->core, min))
			ret = 1;
		else if (__aem_futex(&e->wseq, FUTEX_WAIT, seq, tsp) < 0 && errno == EINTR)
			ret = -EINTR;	/* as the module's wait: a signal ends it */
		aem_core_wait_end(e->core);
		__atomic_sub_fetch(&e->nwait, 1, __ATOMIC_SEQ_CST);
		if (ret)
			return ret > 0 ? 0 : ret;
	}
}

int __aem_emb_drain(struct __aem_emb *e, bool read_counter)
{
	uint64_t v;

	if (read_counter && read(e->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return -errno;
	aem_core_poll_arm(e->core);	/* then the caller re-checks the rings and polls */
	return 0;
}

int __aem_emb_call(struct __aem_emb *e, struct aem_call_args *a, const void *req, void *resp)
{
	pthread_once(&host_once, host_init);
	if (host_init_err)
		return host_init_err;
	sender_forget();
	return aem_core_call(e->core, a, req, resp);
}

int __aem_emb_sub_stats(struct __aem_emb *e, struct aem_sub_stats *st)
{
	return aem_core_sub_stats(e->core, st);
}

int __aem_emb_payload_fd(struct __aem_emb *e, uint64_t *off)
{
	int fd = fcntl(e->payload_fd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	*off = e->payload_off;
	return fd;
}

int __aem_emb_ring_stats(struct __aem_emb *e, struct aem_ring_stats *st)
{
	aem_core_ring_stats(e->core, st);
	return 0;
}

/* Further implementations of the fd source (aem_embedded_source_impl), by impl - 2. */
static struct aem_source_ops emb_fd_impls[AEM_SRC_IMPLS - 1];
static pthread_mutex_t emb_impls_mu = PTHREAD_MUTEX_INITIALIZER;

int aem_embedded_source_impl(unsigned source, unsigned impl, bool add)
{
	struct aem_source_ops *ops;
	int ret = 0;

	if (source != AEM_SRC_FD || impl < 2 || impl > AEM_SRC_IMPLS)
		return -EINVAL;
	pthread_once(&host_once, host_init);
	if (host_init_err)
		return host_init_err;
	ops = &emb_fd_impls[impl - 2];
	pthread_mutex_lock(&emb_impls_mu);
	if (add && ops->impl) {
		ret = -EEXIST;
	} else if (add) {
		*ops = __aem_fd_source_ops;
		ops->impl = impl;
		ret = aem_core_register_source(ops);
		if (ret)
			memset(ops, 0, sizeof(*ops));
	} else if (!ops->impl) {
		ret = -ENOENT;
	} else {
		aem_core_unregister_source(ops);
		memset(ops, 0, sizeof(*ops));
	}
	pthread_mutex_unlock(&emb_impls_mu);
	return ret;
}

/* AEM_IOC_PROBE's answer from this process's source registry. */
int __aem_emb_probe(struct aem_probe *p)
{
	pthread_once(&host_once, host_init);
	if (host_init_err)
		return host_init_err;
	aem_core_probe(p, 0, AEM_SETUP_FLAGS_ALL & ~(AEM_SETUP_KERNEL | AEM_SETUP_BOOST));
	return 0;
}
