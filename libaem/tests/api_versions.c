/* SPDX-License-Identifier: MIT */
/*
 * ABI versions side by side: rings of version 2, 3 and 4 open at once on
 * one backend, each seeing its own format.  The same posts and a call,
 * from a version 4 ring, reach each of them:
 *  - versions 2 and 3 see what they saw before version 4 existed: no
 *    AEM_CQE_F_SENDER, a 32-byte post inline with nothing past its
 *    payload, slot references with generation 0 (v2) or not (v3);
 *  - version 4 sees the same CQEs with AEM_CQE_F_SENDER, and the sender
 *    (pid, uid, sending ring) beside each in its class ring's sender array.
 * Versions the backend does not serve are refused with -EOPNOTSUPP; a
 * SUBSCRIBE naming an implementation is refused on rings before 4.
 */
#include "aem_test.h"

#define NV	3
static const unsigned versions[NV] = { 2, 3, 4 };

static void expect_post(struct aem_ring *r, unsigned ver, const uint8_t *msg, unsigned len,
			uint32_t from_ring, bool call)
{
	struct aem_sender who;
	struct aem_cqe c;
	unsigned got, i;
	uint8_t *d;

	t_assert(t_next_who(r, &c, 5000, &who), "v%u: no event for a %u-byte %s", ver, len, call ? "call" : "post");
	t_assert(!(c.flags & AEM_CQE_F_RESULT), "v%u: a result (res %d) where an event was due", ver, c.res);
	t_eq(c.source, AEM_SRC_MSG);
	t_eq((unsigned)c.res, len);
	d = aem_cqe_payload(r, &c, &got);
	t_assert(d && got == len && !memcmp(d, msg, len), "v%u: payload of %u bytes differs", ver, len);
	if (ver < 4) {
		t_assert(!(c.flags & AEM_CQE_F_SENDER), "v%u ring: flags %#x carry a sender", ver, c.flags);
		t_eq(who.pid, 0);
		t_eq(who.ring_id, 0);
	} else {
		t_assert(c.flags & AEM_CQE_F_SENDER, "v4 ring: flags %#x without AEM_CQE_F_SENDER", c.flags);
		t_eq(who.pid, getpid());
		t_eq(who.uid, geteuid());
		t_eq(who.ring_id, from_ring);
		t_eq(who.resv, 0);
	}
	/* The CQE is what it was before version 4: up to 32 bytes inline (a call always in a slot), nothing after the payload. */
	t_eq(!!(c.flags & AEM_CQE_F_SLOT), call || len > AEM_CQE_INLINE);
	if (!(c.flags & AEM_CQE_F_SLOT))
		for (i = len; i < AEM_CQE_INLINE; i++)
			t_assert(!c.data[i], "v%u: inline byte %u past the payload is %#x", ver, i, c.data[i]);
	if (c.flags & AEM_CQE_F_SLOT) {
		/* Version 2 references are plain indices; from 3 they carry a generation. */
		t_eq(AEM_SLOT_GEN(c.slot) != 0, ver >= 3);
		if (call) {
			struct aem_sqe *sqe = t_sqe(r);

			aem_prep_writeback_slot(sqe, c.id, c.slot, 0);
			aem_sqe_set_data(sqe, 0x77);
			t_eq(t_do(r, 0x77), 0);
		} else {
			t_release(r, c.slot);
		}
	}
}

int main(void)
{
	static const unsigned lens[] = { 8, 16, 17, 32, 100 };
	struct aem_ring rings[NV], from;
	struct aem_params p;
	uint8_t msg[128];
	unsigned v, i;
	struct aem_cqe c;
	int ret;

	for (i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7 + 1);

	/* Versions nobody serves. */
	for (v = 0; v < 2; v++) {
		struct aem_ring bad;

		memset(&p, 0, sizeof(p));
		p.api_version = v ? AEM_API_VERSION + 1 : 1;
		ret = aem_setup(&p, &bad);
		t_assert(ret == -EOPNOTSUPP, "setup asking for version %u: %d", p.api_version, ret);
	}

	memset(&p, 0, sizeof(p));
	t_setup(&from, &p);
	t_eq(p.api_version, AEM_API_VERSION);
	t_assert(p.features & AEM_FEAT_SENDER, "a version %u ring lacks AEM_FEAT_SENDER", p.api_version);
	for (v = 0; v < NV; v++) {
		memset(&p, 0, sizeof(p));
		p.api_version = versions[v];
		t_setup(&rings[v], &p);
		t_eq(p.api_version, versions[v]);
		t_eq(!!(p.features & AEM_FEAT_SENDER), versions[v] >= 4);
		t_sub_msg(&rings[v], 1, 0, 0x100 + v);
	}
	printf("rings of versions 2, 3, 4 open on the %s backend\n", aem_backend_name(&from));

	/* Naming an implementation is version 4's. */
	for (v = 0; v < NV; v++) {
		struct aem_sqe *sqe = t_sqe(&rings[v]);

		aem_prep_subscribe_msg(sqe, 2, 0, 0x200);
		aem_sqe_set_impl(sqe, 1);
		ret = t_do(&rings[v], 0x200);
		if (versions[v] < 4) {
			t_eq(ret, -EINVAL);
		} else {
			t_assert(ret >= 0, "v4 subscribe naming msg implementation 1: %s", strerror(-ret));
			sqe = t_sqe(&rings[v]);
			aem_prep_subscribe_msg(sqe, 3, 0, 0x201);
			aem_sqe_set_impl(sqe, 9);
			t_eq(t_do(&rings[v], 0x201), -EOPNOTSUPP);
		}
	}

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (v = 0; v < NV; v++) {
			struct aem_sqe *sqe = t_sqe(&from);

			if (lens[i] > AEM_SQE_INLINE) {
				memcpy(aem_send_slot(&from, 0), msg, lens[i]);
				aem_prep_post_slot(sqe, AEM_ADDR(rings[v].ring_id, 1), 0, lens[i], 0);
			} else {
				aem_prep_post(sqe, AEM_ADDR(rings[v].ring_id, 1), msg, lens[i], 0);
			}
			aem_sqe_set_data(sqe, 0x300 + v);
			t_eq(t_do(&from, 0x300 + v), 0);
			expect_post(&rings[v], versions[v], msg, lens[i], from.ring_id, false);
		}
	}

	/* An asynchronous call: the request in a slot on every version, the sender on 4. */
	for (v = 0; v < NV; v++) {
		struct aem_sqe *sqe = t_sqe(&from);

		aem_prep_call(sqe, AEM_ADDR(rings[v].ring_id, 1), msg, 12, 0, 5000);
		aem_sqe_set_data(sqe, 0x400 + v);
		t_submit(&from);
		expect_post(&rings[v], versions[v], msg, 12, from.ring_id, true);
		c = t_result(&from, 0x400 + v, 5000);
		t_eq(c.res, 0);
	}

	/* Through the overflow backlog: the sender travels with its CQE. */
	{
		struct aem_ring small;
		struct aem_sender who;

		p = t_params(0, 4, 1);
		t_setup(&small, &p);
		t_sub_msg(&small, 1, 0, 0x500);
		for (i = 0; i < 12; i++) {
			struct aem_sqe *sqe = t_sqe(&from);

			aem_prep_post(sqe, AEM_ADDR(small.ring_id, 1), msg, 8 + i, 0);
			aem_sqe_set_data(sqe, 0x600 + i);
			t_eq(t_do(&from, 0x600 + i), 0);
		}
		for (i = 0; i < 12; i++) {
			t_assert(t_next_who(&small, &c, 5000, &who), "backlogged post %u missing", i);
			t_eq((unsigned)c.res, 8 + i);
			t_assert(c.flags & AEM_CQE_F_SENDER, "backlogged post %u: flags %#x", i, c.flags);
			t_eq(who.pid, getpid());
			t_eq(who.ring_id, from.ring_id);
		}
		aem_teardown(&small);
	}

	for (v = 0; v < NV; v++) {
		struct aem_ring_stats st = t_stats(&rings[v]);

		t_balanced(&st, "ring");
		aem_teardown(&rings[v]);
	}
	aem_teardown(&from);
	return t_exit();
}
