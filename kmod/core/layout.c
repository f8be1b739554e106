// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * Layout: validate the setup parameters, round the sizes, and publish
 * where every ring field and region lies.  Pure: allocates nothing.
 */
#include "aem_core_int.h"

_Static_assert(sizeof(struct aem_sub) == 64, "struct aem_sub is the whole state of a timer: 64 bytes");
_Static_assert(AEM_MAX_BACKLOG < (1U << 24), "aem_sub.backlog is 24 bits wide");
_Static_assert(sizeof(struct aem_sqe) == 64, "SQE is one cache line");
_Static_assert(sizeof(struct aem_cqe) == 64, "CQE is one cache line");
_Static_assert(AEM_RB_SLOT_ARRAY % 64 == 0, "slot ring array starts on a cache line");

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

static void set_offsets(struct aem_ring_offsets *o, u32 base, u32 array)
{
	o->head = base + AEM_RB_HEAD;
	o->tail = base + AEM_RB_TAIL;
	o->ring_mask = base + AEM_RB_MASK;
	o->ring_entries = base + AEM_RB_ENTRIES;
	o->flags = base + AEM_RB_FLAGS;
	o->dropped = base + AEM_RB_DROPPED;
	o->array = array;
	o->resv = 0;
}

int aem_core_layout(struct aem_params *p, u32 host_features, struct aem_layout *l)
{
	u32 sq = p->sq_entries ? p->sq_entries : AEM_CORE_DEFAULT_SQ_ENTRIES;
	u32 cq = p->cq_entries ? p->cq_entries : AEM_CORE_DEFAULT_CQ_ENTRIES;
	u32 nc = p->nr_classes ? p->nr_classes : AEM_CORE_DEFAULT_CLASSES;
	u32 ss = p->slot_size ? p->slot_size : AEM_CORE_DEFAULT_SLOT_SIZE;
	u32 sc = p->slot_count ? p->slot_count : AEM_CORE_DEFAULT_SLOTS;
	u32 send = p->send_slots;
	u64 bl = p->backlog_limit;
	u32 i, c;

	if (p->flags & ~AEM_SETUP_FLAGS_ALL)
		return -EINVAL;
	for (i = 0; i < sizeof(p->resv) / sizeof(p->resv[0]); i++)
		if (p->resv[i])
			return -EINVAL;
	for (i = 0; i < sizeof(p->resv2) / sizeof(p->resv2[0]); i++)
		if (p->resv2[i])
			return -EINVAL;
	if (sq > AEM_MAX_SQ_ENTRIES || cq > AEM_MAX_CQ_ENTRIES || nc > AEM_MAX_CLASSES)
		return -EINVAL;
	if (ss < AEM_MIN_SLOT_SIZE || ss > AEM_MAX_SLOT_SIZE)
		return -EINVAL;
	if ((u64)sc + send > AEM_MAX_SLOTS || bl > AEM_MAX_BACKLOG)
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
	l->region_size[AEM_REGION_RINGS] =
		round_page(AEM_RB_SLOT_ARRAY + 4ULL * l->slot_ring_entries);
	l->region_size[AEM_REGION_SQES] = round_page((u64)sq * sizeof(struct aem_sqe));
	/* The class rings, then the result ring. */
	l->region_size[AEM_REGION_CQES] =
		round_page(((u64)cq * nc + l->res_entries) * sizeof(struct aem_cqe));
	l->region_size[AEM_REGION_PAYLOAD] = round_page(((u64)sc + send) * ss);

	p->sq_entries = sq;
	p->cq_entries = cq;
	p->nr_classes = nc;
	p->slot_size = ss;
	p->slot_count = sc;
	p->backlog_limit = (u32)bl;
	p->features = AEM_FEAT_CQE_INLINE | AEM_FEAT_SLOT_RING | AEM_FEAT_BLOCKING_CALL |
		      host_features;
	p->api_version = AEM_API_VERSION;
	set_offsets(&p->sq_off, AEM_RB_SQ, 0);
	for (c = 0; c < AEM_MAX_CLASSES; c++) {
		if (c < nc)
			set_offsets(&p->cq_off[c], AEM_RB_CQ(c),
				    c * cq * (u32)sizeof(struct aem_cqe));
		else
			memset(&p->cq_off[c], 0, sizeof(p->cq_off[c]));
	}
	set_offsets(&p->slot_off, AEM_RB_SLOT, AEM_RB_SLOT_ARRAY);
	set_offsets(&p->res_off, AEM_RB_RES, nc * cq * (u32)sizeof(struct aem_cqe));
	for (i = 0; i < AEM_NR_REGIONS; i++)
		p->region_size[i] = l->region_size[i];
	return 0;
}
