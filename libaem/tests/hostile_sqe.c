/* SPDX-License-Identifier: MIT */
/*
 * Hostile SQEs.  First one bad field at a time, each answered by the
 * documented errno and counted under the documented reason.  Then a stream
 * of garbage (fully random SQEs and valid SQEs with random fields): the
 * process survives, every SQE is consumed, every non-silent SQE gets
 * exactly one result, unknown opcodes are always -EINVAL, and the
 * refusal counters account for every error result but timed-out calls.
 * A POST that holds the queue for a second at a full target is taken back
 * (withdraw_held), as an application may: it is neither consumed nor
 * answered.
 * AEM_TEST_SEED reproduces a run; AEM_TEST_GARBAGE sets the SQE count.
 */
#include "aem_test.h"

#define CHANNEL	5

static struct aem_ring r;
static uint64_t self_addr;

/* Well-formed ids with a generation nothing in this test reaches. */
#define UNKNOWN_SUB	((uint64_t)AEM_ID_KIND_SUB << 56 | 0xabcdefull << 32 | 1)
#define UNKNOWN_CALL	((uint64_t)AEM_ID_KIND_CALL << 56 | 0xabcdefull << 32 | 1)

enum { BASE_NOP, BASE_TIMER, BASE_GEN, BASE_MSG, BASE_POST, BASE_CALL, BASE_UNSUB, BASE_WB,
       BASE_TIMER_SET, BASE_GEN_SET, BASE_NR };

/* A valid SQE of each kind, to be spoiled one field at a time. */
static void base(struct aem_sqe *s, int kind)
{
	memset(s, 0, sizeof(*s));
	switch (kind) {
	case BASE_NOP:		aem_prep_nop(s); break;
	case BASE_TIMER:	aem_prep_subscribe_timer(s, 3600000 * T_MS, 0, 0, 0); break;
	case BASE_GEN:		aem_prep_subscribe_gen(s, 10, 5, 1, 16, 0, 0); break;
	case BASE_MSG:		aem_prep_subscribe_msg(s, 1000 + kind, 0, 0); break;
	case BASE_POST:		aem_prep_post(s, self_addr, "abc", 3, 0); break;
	case BASE_CALL:		aem_prep_call(s, self_addr, "abc", 3, 0, 10); break;
	case BASE_UNSUB:	aem_prep_unsubscribe(s, UNKNOWN_SUB); break;
	case BASE_WB:		aem_prep_writeback(s, UNKNOWN_CALL, "r", 1); break;
	case BASE_TIMER_SET:	aem_prep_timer_set(s, UNKNOWN_SUB, T_MS, 0); break;
	case BASE_GEN_SET:	aem_prep_gen_set(s, UNKNOWN_SUB, 1, 1, 1, 16); break;
	}
}

struct bad_case {
	const char *what;
	int kind;
	void (*spoil)(struct aem_sqe *s);
	int res;
	int reason;
};

#define SPOIL(name, body) static void name(struct aem_sqe *s) { body; }
SPOIL(op_last, s->opcode = AEM_OP_LAST)
SPOIL(op_255, s->opcode = 255)
SPOIL(flag_80, s->flags = 0x80)
SPOIL(flag_silent_4, s->flags = AEM_SQE_F_SILENT | 0x4)
SPOIL(nop_target, s->target = 1)
SPOIL(nop_arg, s->arg = 1)
SPOIL(nop_len, s->len = 1)
SPOIL(nop_slot, s->slot = 1)
SPOIL(nop_data, s->data[AEM_SQE_INLINE - 1] = 1)
SPOIL(nop_source, s->source = AEM_SRC_TIMER)
SPOIL(prio_classes, s->prio = AEM_MAX_CLASSES)
SPOIL(prio_nr, s->prio = (uint8_t)r.nr_classes)
SPOIL(prio_255, s->prio = 255)
SPOIL(src_none, s->source = AEM_SRC_NONE)
SPOIL(src_last, s->source = AEM_SRC_LAST)
SPOIL(src_200, s->source = 200)
SPOIL(timer_resv, s->timer.resv[0] = 1)
SPOIL(timer_resv1, s->timer.resv[1] = 1ull << 63)
SPOIL(timer_zero, s->timer.first_ns = 0)
SPOIL(gen_burst0, s->gen.burst = 0)
SPOIL(gen_len_big, s->gen.payload_len = 1U << 30)
SPOIL(gen_resv, s->gen.resv = 1)
SPOIL(msg_resv0, s->msg.resv0 = 1)
SPOIL(msg_resv2, s->msg.resv[2] = 1)
SPOIL(sub_target, s->target = 1)
SPOIL(sub_len, s->len = 4)
SPOIL(sub_arg, s->arg = 4)
SPOIL(len_33, s->len = AEM_SQE_INLINE + 1)
SPOIL(len_max, s->len = 0xffffffffu)
SPOIL(slot_len_big, { s->flags |= AEM_SQE_F_SLOT; s->slot = 0; s->len = r.slot_size + 1; })
SPOIL(slot_delivery, { s->flags |= AEM_SQE_F_SLOT; s->slot = r.send_slots; s->len = 4; })
SPOIL(slot_end, { s->flags |= AEM_SQE_F_SLOT; s->slot = r.send_slots + r.slot_count; s->len = 4; })
SPOIL(slot_max, { s->flags |= AEM_SQE_F_SLOT; s->slot = 0xffffffffu; s->len = 4; })
SPOIL(post_arg, s->arg = 7)
SPOIL(target_0, s->target = 0)
SPOIL(target_max, s->target = ~0ull)
SPOIL(target_kind9, s->target = 9ull << 56 | 1)
SPOIL(addr_channel, s->target = AEM_ADDR(r.ring_id, 999))
SPOIL(addr_ring, s->target = AEM_ADDR(0xfffffff0u, CHANNEL))
SPOIL(addr_ring0, s->target = AEM_ADDR(0, CHANNEL))

static const struct bad_case cases[] = {
	{ "opcode AEM_OP_LAST", BASE_NOP, op_last, -EINVAL, AEM_REFUSE_OPCODE },
	{ "opcode 255", BASE_NOP, op_255, -EINVAL, AEM_REFUSE_OPCODE },
	{ "opcode 255 on a post", BASE_POST, op_255, -EINVAL, AEM_REFUSE_OPCODE },
	{ "unknown flag", BASE_NOP, flag_80, -EINVAL, AEM_REFUSE_FIELD },
	{ "unknown flag, silent", BASE_NOP, flag_silent_4, -EINVAL, AEM_REFUSE_FIELD },
	{ "unknown flag on a post", BASE_POST, flag_80, -EINVAL, AEM_REFUSE_FIELD },
	{ "NOP target", BASE_NOP, nop_target, -EINVAL, AEM_REFUSE_FIELD },
	{ "NOP arg", BASE_NOP, nop_arg, -EINVAL, AEM_REFUSE_FIELD },
	{ "NOP len", BASE_NOP, nop_len, -EINVAL, AEM_REFUSE_FIELD },
	{ "NOP slot", BASE_NOP, nop_slot, -EINVAL, AEM_REFUSE_FIELD },
	{ "NOP data", BASE_NOP, nop_data, -EINVAL, AEM_REFUSE_FIELD },
	{ "NOP source", BASE_NOP, nop_source, -EINVAL, AEM_REFUSE_FIELD },
	{ "subscribe prio == AEM_MAX_CLASSES", BASE_TIMER, prio_classes, -EINVAL, AEM_REFUSE_FIELD },
	{ "subscribe prio == nr_classes", BASE_GEN, prio_nr, -EINVAL, AEM_REFUSE_FIELD },
	{ "post prio == nr_classes", BASE_POST, prio_nr, -EINVAL, AEM_REFUSE_FIELD },
	{ "subscribe prio 255", BASE_MSG, prio_255, -EINVAL, AEM_REFUSE_FIELD },
	{ "post prio 255", BASE_POST, prio_255, -EINVAL, AEM_REFUSE_FIELD },
	{ "call prio 255", BASE_CALL, prio_255, -EINVAL, AEM_REFUSE_FIELD },
	{ "source NONE", BASE_TIMER, src_none, -EINVAL, AEM_REFUSE_FIELD },
	{ "source LAST", BASE_TIMER, src_last, -EINVAL, AEM_REFUSE_FIELD },
	{ "source 200", BASE_GEN, src_200, -EINVAL, AEM_REFUSE_FIELD },
	{ "timer resv[0]", BASE_TIMER, timer_resv, -EINVAL, AEM_REFUSE_FIELD },
	{ "timer resv[1]", BASE_TIMER, timer_resv1, -EINVAL, AEM_REFUSE_FIELD },
	{ "timer first_ns 0", BASE_TIMER, timer_zero, -EINVAL, AEM_REFUSE_FIELD },
	{ "gen burst 0", BASE_GEN, gen_burst0, -EINVAL, AEM_REFUSE_FIELD },
	{ "gen payload_len 2^30", BASE_GEN, gen_len_big, -EINVAL, AEM_REFUSE_FIELD },
	{ "gen resv", BASE_GEN, gen_resv, -EINVAL, AEM_REFUSE_FIELD },
	{ "msg resv0", BASE_MSG, msg_resv0, -EINVAL, AEM_REFUSE_FIELD },
	{ "msg resv[2]", BASE_MSG, msg_resv2, -EINVAL, AEM_REFUSE_FIELD },
	{ "subscribe target", BASE_TIMER, sub_target, -EINVAL, AEM_REFUSE_FIELD },
	{ "subscribe len", BASE_MSG, sub_len, -EINVAL, AEM_REFUSE_FIELD },
	/* Version 4: arg names an implementation; the generator has no 4th. */
	{ "subscribe arg", BASE_GEN, sub_arg, -EOPNOTSUPP, AEM_REFUSE_FIELD },
	{ "post len 33 inline", BASE_POST, len_33, -EINVAL, AEM_REFUSE_FIELD },
	{ "post len 2^32-1", BASE_POST, len_max, -EINVAL, AEM_REFUSE_FIELD },
	{ "call len 33 inline", BASE_CALL, len_33, -EINVAL, AEM_REFUSE_FIELD },
	{ "post arg", BASE_POST, post_arg, -EINVAL, AEM_REFUSE_FIELD },
	{ "post slot len > slot_size", BASE_POST, slot_len_big, -EINVAL, AEM_REFUSE_FIELD },
	{ "post from a delivery slot", BASE_POST, slot_delivery, -EINVAL, AEM_REFUSE_SLOT },
	{ "post from slot past the end", BASE_POST, slot_end, -EINVAL, AEM_REFUSE_SLOT },
	{ "call from slot 2^32-1", BASE_CALL, slot_max, -EINVAL, AEM_REFUSE_SLOT },
	{ "post to channel 999", BASE_POST, addr_channel, -ENOENT, AEM_REFUSE_ID },
	{ "post to ring 0xfffffff0", BASE_POST, addr_ring, -ENOENT, AEM_REFUSE_ID },
	{ "post to ring 0", BASE_POST, addr_ring0, -ENOENT, AEM_REFUSE_ID },
	{ "call to channel 999", BASE_CALL, addr_channel, -ENOENT, AEM_REFUSE_ID },
	{ "unsubscribe id 0", BASE_UNSUB, target_0, -ENOENT, AEM_REFUSE_ID },
	{ "unsubscribe id ~0", BASE_UNSUB, target_max, -ENOENT, AEM_REFUSE_ID },
	{ "unsubscribe unknown id", BASE_UNSUB, NULL, -ENOENT, AEM_REFUSE_ID },
	{ "unsubscribe kind 9", BASE_UNSUB, target_kind9, -ENOENT, AEM_REFUSE_ID },
	{ "writeback token 0", BASE_WB, target_0, -ENOENT, AEM_REFUSE_ID },
	{ "writeback unknown token", BASE_WB, NULL, -ENOENT, AEM_REFUSE_ID },
	{ "writeback token ~0", BASE_WB, target_max, -ENOENT, AEM_REFUSE_ID },
	{ "timer_set unknown id", BASE_TIMER_SET, NULL, -ENOENT, AEM_REFUSE_ID },
	{ "gen_set id 0", BASE_GEN_SET, target_0, -ENOENT, AEM_REFUSE_ID },
};

static void one_field_at_a_time(void)
{
	struct aem_ring_stats before, after;
	unsigned i, bad = 0;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	int j;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *k = &cases[i];

		before = t_stats(&r);
		sqe = t_sqe(&r);
		base(sqe, k->kind);
		if (k->spoil)
			k->spoil(sqe);
		aem_sqe_set_data(sqe, 0xbad0000 + i);
		t_submit(&r);
		c = t_result(&r, 0xbad0000 + i, 5000);
		after = t_stats(&r);
		if (c.res != k->res) {
			fprintf(stderr, "%s: res %d (%s), want %d (%s)\n", k->what, c.res,
				c.res < 0 ? strerror(-c.res) : "ok", k->res, strerror(-k->res));
			bad++;
			if (c.res >= 0 && k->kind <= BASE_MSG && c.id) {
				/* accepted a subscription it should not have: end it */
				sqe = t_sqe(&r);
				aem_prep_unsubscribe(sqe, c.id);
				sqe->flags |= AEM_SQE_F_SILENT;
				t_submit(&r);
			}
			continue;
		}
		for (j = 0; j < AEM_REFUSE_NR; j++) {
			uint64_t want = before.refused[j] + (j == k->reason);

			if (after.refused[j] != want) {
				fprintf(stderr, "%s: refused[%d] %llu -> %llu, want +%d\n", k->what, j,
					(unsigned long long)before.refused[j],
					(unsigned long long)after.refused[j], j == k->reason);
				bad++;
			}
		}
	}
	if (bad)
		t_fail("%u of %zu single-field cases answered wrongly (listed above)", bad,
		       sizeof(cases) / sizeof(cases[0]));
	t_expect_quiet(&r, 30, "after single-field cases");
}

struct sent {
	uint8_t opcode, flags;
	bool answered;
	bool withdrawn;		/* a POST held at a full target, taken back (never consumed) */
	bool ended;		/* its end result came (SUBSCRIBE with END_STATS) */
	int res;		/* of the first result */
};

struct tally {
	struct sent *sent;
	struct aem_sqe *sqes;	/* what was submitted, for the report of a bad answer */
	unsigned n, withdrawn;
	uint64_t results, errors, timeouts, documented, cleanup_errors, by_errno[160];
};

/* The flags @s's opcode takes. */
static unsigned flags_taken(const struct sent *s)
{
	return AEM_SQE_FLAGS_ALL | (s->opcode == AEM_OP_POST ? AEM_SQE_F_LOSSY : 0) |
	       (s->opcode == AEM_OP_SUBSCRIBE ? AEM_SQE_F_END_STATS : 0);
}

static void account(struct tally *t, const struct aem_cqe *c)
{
	struct sent *s;

	if (!(c->flags & AEM_CQE_F_RESULT)) {
		if (c->flags & AEM_CQE_F_SLOT)
			t_release(&r, c->slot);
		return;
	}
	if (c->user_data == ~0ull) {	/* our own clean-up: the subscription may have ended */
		t->cleanup_errors += c->res < 0;
		return;
	}
	if (c->user_data >= t->n)
		t_fail("result for user_data %#llx, never submitted", (unsigned long long)c->user_data);
	s = &t->sent[c->user_data];
	if ((c->flags & AEM_CQE_F_STATS) && s->opcode == AEM_OP_SUBSCRIBE) {
		/* The end result AEM_SQE_F_END_STATS asked for: a second word, not the answer. */
		t_assert(s->flags & AEM_SQE_F_END_STATS, "SQE %llu (flags %#x): end result unasked",
			 (unsigned long long)c->user_data, s->flags);
		t_assert(!s->ended, "SQE %llu: two end results", (unsigned long long)c->user_data);
		s->ended = true;
		return;
	}
	if (s->answered) {
		const struct aem_sqe *q = &t->sqes[c->user_data];

		t_fail("two results for SQE %llu (res %d, then %d id %#llx flags %#x): opcode %u flags %#x "
		       "prio %u source %u len %u target %#llx slot %u arg %u",
		       (unsigned long long)c->user_data, s->res, c->res, (unsigned long long)c->id,
		       c->flags, q->opcode, q->flags, q->prio, q->source, q->len,
		       (unsigned long long)q->target, q->slot, q->arg);
	}
	s->answered = true;
	s->res = c->res;
	t->results++;
	if (s->opcode >= AEM_OP_LAST && c->res != -EINVAL)
		t_fail("SQE %llu with opcode %u: res %d", (unsigned long long)c->user_data, s->opcode, c->res);
	if ((s->flags & ~flags_taken(s)) && c->res >= 0)
		t_fail("SQE %llu with flags %#x accepted", (unsigned long long)c->user_data, s->flags);
	if (c->res < 0) {
		t->errors++;
		if (-c->res < 160)
			t->by_errno[-c->res]++;
		if (s->opcode == AEM_OP_CALL && (c->res == -ETIMEDOUT || c->res == -ECONNRESET))
			t->timeouts++;
		else if (c->res == -EINVAL || c->res == -ENOENT || c->res == -EOPNOTSUPP)
			t->documented++;
	} else if (s->opcode == AEM_OP_SUBSCRIBE && c->id) {
		/*
		 * A spoiled subscription got through: end it now.  It may be a
		 * generator flooding the ring faster than we drain it, which
		 * only an unsubscribe stops.
		 */
		struct aem_sqe *u = aem_get_sqe(&r);

		if (!u) {
			t_submit(&r);
			u = t_sqe(&r);
		}
		aem_prep_unsubscribe(u, c->id);
		u->flags = AEM_SQE_F_SILENT;
		u->user_data = ~0ull;
		/* A POST to a full target may hold the queue: garbage()'s submit_all() ends it. */
		aem_submit(&r);
	}
}

/*
 * Take back the SQE the submission stopped at (a POST whose target stays
 * full), as PROTOCOL.md "Back-pressure on POST" lets an application do:
 * lower the tail to the head, then queue again the SQEs that were behind
 * it.  A garbage generator in the POST's class can refill the room we make
 * faster than we retry, and the clean-up that would end it waits behind
 * the POST.  Nothing consumes SQEs between enters on this ring.
 */
static void withdraw_held(struct tally *t)
{
	struct aem_sq *sq = &r.sq;
	unsigned head = aem_load_acquire(sq->khead), n = sq->sqe_tail - head, i;
	struct aem_sqe held, *behind;

	t_assert(n && n <= sq->ring_entries, "withdraw: %u SQEs queued", n);
	held = sq->sqes[head & sq->ring_mask];
	t_assert(held.opcode == AEM_OP_POST && held.user_data < t->n,
		 "the submission stopped at opcode %u (user_data %#llx), not a POST of ours",
		 held.opcode, (unsigned long long)held.user_data);
	behind = malloc(n * sizeof(*behind));
	t_assert(behind, "out of memory");
	for (i = 1; i < n; i++)
		behind[i - 1] = sq->sqes[(head + i) & sq->ring_mask];
	sq->sqe_tail = sq->sqe_head = head;
	aem_store_release(sq->ktail, head);
	t->sent[held.user_data].withdrawn = true;
	t->withdrawn++;
	for (i = 0; i + 1 < n; i++)
		*t_sqe(&r) = behind[i];
	free(behind);
}

/*
 * Submit everything queued.  A POST whose target is full stops the queue
 * (it is taken once the target has room), so read events between tries;
 * one that still holds it after a second is taken back (withdraw_held).
 */
static void submit_all(struct tally *t)
{
	uint64_t end = t_now_ns() + 30000 * T_MS, held_since = 0;
	unsigned held_at = 0;
	struct aem_cqe c;
	unsigned k;

	/* Until the kernel side has consumed every SQE, not just seen them published. */
	while (r.sq.sqe_tail != aem_load_acquire(r.sq.khead)) {
		int ret = aem_submit(&r);
		unsigned head;

		if (ret < 0)
			t_fail("aem_submit: %s", strerror(-ret));
		head = aem_load_acquire(r.sq.khead);
		if (r.sq.sqe_tail == head)
			break;
		if (!held_since || head != held_at) {
			held_at = head;
			held_since = t_now_ns();
		} else if (t_now_ns() - held_since > 1000 * T_MS) {
			withdraw_held(t);
			held_since = 0;
			continue;
		}
		t_assert(t_now_ns() < end, "the queue stood still for 30 s while its targets were read");
		for (k = 0; k < 4096 && t_next(&r, &c, 0); k++)
			account(t, &c);
		aem_release_commit(&r);
	}
}

/*
 * The withdrawal itself: POSTs to ourselves, reading nothing, until the
 * class and the backlog are full and the submission stops at one; a NOP
 * queued behind it waits too.  Taken back, the POST is never answered and
 * the NOP is, and the ring reads on.
 */
static void held_post_withdrawn(void)
{
	struct sent sent[2] = { { .opcode = AEM_OP_POST }, { .opcode = AEM_OP_NOP } };
	struct aem_sqe sqes[2];
	struct tally t = { .sent = sent, .sqes = sqes, .n = 2 };
	uint64_t full0 = t_stats(&r).refused[AEM_REFUSE_FULL], end = t_now_ns() + 20000 * T_MS;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	unsigned k;

	while (t_stats(&r).refused[AEM_REFUSE_FULL] == full0) {
		t_assert(t_now_ns() < end, "POSTs to a ring nobody reads were never held");
		sqe = t_sqe(&r);
		aem_prep_post(sqe, self_addr, "x", 1, 0);
		sqe->flags |= AEM_SQE_F_SILENT;
		sqe->user_data = 0;
		t_assert(aem_submit(&r) >= 0, "aem_submit");
	}
	t_assert(r.sq.sqe_tail != aem_load_acquire(r.sq.khead), "a held POST stays in the queue");
	sqe = t_sqe(&r);
	aem_prep_nop(sqe);
	sqe->user_data = 1;
	t_assert(aem_submit(&r) >= 0, "aem_submit");
	if (r.sq.sqe_tail == aem_load_acquire(r.sq.khead)) {
		/*
		 * Held by a failed allocation, not a full target (fault
		 * injection): the retry took both.  Nothing to take back.
		 */
		for (k = 0; k < (1u << 18) && t_next(&r, &c, 100); k++)
			account(&t, &c);
		aem_release_commit(&r);
		t_assert(sent[1].answered, "the NOP was answered");
		t_note("the held POST went through on its retry: nothing withdrawn");
		return;
	}
	t_assert(r.sq.sqe_tail - aem_load_acquire(r.sq.khead) == 2, "the NOP waits behind the POST");
	withdraw_held(&t);
	t_assert(aem_submit(&r) >= 0, "aem_submit");
	t_eq(r.sq.sqe_tail, aem_load_acquire(r.sq.khead));
	for (k = 0; k < (1u << 18) && t_next(&r, &c, 100); k++)
		account(&t, &c);
	aem_release_commit(&r);
	t_assert(sent[1].answered && sent[1].res == 0, "the NOP behind the withdrawn POST was answered");
	t_assert(!sent[0].answered && sent[0].withdrawn && t.withdrawn == 1, "the POST was withdrawn, unanswered");
	printf("a held POST withdrawn after %llu refusals, the NOP behind it answered\n",
	       (unsigned long long)(t_stats(&r).refused[AEM_REFUSE_FULL] - full0));
}

static void make_garbage(struct aem_sqe *sqe, uint64_t *seed)
{
	uint64_t *w = (uint64_t *)sqe;
	unsigned j, spoils;

	if (t_rand(seed) % 3 == 0) {
		for (j = 0; j < sizeof(*sqe) / 8; j++)
			w[j] = t_rand(seed);
		return;
	}
	base(sqe, t_rand(seed) % BASE_NR);
	/* spoil 1-3 random bytes or aligned words */
	spoils = 1 + t_rand(seed) % 3;
	for (j = 0; j < spoils; j++) {
		unsigned at = t_rand(seed) % sizeof(*sqe);

		if (t_rand(seed) % 2)
			((uint8_t *)sqe)[at] = (uint8_t)t_rand(seed);
		else
			w[at / 8] = t_rand(seed);
	}
}

static bool silent_ok(const struct sent *s)
{
	return (s->flags & AEM_SQE_F_SILENT) && !(s->flags & ~flags_taken(s));
}

static void garbage(uint64_t seed, unsigned n)
{
	struct tally t = { .sent = calloc(n, sizeof(struct sent)), .sqes = calloc(n, sizeof(struct aem_sqe)),
			   .n = n };
	unsigned i, k, missing = 0, calls = 0, silent = 0;
	struct aem_ring_stats st;
	struct aem_sqe *sqe, tmp;
	uint64_t refused0, slot0, full0, refused, end;
	struct aem_cqe c;

	t_assert(t.sent && t.sqes, "out of memory");
	st = t_stats(&r);
	refused0 = t_refused_total(&st);
	slot0 = st.refused[AEM_REFUSE_SLOT];
	full0 = st.refused[AEM_REFUSE_FULL];
	for (i = 0; i < n; i++) {
		make_garbage(&tmp, &seed);
		tmp.user_data = i;
		t.sqes[i] = tmp;
		t.sent[i].opcode = tmp.opcode;
		t.sent[i].flags = tmp.flags;
		sqe = aem_get_sqe(&r);
		if (!sqe) {
			submit_all(&t);
			sqe = t_sqe(&r);
		}
		memcpy(sqe, &tmp, sizeof(tmp));
		/*
		 * Keep reading so results never wait in the backlog for long;
		 * a bounded read, since a flood may refill the ring as fast.
		 */
		if (i % 256 == 255) {
			submit_all(&t);
			for (k = 0; k < 4096 && t_next(&r, &c, 0); k++)
				account(&t, &c);
			/* Slots go back, or slot-borne events block their class's backlog. */
			aem_release_commit(&r);
		}
	}
	submit_all(&t);

	/*
	 * Stragglers: results behind the backlog, and calls until their
	 * timeout (the default, 5 s, covers all but garbage timeouts).
	 */
	uint64_t calls_end = t_now_ns() + (AEM_CALL_DEFAULT_TIMEOUT_MS + 1000) * T_MS;
	end = t_now_ns() + 20000 * T_MS;
	while (t_now_ns() < end) {
		if (t_next(&r, &c, 100)) {
			account(&t, &c);
			continue;
		}
		for (i = 0, missing = 0, calls = 0; i < n; i++) {
			if (t.sent[i].answered || t.sent[i].withdrawn || silent_ok(&t.sent[i]))
				continue;
			if (t.sent[i].opcode == AEM_OP_CALL)
				calls++;
			else
				missing++;
		}
		if (!missing && (!calls || t_now_ns() > calls_end))
			break;
	}
	for (i = 0, missing = 0, calls = 0; i < n; i++) {
		if (t.sent[i].answered || t.sent[i].withdrawn)
			continue;
		if (silent_ok(&t.sent[i]))
			silent++;
		else if (t.sent[i].opcode == AEM_OP_CALL)
			calls++;
		else if (missing++ < 5)
			fprintf(stderr, "no result for SQE %u: opcode %u flags %#x\n", i,
				t.sent[i].opcode, t.sent[i].flags);
	}

	st = t_stats(&r);
	refused = t_refused_total(&st) - refused0;
	printf("garbage: %u SQEs (%u POSTs withdrawn), %llu results, %llu errors (%llu call timeouts, %llu of our clean-up), %u silent, "
	       "%u calls unanswered, %llu refusals [OPCODE %llu FIELD %llu ID %llu SLOT %llu INDEX %llu NOMEM %llu FULL %llu]\n",
	       n, t.withdrawn, (unsigned long long)t.results, (unsigned long long)t.errors,
	       (unsigned long long)t.timeouts, (unsigned long long)t.cleanup_errors, silent, calls, (unsigned long long)refused,
	       (unsigned long long)st.refused[AEM_REFUSE_OPCODE], (unsigned long long)st.refused[AEM_REFUSE_FIELD],
	       (unsigned long long)st.refused[AEM_REFUSE_ID], (unsigned long long)st.refused[AEM_REFUSE_SLOT],
	       (unsigned long long)st.refused[AEM_REFUSE_INDEX], (unsigned long long)st.refused[AEM_REFUSE_NOMEM],
	       (unsigned long long)st.refused[AEM_REFUSE_FULL]);
	for (i = 1; i < 160; i++)
		if (t.by_errno[i])
			printf("  -%s: %llu\n", strerrorname_np(i) ? strerrorname_np(i) : "?",
			       (unsigned long long)t.by_errno[i]);
	if (missing)
		t_fail("%u SQEs never answered (ring dropped %llu events)", missing,
		       (unsigned long long)st.dropped);
	t_assert(refused >= t.documented, "%llu refusals counted for %llu -EINVAL/-ENOENT/-EOPNOTSUPP results",
		 (unsigned long long)refused, (unsigned long long)t.documented);
	/*
	 * Slot refusals also count slot-ring releases, which answer with no CQE
	 * (ours are all of slots we were handed, but a garbage writeback may
	 * have named one first): leave them out of the upper bound, and the
	 * POSTs held at a full target, which wait in the queue with no CQE
	 * until it has room.
	 */
	uint64_t sqe_refused = refused - (st.refused[AEM_REFUSE_SLOT] - slot0) -
			       (st.refused[AEM_REFUSE_FULL] - full0);
	t_assert(sqe_refused <= t.errors - t.timeouts + t.cleanup_errors,
		 "%llu refusals counted, only %llu error results (%llu of them our clean-up's)",
		 (unsigned long long)sqe_refused,
		 (unsigned long long)(t.errors - t.timeouts + t.cleanup_errors),
		 (unsigned long long)t.cleanup_errors);
	free(t.sqes);
	free(t.sent);
}

int main(void)
{
	const char *env = getenv("AEM_TEST_GARBAGE");
	unsigned n = env ? (unsigned)strtoul(env, NULL, 0) : 200000;
	uint64_t seed = t_seed();
	struct aem_params p = t_params(1024, 8192, 2);
	struct aem_sqe *sqe;

	p.backlog_limit = 1 << 16;
	t_setup(&r, &p);
	self_addr = AEM_ADDR(r.ring_id, CHANNEL);
	t_sub_msg(&r, CHANNEL, 0, 0x5);

	one_field_at_a_time();
	held_post_withdrawn();
	garbage(seed, n);

	/* Still a working ring. */
	sqe = t_sqe(&r);
	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 0x600d);
	t_submit(&r);
	struct aem_cqe c;
	uint64_t end = t_now_ns() + 10000 * T_MS;
	for (;;) {
		t_assert(t_now_ns() < end && t_next(&r, &c, 5000), "NOP after garbage: no result");
		if ((c.flags & AEM_CQE_F_RESULT) && c.user_data == 0x600d)
			break;
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
	}
	t_eq(c.res, 0);
	aem_teardown(&r);
	return T_EXIT_PASS;
}
