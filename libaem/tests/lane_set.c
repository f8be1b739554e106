/* SPDX-License-Identifier: MIT */
/*
 * A reader's lanes (aem_lane_set_*), on either backend:
 *  - lane notes are routed, anything else is the caller's: a malformed
 *    note, a slot out of range or a lane that cannot be mapped is refused
 *    and leaves the set as it was;
 *  - three producer threads (two lanes in class 1, one in class 0, lanes
 *    much smaller than what they post): every record arrives once, in
 *    order per lane, with its lane's user_data and class; each lane leaves
 *    the set once its producer closed it and it is drained;
 *  - two full lanes of one class share small batches in turn;
 *  - calls are answered through the set; a reply to a lane that left
 *    finds nothing, even when a new lane took its entry and waits on a
 *    call at the same position;
 *  - an ended subscription's lanes refuse posts and calls with -EPIPE,
 *    what they held is counted in dropped, a call in flight answered
 *    -EPIPE;
 *  - a scribbled tail and a malformed record are counted, not read;
 *  - sleeping: a post into an empty lane asks for a kick, a ready lane
 *    keeps the reader awake; closing the set ends its lanes;
 *  - a producer scribbling anywhere in its lane while the set reads it:
 *    every event within its record size, replies land or find nothing.
 * Module only: two producer processes post through remote lanes of four
 * records (waiting for room in the module) and one calls; every record
 * arrives in order, every call is answered, both lanes leave the set.
 */
#include <pthread.h>
#include <sys/wait.h>
#include "aem_test.h"

#define REC		16
#define PER_THREAD	20000
#define PER_URGENT	2000
#define LANE_BYTES	4096
#define CHANNEL		11
#define TAG		0x1a9e5
#define DEADLINE_MS	60000

struct rec {
	uint32_t lane;
	uint32_t seq;
};

static uint64_t lane_mem[8][LANE_BYTES / 8];	/* 8-aligned */

/* A lane in lane_mem[@k]: the reader's view in @cons, the producer's in @prod. */
static void lane_make(unsigned k, unsigned entries, unsigned prio, uint64_t sub,
		      struct aem_lane *cons, struct aem_lane *prod)
{
	t_eq(aem_lane_init(cons, lane_mem[k], sizeof(lane_mem[k]), entries, REC, prio, sub), 0);
	t_eq(aem_lane_attach(prod, lane_mem[k], sizeof(lane_mem[k])), 0);
}

struct producer {
	struct aem_lane	lane;
	uint32_t	id, count;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	uint64_t end = t_now_ns() + DEADLINE_MS * T_MS;
	struct rec r = { p->id, 0 };

	while (r.seq < p->count) {
		int ret = aem_lane_post(&p->lane, &r, sizeof(r));

		if (ret == -EAGAIN) {
			t_assert(t_now_ns() < end, "producer %u: no room for 60 s at %u", p->id, r.seq);
			sched_yield();
			continue;
		}
		t_assert(ret >= 0, "producer %u: post: %s", p->id, strerror(-ret));
		r.seq++;
	}
	aem_lane_close(&p->lane);
	return NULL;
}

/* Records from the set, checked: in order per lane, its user_data and class. */
struct tally {
	uint32_t next[8];
	uint64_t records;
	bool one_tag;	/* every lane's events carry TAG (remote: the subscription's), else TAG + lane */
};

static void check(struct tally *t, const struct aem_cqe *c, unsigned cls)
{
	struct rec r;

	t_eq(c->res, sizeof(r));
	t_eq(c->source, AEM_SRC_MSG);
	t_eq(c->prio, cls);
	memcpy(&r, c->data, sizeof(r));
	t_assert(r.lane < 8, "record of lane %u", r.lane);
	t_eq(c->user_data, t->one_tag ? TAG : TAG + r.lane);
	t_assert(r.seq == t->next[r.lane], "lane %u: seq %u, expected %u", r.lane, r.seq,
		 t->next[r.lane]);
	t->next[r.lane]++;
	t->records++;
}

static void routing(struct aem_ring *ring)
{
	struct aem_cqe c = { .user_data = TAG, .flags = AEM_CQE_F_RESULT | AEM_CQE_F_LANE,
			     .res = sizeof(struct aem_lane_note) };
	struct aem_lane_note n = { .slot = 0, .gen = 12345, .entries = 4, .rec_size = REC,
				   .kind = AEM_LANE_NOTE_ATTACH };
	struct aem_lane_set s;
	struct aem_cqe plain = { .user_data = 1, .res = 8 };
	struct aem_cqe result = { .user_data = 1, .flags = AEM_CQE_F_RESULT };
	int ret;

	aem_lane_set_init(&s, ring);
	t_eq(aem_lane_set_note(&s, &plain), 0);
	t_eq(aem_lane_set_note(&s, &result), 0);
	c.res = 3;
	t_eq(aem_lane_set_note(&s, &c), -EINVAL);
	c.res = sizeof(n);
	n.kind = AEM_LANE_NOTE_KICK;
	memcpy(c.data, &n, sizeof(n));
	t_eq(aem_lane_set_note(&s, &c), 1);
	n.kind = 9;
	memcpy(c.data, &n, sizeof(n));
	t_eq(aem_lane_set_note(&s, &c), -EINVAL);
	n.kind = AEM_LANE_NOTE_ATTACH;
	n.slot = AEM_MAX_LANES;
	memcpy(c.data, &n, sizeof(n));
	t_eq(aem_lane_set_note(&s, &c), -EINVAL);
	n.slot = 0;
	n.entries = 3;
	memcpy(c.data, &n, sizeof(n));
	t_eq(aem_lane_set_note(&s, &c), -EINVAL);
	/* Well formed, but no such lane: the embedded backend maps none, the module knows no such generation. */
	n.entries = 4;
	memcpy(c.data, &n, sizeof(n));
	ret = aem_lane_set_note(&s, &c);
	if (t_kernel(ring))
		t_assert(ret == -ENOENT || ret == -EINVAL, "a lane the module never attached: %d", ret);
	else
		t_eq(ret, -EOPNOTSUPP);
	t_eq(s.hi, 0);
	for (unsigned i = 0; i < AEM_LANE_SET_MAX; i++)
		t_eq(s.entry[i].state, 0);
	printf("routing: lane notes taken, other CQEs left, bad notes refused with nothing kept\n");
}

static void threads(struct aem_ring *ring)
{
	static struct producer p[3];
	struct aem_lane_set s;
	struct tally t = { { 0 } };
	struct aem_cqe cqes[4];
	pthread_t thr[3];
	uint64_t end = t_now_ns() + DEADLINE_MS * T_MS;
	unsigned i, n;
	int idx[3];

	aem_lane_set_init(&s, ring);
	for (i = 0; i < 3; i++) {
		struct aem_lane cons;
		unsigned prio = i == 2 ? 0 : 1;

		lane_make(i, 8, prio, 100 + i, &cons, &p[i].lane);
		p[i].id = i;
		p[i].count = i == 2 ? PER_URGENT : PER_THREAD;
		idx[i] = aem_lane_set_add(&s, &cons, TAG + i);
		t_assert(idx[i] >= 0, "aem_lane_set_add: %s", strerror(-idx[i]));
	}
	for (i = 0; i < 3; i++)
		t_eq(pthread_create(&thr[i], NULL, produce, &p[i]), 0);
	while (s.detached < 3) {
		t_assert(t_now_ns() < end, "after 60 s: %" PRIu64 " records, %" PRIu64 " lanes left",
			 t.records, s.detached);
		/* Small batches: the lanes of class 1 take turns within them. */
		for (unsigned cls = 0; cls < 2; cls++)
			while ((n = aem_lane_set_peek(&s, cls, cqes, 4)) > 0)
				for (i = 0; i < n; i++)
					check(&t, &cqes[i], cls);
		sched_yield();
	}
	for (i = 0; i < 3; i++) {
		t_eq(pthread_join(thr[i], NULL), 0);
		t_eq(aem_lane_set_live(&s, idx[i]), 0);
		t_eq(t.next[i], p[i].count);
	}
	t_eq(s.hi, 0);
	t_eq(s.malformed, 0);
	t_eq(s.dropped, 0);
	printf("threads: %" PRIu64 " records from 3 lanes in 2 classes, in order; every lane left once drained\n",
	       t.records);
}

/* Two full lanes of one class: batches of 4 alternate between them. */
static void turns(struct aem_ring *ring)
{
	struct aem_lane cons, prod[2];
	struct aem_lane_set s;
	struct aem_cqe cqes[4];
	struct tally t = { { 0 } };
	unsigned k, i, n;

	aem_lane_set_init(&s, ring);
	for (k = 0; k < 2; k++) {
		lane_make(k, 8, 2, 200, &cons, &prod[k]);
		t_eq(aem_lane_set_add(&s, &cons, TAG + k), (int)k);
		for (i = 0; i < 8; i++) {
			struct rec r = { k, i };

			t_assert(aem_lane_post(&prod[k], &r, sizeof(r)) >= 0, "post");
		}
	}
	t_eq(aem_lane_set_peek(&s, 1, cqes, 4), 0);	/* another class */
	for (i = 0; i < 4; i++) {
		uint32_t first;

		n = aem_lane_set_peek(&s, 2, cqes, 4);
		t_eq(n, 4);
		memcpy(&first, cqes[0].data, sizeof(first));
		t_eq(first, i % 2);	/* whose turn: lane 0, 1, 0, 1 */
		for (k = 0; k < n; k++)
			check(&t, &cqes[k], 2);
	}
	t_eq(aem_lane_set_peek(&s, 2, cqes, 4), 0);
	t_eq(t.next[0], 8);
	t_eq(t.next[1], 8);
	aem_lane_set_close(&s);
	printf("turns: two full lanes of a class alternate in batches of 4\n");
}

static void calls(struct aem_ring *ring)
{
	struct aem_lane cons, prod, prod2;
	struct aem_lane_set s;
	struct aem_cqe c, old;
	uint32_t req, resp;
	int idx, ret;

	aem_lane_set_init(&s, ring);
	lane_make(0, 4, 0, 300, &cons, &prod);
	idx = aem_lane_set_add(&s, &cons, TAG);
	t_assert(idx >= 0, "add");
	for (req = 0; req < 200; req++) {
		t_assert(aem_lane_call(&prod, &req, sizeof(req)) >= 0, "call %u", req);
		t_eq(aem_lane_call_poll(&prod, &resp, sizeof(resp)), -EAGAIN);
		t_eq(aem_lane_set_peek(&s, 0, &c, 1), 1);
		t_assert(c.flags & AEM_CQE_F_CALL, "call %u: flags %#x", req, c.flags);
		t_eq(c.user_data, TAG);
		t_eq(aem_lane_set_reply(&s, &c, (uint32_t[]){ req + 1 }, sizeof(uint32_t), 0), 0);
		t_eq(aem_lane_set_reply(&s, &c, &req, sizeof(req), 0), -ENOENT);	/* answered once */
		t_eq(aem_lane_call_poll(&prod, &resp, sizeof(resp)), (int)sizeof(resp));
		t_eq(resp, req + 1);
		if (req == 0)
			old = c;
	}
	/* An error reply, and no reply to what is no call. */
	t_assert(aem_lane_call(&prod, &req, sizeof(req)) >= 0, "call");
	t_eq(aem_lane_set_peek(&s, 0, &c, 1), 1);
	t_eq(aem_lane_set_reply(&s, &c, NULL, 0, EPERM), 0);
	t_eq(aem_lane_call_poll(&prod, &resp, sizeof(resp)), -EPERM);
	t_assert(aem_lane_post(&prod, &req, sizeof(req)) >= 0, "post");
	t_eq(aem_lane_set_peek(&s, 0, &c, 1), 1);
	t_eq(aem_lane_set_reply(&s, &c, NULL, 0, 0), -ENOENT);
	/* The lane leaves; a new one takes its entry and calls at position 0, as the first did. */
	aem_lane_close(&prod);
	t_eq(aem_lane_set_peek(&s, 0, &c, 1), 0);
	t_eq(aem_lane_set_live(&s, idx), 0);
	lane_make(1, 4, 0, 301, &cons, &prod2);
	t_eq(aem_lane_set_add(&s, &cons, TAG), idx);
	t_assert(aem_lane_call(&prod2, &req, sizeof(req)) >= 0, "call");
	t_eq(old.id, 0);
	t_eq(aem_lane_set_reply(&s, &old, &req, sizeof(req), 0), -ENOENT);	/* the old lane's reply */
	t_eq(aem_lane_call_poll(&prod2, &resp, sizeof(resp)), -EAGAIN);
	t_eq(aem_lane_set_peek(&s, 0, &c, 1), 1);
	t_eq(c.id, 0);
	t_eq(aem_lane_set_reply(&s, &c, (uint32_t[]){ 77 }, sizeof(uint32_t), 0), 0);
	t_eq(aem_lane_call_poll(&prod2, &resp, sizeof(resp)), (int)sizeof(resp));
	t_eq(resp, 77);
	ret = aem_lane_set_reply(&s, &(struct aem_cqe){ .flags = AEM_CQE_F_CALL, .slot = AEM_LANE_SET_MAX }, NULL, 0, 0);
	t_eq(ret, -ENOENT);
	aem_lane_set_close(&s);
	printf("calls: 200 answered through the set; an old lane's reply reaches no new lane\n");
}

static void ended(struct aem_ring *ring)
{
	struct aem_lane cons, prod, other_prod;
	struct aem_lane_set s;
	struct aem_cqe c[4];
	uint32_t v = 5, resp;
	int idx, other;

	aem_lane_set_init(&s, ring);
	lane_make(0, 8, 1, 400, &cons, &prod);
	idx = aem_lane_set_add(&s, &cons, TAG);
	lane_make(1, 8, 1, 401, &cons, &other_prod);
	other = aem_lane_set_add(&s, &cons, TAG + 1);
	t_assert(idx >= 0 && other >= 0, "add");
	for (unsigned i = 0; i < 3; i++)
		t_assert(aem_lane_post(&prod, &v, sizeof(v)) >= 0, "post");
	t_assert(aem_lane_call(&prod, &v, sizeof(v)) >= 0, "call");
	t_assert(aem_lane_post(&other_prod, &v, sizeof(v)) >= 0, "post");
	t_eq(aem_lane_set_end(&s, 999), 0);
	t_eq(aem_lane_set_end(&s, 400), 1);
	t_eq(aem_lane_set_end(&s, 400), 0);	/* once */
	t_eq(s.dropped, 4);
	t_eq(aem_lane_call_poll(&prod, &resp, sizeof(resp)), -EPIPE);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), -EPIPE);
	t_eq(aem_lane_call(&prod, &v, sizeof(v)), -EPIPE);
	/* The other subscription's lane is untouched; the ended one gives nothing and leaves once closed. */
	t_eq(aem_lane_set_peek(&s, 1, c, 4), 1);
	t_eq(c[0].id, 401);
	t_eq(aem_lane_set_live(&s, idx), 1);
	aem_lane_close(&prod);
	t_eq(aem_lane_set_peek(&s, 1, c, 4), 0);
	t_eq(aem_lane_set_live(&s, idx), 0);
	t_eq(aem_lane_set_live(&s, other), 1);
	t_eq(s.dropped, 4);
	aem_lane_set_close(&s);
	t_eq(aem_lane_post(&other_prod, &v, sizeof(v)), -EPIPE);	/* the set closed: its lanes ended */
	t_eq(s.hi, 0);
	printf("ended: posts and calls -EPIPE, 4 records counted dropped, the lane left once closed\n");
}

static void hostile(struct aem_ring *ring)
{
	struct aem_lane cons, prod;
	struct aem_lane_set s;
	struct aem_cqe c[4];
	struct aem_lane_rec *rec;
	struct aem_lane_ctl *ctl = (struct aem_lane_ctl *)lane_mem[0];
	uint32_t v = 9, tail;
	int idx;

	aem_lane_set_init(&s, ring);
	lane_make(0, 8, 0, 500, &cons, &prod);
	idx = aem_lane_set_add(&s, &cons, TAG);
	t_assert(idx >= 0, "add");
	t_assert(aem_lane_post(&prod, &v, sizeof(v)) >= 0, "post");
	tail = aem_read_once(ctl->tail);
	aem_write_once(ctl->tail, tail + 100);	/* more than a lane ahead */
	t_eq(aem_lane_set_peek(&s, 0, c, 4), 0);
	t_assert(s.entry[idx].lane.malformed > 0, "a scribbled tail is counted");
	aem_write_once(ctl->tail, tail);
	t_eq(aem_lane_set_peek(&s, 0, c, 4), 1);
	/* A record whose length is past the record size: skipped, counted, handed back. */
	t_assert(aem_lane_post(&prod, &v, sizeof(v)) >= 0, "post");
	rec = (struct aem_lane_rec *)((unsigned char *)(ctl + 1) + (size_t)1 * AEM_LANE_REC_STRIDE(REC));
	rec->len = REC + 1;
	t_assert(aem_lane_post(&prod, &v, sizeof(v)) >= 0, "post");
	t_eq(aem_lane_set_peek(&s, 0, c, 4), 1);
	t_eq(aem_load_acquire(&ctl->head), 3);
	aem_lane_close(&prod);
	t_eq(aem_lane_set_peek(&s, 0, c, 4), 0);
	t_eq(aem_lane_set_live(&s, idx), 0);
	t_assert(s.malformed >= 2, "malformed %" PRIu64 ": the tail and the record", s.malformed);
	printf("hostile: a scribbled tail and a malformed record counted (%" PRIu64 "), not read\n",
	       s.malformed);
}

static void sleeping(struct aem_ring *ring)
{
	struct aem_lane cons, prod;
	struct aem_lane_set s;
	struct aem_cqe c;
	uint32_t v = 1;

	aem_lane_set_init(&s, ring);
	lane_make(0, 8, 3, 600, &cons, &prod);
	t_assert(aem_lane_set_add(&s, &cons, TAG) >= 0, "add");
	t_eq(aem_lane_set_sleeping(&s, 1), 0);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), 1);	/* the reader sleeps: kick it */
	t_eq(aem_lane_set_sleeping(&s, 0), 0);
	t_eq(aem_lane_post(&prod, &v, sizeof(v)), 0);
	t_eq(aem_lane_set_sleeping(&s, 1), 1);	/* records ready: do not sleep */
	t_eq(aem_lane_set_sleeping(&s, 0), 0);
	t_eq(aem_lane_set_peek(&s, 3, &c, 1), 1);
	t_eq(aem_lane_set_peek(&s, 3, &c, 1), 1);
	aem_lane_close(&prod);
	t_eq(aem_lane_set_sleeping(&s, 1), 1);	/* its close is news too */
	t_eq(aem_lane_set_sleeping(&s, 0), 0);
	t_eq(aem_lane_set_peek(&s, 3, &c, 1), 0);
	t_eq(s.hi, 0);
	t_eq(aem_lane_set_sleeping(&s, 1), 0);
	printf("sleeping: an empty lane asks for a kick, a ready or closed one keeps the reader up\n");
}

/*
 * A producer that writes anything anywhere in its lane (ctl included, the
 * reader's head too) while the reader reads through the set: every event
 * stays within the record size, replies land or find nothing, the set's
 * own table stays whole.  Under ASan this is the out-of-bounds check.
 */
static void scribbled(struct aem_ring *ring)
{
	uint64_t seed = t_seed(), st = seed;
	unsigned char *mem = (unsigned char *)lane_mem[0];
	size_t size = aem_lane_size(16, REC);
	struct aem_lane cons, prod;
	struct aem_lane_set s;
	struct aem_cqe c[8];
	unsigned round, k, events = 0, lanes = 1;
	int idx;

	aem_lane_set_init(&s, ring);
	lane_make(0, 16, 0, 700, &cons, &prod);
	idx = aem_lane_set_add(&s, &cons, TAG);
	t_assert(idx >= 0, "add");
	for (round = 0; round < 20000; round++) {
		unsigned n, writes = t_rand(&st) % 16 == 0;	/* now and then: records flow between */

		for (k = 0; k < writes; k++) {
			uint64_t r = t_rand(&st);
			size_t at = (r >> 8) % (size - 4);

			if (r & 1)
				memcpy(mem + at, &r, 4);	/* a word of garbage */
			else
				mem[at] = (unsigned char)r;
		}
		if (t_rand(&st) % 2)
			(void)aem_lane_post(&prod, &round, sizeof(round));
		else if (t_rand(&st) % 8 == 0 && aem_lane_call(&prod, &round, sizeof(round)) == -EBUSY)
			(void)aem_lane_call_abandon(&prod);
		n = aem_lane_set_peek(&s, 0, c, 8);
		t_assert(n <= 8, "peek returned %u", n);
		for (k = 0; k < n; k++) {
			t_assert(c[k].res >= 0 && c[k].res <= REC, "event of %d bytes from a lane of %u", c[k].res, REC);
			t_eq(c[k].user_data, TAG);
			t_eq(c[k].prio, 0);
			if (c[k].flags & AEM_CQE_F_CALL) {
				int ret = aem_lane_set_reply(&s, &c[k], &round, sizeof(round), 0);

				t_assert(ret == 0 || ret == -ENOENT, "reply: %d", ret);
			}
		}
		events += n;
		(void)aem_lane_set_sleeping(&s, 1);
		(void)aem_lane_set_sleeping(&s, 0);
		t_assert(s.hi <= 1, "the set grew to %u entries", s.hi);
		if (!aem_lane_set_live(&s, idx)) {
			/* The garbage said CLOSED with head and tail equal: the lane left; a new one. */
			lane_make(0, 16, 0, 700, &cons, &prod);
			t_eq(aem_lane_set_add(&s, &cons, TAG), idx);
			lanes++;
		}
	}
	aem_lane_set_close(&s);
	t_assert(s.malformed > 0, "seed %#llx: garbage was never counted", (unsigned long long)seed);
	printf("scribbled: %u rounds with garbage now and then, %u events read, each within its record; %u lanes, %" PRIu64 " refusals counted\n",
	       round, events, lanes, s.malformed);
}

/* ---------------------------------------------------------------------- */
/* Remote lanes (the module)                                              */

#define REMOTE_ENTRIES	4	/* tiny: the producers wait for room in the module */
#define REMOTE_RECORDS	3000
#define REMOTE_CALLS	100

/* Post (or call) until it is taken, waiting for room in the module; kick a sleeping reader. */
static void remote_put(struct aem_lane_remote *lr, const void *rec, unsigned len, bool call,
		       uint64_t end)
{
	unsigned woke = 0, timeouts = 0;
	int ret;

	while ((ret = t_lane_put_or_wait(lr, rec, len, call, 1000, &woke, &timeouts)) == -EAGAIN)
		t_assert(t_now_ns() < end, "no room in the lane for 60 s");
	t_assert(ret >= 0, "%s: %s", call ? "call" : "post", strerror(-ret));
	if (ret == 1)
		t_eq(aem_lane_kick(lr), 0);
}

static void remote_producer(uint32_t ring_id, uint32_t id)
{
	uint64_t end = t_now_ns() + DEADLINE_MS * T_MS;
	struct aem_lane_remote lr;
	struct aem_ring r;
	struct rec rec = { id, 0 };
	int ret;

	t_setup(&r, NULL);
	t_eq(aem_lane_open_remote(&r, AEM_ADDR(ring_id, CHANNEL), REMOTE_ENTRIES, REC, &lr), 0);
	for (; rec.seq < REMOTE_RECORDS; rec.seq++)
		remote_put(&lr, &rec, sizeof(rec), false, end);
	for (uint32_t k = 0; id == 1 && k < REMOTE_CALLS; k++) {
		uint32_t resp;

		remote_put(&lr, &k, sizeof(k), true, end);
		while ((ret = aem_lane_call_poll(&lr.lane, &resp, sizeof(resp))) == -EAGAIN) {
			t_assert(t_now_ns() < end, "call %u: no answer", k);
			usleep(20);
		}
		t_eq(ret, (int)sizeof(resp));
		t_eq(resp, k * 3);
	}
	aem_lane_close_remote(&lr);
	aem_teardown(&r);
	fflush(NULL);
	_exit(t_exit());
}

static void remote(void)
{
	uint64_t end = t_now_ns() + DEADLINE_MS * T_MS;
	struct aem_lane_set *s = calloc(1, sizeof(*s));
	struct tally t = { .one_tag = true };
	struct aem_params p = t_params(0, 0, 0);
	struct aem_ring ring;
	struct aem_cqe cqes[16];
	unsigned answered = 0, i, n, head;
	pid_t pid[2];
	int st;

	t_assert(s, "calloc");
	p.remote_lanes = 2;
	t_setup(&ring, &p);
	(void)t_sub_msg(&ring, CHANNEL, 1, TAG);
	aem_lane_set_init(s, &ring);
	for (i = 0; i < 2; i++) {
		fflush(NULL);
		pid[i] = fork();
		t_assert(pid[i] >= 0, "fork");
		if (!pid[i])
			remote_producer(ring.ring_id, i);
	}
	while (s->detached < 2) {
		t_assert(t_now_ns() < end, "after 60 s: %" PRIu64 " records, %u answers, %" PRIu64 " lanes left",
			 t.records, answered, s->detached);
		while (aem_result_peek(&ring, &head)) {
			struct aem_cqe c = *aem_result_at(&ring, head);

			aem_result_advance(&ring, 1);
			t_eq(aem_lane_set_note(s, &c), 1);
		}
		while ((n = aem_lane_set_peek(s, 1, cqes, 16)) > 0)
			for (i = 0; i < n; i++) {
				uint32_t k;

				if (!(cqes[i].flags & AEM_CQE_F_CALL)) {
					check(&t, &cqes[i], 1);
					continue;
				}
				memcpy(&k, cqes[i].data, sizeof(k));
				t_eq(aem_lane_set_reply(s, &cqes[i], (uint32_t[]){ k * 3 }, sizeof(k), 0), 0);
				answered++;
			}
		if (aem_lane_set_sleeping(s, 1) == 0)
			(void)aem_wait(&ring, 1, 100 * (int64_t)T_MS);
		aem_lane_set_sleeping(s, 0);
	}
	for (i = 0; i < 2; i++) {
		t_eq(waitpid(pid[i], &st, 0), pid[i]);
		t_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer %u: status %#x", i, st);
		t_eq(t.next[i], REMOTE_RECORDS);
	}
	t_eq(answered, REMOTE_CALLS);
	t_eq(s->hi, 0);
	t_eq(s->malformed, 0);
	aem_lane_set_close(s);
	aem_teardown(&ring);
	free(s);
	printf("remote: 2 producer processes, %u records each through lanes of %u, %u calls answered, both lanes left\n",
	       REMOTE_RECORDS, REMOTE_ENTRIES, REMOTE_CALLS);
}

int main(void)
{
	struct aem_ring ring;

	t_setup(&ring, NULL);
	routing(&ring);
	threads(&ring);
	turns(&ring);
	calls(&ring);
	ended(&ring);
	hostile(&ring);
	sleeping(&ring);
	scribbled(&ring);
	if (t_kernel(&ring))
		remote();
	else
		t_note("remote lanes need the module: the embedded backend refuses them (lane_remote)");
	aem_teardown(&ring);
	return t_exit();
}
