/* SPDX-License-Identifier: MIT */
/*
 * Remote producer lanes (docs/PROTOCOL.md, "Remote lanes"): producers in
 * other processes post into lanes the module maps into both.
 *
 * Embedded backend: setup with remote_lanes and aem_lane_open_remote() are
 * refused with -EOPNOTSUPP, nothing else is checked.
 *
 * Module:
 *  - refusals change nothing: bad arguments -EINVAL, unknown ring or
 *    channel -ENOENT, a ring that takes no lanes -ENOSPC, another user
 *    without a grant -EACCES, granted but past RLIMIT_MEMLOCK -ENOMEM (both
 *    as root), no note reaches the consumer;
 *  - PRODUCERS processes, one of them dying without closing its lane:
 *    every record arrives, in order per producer, none malformed, and
 *    every lane ends drained (AEM_LANE_P_CLOSED set by close or death);
 *  - a consumer asleep in aem_wait() is woken by a producer's kick (a KICK
 *    note; fewer kick notes than records: one unread kick per lane), and a slot given back is reused with a new generation: the old
 *    (slot, gen) no longer maps;
 *  - all slots taken: -ENOSPC; lanes closed before the consumer mapped
 *    them keep their slot and records until it does;
 *  - the consumer ring closing: the producer's post and kick get -EPIPE;
 *  - room (AEM_IOC_LANE_WAIT, AEM_IOC_LANE_ROOM): a producer process on a
 *    lane of ROOM_ENTRIES posts ROOM_RECORDS records to a consumer that
 *    reads slowly, and whenever its lane is full sets WAITING, looks again
 *    and sleeps in aem_lane_wait_room(): every record arrives in order, it
 *    slept (waits that returned 0) and hardly ever timed out; timeouts 0
 *    and past AEM_LANE_WAIT_MAX_MS are -EINVAL; aem_lane_room() with a bad
 *    slot is -EINVAL or -ENOENT (-EBADFD on an fd without a ring) and
 *    leaves no CQE; a signal before the wait ends it at once, and only
 *    that one; a producer waiting when the consumer ring closes gets
 *    -EPIPE within a second.
 */
#include "aem_test.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define CHANNEL		7
#define TAG		0x1a4e
#define PRODUCERS	3
#define PER_PRODUCER	3000
#define ENTRIES		64	/* small: producers fill it and wait for room */
#define REC_SIZE	16
#define MAX_LANES	8	/* the consumer's table here: PRODUCERS + the ones after */

struct rec {
	uint32_t producer;
	uint32_t seq;
};

struct consumer {
	struct aem_ring		ring;
	uint64_t		sub;
	struct aem_lane		lane[MAX_LANES];
	struct aem_lane_note	note[MAX_LANES];
	bool			live[MAX_LANES];
	uint32_t		next[MAX_LANES];	/* per producer: the next seq expected */
	unsigned		attached, ended, kicks, malformed;
};

static int lane_open_raw(struct aem_ring *r, struct aem_lane_open *o)
{
	return ioctl(r->fd, AEM_IOC_LANE_OPEN, o) < 0 ? -errno : 0;
}

/* Read the result ring: notes map lanes or count kicks; anything else fails. */
static void take_notes(struct consumer *c)
{
	unsigned head;

	while (aem_result_peek(&c->ring, &head)) {
		struct aem_cqe cqe = *aem_result_at(&c->ring, head);
		struct aem_lane_note n;
		unsigned i;

		aem_result_advance(&c->ring, 1);
		t_assert(aem_lane_note(&cqe, &n) == 0, "result user_data %#llx flags %#x res %d is no lane note",
			 (unsigned long long)cqe.user_data, cqe.flags, cqe.res);
		t_eq(cqe.user_data, TAG);
		if (n.kind == AEM_LANE_NOTE_KICK) {
			c->kicks++;
			continue;
		}
		t_eq(n.kind, AEM_LANE_NOTE_ATTACH);
		t_eq(n.sub_id, c->sub);
		t_eq(n.entries, ENTRIES);
		t_eq(n.rec_size, REC_SIZE);
		for (i = 0; i < MAX_LANES && c->live[i]; i++)
			;
		t_assert(i < MAX_LANES, "more lanes than the test's table");
		t_eq(aem_lane_map_remote(&c->ring, &n, &c->lane[i]), 0);
		c->note[i] = n;
		c->live[i] = true;
		c->attached++;
	}
}

/* Drain every lane once; returns the records read.  Drained closed lanes are unmapped. */
static unsigned drain(struct consumer *c)
{
	struct aem_cqe cqes[64];
	unsigned i, j, n, total = 0;

	for (i = 0; i < MAX_LANES; i++) {
		if (!c->live[i])
			continue;
		while ((n = aem_lane_peek(&c->lane[i], cqes, 64, TAG)) > 0) {
			for (j = 0; j < n; j++) {
				struct rec r;

				t_eq(cqes[j].res, sizeof(r));
				t_eq(cqes[j].id, c->sub);
				t_eq(cqes[j].source, AEM_SRC_MSG);
				memcpy(&r, cqes[j].data, sizeof(r));
				t_assert(r.producer < MAX_LANES, "record from producer %u", r.producer);
				t_assert(r.seq == c->next[r.producer], "producer %u: seq %u, expected %u",
					 r.producer, r.seq, c->next[r.producer]);
				c->next[r.producer]++;
			}
			aem_lane_advance(&c->lane[i], n);
			total += n;
		}
		c->malformed += c->lane[i].malformed;
		c->lane[i].malformed = 0;
		if (aem_lane_drained(&c->lane[i])) {
			aem_lane_unmap_remote(&c->lane[i]);
			c->live[i] = false;
			c->ended++;
		}
	}
	return total;
}

/* Nothing to read: mark every lane SLEEPING, look once more, sleep up to @ms. Returns aem_wait's answer. */
static int sleep_once(struct consumer *c, unsigned ms)
{
	unsigned i, ready = 0;
	int ret = 0;

	for (i = 0; i < MAX_LANES; i++)
		if (c->live[i]) {
			aem_lane_sleeping(&c->lane[i], 1);
			ready += aem_load_acquire(&c->lane[i].kctl->tail) != c->lane[i].head ||
				 (aem_load_acquire(&c->lane[i].kctl->prod_flags) & AEM_LANE_P_CLOSED);
		}
	if (!ready)
		ret = aem_wait(&c->ring, 1, (int64_t)ms * (int64_t)T_MS);
	for (i = 0; i < MAX_LANES; i++)
		if (c->live[i])
			aem_lane_sleeping(&c->lane[i], 0);
	return ret;
}

/* A producer process: @count records, then close, or with @die exit with the lane open. */
static void producer(uint32_t addr_ring, uint32_t idx, uint32_t count, bool die)
{
	uint64_t end = t_now_ns() + 60000 * T_MS;
	struct aem_lane_remote lr;
	struct aem_ring r;
	uint32_t seq = 0;
	int ret;

	t_setup(&r, NULL);
	ret = aem_lane_open_remote(&r, AEM_ADDR(addr_ring, CHANNEL), ENTRIES, REC_SIZE, &lr);
	if (ret)
		t_fail("producer %u: aem_lane_open_remote: %s", idx, strerror(-ret));
	while (seq < count) {
		struct rec rec = { idx, seq };

		ret = aem_lane_post(&lr.lane, &rec, sizeof(rec));
		if (ret == -EAGAIN) {
			t_assert(t_now_ns() < end, "producer %u: no room for 60 s at seq %u", idx, seq);
			usleep(50);
			continue;
		}
		t_assert(ret >= 0, "producer %u: post: %s", idx, strerror(-ret));
		if (ret == 1)
			t_eq(aem_lane_kick(&lr), 0);
		seq++;
	}
	if (die)
		_exit(0);	/* the module closes the lane fd: AEM_LANE_P_CLOSED */
	aem_lane_close_remote(&lr);
	aem_teardown(&r);
	_exit(0);
}

#define ROOM_ENTRIES	4	/* tiny: the producer waits for room all the time */
#define ROOM_RECORDS	2000
#define ROOM_WAIT_MS	1000
#define ROOM_TIMEOUTS	3	/* waits allowed to time out (none should: a lost wake-up costs one) */

static void room_producer(uint32_t ring_id)
{
	uint64_t end = t_now_ns() + 60000 * T_MS;
	unsigned woke = 0, timeouts = 0;
	struct aem_lane_remote lr;
	struct aem_ring r;
	uint32_t seq = 0;
	int ret;

	t_setup(&r, NULL);
	t_eq(aem_lane_open_remote(&r, AEM_ADDR(ring_id, CHANNEL), ROOM_ENTRIES, REC_SIZE, &lr), 0);
	while (seq < ROOM_RECORDS) {
		struct rec rec = { 0, seq };

		ret = t_lane_put_or_wait(&lr, &rec, sizeof(rec), false, ROOM_WAIT_MS, &woke, &timeouts);
		if (ret == -EAGAIN) {
			t_assert(t_now_ns() < end, "room producer: no room for 60 s at seq %u", seq);
			continue;
		}
		t_assert(ret >= 0, "room producer: post: %s", strerror(-ret));
		if (ret == 1)
			t_eq(aem_lane_kick(&lr), 0);
		seq++;
	}
	aem_lane_close_remote(&lr);
	aem_teardown(&r);
	printf("room producer: %u records, slept %u times in the module, %u waits timed out\n",
	       ROOM_RECORDS, woke, timeouts);
	t_assert(woke > 0, "the producer never slept in aem_lane_wait_room (%u timeouts)", timeouts);
	t_assert(timeouts <= ROOM_TIMEOUTS, "%u waits for room timed out (%u woken)", timeouts, woke);
	fflush(NULL);
	_exit(t_exit());
}

static void reap(pid_t pid)
{
	int st;

	t_assert(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	t_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %#x", (int)pid, st);
}

static void refusals(struct consumer *c, struct aem_ring *pr)
{
	uint64_t addr = AEM_ADDR(c->ring.ring_id, CHANNEL);
	struct aem_lane_remote lr;
	struct aem_params p;
	struct aem_ring z;
	struct aem_lane_open o;
	struct aem_cqe cqe;

	t_eq(aem_lane_open_remote(pr, addr, 3, REC_SIZE, &lr), -EINVAL);
	t_eq(aem_lane_open_remote(pr, addr, 0, REC_SIZE, &lr), -EINVAL);
	t_eq(aem_lane_open_remote(pr, addr, 1, REC_SIZE, &lr), -EINVAL);
	t_eq(aem_lane_open_remote(pr, addr, AEM_LANE_MAX_ENTRIES * 2, REC_SIZE, &lr), -EINVAL);
	t_eq(aem_lane_open_remote(pr, addr, ENTRIES, 0, &lr), -EINVAL);
	t_eq(aem_lane_open_remote(pr, addr, ENTRIES, AEM_LANE_MAX_RECORD + 1, &lr), -EINVAL);
	memset(&o, 0, sizeof(o));
	o = (struct aem_lane_open){ .addr = addr, .entries = ENTRIES, .rec_size = REC_SIZE, .flags = 1 };
	t_eq(lane_open_raw(pr, &o), -EINVAL);
	o = (struct aem_lane_open){ .addr = addr, .entries = ENTRIES, .rec_size = REC_SIZE, .resv = { 0, 1 } };
	t_eq(lane_open_raw(pr, &o), -EINVAL);
	o = (struct aem_lane_open){ .addr = addr, .entries = ENTRIES, .rec_size = REC_SIZE, .fd = 3 };
	t_eq(lane_open_raw(pr, &o), -EINVAL);

	t_eq(aem_lane_open_remote(pr, AEM_ADDR(c->ring.ring_id ^ 0x40000, CHANNEL), ENTRIES, REC_SIZE, &lr), -ENOENT);
	t_eq(aem_lane_open_remote(pr, AEM_ADDR(c->ring.ring_id, CHANNEL + 1), ENTRIES, REC_SIZE, &lr), -ENOENT);

	p = t_params(0, 0, 0);
	p.remote_lanes = AEM_MAX_LANES + 1;
	t_eq(aem_setup(&p, &z), -EINVAL);
	t_setup(&z, NULL);	/* takes no lanes */
	t_sub_msg(&z, CHANNEL, 0, TAG);
	t_eq(aem_lane_open_remote(pr, AEM_ADDR(z.ring_id, CHANNEL), ENTRIES, REC_SIZE, &lr), -ENOSPC);
	aem_teardown(&z);

	/* Another user, not granted: the errno a POST gets. */
	if (geteuid() == 0) {
		pid_t pid = fork();

		t_assert(pid >= 0, "fork");
		if (!pid) {
			t_assert(setresuid((uid_t)-1, 65534, (uid_t)-1) == 0, "seteuid: %s", strerror(errno));
			t_eq(aem_lane_open_remote(pr, addr, ENTRIES, REC_SIZE, &lr), -EACCES);
			_exit(0);
		}
		reap(pid);

		/* Granted, but past its locked-memory limit (no CAP_IPC_LOCK once not root). */
		t_eq(aem_grant(&c->ring, 65534, 0), 0);
		pid = fork();
		t_assert(pid >= 0, "fork");
		if (!pid) {
			struct rlimit none = { 0, 0 };

			t_assert(setrlimit(RLIMIT_MEMLOCK, &none) == 0, "setrlimit: %s", strerror(errno));
			t_assert(setresuid((uid_t)-1, 65534, (uid_t)-1) == 0, "seteuid: %s", strerror(errno));
			t_eq(aem_lane_open_remote(pr, addr, ENTRIES, REC_SIZE, &lr), -ENOMEM);
			_exit(0);
		}
		reap(pid);
		t_eq(aem_grant(&c->ring, 65534, AEM_GRANT_REVOKE), 0);
	} else {
		t_note("not root: the not-granted and locked-memory cases are left out");
	}
	/* None of that reached the consumer. */
	t_assert(!t_next(&c->ring, &cqe, 50), "a refused open left a CQE: flags %#x res %d", cqe.flags, cqe.res);
}

/* The next lane note of @c's result ring, waiting up to 5 s. */
static struct aem_lane_note next_note(struct aem_ring *c)
{
	uint64_t end = t_now_ns() + 5000 * T_MS;
	struct aem_lane_note n;
	unsigned head;

	while (!aem_result_peek(c, &head)) {
		t_assert(t_now_ns() < end, "no lane note within 5 s");
		aem_wait(c, 1, 100 * T_MS);
	}
	{
		struct aem_cqe cqe = *aem_result_at(c, head);

		aem_result_advance(c, 1);
		t_eq(aem_lane_note(&cqe, &n), 0);
		t_eq(cqe.user_data, TAG);
	}
	return n;
}

static void room(struct aem_ring *pr)
{
	uint64_t end, t0;
	struct aem_lane_remote lr;
	struct aem_lane_note n = { 0 };
	struct aem_lane l;
	struct aem_params p;
	struct aem_ring c;
	struct aem_cqe cqe;
	uint64_t sub;
	unsigned rooms = 0;
	uint32_t next = 0;
	bool live = false;
	int fd, ret, ready[2];
	pid_t pid;
	char b;

	p = t_params(0, 0, 0);
	p.remote_lanes = 2;
	t_setup(&c, &p);
	sub = t_sub_msg(&c, CHANNEL, 0, TAG);

	/* Bad slots: nothing woken, nothing posted. */
	t_eq(aem_lane_room(&c, AEM_MAX_LANES), -EINVAL);
	t_eq(aem_lane_room(&c, ~0u), -EINVAL);
	t_eq(aem_lane_room(&c, 0), -ENOENT);
	t_eq(aem_lane_room(&c, 2), -ENOENT);	/* past remote_lanes */
	t_eq(aem_lane_room(pr, 0), -ENOENT);	/* a ring that takes no lanes */
	fd = open("/dev/aem", O_RDWR | O_CLOEXEC);
	t_assert(fd >= 0, "open /dev/aem: %s", strerror(errno));
	t_assert(ioctl(fd, AEM_IOC_LANE_ROOM, 0) < 0 && errno == EBADFD, "LANE_ROOM without a ring: %s",
		 strerror(errno));
	close(fd);
	t_assert(!t_next(&c, &cqe, 50), "a refused LANE_ROOM left a CQE: flags %#x res %d", cqe.flags, cqe.res);

	/* A producer process on a tiny lane, a consumer that reads slowly. */
	fflush(NULL);
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (!pid)
		room_producer(c.ring_id);
	end = t_now_ns() + 120000 * T_MS;
	for (;;) {
		struct aem_cqe cqes[8];
		unsigned head, got, i;

		t_assert(t_now_ns() < end, "room: %u of %u records within 120 s", next, ROOM_RECORDS);
		while (aem_result_peek(&c, &head)) {
			struct aem_lane_note k;

			cqe = *aem_result_at(&c, head);
			aem_result_advance(&c, 1);
			t_eq(aem_lane_note(&cqe, &k), 0);
			if (k.kind != AEM_LANE_NOTE_ATTACH)
				continue;
			t_assert(!live, "a second lane attached");
			t_eq(k.entries, ROOM_ENTRIES);
			t_eq(aem_lane_map_remote(&c, &k, &l), 0);
			n = k;
			live = true;
		}
		if (!live) {
			aem_wait(&c, 1, 100 * T_MS);
			continue;
		}
		got = aem_lane_peek(&l, cqes, 8, TAG);
		for (i = 0; i < got; i++) {
			struct rec r;

			t_eq(cqes[i].id, sub);
			memcpy(&r, cqes[i].data, sizeof(r));
			t_assert(r.seq == next, "room: seq %u, expected %u", r.seq, next);
			if (++next % 50 == 0)
				usleep(1000);	/* slow: the producer fills its lane */
		}
		if (got) {
			if (aem_lane_advance(&l, got)) {
				/* The producer's lane may have ended meanwhile (its slot given back). */
				ret = aem_lane_room(&c, n.slot);
				t_assert(ret == 0 || ret == -ENOENT, "aem_lane_room: %s", strerror(-ret));
				rooms++;
			}
			continue;
		}
		if (aem_lane_drained(&l))
			break;
		aem_lane_sleeping(&l, 1);
		if (aem_load_acquire(&l.kctl->tail) == l.head &&
		    !(aem_load_acquire(&l.kctl->prod_flags) & AEM_LANE_P_CLOSED))
			aem_wait(&c, 1, 50 * T_MS);
		aem_lane_sleeping(&l, 0);
	}
	aem_lane_unmap_remote(&l);
	reap(pid);
	t_eq(next, ROOM_RECORDS);
	t_eq(l.malformed, 0);
	t_assert(rooms > 0, "the consumer never saw WAITING");
	printf("room: %u records in order through a lane of %u; %u room signals\n", ROOM_RECORDS,
	       ROOM_ENTRIES, rooms);

	/* Timeouts out of range; a signal before the wait ends it at once, and only that one. */
	t_eq(aem_lane_open_remote(pr, AEM_ADDR(c.ring_id, CHANNEL), ROOM_ENTRIES, REC_SIZE, &lr), 0);
	do
		n = next_note(&c);
	while (n.kind == AEM_LANE_NOTE_KICK);	/* the last producer's close may still have kicked */
	t_eq(n.kind, AEM_LANE_NOTE_ATTACH);
	t_eq(aem_lane_wait_room(&lr, 0), -EINVAL);
	t_eq(aem_lane_wait_room(&lr, AEM_LANE_WAIT_MAX_MS + 1), -EINVAL);
	t_assert(ioctl(lr.fd, AEM_IOC_LANE_WAIT, ~0ul) < 0 && errno == EINVAL, "LANE_WAIT ~0: %s", strerror(errno));
	t_eq(aem_lane_wait_room(&lr, 20), -ETIMEDOUT);
	t_eq(aem_lane_room(&c, n.slot), 0);
	t_eq(aem_lane_room(&c, n.slot), 0);	/* pending, not counted: still one early return */
	t0 = t_now_ns();
	t_eq(aem_lane_wait_room(&lr, AEM_LANE_WAIT_MAX_MS), 0);
	t_assert(t_now_ns() - t0 < 1000 * T_MS, "a pending room signal took %llu ms",
		 (unsigned long long)((t_now_ns() - t0) / T_MS));
	t_eq(aem_lane_wait_room(&lr, 20), -ETIMEDOUT);
	printf("room: bad timeouts EINVAL, bad slots EINVAL/ENOENT/EBADFD; a pending signal ends one wait\n");

	/* A producer sleeping for room when the consumer ring closes: -EPIPE, promptly. */
	t_assert(pipe(ready) == 0, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (!pid) {
		struct rec rec = { 1, 0 };
		unsigned i;

		close(ready[0]);
		aem_teardown(&c);	/* its copy: the consumer ring must close with the parent's */
		for (i = 0; i < ROOM_ENTRIES; i++)
			t_assert(aem_lane_post(&lr.lane, &rec, sizeof(rec)) >= 0, "fill the lane");
		aem_write_once(lr.lane.kctl->prod_flags, AEM_LANE_P_WAITING);
		aem_smp_mb();
		t_eq(aem_lane_post(&lr.lane, &rec, sizeof(rec)), -EAGAIN);
		t_eq(write(ready[1], "r", 1), 1);
		t_eq(aem_lane_wait_room(&lr, AEM_LANE_WAIT_MAX_MS), -EPIPE);
		_exit(t_exit());
	}
	close(ready[1]);
	t_eq(read(ready[0], &b, 1), 1);
	close(ready[0]);
	usleep(200 * 1000);	/* it sleeps in the module by now (else its wait sees the ring gone at once) */
	t0 = t_now_ns();
	aem_teardown(&c);
	reap(pid);
	t_assert(t_now_ns() - t0 < 1000 * T_MS, "the waiting producer took %llu ms to see the ring gone",
		 (unsigned long long)((t_now_ns() - t0) / T_MS));
	t_eq(aem_lane_wait_room(&lr, 1000), -EPIPE);
	aem_lane_close_remote(&lr);
	printf("room: a producer waiting when the consumer ring closed got EPIPE\n");
}

/* Read until every producer's records are in and every lane ended, bounded. */
static void consume(struct consumer *c, unsigned lanes, const uint32_t *want, unsigned nwant)
{
	uint64_t end = t_now_ns() + 120000 * T_MS;
	unsigned i;

	for (;;) {
		bool done = c->ended >= lanes;

		for (i = 0; i < nwant; i++)
			done &= c->next[i] == want[i];
		if (done)
			break;
		t_assert(t_now_ns() < end, "lanes: %u attached, %u ended of %u within 120 s", c->attached,
			 c->ended, lanes);
		take_notes(c);
		if (!drain(c))
			sleep_once(c, 50);
	}
}

int main(void)
{
	uint32_t want[MAX_LANES] = { 0 };
	struct aem_lane_remote lr, more[PRODUCERS + 1];
	struct consumer *c;
	struct aem_params p;
	struct aem_ring pr;
	uint32_t old_slot, old_gen;
	pid_t pids[PRODUCERS], pid;
	unsigned i;
	int ret;

	t_setup(&pr, NULL);
	if (!t_kernel(&pr)) {
		p = t_params(0, 0, 0);
		p.remote_lanes = 1;
		t_eq(aem_setup(&p, &(struct aem_ring){ 0 }), -EOPNOTSUPP);
		t_eq(aem_lane_open_remote(&pr, AEM_ADDR(pr.ring_id, CHANNEL), ENTRIES, REC_SIZE, &lr), -EOPNOTSUPP);
		t_eq(lr.fd, -1);
		t_eq(aem_lane_room(&pr, 0), -EOPNOTSUPP);
		aem_teardown(&pr);
		printf("embedded backend: remote lanes refused with EOPNOTSUPP\n");
		return t_exit();
	}

	c = calloc(1, sizeof(*c));
	t_assert(c, "calloc");
	p = t_params(0, 0, 0);
	p.remote_lanes = PRODUCERS;
	t_setup(&c->ring, &p);
	t_assert(c->ring.features & AEM_FEAT_LANES, "features %#x lack AEM_FEAT_LANES", c->ring.features);
	c->sub = t_sub_msg(&c->ring, CHANNEL, 0, TAG);

	refusals(c, &pr);

	/* Several producer processes; producer 0 dies with its lane open. */
	for (i = 0; i < PRODUCERS; i++) {
		fflush(NULL);
		pids[i] = fork();
		t_assert(pids[i] >= 0, "fork");
		if (!pids[i])
			producer(c->ring.ring_id, i, PER_PRODUCER, i == 0);
		want[i] = PER_PRODUCER;
	}
	consume(c, PRODUCERS, want, PRODUCERS);
	for (i = 0; i < PRODUCERS; i++)
		reap(pids[i]);
	t_eq(c->attached, PRODUCERS);
	t_eq(c->malformed, 0);
	t_assert(c->kicks < PRODUCERS * PER_PRODUCER, "%u kick notes for %u records", c->kicks,
		 PRODUCERS * PER_PRODUCER);
	printf("%u producers: %u records each, in order, lanes drained and ended; %u kicks\n",
	       PRODUCERS, PER_PRODUCER, c->kicks);
	old_slot = c->note[0].slot;
	old_gen = c->note[0].gen;

	/* A sleeping consumer woken by a kick; the slot comes back with a new generation. */
	fflush(NULL);
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (!pid) {
		struct aem_ring r;
		uint64_t end = t_now_ns() + 30000 * T_MS;
		struct rec rec = { PRODUCERS, 0 };

		t_setup(&r, NULL);
		t_eq(aem_lane_open_remote(&r, AEM_ADDR(c->ring.ring_id, CHANNEL), ENTRIES, REC_SIZE, &lr), 0);
		while (!(aem_read_once(lr.lane.kctl->cons_flags) & AEM_LANE_C_SLEEPING)) {
			t_assert(t_now_ns() < end, "the consumer never slept");
			usleep(1000);
		}
		t_eq(aem_lane_post(&lr.lane, &rec, sizeof(rec)), 1);	/* it sleeps: kick it */
		t_eq(aem_lane_kick(&lr), 0);
		aem_lane_close_remote(&lr);
		_exit(0);
	}
	{
		uint64_t end = t_now_ns() + 30000 * T_MS;
		unsigned kicks;

		while (c->attached == PRODUCERS) {
			t_assert(t_now_ns() < end, "no attach note within 30 s");
			aem_wait(&c->ring, 1, 100 * T_MS);
			take_notes(c);
		}
		for (i = 0; i < MAX_LANES && !c->live[i]; i++)
			;
		t_assert(i < MAX_LANES, "the attached lane is not live");
		t_assert(c->note[i].slot != old_slot || c->note[i].gen != old_gen,
			 "slot %u reused with its old generation %u", old_slot, old_gen);
		t_assert(mmap(NULL, 4096, PROT_READ, MAP_SHARED, c->ring.fd,
			      (off_t)AEM_OFF_LANE(old_slot, old_gen)) == MAP_FAILED && errno == ENOENT,
			 "a stale (slot %u, gen %u) still maps", old_slot, old_gen);
		/* Sleep with nothing ready: only the kick can end it early, and the test only asks that it comes. */
		kicks = c->kicks;
		while (c->kicks == kicks) {
			t_assert(t_now_ns() < end, "no kick within 30 s");
			if (!drain(c))
				sleep_once(c, 10000);
			take_notes(c);
		}
		want[PRODUCERS] = 1;
		consume(c, PRODUCERS + 1, want, PRODUCERS + 1);
		reap(pid);
		printf("a sleeping consumer was kicked; slot reuse got a new generation\n");
	}

	/* Every slot taken: -ENOSPC; lanes closed before the consumer mapped them keep their records. */
	for (i = 0; i < PRODUCERS; i++) {
		struct rec rec = { PRODUCERS + 1 + i, 0 };

		t_eq(aem_lane_open_remote(&pr, AEM_ADDR(c->ring.ring_id, CHANNEL), ENTRIES, REC_SIZE, &more[i]), 0);
		t_eq(aem_lane_post(&more[i].lane, &rec, sizeof(rec)), 0);
	}
	t_eq(aem_lane_open_remote(&pr, AEM_ADDR(c->ring.ring_id, CHANNEL), ENTRIES, REC_SIZE, &lr), -ENOSPC);
	for (i = 0; i < PRODUCERS; i++)
		aem_lane_close_remote(&more[i]);
	t_eq(aem_lane_open_remote(&pr, AEM_ADDR(c->ring.ring_id, CHANNEL), ENTRIES, REC_SIZE, &lr), -ENOSPC);
	for (i = 0; i < PRODUCERS; i++)
		want[PRODUCERS + 1 + i] = 1;
	consume(c, 2 * PRODUCERS + 1, want, 2 * PRODUCERS + 1);
	printf("all slots taken: ENOSPC; lanes closed before mapping delivered their records\n");

	/* The consumer ring goes: the producer's post and kick say so. */
	ret = aem_lane_open_remote(&pr, AEM_ADDR(c->ring.ring_id, CHANNEL), ENTRIES, REC_SIZE, &lr);
	t_eq(ret, 0);
	aem_teardown(&c->ring);
	{
		struct rec rec = { 0, 0 };

		t_eq(aem_lane_post(&lr.lane, &rec, sizeof(rec)), -EPIPE);
		t_eq(aem_lane_kick(&lr), -EPIPE);
	}
	aem_lane_close_remote(&lr);
	printf("consumer closed: post and kick get EPIPE\n");

	room(&pr);
	aem_teardown(&pr);
	free(c);
	return t_exit();
}
