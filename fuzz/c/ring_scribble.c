/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness: a user that scribbles over its own mapped rings.
 *
 * Two rings live in the process.  The hostile one has every word of its
 * RINGS region (head, tail, mask, entries, flags, dropped, slot-ring
 * entries, and anything in between) and its SQEs overwritten between
 * batches, and drives the core with absurd to_submit counts.  The good one
 * behaves: it posts events, drains them, returns slots, submits NOPs.
 *
 * What must hold:
 *  - the core never reads or writes outside its regions (ASan redzones sit
 *    around every region) and never crashes;
 *  - submit consumes at most what was asked and at most one ring's worth;
 *  - the hostile ring's accounting stays exact:
 *    produced == delivered + backlog + dropped, backlog within its bound;
 *  - the good ring is unaffected: every event it posts arrives, in order,
 *    with an intact payload, in a slot it does not already hold, and every
 *    NOP it submits is answered exactly once.
 */
#include "harness.h"

#define FZ_MAX_STEPS	512
#define GOOD_NOP_MAGIC	0x600D000000000000ULL

static struct fz_ring bad, good;
static struct fz_sub *bad_sub, *good_sub;
static u64 good_nops_sent, good_nops_answered;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_register_source();
	return 0;
}

/* Submit one well-formed SQE to @fr and consume it; returns the result of submit. */
static int submit_one(struct fz_ring *fr, const struct aem_sqe *sqe)
{
	u32 head = aem_load_acquire(fr->view.sq.khead);
	int ret;

	if (fr->sq_local_tail - head >= fr->p.sq_entries)
		return -EBUSY;
	fr->view.sq.sqes[fr->sq_local_tail & (fr->p.sq_entries - 1)] = *sqe;
	fr->sq_local_tail++;
	aem_store_release(fr->view.sq.ktail, fr->sq_local_tail);
	ret = aem_core_submit(fr->r, 1);
	if (ret > 0)
		fr->consumed += ret;
	return ret;
}

/* Subscribe the fuzz source on @fr, draining the result; NULL if refused. */
static struct fz_sub *subscribe_fuzz(struct fz_ring *fr, unsigned prio)
{
	struct aem_sqe sqe;
	unsigned before = fz_nsubs;

	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = AEM_OP_SUBSCRIBE;
	sqe.source = (u8)fz_source_id;
	sqe.prio = (u8)prio;
	sqe.flags = AEM_SQE_F_SILENT;
	sqe.gen.burst = 1;
	sqe.user_data = 0x5B;
	if (submit_one(fr, &sqe) != 1 || fz_nsubs == before)
		return NULL;
	return &fz_subs[before];
}

/* ---------------------------------------------------------------------- */
/* The good ring: exact expectations                                       */

static void good_drain(void)
{
	unsigned c;

	for (c = 0; c <= good.p.nr_classes; c++) {	/* the class rings, then the result ring */
		u32 tail = aem_load_acquire(fz_cq(&good, c)->ktail);
		u32 head = good.cq_local_head[c];
		u32 n = tail - head, i;

		FZ_CHECK(n <= fz_cq(&good, c)->ring_entries, "good ring CQ %u: %u CQEs in a ring of %u", c, n,
			 fz_cq(&good, c)->ring_entries);
		for (i = 0; i < n; i++) {
			const struct aem_cqe *cqe = &fz_cq(&good, c)->cqes[(head + i) & (fz_cq(&good, c)->ring_entries - 1)];
			const u8 *data = cqe->data;

			FZ_CHECK(!(cqe->flags & AEM_CQE_F_RESULT) == (c < good.p.nr_classes),
				 "good ring CQ %u carries a CQE with flags %x", c, cqe->flags);
			if (cqe->flags & AEM_CQE_F_RESULT) {
				FZ_CHECK(cqe->user_data == (GOOD_NOP_MAGIC | good_nops_answered),
					 "good ring: result %llx, expected NOP %llu",
					 (unsigned long long)cqe->user_data,
					 (unsigned long long)good_nops_answered);
				FZ_CHECK(cqe->res == 0, "good ring: NOP answered %d", cqe->res);
				good_nops_answered++;
				continue;
			}
			FZ_CHECK(good_sub && cqe->id == good_sub->id,
				 "good ring: event id %llx is not its subscription's",
				 (unsigned long long)cqe->id);
			FZ_CHECK(cqe->res >= 0, "good ring: event res %d", cqe->res);
			if (cqe->flags & AEM_CQE_F_SLOT) {
				FZ_CHECK(fz_is_delivery_slot(&good, cqe->slot) && cqe->slot < FZ_MAX_SLOTS,
					 "good ring: slot %u out of range", cqe->slot);
				FZ_CHECK(good.slot_state[cqe->slot] != FZ_SLOT_HELD,
					 "good ring: slot %u handed out twice", cqe->slot);
				FZ_CHECK((u32)cqe->res <= good.p.slot_size, "good ring: slot event of %d bytes",
					 cqe->res);
				good.slot_state[cqe->slot] = FZ_SLOT_HELD;
				data = good.view.payload + (size_t)cqe->slot * good.p.slot_size;
			}
			good_sub->seen++;
			/* In order and nothing skipped: the good ring never overflows its bound. */
			FZ_CHECK(cqe->res >= (s32)sizeof(struct fz_payload), "good ring: short event");
			FZ_CHECK(((const struct fz_payload *)data)->seq == good_sub->seen - 1,
				 "good ring: event seq %llu, expected %llu",
				 (unsigned long long)((const struct fz_payload *)data)->seq,
				 (unsigned long long)(good_sub->seen - 1));
			fz_check_event_payload(good_sub, data, (u32)cqe->res, false);
		}
		good.cq_local_head[c] = tail;
		aem_store_release(fz_cq(&good, c)->khead, tail);
	}

	/* Give every held slot back. */
	for (u32 s = 0; s < FZ_MAX_SLOTS; s++) {
		u32 sr_head = aem_load_acquire(good.view.slots.khead);

		if (good.slot_state[s] != FZ_SLOT_HELD)
			continue;
		if (good.sr_local_tail - sr_head >= good.view.slots.ring_entries)
			break;
		good.view.slots.array[good.sr_local_tail & (good.view.slots.ring_entries - 1)] = s;
		good.sr_local_tail++;
		good.slot_state[s] = FZ_SLOT_KERNEL;
	}
	aem_store_release(good.view.slots.ktail, good.sr_local_tail);
}

/*
 * One well-behaved batch: post less than the CQ ring holds, submit a NOP
 * (its result comes in the result ring), drain, check.
 */
static void good_step(u8 v)
{
	u32 n = 1 + v % (good.p.cq_entries > 1 ? good.p.cq_entries - 1 : 1);
	u32 len = (v & 0x80) ? good.p.slot_size : 24;
	struct aem_sqe sqe;
	struct aem_sub_stats ss;

	if (!good_sub || !good_sub->live)
		return;
	if (len > AEM_CQE_INLINE && n > good.p.slot_count)
		n = good.p.slot_count;
	fz_post(good_sub, n, len, 0);

	memset(&sqe, 0, sizeof(sqe));
	sqe.opcode = AEM_OP_NOP;
	sqe.user_data = GOOD_NOP_MAGIC | good_nops_sent;
	good_drain();
	FZ_CHECK(submit_one(&good, &sqe) == 1, "good ring: NOP not consumed");
	good_nops_sent++;
	aem_core_flush_backlog(good.r);
	good_drain();
	aem_core_reclaim_slots(good.r);

	FZ_CHECK(good_nops_answered == good_nops_sent, "good ring: %llu NOPs sent, %llu answered",
		 (unsigned long long)good_nops_sent, (unsigned long long)good_nops_answered);
	memset(&ss, 0, sizeof(ss));
	ss.id = good_sub->id;
	FZ_CHECK(aem_core_sub_stats(good.r, &ss) == 0, "good ring: subscription lost");
	FZ_CHECK(ss.dropped == 0 && ss.backlog == 0 && ss.delivered == good_sub->seen &&
			 ss.produced == good_sub->posted,
		 "good ring: produced %llu delivered %llu backlog %llu dropped %llu, drained %llu",
		 (unsigned long long)ss.produced, (unsigned long long)ss.delivered,
		 (unsigned long long)ss.backlog, (unsigned long long)ss.dropped,
		 (unsigned long long)good_sub->seen);
	fz_check_accounting(&good);
}

/* ---------------------------------------------------------------------- */
/* The bad ring: scribbles                                                 */

/* Every u32 field offset the hostile user might aim at. */
static u32 field_offset(u8 pick)
{
	const struct aem_ring_offsets *o;
	unsigned c = (pick >> 3) % (bad.p.nr_classes + 3);

	if (c == 0)
		o = &bad.p.sq_off;
	else if (c == 1)
		o = &bad.p.slot_off;
	else if (c == 2)
		o = &bad.p.res_off;
	else
		o = &bad.p.cq_off[c - 3];
	switch (pick & 7) {
	case 0: return o->head;
	case 1: return o->tail;
	case 2: return o->ring_mask;
	case 3: return o->ring_entries;
	case 4: return o->flags;
	case 5: return o->dropped;
	default: return o->head;
	}
}

static u32 scribble_value(struct fz_in *in, u32 old)
{
	u8 how = fz_u8(in);
	u32 v = fz_u32(in);

	switch (how % 4) {
	case 0: return v;				/* anything */
	case 1: return old + (u32)(int8_t)(v & 0xFF);	/* near: off by a little */
	case 2: return old - 0x80000000u + (v & 0xF);	/* half the index space away */
	default: return (v & 1) ? ~0u : 0;
	}
}

static void scribble(struct fz_in *in)
{
	u8 where = fz_u8(in);
	u8 *rings = bad.regions[AEM_REGION_RINGS];
	u32 off;

	switch (where % 4) {
	case 0:
	case 1:
		off = field_offset(fz_u8(in));
		break;
	case 2:
		off = (fz_u32(in) % (u32)bad.l.region_size[AEM_REGION_RINGS]) & ~3u;
		break;
	default:
		/* A slot-ring entry. */
		off = bad.p.slot_off.array + 4 * (fz_u8(in) % (bad.view.slots.ring_entries ? bad.view.slots.ring_entries : 1));
		break;
	}
	if (off + 4 > bad.l.region_size[AEM_REGION_RINGS])
		return;
	u32 old = aem_read_once(*(u32 *)(rings + off)), v = scribble_value(in, old);

	FZ_TRACE("scribble RINGS+%u: %u -> %u\n", off, old, v);
	aem_write_once(*(u32 *)(rings + off), v);
}

static void scribble_sqe(struct fz_in *in)
{
	u32 idx = fz_u8(in) % bad.p.sq_entries;
	struct aem_sqe sqe;

	fz_bytes(in, &sqe, sizeof(sqe));
	/* Steer some at this ring's own channels and at the good ring's unused one. */
	if ((sqe.opcode % AEM_OP_LAST) == AEM_OP_POST || (sqe.opcode % AEM_OP_LAST) == AEM_OP_CALL) {
		sqe.opcode %= AEM_OP_LAST;
		if (sqe.arg > 50)
			sqe.arg = 1 + sqe.arg % 50;
		sqe.target = (sqe.target & 1) ? AEM_ADDR(good.id, 7) : AEM_ADDR(bad.id, sqe.target & 3);
	}
	if (bad_sub && (sqe.flags & 0x80))
		sqe.target = bad_sub->id;
	memcpy(&bad.view.sq.sqes[idx], &sqe, sizeof(sqe));
}

static void bad_submit(u32 to_submit)
{
	struct aem_ring_stats before, after;
	int ret;

	memset(&before, 0, sizeof(before));
	memset(&after, 0, sizeof(after));
	aem_core_ring_stats(bad.r, &before);
	ret = aem_core_submit(bad.r, to_submit);
	aem_core_ring_stats(bad.r, &after);
	FZ_TRACE("bad submit %u: %d\n", to_submit, ret);
	FZ_CHECK(ret >= 0, "bad ring: submit returned %d", ret);
	FZ_CHECK((u32)ret <= to_submit && (u32)ret <= bad.p.sq_entries,
		 "bad ring: submit consumed %d, asked %u, ring of %u", ret, to_submit, bad.p.sq_entries);
	FZ_CHECK(after.sqes - before.sqes == (u64)ret, "bad ring: sqes counter moved %llu, submit said %d",
		 (unsigned long long)(after.sqes - before.sqes), ret);
	bad.consumed += (u32)ret;
}

/* The hostile user reads what it likes and sets its CQ head to anything. */
static void bad_drain(struct fz_in *in)
{
	unsigned c = fz_u8(in) % (bad.p.nr_classes + 1);	/* a class ring or the result ring */
	u32 tail = aem_load_acquire(fz_cq(&bad, c)->ktail);
	u32 mode = fz_u8(in), head;

	switch (mode % 3) {
	case 0: head = tail; break;				/* consumed everything */
	case 1: head = aem_read_once(*fz_cq(&bad, c)->khead) + (mode >> 2); break;	/* maybe too far */
	default: head = fz_u32(in); break;
	}
	/* Touch every CQE the tail claims, as a careless reader would. */
	for (u32 i = aem_read_once(*fz_cq(&bad, c)->khead), k = 0; i != tail && k < fz_cq(&bad, c)->ring_entries; i++, k++)
		(void)aem_read_once(fz_cq(&bad, c)->cqes[i & (fz_cq(&bad, c)->ring_entries - 1)].res);
	FZ_TRACE("bad drain CQ %u: tail %u, head %u -> %u\n", c, tail, aem_read_once(*fz_cq(&bad, c)->khead), head);
	aem_store_release(fz_cq(&bad, c)->khead, head);
}

static void check_bad(void)
{
	struct aem_ring_stats st;

	memset(&st, 0, sizeof(st));
	aem_core_ring_stats(bad.r, &st);
	FZ_TRACE("  bad: delivered %llu backlog %llu dropped %llu refused idx %llu slot %llu\n",
		 (unsigned long long)st.delivered, (unsigned long long)st.backlog,
		 (unsigned long long)st.dropped, (unsigned long long)st.refused[AEM_REFUSE_INDEX],
		 (unsigned long long)st.refused[AEM_REFUSE_SLOT]);
	FZ_CHECK(st.produced == st.delivered + st.backlog + st.dropped,
		 "bad ring: produced %llu != delivered %llu + backlog %llu + dropped %llu",
		 (unsigned long long)st.produced, (unsigned long long)st.delivered,
		 (unsigned long long)st.backlog, (unsigned long long)st.dropped);
	FZ_CHECK(st.backlog <= FZ_BACKLOG_BOUND(&bad.p), "bad ring: backlog %llu beyond bound %u",
		 (unsigned long long)st.backlog, FZ_BACKLOG_BOUND(&bad.p));
	FZ_CHECK(st.slots_free <= bad.p.slot_count, "bad ring: %llu free slots of %u",
		 (unsigned long long)st.slots_free, bad.p.slot_count);
	if (bad_sub && bad_sub->live) {
		struct aem_sub_stats ss = { .id = bad_sub->id };

		if (aem_core_sub_stats(bad.r, &ss) == 0) {
			FZ_CHECK(ss.produced == ss.delivered + ss.backlog + ss.dropped,
				 "bad ring sub: produced %llu != delivered %llu + backlog %llu + dropped %llu",
				 (unsigned long long)ss.produced, (unsigned long long)ss.delivered,
				 (unsigned long long)ss.backlog, (unsigned long long)ss.dropped);
			FZ_CHECK(ss.produced == bad_sub->posted, "bad ring sub: produced %llu, posted %llu",
				 (unsigned long long)ss.produced, (unsigned long long)bad_sub->posted);
		}
	}
}

static void params_from(struct fz_in *in, struct aem_params *p)
{
	memset(p, 0, sizeof(*p));
	p->sq_entries = 1U << (1 + fz_u8(in) % 5);
	p->cq_entries = 1U << (1 + fz_u8(in) % 5);
	p->nr_classes = 1 + fz_u8(in) % AEM_MAX_CLASSES;
	p->slot_size = AEM_MIN_SLOT_SIZE << (fz_u8(in) % 3);
	p->slot_count = 1 + fz_u8(in) % 16;
	p->send_slots = fz_u8(in) % 5;
	p->backlog_limit = 1 + fz_u8(in) % 32;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = { data, size };
	struct aem_params p;
	unsigned step;

	fz_reset_subs();
	bad_sub = good_sub = NULL;
	good_nops_sent = good_nops_answered = 0;

	params_from(&in, &p);
	if (fz_ring_init(&bad, &p))
		return 0;
	/* The good ring's size is fixed: its checks need room for a batch. */
	memset(&p, 0, sizeof(p));
	p.sq_entries = 8;
	p.cq_entries = 16;
	p.nr_classes = 2;
	p.slot_size = 128;
	p.slot_count = 16;
	p.send_slots = 2;
	p.backlog_limit = 64;
	if (fz_ring_init(&good, &p)) {
		fz_ring_free(&bad);
		return 0;
	}
	if (fz_source_id >= 0) {
		good_sub = subscribe_fuzz(&good, 1);
		bad_sub = subscribe_fuzz(&bad, 0);
		FZ_CHECK(good_sub, "good ring: subscribing the fuzz source failed");
	}

	for (step = 0; step < FZ_MAX_STEPS && fz_more(&in); step++) {
		u8 op = fz_u8(&in);

		FZ_TRACE("step %u: op %u\n", step, op % 10);
		switch (op % 10) {
		case 0:
		case 1:
			scribble(&in);
			break;
		case 2:
			scribble_sqe(&in);
			break;
		case 3: {
			u32 n = fz_u32(&in);
			u8 shift = fz_u8(&in);

			bad_submit(n >> (shift % 32));
			break;
		}
		case 4: {
			u8 n = fz_u8(&in);
			u16 len = fz_u16(&in);

			FZ_TRACE("bad post %u x %u bytes\n", 1 + n % 32, len % (bad.p.slot_size + 64));
			if (bad_sub)
				fz_post(bad_sub, 1 + n % 32, len % (bad.p.slot_size + 64), 0);
			break;
		}
		case 5:
			bad_drain(&in);
			break;
		case 6:
			aem_core_reclaim_slots(bad.r);
			break;
		case 7:
			aem_core_flush_backlog(bad.r);
			break;
		case 8:
			(void)aem_core_cq_ready(bad.r, fz_u8(&in));
			break;
		default:
			good_step(fz_u8(&in));
			break;
		}
		check_bad();
	}
	good_step(0);
	fz_ring_free(&bad);
	good_step(1);
	fz_ring_free(&good);
	return 0;
}
