/* SPDX-License-Identifier: MIT */
/*
 * Garbage SQEs: random bytes, then random bytes with a valid opcode, then
 * valid opcodes with one field broken at a time.  Every SQE is consumed,
 * each refusal is answered (an error CQE) and counted, and the ring keeps
 * working.  Closing the ring ends whatever the garbage subscribed to.
 */
#include "aem_test.h"

#define ROUNDS	200

/* Bounded: a subscription the garbage made may refill the ring as fast. */
static void drain(struct vring *r, uint64_t *errors)
{
	struct aem_cqe c;
	unsigned k;

	for (k = 0; k < 1U << 16 && vr_reap_any(r, &c); k++) {
		if ((c.flags & AEM_CQE_F_RESULT) && c.res < 0)
			(*errors)++;
		if (c.flags & AEM_CQE_F_SLOT) {
			const struct aem_ring_offsets *so = &r->p.slot_off;
			uint32_t t = *vr_u32(r, so->tail);

			vr_u32(r, so->array)[t & (so->ring_entries - 1)] = c.slot;
			__atomic_store_n(vr_u32(r, so->tail), t + 1, __ATOMIC_RELEASE);
		}
	}
}

int main(void)
{
	uint64_t seed = t_seed(), errors = 0, submitted = 0;
	struct aem_params p = { .sq_entries = 256, .cq_entries = 1024, .nr_classes = 4 };
	struct aem_ring_stats st;
	struct vring r;
	int round, i, n;

	vr_setup_or_die(&r, &p);
	for (round = 0; round < ROUNDS; round++) {
		n = 1 + (int)(t_rand(&seed) % 64);
		for (i = 0; i < n; i++) {
			struct aem_sqe *sqe = vr_sqe(&r);
			uint64_t *w = (uint64_t *)sqe;
			unsigned k;

			if (!sqe)
				break;
			for (k = 0; k < sizeof(*sqe) / 8; k++)
				w[k] = t_rand(&seed);
			switch (round % 3) {
			case 0:		/* pure noise */
				break;
			case 1:		/* a real opcode, noisy fields */
				sqe->opcode = (uint8_t)(t_rand(&seed) % AEM_OP_LAST);
				break;
			case 2:		/* a plausible SQE with one field broken */
				memset(sqe, 0, sizeof(*sqe));
				sqe->opcode = (uint8_t)(t_rand(&seed) % AEM_OP_LAST);
				sqe->source = (uint8_t)(t_rand(&seed) % (AEM_SRC_LAST + 1));
				sqe->prio = (uint8_t)(t_rand(&seed) % 5);
				sqe->len = (uint32_t)(t_rand(&seed) % 80);
				sqe->target = t_rand(&seed) % 4 ? t_rand(&seed) : 0;
				sqe->slot = (uint32_t)(t_rand(&seed) % 2048);
				sqe->flags = (uint8_t)(t_rand(&seed) % 8);
				/* Keep sources from flooding: a sane timer, a bounded generator. */
				sqe->timer.first_ns = 1 + t_rand(&seed) % (10 * T_MS);
				sqe->timer.interval_ns = 0;
				if (sqe->source == AEM_SRC_GEN) {
					memset(&sqe->gen, 0, sizeof(sqe->gen));
					sqe->gen.rate = 1000;
					sqe->gen.count = 10;
					sqe->gen.burst = 1;
					sqe->gen.payload_len = (uint32_t)(t_rand(&seed) % 300);
				}
				break;
			}
		}
		submitted += (uint64_t)i;
		t_assert(vr_enter(&r, (uint32_t)i, 0, 0) >= 0, "enter: %s", strerror(errno));
		drain(&r, &errors);
	}
	vr_stats(&r, &st);
	printf("submitted %" PRIu64 ", consumed %" PRIu64 ", error results %" PRIu64 "\n",
	       submitted, (uint64_t)st.sqes, errors);
	t_eq(st.sqes, submitted);
	t_assert(vr_refused(&r) > 0, "garbage accepted without a single refusal");
	t_assert(errors > 0, "no error CQE for garbage");
	vr_nop_ok(&r);
	vr_close(&r);
	return T_EXIT_PASS;
}
