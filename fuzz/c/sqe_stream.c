/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: a hostile SQE stream into the ring core.
 *
 * The input is a small program.  Its first bytes size one ring; then each
 * step is one of: write a raw 64-byte SQE (optionally steered towards ids,
 * addresses and slots that exist, so the fuzzer gets past the id checks),
 * submit, drain a completion ring, post events from the fuzz source,
 * release slots (well or badly), reclaim, flush the backlog.
 *
 * Between steps and at the end it checks what the protocol promises:
 *  - every consumed SQE is answered at most once, and exactly once unless
 *    it was SILENT (then only an error is answered) or a CALL (its answer
 *    may still be pending);
 *  - the core never hands out a slot the user holds, never publishes more
 *    CQEs than the ring has room for, never delivers an event out of order
 *    or with a corrupted payload;
 *  - produced == delivered + backlog + dropped for the ring and for every
 *    subscription, and every refusal is counted in aem_ring_stats.refused.
 */
#include "harness.h"
#include "aem_sources.h"

#define FZ_MAX_SQES	2048
#define FZ_UD_MAGIC	0xAE5E000000000000ULL
#define FZ_MAX_TOKENS	64
#define FZ_MAX_STEPS	512

struct fz_sqe_rec {
	u8	opcode;
	u8	flags;
	u32	slot;		/* slot named with F_SLOT */
	bool	consumed;
	bool	limbo;		/* its slot went to LIMBO when consumed */
	u8	answers;
	bool	ended;		/* SUBSCRIBE with END_STATS: its end result came */
	s32	res;
};

static struct fz_ring ring;
static struct fz_sqe_rec recs[FZ_MAX_SQES];
static u32 nrecs;
static u32 pos_rec[AEM_MAX_SQ_ENTRIES > 4096 ? 4096 : AEM_MAX_SQ_ENTRIES];
static u64 tokens[FZ_MAX_TOKENS];	/* ids seen: subscriptions, call tokens */
static u32 ntokens;
static u32 slot_limbo_rec[FZ_MAX_SLOTS];	/* rec whose writeback put the slot in limbo */
static u64 bad_releases;		/* slot-ring entries the core must refuse */
static u64 error_results;		/* results with res < 0 that are refusals */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_register_source();
	/* The real timer wheel and generator, driven by the harness's clock. */
	FZ_CHECK(aem_core_register_source(&aem_timer_source_ops) == 0, "registering the timer source");
	FZ_CHECK(aem_core_register_source(&aem_gen_source_ops) == 0, "registering the generator");
	return 0;
}

/* The harness's clock: ahead of the real one by whatever the input advanced. */
static u64 fake_now;

static u64 advance_clock(u32 ns)
{
	u64 real = aem_now_ns();

	if (fake_now < real)
		fake_now = real;
	fake_now += ns;
	return fake_now;
}

static void add_token(u64 id)
{
	if (!id)
		return;
	if (ntokens < FZ_MAX_TOKENS)
		tokens[ntokens++] = id;
	else
		tokens[id % FZ_MAX_TOKENS] = id;
}

static u32 held_slot(u32 pick, bool *found)
{
	u32 n = ring.p.send_slots + ring.p.slot_count, i;

	*found = false;
	for (i = 0; i < n && i < FZ_MAX_SLOTS; i++) {
		u32 s = (pick + i) % n;

		if (ring.slot_state[s] == FZ_SLOT_HELD) {
			*found = true;
			return s;
		}
	}
	return 0;
}

/* Take a slot handed out in a CQE: it must be a delivery slot the core owned. */
static void take_slot(u32 slot, s32 res)
{
	FZ_CHECK(fz_is_delivery_slot(&ring, slot), "CQE names slot %u outside the delivery slots [%u,%u)",
		 slot, ring.p.send_slots, ring.p.send_slots + ring.p.slot_count);
	FZ_CHECK(res >= 0 && (u32)res <= ring.p.slot_size, "slot CQE with res %d, slot size %u", res,
		 ring.p.slot_size);
	if (slot >= FZ_MAX_SLOTS)
		return;
	FZ_CHECK(ring.slot_state[slot] != FZ_SLOT_HELD, "slot %u handed out while the user holds it", slot);
	if (ring.slot_state[slot] == FZ_SLOT_LIMBO) {
		/* Reissued: the writeback that named it must have succeeded. */
		struct fz_sqe_rec *w = &recs[slot_limbo_rec[slot]];

		FZ_CHECK(!(w->answers && w->res < 0),
			 "slot %u reissued although the writeback naming it was refused (%d)", slot, w->res);
		w->limbo = false;
	}
	ring.slot_state[slot] = FZ_SLOT_HELD;
}

static void on_result(const struct aem_cqe *cqe)
{
	u64 seq;
	struct fz_sqe_rec *rec;

	FZ_CHECK((cqe->user_data & 0xFFFF000000000000ULL) == FZ_UD_MAGIC,
		 "result CQE with user_data %llx that no SQE carried", (unsigned long long)cqe->user_data);
	seq = cqe->user_data & 0xFFFFFFFFULL;
	FZ_CHECK(seq < nrecs, "result for SQE %llu, only %u written", (unsigned long long)seq, nrecs);
	rec = &recs[seq];
	FZ_CHECK(rec->consumed, "result for SQE %llu that was never consumed", (unsigned long long)seq);
	if ((cqe->flags & AEM_CQE_F_STATS) && rec->opcode == AEM_OP_SUBSCRIBE) {
		/* The end result AEM_SQE_F_END_STATS asked for: a second word, after the answer. */
		FZ_CHECK(rec->flags & AEM_SQE_F_END_STATS, "SQE %llu: end result unasked",
			 (unsigned long long)seq);
		FZ_CHECK(!rec->ended && cqe->res == 0 && AEM_ID_KIND(cqe->id) == AEM_ID_KIND_SUB,
			 "SQE %llu: a second end result, or res %d id %llx", (unsigned long long)seq,
			 cqe->res, (unsigned long long)cqe->id);
		rec->ended = true;
		return;
	}
	FZ_CHECK(rec->answers == 0, "SQE %llu answered twice (%d, then %d)", (unsigned long long)seq,
		 rec->res, cqe->res);
	rec->answers = 1;
	rec->res = cqe->res;
	if (rec->flags & AEM_SQE_F_SILENT)
		FZ_CHECK(cqe->res < 0, "SILENT SQE %llu answered with success %d", (unsigned long long)seq,
			 cqe->res);
	if (cqe->res < 0 && !(rec->opcode == AEM_OP_CALL &&
			      (cqe->res == -ETIMEDOUT || cqe->res == -ECONNRESET)))
		error_results++;
	if (rec->opcode == AEM_OP_SUBSCRIBE && cqe->res >= 0) {
		FZ_CHECK(cqe->id != 0 && AEM_ID_KIND(cqe->id) == AEM_ID_KIND_SUB,
			 "subscribe answered with id %llx", (unsigned long long)cqe->id);
		add_token(cqe->id);
	}
	if (rec->limbo && rec->slot < FZ_MAX_SLOTS && ring.slot_state[rec->slot] == FZ_SLOT_LIMBO &&
	    slot_limbo_rec[rec->slot] == seq) {
		/* A refused writeback leaves the slot with the user. */
		ring.slot_state[rec->slot] = cqe->res < 0 ? FZ_SLOT_HELD : FZ_SLOT_KERNEL;
		rec->limbo = false;
	}
}

static void on_event(const struct aem_cqe *cqe, unsigned cls)
{
	const uint8_t *data;
	u32 len;

	FZ_CHECK(cqe->res >= 0, "event CQE with res %d", cqe->res);
	if (cqe->flags & AEM_CQE_F_SLOT) {
		data = ring.view.payload + (size_t)cqe->slot * ring.p.slot_size;
		len = (u32)cqe->res;
	} else {
		FZ_CHECK(cqe->res <= AEM_CQE_INLINE, "inline event with %d bytes", cqe->res);
		data = cqe->data;
		len = (u32)cqe->res;
	}
	if (fz_source_id >= 0 && cqe->source == fz_source_id) {
		struct fz_sub *fs = fz_sub_by_id(&ring, cqe->id);

		FZ_CHECK(fs, "fuzz-source event with id %llx that no subscription has",
			 (unsigned long long)cqe->id);
		FZ_CHECK(cqe->prio == cls, "event of class %u delivered in class %u", cqe->prio, cls);
		fs->seen++;
		fz_check_event_payload(fs, data, len, cqe->flags & AEM_CQE_F_TRUNC);
		if (cqe->flags & AEM_CQE_F_FINAL)
			fs->live = false;
	}
	if (cqe->flags & AEM_CQE_F_CALL)
		FZ_CHECK(AEM_ID_KIND(cqe->id) == AEM_ID_KIND_CALL, "call event with id %llx",
			 (unsigned long long)cqe->id);
	add_token(cqe->id);
}

static void drain(unsigned cls, u32 max)
{
	u32 tail, head, n, i;

	if (cls > ring.p.nr_classes)	/* the class rings, then the result ring */
		return;
	tail = aem_load_acquire(fz_cq(&ring, cls)->ktail);
	head = ring.cq_local_head[cls];
	n = tail - head;
	FZ_CHECK(n <= fz_cq(&ring, cls)->ring_entries, "CQ %u: %u CQEs published in a ring of %u", cls, n,
		 fz_cq(&ring, cls)->ring_entries);
	if (n > max)
		n = max;
	for (i = 0; i < n; i++) {
		const struct aem_cqe *cqe = &fz_cq(&ring, cls)->cqes[(head + i) & (fz_cq(&ring, cls)->ring_entries - 1)];

		FZ_CHECK(!(cqe->flags & ~(AEM_CQE_F_RESULT | AEM_CQE_F_SLOT | AEM_CQE_F_CALL |
					  AEM_CQE_F_FINAL | AEM_CQE_F_TRUNC | AEM_CQE_F_STATS)),
			 "CQE with unknown flags %x", cqe->flags);
		FZ_CHECK(!(cqe->flags & AEM_CQE_F_STATS) || (cqe->flags & AEM_CQE_F_RESULT),
			 "event CQE with F_STATS (flags %x)", cqe->flags);
		FZ_CHECK(!(cqe->flags & AEM_CQE_F_RESULT) == (cls < ring.p.nr_classes),
			 "CQ %u (%u classes) carries a CQE with flags %x", cls, ring.p.nr_classes,
			 cqe->flags);
		FZ_TRACE("  cqe class %u: ud %llx id %llx res %d flags %x slot %u src %u\n", cls,
			 (unsigned long long)cqe->user_data, (unsigned long long)cqe->id, cqe->res,
			 cqe->flags, cqe->slot, cqe->source);
		if (cqe->flags & AEM_CQE_F_SLOT)
			take_slot(cqe->slot, cqe->res);
		if (cqe->flags & AEM_CQE_F_RESULT) {
			ring.results++;
			on_result(cqe);
		} else {
			ring.events++;
			on_event(cqe, cls);
		}
	}
	ring.cq_local_head[cls] = head + n;
	aem_store_release(fz_cq(&ring, cls)->khead, head + n);
}

static void drain_all(void)
{
	unsigned c;

	for (c = 0; c <= ring.p.nr_classes; c++)
		drain(c, fz_cq(&ring, c)->ring_entries);
}

/*
 * Write one SQE from the input.  ctl steers fields the fuzzer could not
 * guess: bit 0 target := a known id; bit 1 post/call target := a channel
 * of this ring; bit 2 slot := a held slot (writeback) or send slot
 * (post/call); bit 3 make opcode, flags, prio and source valid.
 */
static void write_sqe(struct fz_in *in)
{
	struct aem_sqe sqe;
	u8 ctl = fz_u8(in);
	u32 head = aem_load_acquire(ring.view.sq.khead);
	struct fz_sqe_rec *rec;
	bool found;

	fz_bytes(in, &sqe, sizeof(sqe));
	if (nrecs == FZ_MAX_SQES || ring.sq_local_tail - head >= ring.p.sq_entries)
		return;
	if (ctl & 8) {
		sqe.opcode %= AEM_OP_LAST;
		sqe.flags &= AEM_SQE_FLAGS_ALL;
		sqe.prio %= ring.p.nr_classes;
		sqe.source %= AEM_SRC_LAST;
		if (sqe.opcode != AEM_OP_CALL)
			sqe.arg = 0;
		if (!(sqe.flags & AEM_SQE_F_SLOT))
			sqe.slot = 0;
		if (sqe.len > AEM_SQE_INLINE && !(sqe.flags & AEM_SQE_F_SLOT))
			sqe.len %= AEM_SQE_INLINE + 1;
		if (sqe.opcode == AEM_OP_SUBSCRIBE)
			memset((u8 *)&sqe.data + 8, 0, sizeof(sqe.data) - 8);
		if (sqe.opcode == AEM_OP_CALL && sqe.arg > 50)
			sqe.arg = 1 + sqe.arg % 50;
	}
	if ((ctl & 1) && ntokens)
		sqe.target = tokens[sqe.target % ntokens];
	if ((ctl & 2) && (sqe.opcode == AEM_OP_POST || sqe.opcode == AEM_OP_CALL))
		sqe.target = AEM_ADDR(ring.id, sqe.target & 3);
	if ((ctl & 4) && (sqe.flags & AEM_SQE_F_SLOT)) {
		if (sqe.opcode == AEM_OP_WRITEBACK) {
			u32 s = held_slot(sqe.slot, &found);

			if (found)
				sqe.slot = s;
		} else if (ring.p.send_slots) {
			sqe.slot %= ring.p.send_slots;
		}
		if (sqe.len > ring.p.slot_size)
			sqe.len %= ring.p.slot_size + 1;
	}
	/*
	 * A writeback may name a delivery slot whose CQE the user has not read
	 * yet: the core rightly takes it (it is user-owned and the event's), and
	 * the user then reads its own overwritten event.  That harms only the
	 * user and leaves nothing to check, so the hostile user here names
	 * only slots it holds, and anything else outside the delivery slots.
	 */
	if (sqe.opcode == AEM_OP_WRITEBACK && (sqe.flags & AEM_SQE_F_SLOT) &&
	    fz_is_delivery_slot(&ring, sqe.slot) &&
	    (sqe.slot >= FZ_MAX_SLOTS || ring.slot_state[sqe.slot] != FZ_SLOT_HELD))
		sqe.slot = ring.p.send_slots + ring.p.slot_count + (sqe.slot & 0xff);
	sqe.user_data = FZ_UD_MAGIC | nrecs;
	FZ_TRACE("sqe %u: op %u flags %x prio %u src %u len %u target %llx slot %u arg %u\n", nrecs,
		 sqe.opcode, sqe.flags, sqe.prio, sqe.source, sqe.len, (unsigned long long)sqe.target,
		 sqe.slot, sqe.arg);
	rec = &recs[nrecs];
	memset(rec, 0, sizeof(*rec));
	rec->opcode = sqe.opcode;
	rec->flags = sqe.flags;
	rec->slot = sqe.slot;
	/*
	 * A writeback naming a held slot hands it back unless refused: from
	 * now on the user must not release it (that would return it twice).
	 */
	if (sqe.opcode == AEM_OP_WRITEBACK && (sqe.flags & AEM_SQE_F_SLOT) && sqe.slot < FZ_MAX_SLOTS &&
	    ring.slot_state[sqe.slot] == FZ_SLOT_HELD) {
		ring.slot_state[sqe.slot] = FZ_SLOT_LIMBO;
		slot_limbo_rec[sqe.slot] = nrecs;
		rec->limbo = true;
	}
	pos_rec[ring.sq_local_tail & (ring.p.sq_entries - 1)] = nrecs++;
	memcpy(&ring.view.sq.sqes[ring.sq_local_tail & (ring.p.sq_entries - 1)], &sqe, sizeof(sqe));
	ring.sq_local_tail++;
	aem_store_release(ring.view.sq.ktail, ring.sq_local_tail);
}

static void submit(u32 to_submit)
{
	u32 old_head = aem_load_acquire(ring.view.sq.khead), new_head, i;
	u32 published = ring.sq_local_tail - old_head;
	int ret;

	ret = aem_core_submit(ring.r, to_submit);
	FZ_TRACE("submit %u (published %u): %d\n", to_submit, published, ret);
	FZ_CHECK(ret >= 0, "aem_core_submit(%u): %d", to_submit, ret);
	FZ_CHECK((u32)ret <= to_submit && (u32)ret <= published,
		 "submit consumed %d SQEs, asked %u, %u published", ret, to_submit, published);
	new_head = aem_load_acquire(ring.view.sq.khead);
	FZ_CHECK(new_head - old_head == (u32)ret, "SQ head moved by %u, submit returned %d",
		 new_head - old_head, ret);
	ring.consumed += (u32)ret;
	for (i = old_head; i != new_head; i++)
		recs[pos_rec[i & (ring.p.sq_entries - 1)]].consumed = true;
}

static void release_slots(struct fz_in *in, bool bad)
{
	u32 n = 1 + fz_u8(in) % 8, i;
	u32 head = aem_load_acquire(ring.view.slots.khead);

	for (i = 0; i < n; i++) {
		u32 slot;
		bool found;

		if (ring.sr_local_tail - head >= ring.view.slots.ring_entries)
			break;
		if (bad) {
			/* Only releases that are wrong whenever the core reads them. */
			u32 v = fz_u32(in);

			if ((v & 1) && ring.p.send_slots)
				slot = (v >> 1) % ring.p.send_slots;
			else
				slot = ring.p.send_slots + ring.p.slot_count + (v >> 1);
			if (slot < ring.p.send_slots + ring.p.slot_count && !(v & 1))
				continue;	/* wrapped into range */
			bad_releases++;
		} else {
			slot = held_slot(fz_u8(in), &found);
			if (!found)
				break;
			ring.slot_state[slot] = FZ_SLOT_KERNEL;
		}
		ring.view.slots.array[ring.sr_local_tail & (ring.view.slots.ring_entries - 1)] = slot;
		ring.sr_local_tail++;
	}
	aem_store_release(ring.view.slots.ktail, ring.sr_local_tail);
}

static struct fz_sub *pick_sub(u8 v)
{
	unsigned i;

	for (i = 0; i < fz_nsubs; i++) {
		struct fz_sub *fs = &fz_subs[(v + i) % fz_nsubs];

		if (fs->live && fs->ring == ring.r)
			return fs;
	}
	return NULL;
}

/* A well-formed subscribe, so the fuzzer starts with events to play with. */
static void subscribe_helper(u8 v)
{
	struct aem_sqe *sqe;
	u32 head = aem_load_acquire(ring.view.sq.khead);

	if (nrecs == FZ_MAX_SQES || ring.sq_local_tail - head >= ring.p.sq_entries)
		return;
	sqe = &ring.view.sq.sqes[ring.sq_local_tail & (ring.p.sq_entries - 1)];
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->prio = (v >> 2) % ring.p.nr_classes;
	switch (v & 3) {
	case 1:
		if (fz_source_id >= 0) {
			sqe->source = (u8)fz_source_id;
			sqe->gen.burst = 1;
			break;
		}
		/* fall through */
	case 0:
		sqe->source = AEM_SRC_MSG;
		sqe->msg.channel = (v >> 4) & 3;
		break;
	case 2:
		/* One-shot or periodic, a few ticks out. */
		sqe->source = AEM_SRC_TIMER;
		sqe->timer.first_ns = (1 + ((v >> 4) & 3)) * AEM_TIMER_TICK_NS;
		sqe->timer.interval_ns = (v & 0x40) ? AEM_TIMER_TICK_NS : 0;
		break;
	default:
		/* A bounded generator: rate 0 fills what the ring takes. */
		sqe->source = AEM_SRC_GEN;
		sqe->gen.count = 1 + ((v >> 4) & 15) * 4;
		sqe->gen.burst = 1 + ((v >> 4) & 3);
		sqe->gen.payload_len = (v & 0x40) ? 48 : 16;
		if (sqe->gen.payload_len > ring.p.slot_size)
			sqe->gen.payload_len = 16;
		break;
	}
	sqe->user_data = FZ_UD_MAGIC | nrecs;
	memset(&recs[nrecs], 0, sizeof(recs[nrecs]));
	recs[nrecs].opcode = AEM_OP_SUBSCRIBE;
	pos_rec[ring.sq_local_tail & (ring.p.sq_entries - 1)] = nrecs++;
	ring.sq_local_tail++;
	aem_store_release(ring.view.sq.ktail, ring.sq_local_tail);
}

static void check_cq_ready(u32 min)
{
	u32 total = 0, c;
	bool urgent = false, got;

	for (c = 0; c <= ring.p.nr_classes; c++) {	/* the class rings, then the result ring */
		u32 n = aem_load_acquire(fz_cq(&ring, c)->ktail) - ring.cq_local_head[c];

		total += n;
		if ((c == 0 || c == ring.p.nr_classes) && n)
			urgent = true;
	}
	got = aem_core_cq_ready(ring.r, min);
	/* A wait for zero CQEs waits for one: it is never trivially ready. */
	FZ_CHECK(got == (urgent || total >= (min ? min : 1)), "cq_ready(%u) = %d with %u ready (%s class 0 or results)", min,
		 got, total, urgent ? "some in" : "none in");
}

static void reset(void)
{
	fz_reset_subs();
	memset(recs, 0, sizeof(recs));
	memset(slot_limbo_rec, 0, sizeof(slot_limbo_rec));
	nrecs = 0;
	ntokens = 0;
	bad_releases = 0;
	error_results = 0;
}

static void release_all_held(void)
{
	u32 head = aem_load_acquire(ring.view.slots.khead), s;

	for (s = 0; s < FZ_MAX_SLOTS; s++) {
		if (ring.slot_state[s] != FZ_SLOT_HELD)
			continue;
		if (ring.sr_local_tail - head >= ring.view.slots.ring_entries)
			break;
		ring.view.slots.array[ring.sr_local_tail & (ring.view.slots.ring_entries - 1)] = s;
		ring.sr_local_tail++;
		ring.slot_state[s] = FZ_SLOT_KERNEL;
	}
	aem_store_release(ring.view.slots.ktail, ring.sr_local_tail);
}

static void final_checks(void)
{
	struct aem_ring_stats st;
	u32 round, i;

	/* Let everything out: results and events waiting in the backlog too. */
	for (round = 0; round < 4 * AEM_MAX_CLASSES + FZ_BACKLOG_BOUND(&ring.p); round++) {
		/*
		 * Done with every event: give back each slot we hold.  Slots in
		 * limbo stay until their writeback's result says whether they
		 * are still ours, as an application would have to.
		 */
		release_all_held();
		submit(ring.sq_local_tail - aem_load_acquire(ring.view.sq.khead));
		aem_core_reclaim_slots(ring.r);
		aem_core_flush_backlog(ring.r);
		drain_all();
		fz_check_accounting(&ring);
		memset(&st, 0, sizeof(st));
		aem_core_ring_stats(ring.r, &st);
		if (!st.backlog && ring.sq_local_tail == aem_load_acquire(ring.view.sq.khead))
			break;
	}
	FZ_CHECK(st.backlog == 0, "backlog still holds %llu events with every CQ ring empty",
		 (unsigned long long)st.backlog);
	for (i = 0; i <= ring.p.nr_classes; i++)
		FZ_CHECK(!(aem_read_once(*fz_cq(&ring, i)->kflags) & AEM_CQ_F_OVERFLOW),
			 "CQ %u still flagged OVERFLOW with an empty backlog", i);

	/*
	 * Every consumed SQE is answered, or refused and counted: a refusal's
	 * error CQE may be dropped past the backlog bound, a success never
	 * goes unanswered (a SUBSCRIBE whose result is lost leaves a live
	 * subscription nobody can name).
	 */
	u64 unanswered = 0, unanswered_refusals;

	for (i = 0; i < nrecs; i++) {
		const struct fz_sqe_rec *rec = &recs[i];

		FZ_CHECK(rec->consumed, "SQE %u published but never consumed", i);
		if (rec->opcode == AEM_OP_CALL || (rec->flags & AEM_SQE_F_SILENT))
			continue;
		if (!rec->answers) {
			FZ_TRACE("SQE %u (op %u) never answered\n", i, rec->opcode);
			unanswered++;
		}
	}
	unanswered_refusals = fz_refused_total(&st) - bad_releases - error_results;
	/* An unanswered refusal is one whose error CQE was dropped: counted in dropped. */
	FZ_CHECK(unanswered <= unanswered_refusals && unanswered <= st.dropped,
		 "%llu SQEs consumed but never answered, only %llu refusals unanswered (%llu results dropped)",
		 (unsigned long long)unanswered, (unsigned long long)unanswered_refusals,
		 (unsigned long long)st.dropped);
	for (i = 0; i < fz_nsubs; i++) {
		struct fz_sub *fs = &fz_subs[i];
		struct aem_sub_stats ss = { .id = fs->id };

		if (fs->ring != ring.r || !fs->live)
			continue;
		FZ_CHECK(aem_core_sub_stats(ring.r, &ss) == 0, "live subscription lost");
		FZ_CHECK(ss.backlog == 0 && fs->seen == ss.delivered,
			 "sub %u: drained %llu events, core delivered %llu (backlog %llu)", i,
			 (unsigned long long)fs->seen, (unsigned long long)ss.delivered,
			 (unsigned long long)ss.backlog);
	}
	/*
	 * Every refusal counted: refused SQEs answered with an error, bad
	 * releases, and refusals whose error CQE was dropped (counted there).
	 */
	FZ_CHECK(fz_refused_total(&st) >= error_results + bad_releases &&
			 fz_refused_total(&st) - error_results - bad_releases <= st.dropped,
		 "refused counters sum to %llu; %llu error results + %llu bad slot releases, %llu dropped",
		 (unsigned long long)fz_refused_total(&st), (unsigned long long)error_results,
		 (unsigned long long)bad_releases, (unsigned long long)st.dropped);
	if (getenv("FZ_VERBOSE"))
		fprintf(stderr, "sqe_stream: %u SQEs, %llu consumed, %llu results (%llu refusals), %llu events, "
			"%u subs, produced %llu delivered %llu dropped %llu, %llu bad releases\n",
			nrecs, (unsigned long long)ring.consumed, (unsigned long long)ring.results,
			(unsigned long long)error_results, (unsigned long long)ring.events, fz_nsubs,
			(unsigned long long)st.produced, (unsigned long long)st.delivered,
			(unsigned long long)st.dropped, (unsigned long long)bad_releases);
	/* The SQ ring's dropped word counts refused SQEs, not slot releases. */
	FZ_CHECK(aem_read_once(*ring.view.sq.kdropped) == (u32)(fz_refused_total(&st) - bad_releases),
		 "SQ dropped %u, %llu SQEs refused", aem_read_once(*ring.view.sq.kdropped),
		 (unsigned long long)(fz_refused_total(&st) - bad_releases));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	struct aem_params p;
	unsigned step;

	reset();
	memset(&p, 0, sizeof(p));
	p.sq_entries = 1U << (1 + fz_u8(&in) % 5);	/* 2..32 */
	p.cq_entries = 1U << (1 + fz_u8(&in) % 5);
	p.nr_classes = 1 + fz_u8(&in) % AEM_MAX_CLASSES;
	p.slot_size = AEM_MIN_SLOT_SIZE << (fz_u8(&in) % 3);
	p.slot_count = 1 + fz_u8(&in) % 16;
	p.send_slots = fz_u8(&in) % 5;
	p.backlog_limit = 1 + fz_u8(&in) % 32;
	if (fz_ring_init(&ring, &p))
		return 0;

	for (step = 0; step < FZ_MAX_STEPS && fz_more(&in); step++) {
		u8 op = fz_u8(&in);
		struct fz_sub *fs;

		FZ_TRACE("step %u: op %u\n", step, op % 14);
		switch (op % 14) {
		case 0:
		case 1:
			write_sqe(&in);
			break;
		case 2:
			submit(fz_u8(&in));
			break;
		case 3: {
			u8 cls = fz_u8(&in), max = fz_u8(&in);

			drain(cls % (AEM_MAX_CLASSES + 1), 1 + max % 64);
			break;
		}
		case 4: {
			u8 pick = fz_u8(&in), n = 1 + fz_u8(&in) % 16, fin = fz_u8(&in);
			u16 len = fz_u16(&in) % (ring.p.slot_size + 64);

			fs = pick_sub(pick);
			if (fs)
				fz_post(fs, n, len, (fin == 0xFF) ? AEM_CQE_F_FINAL : 0);
			break;
		}
		case 5: {
			u8 pick = fz_u8(&in), n = 1 + fz_u8(&in) % 64, len = fz_u8(&in);

			fs = pick_sub(pick);
			if (fs)
				fz_post_batch(fs, n, len);
			break;
		}
		case 6:
			release_slots(&in, false);
			break;
		case 7:
			release_slots(&in, true);
			break;
		case 8:
			aem_core_reclaim_slots(ring.r);
			break;
		case 9:
			aem_core_flush_backlog(ring.r);
			break;
		case 10:
			subscribe_helper(fz_u8(&in));
			break;
		case 11:
			check_cq_ready(fz_u8(&in) % 8);
			break;
		case 12:
			/* Timers due by then fire; asynchronous calls past their deadline expire. */
			(void)aem_timer_tick(advance_clock(fz_u8(&in) * (AEM_TIMER_TICK_NS / 2)));
			break;
		case 13:
			(void)aem_gen_step(advance_clock(0));
			break;
		}
		fz_check_accounting(&ring);
	}
	final_checks();
	fz_ring_free(&ring);
	return 0;
}
