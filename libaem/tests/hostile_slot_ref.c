/* SPDX-License-Identifier: MIT */
/*
 * A delivery slot is named by its reference (aem_cqe.slot: index and the
 * generation of that issue), not by its index alone.  Every event of a
 * subscription has the same token, so an index-only check let
 *  - a writeback name another held slot of the same subscription, and
 *  - a late duplicate release of a slot index free the slot after it was
 *    reissued to a new event, whose payload the next event then overwrote.
 * Both are refused now (-EINVAL / ignored, counted under AEM_REFUSE_SLOT)
 * and change nothing: the slots stay with the application.
 */
#include "aem_test.h"

#define CHANNEL	3
#define BIG	100	/* bytes: beyond AEM_CQE_INLINE, so each event has a slot */

static struct aem_ring r, client;

static uint64_t refused_slot(struct aem_ring *ring)
{
	return t_stats(ring).refused[AEM_REFUSE_SLOT];
}

/* Two events of one generator, each in a slot; the generator holds its third. */
static void writeback_other_slot(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_gen_args args = { .rate = 0, .count = 1, .burst = 1, .payload_len = 64 };
	struct aem_cqe ev[2], c;
	struct aem_sqe *sqe;
	struct aem_ring g;
	uint64_t sub, before;
	unsigned refs[2], i, n = 0;
	uint32_t x, y;

	p.slot_count = 2;
	t_setup(&g, &p);
	sqe = t_sqe(&g);
	aem_prep_subscribe_gen(sqe, 0, 3, 1, 64, 0, 0x9e);
	t_submit(&g);
	sub = t_result(&g, 0x9e, 5000).id;
	while (n < 2 && t_next(&g, &c, 5000)) {
		t_assert(!(c.flags & AEM_CQE_F_RESULT) && (c.flags & AEM_CQE_F_SLOT),
			 "flags %#x: want a generator event in a slot", c.flags);
		ev[n++] = c;
	}
	t_eq(n, 2);
	x = ev[0].slot;
	y = ev[1].slot;
	t_assert(AEM_SLOT_INDEX(x) != AEM_SLOT_INDEX(y), "two held events share slot %u",
		 AEM_SLOT_INDEX(x));
	t_eq(t_stats(&g).slots_free, 0);

	/*
	 * Event x's writeback from y's slot, named by y's index alone (what
	 * the index-only check took) or by y's index with x's generation.  The
	 * payload is valid for the generator, so only the slot can refuse it.
	 */
	refs[0] = AEM_SLOT_INDEX(y);
	refs[1] = AEM_SLOT_INDEX(y) | (AEM_SLOT_GEN(x) << AEM_SLOT_GEN_SHIFT);
	memcpy(aem_cqe_payload(&g, &ev[1], &i), &args, sizeof(args));
	for (i = 0; i < 2; i++) {
		before = refused_slot(&g);
		sqe = t_sqe(&g);
		aem_prep_writeback_slot(sqe, sub, refs[i], sizeof(args));
		aem_sqe_set_data(sqe, 0x100 + i);
		t_eq(t_do(&g, 0x100 + i), -EINVAL);
		t_eq(refused_slot(&g), before + 1);
		t_eq(t_stats(&g).slots_free, 0);	/* both slots are still the application's */
	}

	/* Each event's own reference releases its slot. */
	sqe = t_sqe(&g);
	aem_prep_unsubscribe(sqe, sub);
	aem_sqe_set_data(sqe, 0x1ff);
	t_eq(t_do(&g, 0x1ff), 0);
	before = refused_slot(&g);
	t_release(&g, x);
	t_release(&g, y);
	aem_release_commit(&g);
	t_submit(&g);
	t_eq(t_stats(&g).slots_free, 2);
	t_eq(refused_slot(&g), before);
	aem_teardown(&g);
}

static void post_big(uint8_t fill)
{
	struct aem_sqe *sqe = t_sqe(&client);

	memset(aem_send_slot(&client, 0), fill, BIG);
	aem_prep_post_slot(sqe, AEM_ADDR(r.ring_id, CHANNEL), 0, BIG, 0);
	aem_sqe_set_data(sqe, fill);
	t_submit(&client);
	t_eq(t_result(&client, fill, 5000).res, 0);
}

static void expect_payload(const struct aem_cqe *c, uint8_t fill, const char *what)
{
	unsigned len, i;
	uint8_t *d = aem_cqe_payload(&r, c, &len);

	t_assert(d && len == BIG, "%s: payload %p, %u bytes", what, (void *)d, len);
	for (i = 0; i < len; i++)
		if (d[i] != fill)
			t_fail("%s: byte %u is %#x, want %#x", what, i, d[i], fill);
}

/* One delivery slot: a late second release of event a's slot must not free event b's. */
static void late_duplicate_release(void)
{
	struct aem_params p = t_params(64, 64, 1), pc = t_params(64, 64, 1);
	struct aem_cqe a, b, c;
	uint64_t before;

	p.slot_count = 1;
	pc.send_slots = 1;
	t_setup(&r, &p);
	t_setup(&client, &pc);
	t_sub_msg(&r, CHANNEL, 0, 0x3);

	post_big(0xaa);
	t_assert(t_next(&r, &a, 5000) && (a.flags & AEM_CQE_F_SLOT), "first message");
	t_release(&r, a.slot);
	aem_release_commit(&r);
	post_big(0xbb);
	t_assert(t_next(&r, &b, 5000) && (b.flags & AEM_CQE_F_SLOT), "second message");
	t_eq(AEM_SLOT_INDEX(b.slot), AEM_SLOT_INDEX(a.slot));

	before = refused_slot(&r);
	t_release(&r, a.slot);		/* the duplicate, late */
	aem_release_commit(&r);
	t_submit(&r);
	t_eq(t_stats(&r).slots_free, 0);	/* b still holds it */
	t_eq(refused_slot(&r), before + 1);
	t_assert(b.slot != a.slot, "reissued slot %#x carries the same reference", b.slot);

	/* So a third message waits for b's slot instead of landing on b's payload. */
	post_big(0xcc);
	if (t_next(&r, &c, 200))
		t_fail("third message delivered (slot %#x) while b holds the only slot", c.slot);
	expect_payload(&b, 0xbb, "second message");
	t_release(&r, b.slot);
	aem_release_commit(&r);
	t_assert(t_next(&r, &c, 5000) && (c.flags & AEM_CQE_F_SLOT), "third message after the release");
	expect_payload(&c, 0xcc, "third message");
	t_release(&r, c.slot);
	t_teardown_pair(&r, &client);
}

int main(void)
{
	writeback_other_slot();
	late_duplicate_release();
	return t_exit();
}
