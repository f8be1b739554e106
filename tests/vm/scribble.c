/* SPDX-License-Identifier: MIT */
/*
 * Scribbled indices: user space owns the SQ tail, every CQ head and the
 * slot ring tail, and can write anything there at any time.  The kernel
 * must clamp or ignore, count the refusal, never write outside its
 * regions, and carry on once the values are sane again.
 */
#include "aem_test.h"

int main(void)
{
	uint64_t seed = t_seed(), before;
	struct aem_params p = { .sq_entries = 64, .cq_entries = 64, .nr_classes = 2 };
	struct vring r;
	uint32_t *sq_tail, *sq_head, *cq_head, *slot_tail, *slot_head;
	uint32_t save;
	int i, c;

	vr_setup_or_die(&r, &p);
	sq_tail = vr_u32(&r, r.p.sq_off.tail);
	sq_head = vr_u32(&r, r.p.sq_off.head);
	slot_tail = vr_u32(&r, r.p.slot_off.tail);
	slot_head = vr_u32(&r, r.p.slot_off.head);
	vr_nop_ok(&r);

	/* SQ tail far ahead: at most one ring's worth is consumed, refusal counted. */
	before = vr_refused(&r);
	*sq_tail = *sq_head + 1000000;
	{
		struct aem_enter e = { .to_submit = 1000000 };

		t_assert(ioctl(r.fd, AEM_IOC_ENTER, &e) == 0, "enter: %s", strerror(errno));
		t_assert(e.submitted <= r.p.sq_entries, "consumed %u SQEs from a %u ring",
			 e.submitted, r.p.sq_entries);
	}
	t_assert(vr_refused(&r) > before, "runaway SQ tail not counted");

	/* SQ tail behind head: nothing consumed. */
	before = vr_refused(&r);
	*sq_tail = *sq_head - 5;
	t_eq(vr_enter(&r, 0, 0, 0) >= 0, 1);
	{
		struct aem_enter e = { .to_submit = 8 };

		*sq_tail = *sq_head - 5;
		t_assert(ioctl(r.fd, AEM_IOC_ENTER, &e) == 0, "enter: %s", strerror(errno));
		t_eq(e.submitted, 0);
	}
	t_assert(vr_refused(&r) > before, "backwards SQ tail not counted");

	/* Resynchronise: our tail follows the kernel's head. */
	r.sq_tail = *sq_head;
	*sq_tail = r.sq_tail;
	/* Drain whatever the runaway batch produced. */
	{
		struct aem_cqe cq;

		while (vr_reap_any(&r, &cq))
			;
	}
	vr_nop_ok(&r);

	/* CQ head beyond tail and behind the last head: the kernel keeps its own. */
	for (c = 0; c < (int)r.p.nr_classes; c++) {
		cq_head = vr_u32(&r, r.p.cq_off[c].head);
		save = *cq_head;
		*cq_head = save + 12345;
		{
			struct aem_sqe *sqe = vr_sqe(&r);

			sqe->opcode = AEM_OP_NOP;
			t_assert(vr_enter(&r, 1, 0, 0) >= 0, "enter with scribbled CQ head");
		}
		*cq_head = save - 7;
		t_assert(vr_enter(&r, 0, 0, 0) >= 0, "enter with backwards CQ head");
		*cq_head = save;
	}
	{
		struct aem_cqe cq;

		while (vr_reap_any(&r, &cq))
			;
	}

	/* Slot ring: runaway tail and garbage entries (send slots, out of range, repeats). */
	before = vr_refused(&r);
	{
		uint32_t *arr = vr_u32(&r, r.p.slot_off.array);
		uint32_t n = r.p.slot_off.ring_entries;

		for (i = 0; i < (int)n; i++)
			arr[i] = (uint32_t)t_rand(&seed);
		arr[0] = 0;			/* a send slot, if any */
		arr[1] = 0xffffffffu;		/* out of range */
		arr[2] = r.p.send_slots;	/* a delivery slot the kernel still owns */
		*slot_tail = *slot_head + n;
		t_assert(vr_enter(&r, 0, 0, 0) >= 0, "enter after slot ring garbage");
		*slot_tail = *slot_head + 10 * n;
		t_assert(vr_enter(&r, 0, 0, 0) >= 0, "enter after runaway slot tail");
		*slot_tail = *slot_head;
	}
	t_assert(vr_refused(&r) > before, "slot ring garbage not counted");

	/* Random values in every user-writable word of RINGS, many times over. */
	for (i = 0; i < 2000; i++) {
		uint32_t *w = r.region[AEM_REGION_RINGS];
		size_t nw = r.size[AEM_REGION_RINGS] / 4;

		w[t_rand(&seed) % nw] = (uint32_t)t_rand(&seed);
		if (i % 16 == 0) {
			struct aem_enter e = { .to_submit = (uint32_t)t_rand(&seed) };

			ioctl(r.fd, AEM_IOC_ENTER, &e);
		}
	}
	vr_close(&r);

	/* A fresh ring on a fresh fd is unaffected. */
	vr_setup_or_die(&r, &p);
	vr_nop_ok(&r);
	vr_close(&r);
	return T_EXIT_PASS;
}
