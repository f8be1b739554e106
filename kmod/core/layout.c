// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Layout: validate the setup parameters, round the sizes, and publish
 * where every ring field and region lies.  Pure: allocates nothing.
 */
#include "aem_core_int.h"

aem_static_assert(sizeof(struct aem_sub) == 60,
		  "struct aem_sub is the whole state of a timer: 60 bytes");
aem_static_assert(AEM_MAX_BACKLOG < (1U << 23), "aem_sub.backlog is 23 bits wide");
aem_static_assert(AEM_MAX_SUBS <= (1U << 24), "aem_sub.index is 24 bits wide");
aem_static_assert(AEM_SRC_LAST <= 16, "aem_sub.source is 4 bits wide");
aem_static_assert(AEM_MAX_CLASSES <= 4, "aem_sub.prio is 2 bits wide");
aem_static_assert(AEM_SRC_IMPLS <= 8, "aem_sub.impl is 3 bits wide");
aem_static_assert(sizeof(struct aem_sender) == 16, "a sender entry is a quarter of a CQE");
aem_static_assert(sizeof(struct aem_sub_counts) == AEM_CQE_INLINE,
		  "a subscription's final counts fill a CQE's inline data");

/* Every field of shared memory, where user space has been told it is. */
#define AEM_PIN(type, field, off) \
	aem_static_assert(offsetof(type, field) == (off), #type "." #field " is ABI: it may not move")

AEM_PIN(struct aem_ring_block, head, 0);
AEM_PIN(struct aem_ring_block, tail, 64);
AEM_PIN(struct aem_ring_block, ring_mask, 128);
AEM_PIN(struct aem_ring_block, ring_entries, 132);
AEM_PIN(struct aem_ring_block, flags, 136);
AEM_PIN(struct aem_ring_block, dropped, 140);
aem_static_assert(sizeof(struct aem_ring_block) == 192, "a ring block is three cache lines");
AEM_PIN(struct aem_rings, sq, 0);
AEM_PIN(struct aem_rings, cq, 192);
AEM_PIN(struct aem_rings, res, 192 * (1 + AEM_MAX_CLASSES));
AEM_PIN(struct aem_rings, slot, 192 * (2 + AEM_MAX_CLASSES));
AEM_PIN(struct aem_rings, slot_array, 192 * (3 + AEM_MAX_CLASSES));

AEM_PIN(struct aem_sqe, opcode, 0);
AEM_PIN(struct aem_sqe, flags, 1);
AEM_PIN(struct aem_sqe, prio, 2);
AEM_PIN(struct aem_sqe, source, 3);
AEM_PIN(struct aem_sqe, len, 4);
AEM_PIN(struct aem_sqe, user_data, 8);
AEM_PIN(struct aem_sqe, target, 16);
AEM_PIN(struct aem_sqe, slot, 24);
AEM_PIN(struct aem_sqe, arg, 28);
AEM_PIN(struct aem_sqe, data, 32);
aem_static_assert(sizeof(struct aem_sqe) == 64, "an SQE is one cache line");

AEM_PIN(struct aem_cqe, user_data, 0);
AEM_PIN(struct aem_cqe, id, 8);
AEM_PIN(struct aem_cqe, res, 16);
AEM_PIN(struct aem_cqe, flags, 20);
AEM_PIN(struct aem_cqe, slot, 24);
AEM_PIN(struct aem_cqe, source, 28);
AEM_PIN(struct aem_cqe, prio, 29);
AEM_PIN(struct aem_cqe, resv, 30);
AEM_PIN(struct aem_cqe, data, 32);
aem_static_assert(sizeof(struct aem_cqe) == 64, "a CQE is one cache line");

/* Producer lanes: shared by user space alone, but ABI all the same. */
AEM_PIN(struct aem_lane_ctl, tail, 0);
AEM_PIN(struct aem_lane_ctl, prod_flags, 4);
AEM_PIN(struct aem_lane_ctl, head, 64);
AEM_PIN(struct aem_lane_ctl, cons_flags, 128);
AEM_PIN(struct aem_lane_ctl, entries, 132);
AEM_PIN(struct aem_lane_ctl, rec_size, 136);
AEM_PIN(struct aem_lane_ctl, prio, 140);
AEM_PIN(struct aem_lane_ctl, sub_id, 144);
AEM_PIN(struct aem_lane_ctl, call_res, 68);
AEM_PIN(struct aem_lane_ctl, call, 72);
AEM_PIN(struct aem_lane_ctl, reply, 80);
aem_static_assert(sizeof(struct aem_lane_ctl) == 192, "a lane's control is three cache lines, one per writer");
aem_static_assert(sizeof(struct aem_lane_rec) == 8, "a lane record's header is 8 bytes");
aem_static_assert(AEM_LANE_MAX_RECORD <= AEM_CQE_INLINE, "a lane event is an inline event");
AEM_PIN(struct aem_params, remote_lanes, 56);
AEM_PIN(struct aem_lane_open, addr, 0);
AEM_PIN(struct aem_lane_open, fd, 20);
AEM_PIN(struct aem_lane_open, map_size, 24);
aem_static_assert(sizeof(struct aem_lane_open) == 48, "struct aem_lane_open is 48 bytes");
aem_static_assert(sizeof(struct aem_lane_note) == AEM_CQE_INLINE, "a lane note fits a CQE's inline payload");
aem_static_assert(AEM_MAX_LANES <= 64, "AEM_OFF_LANE has 6 bits of slot");

static u32 roundup_pow2(u32 v)
{
	v--;
	v |= v >> 1;
	v |= v >> 2;
	v |= v >> 4;
	v |= v >> 8;
	v |= v >> 16;
	return v + 1;
}

static u64 round_page(u64 v)
{
	return (v + AEM_PAGE_SIZE - 1) & ~((u64)AEM_PAGE_SIZE - 1);
}

/* Publish the fields of the ring block at @block of struct aem_rings. */
static void set_offsets(struct aem_ring_offsets *o, size_t block, u32 array)
{
	o->head = (u32)(block + offsetof(struct aem_ring_block, head));
	o->tail = (u32)(block + offsetof(struct aem_ring_block, tail));
	o->ring_mask = (u32)(block + offsetof(struct aem_ring_block, ring_mask));
	o->ring_entries = (u32)(block + offsetof(struct aem_ring_block, ring_entries));
	o->flags = (u32)(block + offsetof(struct aem_ring_block, flags));
	o->dropped = (u32)(block + offsetof(struct aem_ring_block, dropped));
	o->array = array;
	o->senders = 0;
}

int aem_core_layout(struct aem_params *p, u32 host_features, struct aem_layout *l)
{
	u32 sq = p->sq_entries ? p->sq_entries : AEM_DEFAULT_SQ_ENTRIES;
	u32 cq = p->cq_entries ? p->cq_entries : AEM_DEFAULT_CQ_ENTRIES;
	u32 nc = p->nr_classes ? p->nr_classes : AEM_DEFAULT_CLASSES;
	u32 ss = p->slot_size ? p->slot_size : AEM_DEFAULT_SLOT_SIZE;
	u32 sc = p->slot_count ? p->slot_count : AEM_DEFAULT_SLOTS;
	u32 send = p->send_slots;
	u64 bl = p->backlog_limit;
	u32 cqq = p->call_quota ? p->call_quota : AEM_DEFAULT_CALL_QUOTA;
	u32 conns = p->sock_conns ? p->sock_conns : AEM_DEFAULT_SOCK_CONNS;
	u32 idle = p->sq_idle_ms ? p->sq_idle_ms : AEM_DEFAULT_SQ_IDLE_MS;
	u32 ver = p->api_version ? p->api_version : AEM_API_VERSION_MIN;
	u32 i, c;

	if (p->flags & ~AEM_SETUP_FLAGS_ALL)
		return -EINVAL;
	for (i = 0; i < sizeof(p->resv) / sizeof(p->resv[0]); i++)
		if (p->resv[i])
			return -EINVAL;
	for (i = 0; i < sizeof(p->resv2) / sizeof(p->resv2[0]); i++)
		if (p->resv2[i])
			return -EINVAL;
	/* Remote lanes need a host that maps pages for another process: the module. */
	if (p->remote_lanes > AEM_MAX_LANES)
		return -EINVAL;
	if (p->remote_lanes && !(host_features & AEM_FEAT_LANES))
		return -EOPNOTSUPP;
	/* A version this core does not serve: the caller's build and ours disagree. */
	if (ver < AEM_API_VERSION_MIN || ver > AEM_API_VERSION)
		return -EOPNOTSUPP;
	if (sq > AEM_MAX_SQ_ENTRIES || cq > AEM_MAX_CQ_ENTRIES || nc > AEM_MAX_CLASSES)
		return -EINVAL;
	if (ss < AEM_MIN_SLOT_SIZE || ss > AEM_MAX_SLOT_SIZE)
		return -EINVAL;
	if ((u64)sc + send > AEM_MAX_SLOTS || bl > AEM_MAX_BACKLOG || cqq > AEM_MAX_CALL_QUOTA)
		return -EINVAL;
	if (conns > AEM_MAX_SOCK_CONNS)
		return -EINVAL;
	/* An idle time means nothing without the poller: refused, not ignored. */
	if (idle > AEM_MAX_SQ_IDLE_MS || (p->sq_idle_ms && !(p->flags & AEM_SETUP_SQPOLL)))
		return -EINVAL;

	sq = roundup_pow2(sq);
	cq = roundup_pow2(cq);
	ss = roundup_pow2(ss);
	if (!bl) {
		/* Default: two rings' worth of every class, so a burst survives one slow poll. */
		bl = 2ULL * cq * nc;
		if (bl < 1024)
			bl = 1024;
		if (bl > AEM_MAX_BACKLOG)
			bl = AEM_MAX_BACKLOG;
	}

	memset(l, 0, sizeof(*l));
	l->sq_entries = sq;
	l->cq_entries = cq;
	l->res_entries = 2 * sq;
	l->nr_classes = nc;
	l->slot_size = ss;
	l->slot_count = sc;
	l->send_slots = send;
	l->slot_ring_entries = roundup_pow2(sc);
	l->backlog_limit = (u32)bl;
	l->call_quota = cqq;
	l->sock_conns = conns;
	l->sq_idle_ms = p->flags & AEM_SETUP_SQPOLL ? idle : 0;
	l->region_size[AEM_REGION_RINGS] =
		round_page(sizeof(struct aem_rings) + 4ULL * l->slot_ring_entries);
	l->region_size[AEM_REGION_SQES] = round_page((u64)sq * sizeof(struct aem_sqe));
	/* The class rings, then the result ring. */
	/* Version 4: each class ring's sender array, after the result ring. */
	l->region_size[AEM_REGION_CQES] =
		round_page(((u64)cq * nc + l->res_entries) * sizeof(struct aem_cqe) +
			   (ver >= 4 ? (u64)cq * nc * sizeof(struct aem_sender) : 0));
	l->region_size[AEM_REGION_PAYLOAD] = round_page(((u64)sc + send) * ss);

	p->sq_entries = sq;
	p->cq_entries = cq;
	p->nr_classes = nc;
	p->slot_size = ss;
	p->slot_count = sc;
	p->backlog_limit = (u32)bl;
	p->call_quota = cqq;
	p->sock_conns = conns;
	p->sq_idle_ms = l->sq_idle_ms;
	p->features = AEM_CORE_FEATURES | host_features | (ver >= 4 ? AEM_FEAT_SENDER : 0);
	p->api_version = ver;
	set_offsets(&p->sq_off, offsetof(struct aem_rings, sq), 0);
	for (c = 0; c < AEM_MAX_CLASSES; c++) {
		if (c < nc) {
			set_offsets(&p->cq_off[c], offsetof(struct aem_rings, cq[c]),
				    c * cq * (u32)sizeof(struct aem_cqe));
			if (ver >= 4)
				p->cq_off[c].senders = (nc * cq + l->res_entries) * (u32)sizeof(struct aem_cqe) +
						       c * cq * (u32)sizeof(struct aem_sender);
		} else
			memset(&p->cq_off[c], 0, sizeof(p->cq_off[c]));
	}
	set_offsets(&p->slot_off, offsetof(struct aem_rings, slot),
		    offsetof(struct aem_rings, slot_array));
	set_offsets(&p->res_off, offsetof(struct aem_rings, res), nc * cq * (u32)sizeof(struct aem_cqe));
	for (i = 0; i < AEM_NR_REGIONS; i++)
		p->region_size[i] = l->region_size[i];
	return 0;
}
