/* SPDX-License-Identifier: MIT */
/*
 * Hostile ids and slots.  Slot releases out of range, of send slots, of
 * slots the kernel side holds, and double releases are ignored and counted
 * (AEM_REFUSE_SLOT).  Writebacks to an unknown token, to a call that timed
 * out, to another ring's call, or naming a slot other than the event's are
 * answered with an error CQE and counted; the real handler can still answer
 * afterwards.  Stats on bogus ids are -ENOENT.  No slot leaks on the way.
 */
#include "aem_test.h"

#define CHANNEL	4
#define TAG	0x1d

static struct aem_ring r, other, client;

static struct aem_ring_stats before;

static void expect_refused(struct aem_ring *ring, int reason, uint64_t n, const char *what)
{
	struct aem_ring_stats st;
	int i;

	aem_release_commit(ring);
	t_submit(ring);
	st = t_stats(ring);
	for (i = 0; i < AEM_REFUSE_NR; i++) {
		uint64_t want = before.refused[i] + (i == reason ? n : 0);

		if (st.refused[i] != want)
			t_fail("%s: refused[%d] is %llu, want %llu", what, i,
			       (unsigned long long)st.refused[i], (unsigned long long)want);
	}
	before = st;
}

static int writeback(struct aem_ring *ring, uint64_t token, bool slot, unsigned s, unsigned len,
		     uint64_t ud)
{
	struct aem_sqe *sqe = t_sqe(ring);

	if (slot)
		aem_prep_writeback_slot(sqe, token, s, len);
	else
		aem_prep_writeback(sqe, token, "reply", len);
	aem_sqe_set_data(sqe, ud);
	t_submit(ring);
	return t_result(ring, ud, 5000).res;
}

/* One event of a bounded generator with a slot payload. */
static struct aem_cqe slot_event(uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(&r);
	struct aem_cqe c;

	aem_prep_subscribe_gen(sqe, 0, 1, 1, 100, 0, tag);
	t_submit(&r);
	t_assert(t_result(&r, tag, 5000).res >= 0, "subscribe generator");
	t_assert(t_next(&r, &c, 5000), "no generator event");
	t_eq(c.user_data, tag);
	t_assert(c.flags & AEM_CQE_F_SLOT, "100-byte event not in a slot");
	return c;
}

/* An async call from @client into r's channel; returns the event r sees. */
static struct aem_cqe call_event(uint64_t ud, unsigned timeout_ms)
{
	struct aem_sqe *sqe = t_sqe(&client);
	struct aem_cqe c;

	aem_prep_call(sqe, AEM_ADDR(r.ring_id, CHANNEL), "question", 8, 0, timeout_ms);
	aem_sqe_set_data(sqe, ud);
	t_submit(&client);
	t_assert(t_next(&r, &c, 5000), "call event never arrived");
	t_assert(c.flags & AEM_CQE_F_CALL, "event flags %#x lack F_CALL", c.flags);
	t_assert(c.flags & AEM_CQE_F_SLOT, "call request not in a slot");
	return c;
}

/* Answer call event @ev from its own slot and check the caller's reply and the spent token. */
static void answer(const struct aem_cqe *ev, uint64_t call_ud)
{
	struct aem_cqe c;
	unsigned len;
	void *d;

	uint64_t free0 = t_stats(&r).slots_free;

	memcpy(r.payload + (size_t)AEM_SLOT_INDEX(ev->slot) * r.slot_size, "answer", 6);
	t_eq(writeback(&r, ev->id, true, ev->slot, 6, call_ud + 1), 0);
	c = t_result(&client, call_ud, 5000);
	t_eq(c.res, 6);
	d = aem_cqe_payload(&client, &c, &len);
	t_assert(d && len == 6 && !memcmp(d, "answer", 6), "reply payload");
	if (c.flags & AEM_CQE_F_SLOT)
		t_release(&client, c.slot);
	/* Answered: the token is spent, and the slot went back with the writeback. */
	t_eq(writeback(&r, ev->id, false, 0, 5, call_ud + 2), -ENOENT);
	expect_refused(&r, AEM_REFUSE_ID, 1, "second writeback to an answered call");
	t_ok(aem_release_slot(&r, ev->slot));
	expect_refused(&r, AEM_REFUSE_SLOT, 1, "release of a slot already written back");
	t_eq(t_stats(&r).slots_free, free0 + 1);
}

/* A writeback naming @slot instead of the event's own must be refused (-EINVAL, SLOT). */
static void wrong_slot(unsigned slot, uint64_t call_ud, const char *what)
{
	struct aem_cqe ev = call_event(call_ud, 5000), c;
	struct aem_ring_stats st;
	int res;

	res = writeback(&r, ev.id, true, slot, 8, call_ud + 3);
	aem_release_commit(&r);
	t_submit(&r);
	st = t_stats(&r);
	if (res == 0) {
		t_expect(false, "writeback naming %s (slot %u, event's slot %u) accepted", what, slot, ev.slot);
		c = t_result(&client, call_ud, 5000);
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&client, c.slot);
		t_release(&r, ev.slot);
		before = t_stats(&r);
		return;
	}
	t_expect(res == -EINVAL, "writeback naming %s: res %d, want -EINVAL", what, res);
	t_expect(st.refused[AEM_REFUSE_SLOT] == before.refused[AEM_REFUSE_SLOT] + 1,
		 "writeback naming %s: refused[SLOT] %llu -> %llu", what,
		 (unsigned long long)before.refused[AEM_REFUSE_SLOT],
		 (unsigned long long)st.refused[AEM_REFUSE_SLOT]);
	before = st;
	answer(&ev, call_ud);
}

int main(void)
{
	struct aem_params p = t_params(64, 256, 1);
	struct aem_sub_stats ss;
	struct aem_cqe ev, c;
	unsigned first_delivery;

	t_setup(&r, &p);
	t_setup(&other, &p);
	t_setup(&client, &p);
	t_sub_msg(&r, CHANNEL, 0, TAG);
	before = t_stats(&r);
	first_delivery = r.send_slots;
	t_eq(before.slots_free, r.slot_count);

	/* Releases of slots user space does not hold. */
	t_ok(aem_release_slot(&r, 0xffffffffu));
	t_ok(aem_release_slot(&r, r.send_slots + r.slot_count));
	t_ok(aem_release_slot(&r, 0));				/* a send slot */
	t_ok(aem_release_slot(&r, first_delivery));		/* kernel-held */
	t_ok(aem_release_slot(&r, first_delivery + r.slot_count - 1));
	expect_refused(&r, AEM_REFUSE_SLOT, 5, "five bad releases");
	t_eq(t_stats(&r).slots_free, r.slot_count);

	/* Double release in one batch, then across batches. */
	ev = slot_event(0x100);
	t_eq(t_stats(&r).slots_free, r.slot_count - 1);
	t_ok(aem_release_slot(&r, ev.slot));
	t_ok(aem_release_slot(&r, ev.slot));
	expect_refused(&r, AEM_REFUSE_SLOT, 1, "double release in one batch");
	t_eq(t_stats(&r).slots_free, r.slot_count);
	ev = slot_event(0x101);
	t_ok(aem_release_slot(&r, ev.slot));
	expect_refused(&r, AEM_REFUSE_SLOT, 0, "single release");
	t_ok(aem_release_slot(&r, ev.slot));
	expect_refused(&r, AEM_REFUSE_SLOT, 1, "release after release");
	t_eq(t_stats(&r).slots_free, r.slot_count);

	/* Writebacks to tokens nobody issued. */
	t_eq(writeback(&r, (uint64_t)AEM_ID_KIND_CALL << 56 | 0xabcdefull << 32 | 3, false, 0, 5, 1), -ENOENT);
	t_eq(writeback(&r, (uint64_t)AEM_ID_KIND_CALL << 56 | 0xffffffffull, false, 0, 5, 2), -ENOENT);
	t_eq(writeback(&r, 0x7f00000000000001ull, false, 0, 5, 3), -ENOENT);
	expect_refused(&r, AEM_REFUSE_ID, 3, "writebacks to unknown tokens");
	t_eq(aem_sub_stats(&r, 0, &ss), -ENOENT);
	t_eq(aem_sub_stats(&r, ~0ull, &ss), -ENOENT);
	t_eq(aem_sub_stats(&r, (uint64_t)AEM_ID_KIND_SUB << 56 | 0xabcdefull << 32 | 1, &ss), -ENOENT);

	/* A call that timed out: the writeback is refused, the slot comes back by release. */
	ev = call_event(10, 50);
	c = t_result(&client, 10, 5000);
	t_eq(c.res, -ETIMEDOUT);
	t_eq(writeback(&r, ev.id, false, 0, 5, 12), -ENOENT);
	expect_refused(&r, AEM_REFUSE_ID, 1, "inline writeback after the call timed out");
	t_eq(writeback(&r, ev.id, true, ev.slot, 8, 11), -ENOENT);
	expect_refused(&r, AEM_REFUSE_ID, 1, "writeback from the slot after the call timed out");
	/*
	 * Whether a refused writeback still hands its slot back is not written
	 * down; either way the slot must not leak or be double-counted.
	 */
	if (t_stats(&r).slots_free == r.slot_count) {
		t_note("a refused writeback from a slot took the slot back");
	} else {
		t_release(&r, ev.slot);
		expect_refused(&r, AEM_REFUSE_SLOT, 0, "releasing the timed-out call's slot");
	}
	t_eq(t_stats(&r).slots_free, r.slot_count);

	/* Another ring's call token is foreign there. */
	ev = call_event(20, 5000);
	struct aem_ring_stats ob = t_stats(&other);
	t_eq(writeback(&other, ev.id, false, 0, 5, 21), -ENOENT);
	int res = writeback(&other, ev.id, true, other.send_slots, 5, 22);
	t_assert(res == -ENOENT || res == -EINVAL, "foreign writeback from a slot: res %d", res);
	struct aem_ring_stats oa = t_stats(&other);
	t_eq(oa.refused[AEM_REFUSE_ID] + oa.refused[AEM_REFUSE_SLOT],
	     ob.refused[AEM_REFUSE_ID] + ob.refused[AEM_REFUSE_SLOT] + 2);
	t_eq(writeback(&r, ev.id, true, ev.slot, r.slot_size + 1, 23), -EINVAL);
	expect_refused(&r, AEM_REFUSE_FIELD, 1, "writeback longer than a slot");
	answer(&ev, 20);

	/* Each wrong slot on a call of its own, so one accepted by mistake does not hide the next. */
	wrong_slot(r.send_slots + r.slot_count - 1, 30, "a delivery slot the kernel holds");
	wrong_slot(0, 40, "a send slot");
	wrong_slot(0xffffffffu, 50, "slot 2^32-1");
	struct aem_cqe held = slot_event(0x102);
	wrong_slot(held.slot, 60, "another event's slot");
	if (t_stats(&r).slots_free < r.slot_count) {	/* still ours, unless taken by mistake */
		t_release(&r, held.slot);
		expect_refused(&r, AEM_REFUSE_SLOT, 0, "releasing the other event's slot");
	}
	t_eq(t_stats(&r).slots_free, r.slot_count);

	t_expect_quiet(&r, 20, "ring r at the end");
	aem_teardown(&client);
	aem_teardown(&other);
	aem_teardown(&r);
	return t_exit();
}
