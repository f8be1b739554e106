/* SPDX-License-Identifier: MIT */
/*
 * aemfuzz: a fuzzer of the module's own surface, run inside the test VM
 * against /dev/aem.  Each case is a child process that takes random steps
 * from one seed: rings set up with random (often invalid) parameters,
 * random ioctls with random arguments (bad pointers, short buffers, unknown
 * numbers), mmap of random offsets, lengths and protections, random SQEs
 * (subscriptions of every source, the fd source on sockets, pipes and the
 * ring's own fd, the proc source on itself, its children and init; posts
 * and calls between its rings and to random addresses; writebacks and slot
 * releases of real and made-up references), scribbles on the shared ring
 * words, sockets passing ring fds by SCM_RIGHTS, forks and closes at any
 * point.
 *
 * What fails a case: the case hangs past its limit; it dies of a signal it
 * did not raise; an ioctl answers with an errno outside the documented set;
 * a CQE carries unknown flags or a result out of range; a ring's counters
 * do not balance (produced == delivered + backlog + dropped); or the kernel
 * log gains a report (BUG:, WARNING:, KASAN:, lockdep, ...) while it runs.
 * The failing case's seed is printed; `aemfuzz -r SEED -n STEPS` replays it
 * (the kernel's timing differs run to run, so a replay may need a few
 * tries: -c repeats it).  Crashers are kept as regression seeds in
 * fuzz/dev/seeds.txt, which `aemfuzz -f FILE` replays.
 *
 * Usage: aemfuzz [-s SEED] [-t SECONDS] [-c CASES] [-n STEPS] [-r SEED] [-f FILE] [-v]
 *   -s SEED     the run's seed (default: from the clock); case i's seed derives from it
 *   -t SECONDS  stop starting cases after this long (default 30)
 *   -c CASES    stop after this many cases (default: no limit)
 *   -n STEPS    steps per case (default 400)
 *   -r SEED     run the one case SEED (with -c: that many times)
 *   -f FILE     replay every "SEED [STEPS]" line of FILE (# comments)
 *   -v          print each case's seed
 * Exit: 0 no finding, 1 a finding (its seed printed), 77 no /dev/aem.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "aem_test.h"

#define MAX_RINGS	4
#define CASE_LIMIT_S	60	/* a case taking longer than this is a hang */

struct fring {
	int			fd;
	struct aem_params	p;
	void			*region[AEM_NR_REGIONS];
	size_t			size[AEM_NR_REGIONS];
	uint32_t		sq_tail;
	uint32_t		slot_entries;	/* the slot ring's size, read before any scribble */
	bool			scribbled;	/* its indices were overwritten: CQE contents are not checked */
	uint64_t		ids[16];	/* subscription and call ids seen */
	uint32_t		slots[16];	/* slot references seen */
	unsigned		nids, nslots;
};

static uint64_t rs;			/* the case's generator */
static struct fring rings[MAX_RINGS];
static int socks[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };
static int listener = -1;
static char *guard;			/* a page followed by PROT_NONE */
static unsigned steps_done;

static uint64_t rnd(void)
{
	return t_rand(&rs);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static bool chance(unsigned pct)
{
	return below(100) < pct;
}

/* A value biased towards edges: 0, 1, powers of two and their neighbours, all-ones. */
static uint64_t edgy(void)
{
	switch (below(8)) {
	case 0: return 0;
	case 1: return 1;
	case 2: return (1ull << below(64)) + (uint64_t)(below(3)) - 1;
	case 3: return ~0ull >> below(64);
	case 4: return below(4096);
	case 5: return (uint32_t)rnd();
	default: return rnd();
	}
}

static void fill(void *p, size_t n)
{
	uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (uint8_t)(chance(30) ? 0 : rnd());
}

#define finding(fmt, ...) do {								\
	fprintf(stderr, "aemfuzz: FINDING after %u steps: " fmt "\n", steps_done, ##__VA_ARGS__);	\
	exit(3);									\
} while (0)

/* Errnos the device may answer with; anything else is a finding. */
static void errno_ok(int e, const char *what)
{
	switch (e) {
	case EINVAL: case EFAULT: case ENOTTY: case EBADF: case ENOENT: case ENOSPC:
	case EBUSY: case EPERM: case EACCES: case EAGAIN: case ENOMEM: case ETIME:
	case ETIMEDOUT: case EINTR: case EEXIST: case E2BIG: case EOPNOTSUPP:
	case ECONNRESET: case ENXIO: case EOVERFLOW: case ENODEV: case EMFILE:
	case ENFILE: case ERANGE: case EPROTO: case ESRCH: case ENOTCONN: case EBADFD:
	case ENOTSOCK:
		return;
	}
	finding("%s: unexpected errno %d (%s)", what, e, strerror(e));
}

/* A pointer for an ioctl's argument: good, short, bad or at a page's edge. */
static void *arg_ptr(size_t want, void *good)
{
	switch (below(10)) {
	case 0: return NULL;
	case 1: return (void *)(uintptr_t)edgy();
	case 2: return (void *)0xffff888000000000ull;	/* kernel space */
	case 3: return guard + 4096 - (below(want + 1));	/* runs into PROT_NONE */
	default: return good;
	}
}

static uint32_t *rw32(struct fring *r, uint32_t off)
{
	if (!r->region[AEM_REGION_RINGS] || off + 4 > r->size[AEM_REGION_RINGS])
		return NULL;
	return (uint32_t *)((char *)r->region[AEM_REGION_RINGS] + off);
}

static void ring_close(struct fring *r)
{
	int i;

	for (i = 0; i < AEM_NR_REGIONS; i++)
		if (r->region[i] && chance(80))
			munmap(r->region[i], r->size[i]);
	/* Sometimes the fd goes first and the mappings stay till the process ends. */
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

static void random_params(struct aem_params *p)
{
	memset(p, 0, sizeof(*p));
	if (chance(70)) {
		p->sq_entries = 1u << below(10);
		p->cq_entries = 1u << below(11);
		p->nr_classes = 1 + (unsigned)below(AEM_MAX_CLASSES);
		p->slot_size = chance(50) ? 0 : 1u << (6 + below(8));
		p->slot_count = (unsigned)below(300);
		p->send_slots = (unsigned)below(8);
		p->backlog_limit = (unsigned)below(2048);
		p->api_version = chance(80) ? 0 : (unsigned)below(8);
		p->call_quota = (unsigned)below(64);
		if (chance(5))
			p->flags = (uint32_t)edgy();
		if (chance(5))
			p->resv[below(2)] = (uint32_t)edgy();
		if (chance(5))
			p->sq_idle_ms = (uint32_t)edgy();
	} else {
		fill(p, sizeof(*p));
	}
}

static void ring_open(void)
{
	static const uint64_t off[AEM_NR_REGIONS] = {
		AEM_OFF_RINGS, AEM_OFF_SQES, AEM_OFF_CQES, AEM_OFF_PAYLOAD,
	};
	struct fring *r = &rings[below(MAX_RINGS)];
	int i;

	if (r->fd >= 0)
		ring_close(r);
	r->fd = open(AEM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (r->fd < 0) {
		errno_ok(errno, "open");
		r->fd = -1;
		return;
	}
	random_params(&r->p);
	if (ioctl(r->fd, AEM_IOC_SETUP, &r->p) < 0) {
		errno_ok(errno, "SETUP");
		if (chance(50))
			ring_close(r);	/* else keep an fd that never set up */
		return;
	}
	if (chance(10) && ioctl(r->fd, AEM_IOC_SETUP, &r->p) == 0)
		finding("a second SETUP on one fd succeeded");
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		int prot = PROT_READ | (i == AEM_REGION_CQES ? 0 : PROT_WRITE);

		r->size[i] = r->p.region_size[i];
		if (!r->size[i] || chance(3))
			continue;
		r->region[i] = mmap(NULL, r->size[i], prot, MAP_SHARED, r->fd, (off_t)off[i]);
		if (r->region[i] == MAP_FAILED) {
			errno_ok(errno, "mmap of a region");
			r->region[i] = NULL;
		}
	}
	/* Offsets name words of the RINGS region; this one holds a value the fuzzer needs. */
	if (rw32(r, r->p.slot_off.ring_entries))
		r->slot_entries = *rw32(r, r->p.slot_off.ring_entries);
}

static struct fring *any_ring(void)
{
	struct fring *r = &rings[below(MAX_RINGS)];

	return r->fd >= 0 ? r : NULL;
}

/* ---- mmap ---------------------------------------------------------------- */

static void do_mmap(void)
{
	static const uint64_t offs[] = {
		AEM_OFF_RINGS, AEM_OFF_SQES, AEM_OFF_CQES, AEM_OFF_PAYLOAD, 0x40000000ull,
	};
	static const int prots[] = {
		PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE, PROT_READ | PROT_EXEC, PROT_NONE,
	};
	struct fring *r = any_ring();
	uint64_t off;
	size_t len;
	void *m;
	int prot;

	if (!r)
		return;
	off = offs[below(5)];
	if (chance(20))
		off += (below(5) - 2) * 4096;
	if (chance(5))
		off = edgy() & ~4095ull;
	len = chance(60) ? r->p.region_size[below(4)] : 4096 * below(64);
	if (chance(20))
		len += 4096 * below(3);
	if (chance(5))
		len = (size_t)edgy();
	prot = prots[below(5)];
	m = mmap(NULL, len, prot, chance(80) ? MAP_SHARED : MAP_PRIVATE, r->fd, (off_t)off);
	if (m == MAP_FAILED) {
		errno_ok(errno, "mmap");
		return;
	}
	if (prot & PROT_EXEC)
		finding("an executable mapping of the device was granted (offset %#llx)",
			(unsigned long long)off);
	if (chance(30)) {
		int e = mprotect(m, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);

		if (!e)
			finding("mprotect added PROT_EXEC to a device mapping (offset %#llx)",
				(unsigned long long)off);
	}
	if (chance(30) && len >= 4096) {
		/* Growing a device mapping must fail (VM_DONTEXPAND). */
		void *m2 = mremap(m, len, len + 4096, MREMAP_MAYMOVE);

		if (m2 != MAP_FAILED)
			finding("mremap grew a device mapping (offset %#llx)", (unsigned long long)off);
	}
	munmap(m, len);
}

/* ---- ioctls -------------------------------------------------------------- */

static void do_ioctl(void)
{
	static const unsigned long cmds[] = {
		AEM_IOC_SETUP, AEM_IOC_ENTER, AEM_IOC_SUB_STATS, AEM_IOC_RING_STATS,
		AEM_IOC_CALL, AEM_IOC_PROBE,
	};
	union {
		struct aem_params p;
		struct aem_enter e;
		struct aem_sub_stats ss;
		struct aem_ring_stats rs;
		struct aem_call_args c;
		struct aem_probe pr;
		uint8_t raw[1024];
	} u;
	uint8_t req[256], resp[256];
	struct fring *r = any_ring();
	unsigned long cmd;
	void *argp;
	int fd, ret;

	fd = r ? r->fd : -1;
	if (fd < 0 || chance(5)) {
		fd = open(AEM_DEVICE_PATH, O_RDWR | O_CLOEXEC);	/* a fresh fd without a ring */
		if (fd < 0)
			return;
	}
	fill(&u, sizeof(u));
	if (chance(85)) {
		cmd = cmds[below(6)];
	} else {
		/* Unknown numbers, known numbers with the wrong size or direction. */
		cmd = _IOC(below(4), chance(80) ? AEM_IOC_MAGIC : (unsigned)below(256),
			   (unsigned)below(32), (unsigned)below(1024));
	}
	switch (cmd) {
	case AEM_IOC_ENTER:
		u.e.flags &= chance(90) ? AEM_ENTER_FLAGS_ALL : ~0u;
		if (chance(90))
			memset(u.e.resv, 0, sizeof(u.e.resv));
		/* Bounded waits: a sleep is at most 20 ms. */
		u.e.timeout_ns = chance(50) ? 0 : (int64_t)below(20 * T_MS);
		u.e.min_complete = (uint32_t)below(4);
		if (chance(50))
			u.e.to_submit = (uint32_t)below(64);
		break;
	case AEM_IOC_SUB_STATS:
		if (r && r->nids && chance(70))
			u.ss.id = r->ids[below(r->nids)];
		break;
	case AEM_IOC_CALL:
		fill(req, sizeof(req));
		u.c.req = (uintptr_t)arg_ptr(sizeof(req), req);
		u.c.resp = (uintptr_t)arg_ptr(sizeof(resp), resp);
		u.c.req_len = (uint32_t)below(chance(90) ? sizeof(req) + 1 : 1u << 20);
		u.c.resp_cap = (uint32_t)below(chance(90) ? sizeof(resp) + 1 : 1u << 20);
		if (u.c.req_len > sizeof(req) && (void *)(uintptr_t)u.c.req == req)
			u.c.req_len = sizeof(req);
		if (u.c.resp_cap > sizeof(resp) && (void *)(uintptr_t)u.c.resp == resp)
			u.c.resp_cap = sizeof(resp);
		/* Nobody answers: keep each call short. */
		u.c.timeout_ms = 1 + (uint32_t)below(30);
		if (chance(3))
			u.c.timeout_ms = (uint32_t)edgy();
		if (u.c.timeout_ms > 30 && u.c.timeout_ms <= 60000)
			u.c.timeout_ms = 30;
		{
			struct fring *t = any_ring();

			u.c.addr = chance(70) && t ? AEM_ADDR(t->p.ring_id, below(4)) : edgy();
		}
		u.c.prio = (uint8_t)below(AEM_MAX_CLASSES + 1);
		if (chance(90)) {
			memset(u.c.resv0, 0, sizeof(u.c.resv0));
			memset(u.c.resv, 0, sizeof(u.c.resv));
		}
		break;
	case AEM_IOC_SETUP:
		random_params(&u.p);
		break;
	}
	argp = arg_ptr(_IOC_SIZE(cmd), &u);
	ret = ioctl(fd, cmd, argp);
	if (ret < 0)
		errno_ok(errno, "ioctl");
	if (ret == 0 && cmd == AEM_IOC_RING_STATS && argp == &u) {
		if (u.rs.delivered + u.rs.backlog + u.rs.dropped != u.rs.produced)
			finding("ring stats: delivered %llu + backlog %llu + dropped %llu != produced %llu",
				(unsigned long long)u.rs.delivered, (unsigned long long)u.rs.backlog,
				(unsigned long long)u.rs.dropped, (unsigned long long)u.rs.produced);
	}
	if (!r || fd != r->fd)
		close(fd);
}

/* ---- SQEs ---------------------------------------------------------------- */

static int any_fd(struct fring *r)
{
	switch (below(6)) {
	case 0: return socks[below(8)];
	case 1: return listener;
	case 2: return r->fd;		/* the ring's own fd */
	case 3: return rings[below(MAX_RINGS)].fd;
	case 4: return (int)below(64);
	default: return (int)edgy();
	}
}

static void fill_sqe(struct fring *r, struct aem_sqe *s)
{
	struct fring *t = any_ring();

	memset(s, 0, sizeof(*s));
	if (chance(10)) {
		fill(s, sizeof(*s));
		return;
	}
	s->opcode = (uint8_t)(chance(95) ? below(AEM_OP_LAST) : below(256));
	s->user_data = rnd();
	s->prio = (uint8_t)below(r->p.nr_classes + (chance(5) ? 4 : 0) + 1);
	if (chance(10))
		s->flags = (uint8_t)rnd();
	switch (s->opcode) {
	case AEM_OP_SUBSCRIBE:
		s->source = (uint8_t)(chance(95) ? below(AEM_SRC_LAST) : rnd());
		switch (s->source) {
		case AEM_SRC_TIMER:
			s->timer.first_ns = 1 + below(5 * T_MS);
			s->timer.interval_ns = chance(50) ? 0 : (chance(3) ? 1 : 100000 + below(5 * T_MS));
			break;
		case AEM_SRC_MSG:
			s->msg.channel = (uint32_t)below(4);
			break;
		case AEM_SRC_GEN:
			s->gen.rate = chance(20) ? 0 : below(200000);
			s->gen.count = chance(20) ? 0 : below(5000);
			s->gen.burst = (uint32_t)below(64);
			s->gen.payload_len = (uint32_t)below(r->p.slot_size + 64);
			break;
		case AEM_SRC_PROC:
			s->proc.events = (uint32_t)(chance(90) ? below(AEM_PROC_ALL + 1) : rnd());
			s->proc.pid = (uint32_t)(chance(30) ? 0 : chance(50) ? (uint32_t)getpid() :
						chance(50) ? 1 : (uint32_t)edgy());
			break;
		case AEM_SRC_FD:
			s->fd.fd = any_fd(r);
			s->fd.events = (uint32_t)(chance(90) ? below(AEM_FD_ALL + 1) : rnd());
			break;
		}
		if (chance(5))
			s->timer.resv[below(2)] = edgy();
		break;
	case AEM_OP_UNSUBSCRIBE:
	case AEM_OP_TIMER_SET:
	case AEM_OP_GEN_SET:
		s->target = r->nids && chance(80) ? r->ids[below(r->nids)] : edgy();
		if (s->opcode == AEM_OP_TIMER_SET) {
			s->timer.first_ns = 1 + below(5 * T_MS);
			s->timer.interval_ns = chance(50) ? 0 : 100000 + below(5 * T_MS);
		} else if (s->opcode == AEM_OP_GEN_SET) {
			s->gen.rate = below(100000);
			s->gen.count = below(1000);
			s->gen.burst = 1 + (uint32_t)below(16);
			s->gen.payload_len = (uint32_t)below(256);
		}
		break;
	case AEM_OP_WRITEBACK:
		s->target = r->nids && chance(80) ? r->ids[below(r->nids)] : edgy();
		s->len = (uint32_t)below(chance(90) ? AEM_SQE_INLINE + 1 : 1u << 20);
		if (r->nslots && chance(40)) {
			s->flags |= AEM_SQE_F_SLOT;
			s->slot = r->slots[below(r->nslots)];
		}
		s->arg = (uint32_t)(chance(20) ? below(AEM_CALL_ERRNO_MAX + 2) : 0);
		fill(s->data, sizeof(s->data));
		break;
	case AEM_OP_POST:
	case AEM_OP_CALL:
		s->target = t && chance(80) ? AEM_ADDR(t->p.ring_id, below(4)) : edgy();
		s->len = (uint32_t)below(chance(80) ? AEM_SQE_INLINE + 1 : r->p.slot_size + 2);
		if (chance(30)) {
			s->flags |= AEM_SQE_F_SLOT;
			s->slot = (uint32_t)below(r->p.send_slots + 2);
		}
		if (s->opcode == AEM_OP_CALL)
			s->arg = (uint32_t)(chance(95) ? below(50) : edgy());
		fill(s->data, sizeof(s->data));
		break;
	}
}

static void do_sqes(void)
{
	struct fring *r = any_ring();
	struct aem_enter e = { 0 };
	unsigned n, i;
	uint32_t *khead, *ktail;

	if (!r || !r->region[AEM_REGION_SQES] || !(khead = rw32(r, r->p.sq_off.head)) ||
	    !(ktail = rw32(r, r->p.sq_off.tail)))
		return;
	n = 1 + (unsigned)below(16);
	for (i = 0; i < n; i++) {
		uint32_t head = __atomic_load_n(khead, __ATOMIC_ACQUIRE);
		struct aem_sqe *s;

		if (r->sq_tail - head >= r->p.sq_entries)
			break;
		s = (struct aem_sqe *)r->region[AEM_REGION_SQES] + (r->sq_tail & (r->p.sq_entries - 1));
		fill_sqe(r, s);
		r->sq_tail++;
	}
	__atomic_store_n(ktail, r->sq_tail, __ATOMIC_RELEASE);
	e.to_submit = chance(90) ? n : (uint32_t)edgy();
	if (chance(30)) {
		e.flags = AEM_ENTER_GETEVENTS;
		e.min_complete = 1 + (uint32_t)below(4);
		e.timeout_ns = (int64_t)below(10 * T_MS);
	}
	if (ioctl(r->fd, AEM_IOC_ENTER, &e) < 0)
		errno_ok(errno, "ENTER");
}

/* ---- reaping ------------------------------------------------------------- */

static void check_cqe(struct fring *r, const struct aem_cqe *c, bool result)
{
	const uint32_t known = AEM_CQE_F_RESULT | AEM_CQE_F_SLOT | AEM_CQE_F_CALL | AEM_CQE_F_FINAL |
			       AEM_CQE_F_TRUNC | AEM_CQE_F_STATS | (1u << 6) | (1u << 7);

	/* Scribbled indices make this reader take entries never written: its own doing. */
	if (!r->scribbled) {
		if (c->flags & ~known)
			finding("CQE with unknown flags %#x", c->flags);
		if (result != !!(c->flags & AEM_CQE_F_RESULT))
			finding("CQE flags %#x in the %s ring", c->flags, result ? "result" : "event");
		if (c->res < -4095)
			finding("CQE res %d", c->res);
	}
	if (c->id && r->nids < 16)
		r->ids[r->nids++] = c->id;
	else if (c->id)
		r->ids[below(16)] = c->id;
	if (c->flags & AEM_CQE_F_SLOT) {
		if (r->nslots < 16)
			r->slots[r->nslots++] = c->slot;
		else
			r->slots[below(16)] = c->slot;
	}
}

/* @entries: from the parameters, not from the ring's words (which the fuzzer scribbles on). */
static void reap_ring(struct fring *r, const struct aem_ring_offsets *o, uint32_t entries, bool result)
{
	uint32_t *kh = rw32(r, o->head), *kt = rw32(r, o->tail), head, tail, mask, n = 0;
	const struct aem_cqe *cqes;

	if (!kh || !kt || !r->region[AEM_REGION_CQES] || !entries || (entries & (entries - 1)))
		return;
	mask = entries - 1;
	head = *kh;
	tail = __atomic_load_n(kt, __ATOMIC_ACQUIRE);
	cqes = (const struct aem_cqe *)((char *)r->region[AEM_REGION_CQES] + o->array);
	while (head != tail && n++ < entries) {
		if ((size_t)o->array + ((head & mask) + 1) * sizeof(struct aem_cqe) > r->size[AEM_REGION_CQES])
			finding("CQ ring array beyond the CQES region");
		check_cqe(r, &cqes[head & mask], result);
		head++;
	}
	if (chance(5)) {
		head = (uint32_t)edgy();
		r->scribbled = true;
	}
	__atomic_store_n(kh, head, __ATOMIC_RELEASE);
}

static void release_slots(struct fring *r)
{
	const struct aem_ring_offsets *so = &r->p.slot_off;
	uint32_t *kt = rw32(r, so->tail), t, *arr, entries = r->slot_entries;
	unsigned i, n;

	if (!kt || !entries || (entries & (entries - 1)) || !rw32(r, so->array + 4 * (entries - 1)))
		return;
	arr = rw32(r, so->array);
	t = *kt;
	n = (unsigned)below(r->nslots + 2);
	for (i = 0; i < n && i < entries; i++)
		arr[(t + i) & (entries - 1)] = r->nslots && chance(80) ?
			r->slots[below(r->nslots)] : (uint32_t)edgy();
	__atomic_store_n(kt, t + n, __ATOMIC_RELEASE);
	r->nslots = 0;
}

static void do_reap(void)
{
	struct fring *r = any_ring();
	unsigned c;

	if (!r || !r->p.nr_classes || r->p.nr_classes > AEM_MAX_CLASSES)
		return;
	reap_ring(r, &r->p.res_off, 2 * r->p.sq_entries, true);
	for (c = 0; c < r->p.nr_classes; c++)
		reap_ring(r, &r->p.cq_off[c], r->p.cq_entries, false);
	if (chance(70))
		release_slots(r);
}

/* Overwrite a word of the shared RINGS region, or of an SQE in flight. */
static void do_scribble(void)
{
	struct fring *r = any_ring();
	unsigned i, n = 1 + (unsigned)below(4);

	if (!r || !r->region[AEM_REGION_RINGS])
		return;
	r->scribbled = true;
	for (i = 0; i < n; i++) {
		size_t words = r->size[AEM_REGION_RINGS] / 4;
		uint32_t *w = (uint32_t *)r->region[AEM_REGION_RINGS] + below(words);

		if (chance(50)) {
			/* One of the published index words. */
			const struct aem_ring_offsets *o = chance(30) ? &r->p.sq_off :
				chance(30) ? &r->p.slot_off : chance(30) ? &r->p.res_off :
				&r->p.cq_off[below(AEM_MAX_CLASSES)];
			uint32_t *x = rw32(r, chance(50) ? o->head : o->tail);

			if (x)
				w = x;
		}
		__atomic_store_n(w, chance(50) ? (uint32_t)edgy() : *w + (uint32_t)(below(5) - 2),
				 __ATOMIC_RELEASE);
	}
	if (r->region[AEM_REGION_SQES] && chance(30))
		fill((char *)r->region[AEM_REGION_SQES] + 64 * below(r->p.sq_entries), 64);
}

/* ---- sockets, processes -------------------------------------------------- */

static void send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte = 'x';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void do_socket(void)
{
	unsigned i = (unsigned)below(4) * 2;
	char buf[64] = "aemfuzz";

	switch (below(6)) {
	case 0:
		if (socks[i] >= 0) {
			close(socks[i]);
			close(socks[i + 1]);
			socks[i] = socks[i + 1] = -1;
		}
		if (socketpair(AF_UNIX, chance(50) ? SOCK_STREAM : SOCK_DGRAM, 0, &socks[i]) < 0)
			socks[i] = socks[i + 1] = -1;
		break;
	case 1:
		if (socks[i] >= 0)
			(void)!write(socks[i], buf, 1 + below(sizeof(buf)));
		break;
	case 2:
		if (socks[i + 1] >= 0)
			(void)!recv(socks[i + 1], buf, sizeof(buf), MSG_DONTWAIT);
		break;
	case 3: {
		/* A ring's fd into a watched socket's queue (the cycle of issue 16, finding 1). */
		struct fring *r = any_ring();

		if (r && socks[i] >= 0)
			send_fd(socks[i], r->fd);
		break;
	}
	case 4:
		if (socks[i + (unsigned)below(2)] >= 0)
			shutdown(socks[i + (unsigned)below(2)], SHUT_RDWR);
		break;
	default:
		if (listener >= 0) {
			struct sockaddr_un a = { .sun_family = AF_UNIX };
			int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

			snprintf(a.sun_path, sizeof(a.sun_path), "/tmp/aemfuzz.%d", (int)getpid());
			if (c >= 0) {
				connect(c, (struct sockaddr *)&a, sizeof(a));
				if (chance(50))
					close(c);	/* else kept open till the case ends */
			}
		}
		break;
	}
}

static void do_fork(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct fring *r = any_ring();
		struct aem_ring_stats st;

		/* The child uses an inherited ring a little, then exits or execs. */
		if (r)
			ioctl(r->fd, AEM_IOC_RING_STATS, &st);
		if (chance(30))
			execl("/bin/true", "true", (char *)NULL);
		_exit(0);
	}
	if (pid > 0 && chance(70))
		waitpid(pid, NULL, 0);
}

static void do_close(void)
{
	struct fring *r = any_ring();

	if (r)
		ring_close(r);
}

/* The kinds of step and their shares of a case, in percent (summing to 100). */
static const struct {
	unsigned	percent;
	void		(*fn)(void);
} step_kinds[] = {
	{ 8, ring_open }, { 12, do_ioctl }, { 6, do_mmap }, { 30, do_sqes }, { 20, do_reap },
	{ 8, do_scribble }, { 9, do_socket }, { 3, do_fork }, { 4, do_close },
};

static void run_case(uint64_t seed, unsigned steps)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	unsigned i;

	rs = seed ? seed : 1;
	for (i = 0; i < MAX_RINGS; i++)
		rings[i].fd = -1;
	guard = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guard == MAP_FAILED)
		finding("guard page: %s", strerror(errno));
	mprotect(guard + 4096, 4096, PROT_NONE);
	listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "/tmp/aemfuzz.%d", (int)getpid());
	unlink(a.sun_path);
	if (listener >= 0 && (bind(listener, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(listener, 8) < 0)) {
		close(listener);
		listener = -1;
	}
	for (steps_done = 0; steps_done < steps; steps_done++) {
		unsigned k = (unsigned)below(100);

		for (i = 0; k >= step_kinds[i].percent; i++)
			k -= step_kinds[i].percent;
		step_kinds[i].fn();
	}
	unlink(a.sun_path);
	/* Everything else closes with the process: rings, sockets, mappings. */
}

/* ---- the parent: cases in children, the kernel log between them ------- */

static const char *report_re[] = {
	"BUG:", "WARNING:", "Oops", "KASAN:", "UBSAN:", "general protection", "kernel BUG",
	"possible circular locking", "inconsistent lock state", "possible recursive locking",
	"suspicious RCU usage", "sleeping function called from invalid context",
	"refcount_t:", "list_add corruption", "list_del corruption", "blocked for more than",
};

/* New kernel log records since the last look; the first report line found, or NULL. */
static const char *kmsg_report(int kfd, char *line, size_t cap)
{
	const char *found = NULL;
	ssize_t n;

	if (kfd < 0)
		return NULL;
	for (;;) {
		n = read(kfd, line, cap - 1);
		if (n < 0) {
			if (errno == EPIPE)	/* records overwritten: carry on from the next */
				continue;
			break;
		}
		line[n] = 0;
		for (size_t i = 0; !found && i < sizeof(report_re) / sizeof(report_re[0]); i++)
			if (strstr(line, report_re[i]))
				found = line;
		if (found)
			break;
	}
	return found;
}

/* Run one case in a child; 0 clean, 1 a finding (printed). */
static int one_case(uint64_t seed, unsigned steps, int kfd, bool verbose)
{
	char line[2048];
	const char *rep;
	int status;
	pid_t pid;
	uint64_t end;

	if (verbose)
		printf("aemfuzz: case %#" PRIx64 " (%u steps)\n", seed, steps);
	pid = fork();
	if (pid < 0) {
		perror("aemfuzz: fork");
		return 1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		run_case(seed, steps);
		_exit(0);
	}
	end = t_now_ns() + CASE_LIMIT_S * 1000 * T_MS;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);

		if (w == pid)
			break;
		if (t_now_ns() > end) {
			printf("aemfuzz: FAIL: case %#" PRIx64 " still running after %d s (a hang); "
			       "replay: aemfuzz -r %#" PRIx64 " -n %u\n", seed, CASE_LIMIT_S, seed, steps);
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			return 1;
		}
		usleep(10000);
	}
	/* Children the case left behind (forked, exec'd) go with it. */
	kill(-pid, SIGKILL);
	while (waitpid(-pid, NULL, WNOHANG) > 0)
		;
	if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status))) {
		printf("aemfuzz: FAIL: case %#" PRIx64 " %s %d; replay: aemfuzz -r %#" PRIx64 " -n %u\n",
		       seed, WIFSIGNALED(status) ? "killed by signal" : "exited", WIFSIGNALED(status) ?
		       WTERMSIG(status) : WEXITSTATUS(status), seed, steps);
		return 1;
	}
	rep = kmsg_report(kfd, line, sizeof(line));
	if (rep) {
		printf("aemfuzz: FAIL: kernel report during case %#" PRIx64 ": %s"
		       "aemfuzz: replay: aemfuzz -r %#" PRIx64 " -n %u\n", seed, rep, seed, steps);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t seed = 0, one = 0, cases = 0, limit_cases = 0;
	unsigned steps = 400, secs = 30;
	const char *file = NULL;
	bool verbose = false, have_one = false;
	int opt, kfd, fd;
	uint64_t end;

	while ((opt = getopt(argc, argv, "s:t:c:n:r:f:v")) != -1) {
		switch (opt) {
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 't': secs = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'c': limit_cases = strtoull(optarg, NULL, 0); break;
		case 'n': steps = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'r': one = strtoull(optarg, NULL, 0); have_one = true; break;
		case 'f': file = optarg; break;
		case 'v': verbose = true; break;
		default:
			fprintf(stderr, "usage: aemfuzz [-s SEED] [-t SECONDS] [-c CASES] [-n STEPS] "
				"[-r SEED] [-f FILE] [-v]\n");
			return 2;
		}
	}
	fd = open(AEM_DEVICE_PATH, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("SKIP: %s: %s\n", AEM_DEVICE_PATH, strerror(errno));
		return 77;
	}
	close(fd);
	/* The kernel log from now on: /dev/kmsg positioned at its end. */
	kfd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kfd >= 0)
		lseek(kfd, 0, SEEK_END);
	else
		printf("aemfuzz: no /dev/kmsg (%s): kernel reports are left to the harness\n",
		       strerror(errno));
	signal(SIGPIPE, SIG_IGN);

	if (file) {
		FILE *f = fopen(file, "r");
		char buf[256];
		unsigned n = 0;

		if (!f) {
			printf("aemfuzz: %s: %s\n", file, strerror(errno));
			return 1;
		}
		while (fgets(buf, sizeof(buf), f)) {
			char *end_p;
			uint64_t s = strtoull(buf, &end_p, 0);
			unsigned st = (unsigned)strtoul(end_p, NULL, 0);

			if (buf[0] == '#' || end_p == buf)
				continue;
			n++;
			if (one_case(s, st ? st : steps, kfd, verbose))
				return 1;
		}
		fclose(f);
		printf("aemfuzz: replayed %u regression seed(s) from %s: clean\n", n, file);
		return 0;
	}
	if (have_one) {
		uint64_t i, reps = limit_cases ? limit_cases : 1;

		for (i = 0; i < reps; i++)
			if (one_case(one, steps, kfd, verbose))
				return 1;
		printf("aemfuzz: case %#" PRIx64 " x%" PRIu64 ": clean\n", one, reps);
		return 0;
	}
	if (!seed)
		seed = t_now_ns() ^ ((uint64_t)getpid() << 40);
	printf("aemfuzz: seed %#" PRIx64 " (-s reproduces the run), %u s, %u steps a case\n",
	       seed, secs, steps);
	end = t_now_ns() + (uint64_t)secs * 1000 * T_MS;
	while (t_now_ns() < end && (!limit_cases || cases < limit_cases)) {
		uint64_t cs = t_rand(&seed);

		if (one_case(cs, steps, kfd, verbose))
			return 1;
		cases++;
	}
	printf("aemfuzz: %" PRIu64 " cases, clean\n", cases);
	return 0;
}
