/* SPDX-License-Identifier: MIT */
/*
 * AEM_OP_POST: inline and send-slot payloads reach the AEM_SRC_MSG
 * subscriber of the address, large ones in a delivery slot; the poster
 * gets a result; a send slot may be reused as soon as the post is
 * submitted; posts to nowhere and bad slots or lengths are refused and
 * counted; a channel has one subscriber per ring.
 */
#include "aem_test.h"

static struct aem_cqe next_event(struct aem_ring *r, uint64_t tag)
{
	struct aem_cqe c;

	t_assert(t_next(r, &c, 5000), "no event for tag %#llx", (unsigned long long)tag);
	t_assert(!(c.flags & AEM_CQE_F_RESULT), "result ud %#llx res %d instead of an event",
		 (unsigned long long)c.user_data, c.res);
	t_eq(c.user_data, tag);
	t_eq(c.source, AEM_SRC_MSG);
	return c;
}

static void post_refused(struct aem_ring *r, uint64_t addr, unsigned slot, unsigned len,
			 bool use_slot, int want, int reason, const char *what)
{
	struct aem_ring_stats before = t_stats(r), after;
	struct aem_sqe *sqe = t_sqe(r);
	static const char junk[AEM_SQE_INLINE];
	int res;

	if (use_slot)
		aem_prep_post_slot(sqe, addr, slot, len, 0);
	else
		aem_prep_post(sqe, addr, junk, len > AEM_SQE_INLINE ? 0 : len, 0);
	sqe->len = len;
	aem_sqe_set_data(sqe, 0xbad);
	res = t_do(r, 0xbad);
	if (res != want)
		t_fail("post with %s: res %d, want %d", what, res, want);
	after = t_stats(r);
	if (after.refused[reason] != before.refused[reason] + 1)
		t_fail("post with %s: refused[%d] went %llu -> %llu", what, reason,
		       (unsigned long long)before.refused[reason],
		       (unsigned long long)after.refused[reason]);
}

int main(void)
{
	struct aem_params p = t_params(256, 1024, 2);
	uint8_t big[200], *slot, *d;
	struct aem_ring a, b;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	unsigned i, len;
	uint64_t addr;

	t_setup(&a, &p);
	p = t_params(256, 1024, 2);
	t_setup(&b, &p);
	t_sub_msg(&b, 42, 0, 0xb42);
	addr = AEM_ADDR(b.ring_id, 42);

	/* Inline, full size. */
	sqe = t_sqe(&a);
	aem_prep_post(sqe, addr, "0123456789abcdef0123456789ABCDEF", AEM_SQE_INLINE, 0);
	aem_sqe_set_data(sqe, 1);
	t_assert(t_do(&a, 1) >= 0, "inline post refused");
	c = next_event(&b, 0xb42);
	t_eq(c.res, AEM_SQE_INLINE);
	t_assert(!(c.flags & (AEM_CQE_F_CALL | AEM_CQE_F_FINAL)), "post event flags %#x", c.flags);
	d = aem_cqe_payload(&b, &c, &len);
	t_assert(len == AEM_SQE_INLINE && !memcmp(d, "0123456789abcdef0123456789ABCDEF", len),
		 "inline payload differs");
	if (c.flags & AEM_CQE_F_SLOT)
		t_release(&b, c.slot);

	/* Empty. */
	sqe = t_sqe(&a);
	aem_prep_post(sqe, addr, NULL, 0, 0);
	aem_sqe_set_data(sqe, 2);
	t_assert(t_do(&a, 2) >= 0, "empty post refused");
	c = next_event(&b, 0xb42);
	t_eq(c.res, 0);

	/* From a send slot, which is reused at once for the next post. */
	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 1);
	slot = aem_send_slot(&a, 0);
	t_assert(slot, "no send slot 0");
	t_assert(aem_send_slot(&a, a.send_slots) == NULL, "send slot beyond send_slots");
	memcpy(slot, big, sizeof(big));
	sqe = t_sqe(&a);
	aem_prep_post_slot(sqe, addr, 0, sizeof(big), 0);
	aem_sqe_set_data(sqe, 3);
	t_submit(&a);
	memset(slot, 0xee, a.slot_size);
	sqe = t_sqe(&a);
	aem_prep_post_slot(sqe, addr, 0, 100, 0);
	aem_sqe_set_data(sqe, 4);
	t_submit(&a);
	t_assert(t_result(&a, 3, 5000).res >= 0, "slot post refused");
	t_assert(t_result(&a, 4, 5000).res >= 0, "second slot post refused");

	c = next_event(&b, 0xb42);
	t_eq(c.res, sizeof(big));
	t_assert(c.flags & AEM_CQE_F_SLOT, "200-byte post not in a slot");
	t_assert(AEM_SLOT_INDEX(c.slot) >= b.send_slots && AEM_SLOT_INDEX(c.slot) < b.send_slots + b.slot_count,
		 "delivered in slot %u, not a delivery slot", c.slot);
	d = aem_cqe_payload(&b, &c, &len);
	t_assert(d && len == sizeof(big) && !memcmp(d, big, len), "slot payload differs");
	t_release(&b, c.slot);
	c = next_event(&b, 0xb42);
	t_eq(c.res, 100);
	d = aem_cqe_payload(&b, &c, &len);
	for (i = 0; i < 100; i++)
		t_assert(d[i] == 0xee, "second slot post byte %u is %#x", i, d[i]);
	t_release(&b, c.slot);
	aem_release_commit(&b);
	t_submit(&b);
	t_eq(t_stats(&b).slots_free, b.slot_count);

	/* Refusals. */
	t_sub_msg(&a, 7, 0, 0xa7);
	uint64_t self = AEM_ADDR(a.ring_id, 7);
	post_refused(&a, AEM_ADDR(b.ring_id, 43), 0, 4, false, -ENOENT, AEM_REFUSE_ID, "no such channel");
	post_refused(&a, AEM_ADDR(0xfffffff0u, 42), 0, 4, false, -ENOENT, AEM_REFUSE_ID, "no such ring");
	post_refused(&a, self, 0, AEM_SQE_INLINE + 1, false, -EINVAL, AEM_REFUSE_FIELD, "inline len 33");
	post_refused(&a, self, 0, 0xffffffffu, false, -EINVAL, AEM_REFUSE_FIELD, "inline len 2^32-1");
	post_refused(&a, self, 0, a.slot_size + 1, true, -EINVAL, AEM_REFUSE_FIELD, "slot len > slot_size");
	post_refused(&a, self, a.send_slots, 4, true, -EINVAL, AEM_REFUSE_SLOT, "a delivery slot");
	post_refused(&a, self, a.send_slots + a.slot_count, 4, true, -EINVAL, AEM_REFUSE_SLOT,
		     "slot past the end");
	post_refused(&a, self, 0xffffffffu, 4, true, -EINVAL, AEM_REFUSE_SLOT, "slot 2^32-1");
	sqe = t_sqe(&a);
	aem_prep_post(sqe, self, "x", 1, a.nr_classes);
	aem_sqe_set_data(sqe, 5);
	t_eq(t_do(&a, 5), -EINVAL);
	t_expect_quiet(&a, 20, "after refused posts");

	/* One subscriber per channel and ring. */
	sqe = t_sqe(&b);
	aem_prep_subscribe_msg(sqe, 42, 0, 0xb43);
	t_assert(t_do(&b, 0xb43) < 0, "second subscriber for channel 42 accepted");

	/* Posting to ourselves works too. */
	sqe = t_sqe(&a);
	aem_prep_post(sqe, self, "me", 2, 0);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(&a);
	c = next_event(&a, 0xa7);
	t_eq(c.res, 2);

	aem_teardown(&b);
	/* The ring is gone: its address no longer takes posts. */
	post_refused(&a, addr, 0, 4, false, -ENOENT, AEM_REFUSE_ID, "a closed ring");
	aem_teardown(&a);
	return T_EXIT_PASS;
}
