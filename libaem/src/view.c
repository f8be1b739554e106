// SPDX-License-Identifier: MIT
/*
 * libaem's view of a ring: the k* pointers and sizes of struct aem_ring,
 * from the offsets setup published.  Nothing here assumes the layout.
 */
#include "../include/libaem.h"
#include "aem_int.h"

static unsigned *rings_u32(struct aem_ring *ring, uint32_t off)
{
	return (unsigned *)((char *)ring->region[AEM_REGION_RINGS] + off);
}

static void init_cq_view(struct aem_ring *ring, struct aem_cq *cq, const struct aem_ring_offsets *o)
{
	cq->khead = rings_u32(ring, o->head);
	cq->ktail = rings_u32(ring, o->tail);
	cq->kflags = rings_u32(ring, o->flags);
	cq->kdropped = rings_u32(ring, o->dropped);
	cq->ring_mask = *rings_u32(ring, o->ring_mask);
	cq->ring_entries = *rings_u32(ring, o->ring_entries);
	cq->cqes = (const struct aem_cqe *)((char *)ring->region[AEM_REGION_CQES] + o->array);
}

/*
 * Point the view at the rings through the offsets setup published; the
 * caller has set ring->region[].  The fuzz harnesses build their view of
 * a ring with it too.
 */
void __aem_init_view(struct aem_ring *ring, const struct aem_params *p)
{
	unsigned c;

	ring->sq.khead = rings_u32(ring, p->sq_off.head);
	ring->sq.ktail = rings_u32(ring, p->sq_off.tail);
	ring->sq.kflags = rings_u32(ring, p->sq_off.flags);
	ring->sq.kdropped = rings_u32(ring, p->sq_off.dropped);
	ring->sq.ring_mask = *rings_u32(ring, p->sq_off.ring_mask);
	ring->sq.ring_entries = *rings_u32(ring, p->sq_off.ring_entries);
	ring->sq.sqes = (struct aem_sqe *)((char *)ring->region[AEM_REGION_SQES] + p->sq_off.array);
	ring->sq.sqe_head = ring->sq.sqe_tail = *ring->sq.ktail;

	for (c = 0; c < p->nr_classes; c++)
		init_cq_view(ring, &ring->cq[c], &p->cq_off[c]);
	init_cq_view(ring, &ring->res, &p->res_off);

	ring->slots.khead = rings_u32(ring, p->slot_off.head);
	ring->slots.ktail = rings_u32(ring, p->slot_off.tail);
	ring->slots.ring_mask = *rings_u32(ring, p->slot_off.ring_mask);
	ring->slots.ring_entries = *rings_u32(ring, p->slot_off.ring_entries);
	ring->slots.array = (uint32_t *)rings_u32(ring, p->slot_off.array);
	ring->slots.local_tail = *ring->slots.ktail;

	ring->nr_classes = p->nr_classes;
	ring->features = p->features;
	ring->ring_id = p->ring_id;
	ring->payload = ring->region[AEM_REGION_PAYLOAD];
	ring->slot_size = p->slot_size;
	ring->slot_count = p->slot_count;
	ring->send_slots = p->send_slots;
}
