/* SPDX-License-Identifier: MIT */
/*
 * Scribbling on the shared indices.  One thread writes random and
 * adversarial values into every field of the RINGS region (heads, tails,
 * masks, entry counts, flags, dropped counters, the slot return ring) while
 * the main thread submits and consumes and a generator floods a slot-backed
 * class.  The process must survive, the kernel side must count
 * AEM_REFUSE_INDEX refusals, and a fresh ring must work afterwards.
 */
#include <pthread.h>
#include "aem_test.h"

static struct aem_ring r;
static struct aem_params p;
static _Atomic int stop;
static _Atomic uint64_t scribbles;

static uint32_t *field(uint32_t off)
{
	return (uint32_t *)((uint8_t *)r.region[AEM_REGION_RINGS] + off);
}

static void *scribbler(void *arg)
{
	const struct aem_ring_offsets *rings[2 + AEM_MAX_CLASSES];
	uint64_t seed = *(uint64_t *)arg;
	unsigned nr = 0, i;

	rings[nr++] = &p.sq_off;
	rings[nr++] = &p.slot_off;
	for (i = 0; i < p.nr_classes; i++)
		rings[nr++] = &p.cq_off[i];

	while (!stop) {
		const struct aem_ring_offsets *o = rings[t_rand(&seed) % nr];
		uint32_t offs[] = { o->head, o->tail, o->ring_mask, o->ring_entries, o->flags, o->dropped };
		uint32_t *f = field(offs[t_rand(&seed) % 6]);
		uint32_t old = aem_read_once(*f), v;

		switch (t_rand(&seed) % 8) {
		case 0: v = 0; break;
		case 1: v = ~0u; break;
		case 2: v = old - 1; break;
		case 3: v = old + 1; break;
		case 4: v = old + 0x10000; break;	/* far beyond any ring */
		case 5: v = old - 0x10000; break;	/* far behind */
		case 6: v = old ^ 0x80000000u; break;
		default: v = (uint32_t)t_rand(&seed); break;
		}
		aem_write_once(*f, v);
		/* The slot return ring's entries too. */
		if (t_rand(&seed) % 4 == 0) {
			uint32_t *a = (uint32_t *)((uint8_t *)r.region[AEM_REGION_RINGS] + p.slot_off.array);

			aem_write_once(a[t_rand(&seed) % r.slots.ring_entries], (uint32_t)t_rand(&seed));
		}
		scribbles++;
		if (scribbles % 64 == 0)
			usleep(100);
	}
	return NULL;
}

int main(void)
{
	const struct aem_cqe *batch[64];
	uint64_t seed = t_seed(), end, rounds = 0, cqes = 0, sqes = 0, errors = 0;
	struct aem_ring_stats st;
	struct aem_sqe *sqe;
	struct aem_ring fresh;
	struct aem_cqe c;
	pthread_t th;
	unsigned cls, n, i;
	int ret;

	p = t_params(256, 256, 2);
	p.backlog_limit = 1024;
	p.slot_count = 128;
	t_setup(&r, &p);
	t_sub_msg(&r, 1, 0, 0x1);

	sqe = t_sqe(&r);
	aem_prep_subscribe_gen(sqe, 200000, 0, 8, 100, 1, 0x2);
	t_submit(&r);
	c = t_result(&r, 0x2, 5000);
	t_assert(c.res >= 0, "subscribe generator: %s", strerror(-c.res));

	t_assert(pthread_create(&th, NULL, scribbler, &seed) == 0, "pthread_create");
	end = t_now_ns() + 2000 * T_MS;
	while (t_now_ns() < end) {
		for (i = 0; i < 16; i++) {
			sqe = aem_get_sqe(&r);
			if (!sqe)
				break;
			if (i % 2)
				aem_prep_nop(sqe);
			else
				aem_prep_post(sqe, AEM_ADDR(r.ring_id, 1), &rounds, sizeof(rounds), 0);
			sqe->user_data = rounds;
			sqes++;
		}
		/* Errors are allowed here; only surviving matters. */
		errors += aem_submit(&r) < 0;
		for (cls = 0; cls < r.nr_classes; cls++) {
			n = aem_peek_batch(&r, cls, batch, 64);
			for (i = 0; i < n; i++) {
				/* Everything here may be stale or garbage: read it, trust nothing. */
				unsigned len;
				void *d = aem_cqe_payload(&r, batch[i], &len);

				if (d && len)
					(void)*(volatile uint8_t *)d;
				if ((batch[i]->flags & AEM_CQE_F_SLOT) && d)
					aem_release_slot(&r, batch[i]->slot);
			}
			aem_cq_advance(&r, cls, n);
			cqes += n;
		}
		aem_release_commit(&r);
		ret = aem_wait(&r, 1, 0);
		errors += ret < 0 && ret != -ETIME;
		rounds++;
	}
	stop = 1;
	pthread_join(th, NULL);

	st = t_stats(&r);
	printf("%llu rounds (%llu submit/wait errors), %llu SQEs queued, %llu CQE slots read, "
	       "%llu scribbles; refused: index %llu slot %llu field %llu opcode %llu\n",
	       (unsigned long long)rounds, (unsigned long long)errors, (unsigned long long)sqes, (unsigned long long)cqes,
	       (unsigned long long)scribbles, (unsigned long long)st.refused[AEM_REFUSE_INDEX],
	       (unsigned long long)st.refused[AEM_REFUSE_SLOT], (unsigned long long)st.refused[AEM_REFUSE_FIELD],
	       (unsigned long long)st.refused[AEM_REFUSE_OPCODE]);
	t_assert(st.refused[AEM_REFUSE_INDEX] > 0, "no AEM_REFUSE_INDEX after %llu scribbles",
		 (unsigned long long)scribbles);
	t_assert(st.slots_free <= r.slot_count, "kernel side holds %llu of %u slots",
		 (unsigned long long)st.slots_free, r.slot_count);
	t_assert(st.delivered + st.backlog + st.dropped == st.produced,
		 "ring out of balance: delivered %llu + backlog %llu + dropped %llu != produced %llu",
		 (unsigned long long)st.delivered, (unsigned long long)st.backlog,
		 (unsigned long long)st.dropped, (unsigned long long)st.produced);
	aem_teardown(&r);

	/* Nothing outside that ring was hurt. */
	t_setup(&fresh, NULL);
	sqe = t_sqe(&fresh);
	aem_prep_nop(sqe);
	aem_sqe_set_data(sqe, 0x600d);
	t_eq(t_do(&fresh, 0x600d), 0);
	aem_teardown(&fresh);
	return T_EXIT_PASS;
}
