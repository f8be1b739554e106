/* SPDX-License-Identifier: MIT */
/*
 * A refused writeback changes nothing: the slot it names stays the
 * application's.  If the kernel side took the slot back anyway, the
 * application's own release of it later (it was told the writeback failed)
 * would free whatever event the slot carries by then, and the next event
 * would overwrite a payload the application is still reading.  One
 * delivery slot makes the reuse certain.
 */
#include "aem_test.h"

#define CHANNEL	2

static struct aem_ring r, client;

static void post_big(uint8_t fill)
{
	struct aem_sqe *sqe = t_sqe(&client);
	uint8_t *s = aem_send_slot(&client, 0);

	memset(s, fill, 100);
	aem_prep_post_slot(sqe, AEM_ADDR(r.ring_id, CHANNEL), 0, 100, 0);
	aem_sqe_set_data(sqe, fill);
	t_submit(&client);
	t_result(&client, fill, 5000);
}

int main(void)
{
	struct aem_params p = t_params(64, 64, 1);
	struct aem_ring_stats st0, st;
	struct aem_cqe ev, msg, c;
	struct aem_sqe *sqe;
	unsigned len, i;
	uint8_t *d;

	p.slot_count = 1;
	t_setup(&r, &p);
	t_setup(&client, NULL);
	t_sub_msg(&r, CHANNEL, 0, 0x2);

	/* A call that times out before the handler answers. */
	sqe = t_sqe(&client);
	aem_prep_call(sqe, AEM_ADDR(r.ring_id, CHANNEL), "q", 1, 0, 50);
	aem_sqe_set_data(sqe, 1);
	t_submit(&client);
	t_assert(t_next(&r, &ev, 5000) && (ev.flags & AEM_CQE_F_CALL), "no call event");
	t_eq(t_result(&client, 1, 5000).res, -ETIMEDOUT);

	/* The late answer from the slot is refused... */
	st0 = t_stats(&r);
	sqe = t_sqe(&r);
	aem_prep_writeback_slot(sqe, ev.id, ev.slot, 1);
	aem_sqe_set_data(sqe, 2);
	t_eq(t_do(&r, 2), -ENOENT);
	/* ...so the slot is still ours: the kernel side holds none. */
	st = t_stats(&r);
	t_expect(st.slots_free == st0.slots_free,
		 "refused writeback took slot %u back (kernel holds %llu slots, held %llu before)",
		 ev.slot, (unsigned long long)st.slots_free, (unsigned long long)st0.slots_free);

	/* What that costs: a message lands in the slot, then our release of the call's slot frees it. */
	post_big(0xaa);
	if (!t_next(&r, &msg, 1000)) {
		t_assert(st.slots_free == st0.slots_free, "no message delivered");
		t_note("message waits for the slot we still hold, as it should");
		t_release(&r, ev.slot);
		aem_release_commit(&r);
		t_assert(t_next(&r, &msg, 5000), "message never delivered after the release");
		t_eq(msg.res, 100);
		t_release(&r, msg.slot);
		aem_teardown(&client);
		aem_teardown(&r);
		return t_exit();
	}
	t_eq(AEM_SLOT_INDEX(msg.slot), AEM_SLOT_INDEX(ev.slot));
	t_release(&r, ev.slot);		/* the handler returns the timed-out call's slot */
	aem_release_commit(&r);
	post_big(0xbb);
	if (t_next(&r, &c, 1000) && (c.flags & AEM_CQE_F_SLOT))
		t_release(&r, c.slot);
	d = aem_cqe_payload(&r, &msg, &len);
	for (i = 0; i < len; i++)
		if (d[i] != 0xaa)
			t_fail("message payload byte %u is %#x, want 0xaa: its slot was freed by the "
			       "release of the refused writeback's slot and reused", i, d[i]);
	aem_teardown(&client);
	aem_teardown(&r);
	return t_exit();
}
