// SPDX-License-Identifier: MIT
/*
 * A reader's lanes (docs/PROTOCOL.md, "A reader's lanes in libaem"): one
 * table of the lanes a reader reads, remote and local, read class by
 * class in turn.  What a lane holds goes through the inline aem_lane_*
 * helpers of libaem.h, which trust nothing in the lane's memory; this
 * file only keeps the table: which lanes, whose turn, when one leaves.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "libaem.h"

enum {
	SET_LIVE	= 1 << 0,
	SET_REMOTE	= 1 << 1,	/* mapped by aem_lane_map_remote(): unmapped when it leaves */
	SET_ENDED	= 1 << 2,	/* its subscription ended: records are skipped */
};

/* A call event's slot: the entry's index and generation, so a late reply finds no later lane. */
#define SET_IDX_BITS	8
#define SET_CALL_SLOT(idx, gen)	((idx) | (gen) << SET_IDX_BITS)
_Static_assert(AEM_LANE_SET_MAX <= 1 << SET_IDX_BITS, "an entry's index fits below its generation");

/* struct aem_lane_set is the caller's memory in LIBAEM_1.5: its layout is part of the ABI. */
_Static_assert(sizeof(struct aem_lane_set_entry) == 88, "struct aem_lane_set_entry keeps LIBAEM_1.5's size");
_Static_assert(offsetof(struct aem_lane_set, entry) == 56 &&
	       sizeof(struct aem_lane_set) == 56 + AEM_LANE_SET_MAX * 88,
	       "struct aem_lane_set keeps LIBAEM_1.5's layout");

void aem_lane_set_init(struct aem_lane_set *s, struct aem_ring *ring)
{
	memset(s, 0, sizeof(*s));
	s->ring = ring;
}

/* A free entry, or NULL; its generation moves on. */
static struct aem_lane_set_entry *lanes_take(struct aem_lane_set *s, unsigned *idx)
{
	unsigned i;

	for (i = 0; i < AEM_LANE_SET_MAX; i++) {
		struct aem_lane_set_entry *e = &s->entry[i];

		if (e->state)
			continue;
		e->gen = (e->gen + 1) & ((1U << (32 - SET_IDX_BITS)) - 1);
		if (i >= s->hi)
			s->hi = i + 1;
		*idx = i;
		return e;
	}
	return NULL;
}

/*
 * Let go of entry @i (@drained: its producer closed it and all was read):
 * a remote lane is unmapped, a local one is the caller's again.
 */
static void lanes_leave(struct aem_lane_set *s, unsigned i, bool drained)
{
	struct aem_lane_set_entry *e = &s->entry[i];
	unsigned gen = e->gen;

	s->detached += drained;
	s->malformed += e->lane.malformed;
	if (e->state & SET_REMOTE)
		aem_lane_unmap_remote(&e->lane);
	memset(e, 0, sizeof(*e));
	e->gen = gen;
	while (s->hi && !s->entry[s->hi - 1].state)
		s->hi--;
}

int aem_lane_set_note(struct aem_lane_set *s, const struct aem_cqe *cqe)
{
	struct aem_lane_set_entry *e;
	struct aem_lane_note n;
	unsigned idx;
	int ret;

	if ((cqe->flags & (AEM_CQE_F_RESULT | AEM_CQE_F_LANE)) != (AEM_CQE_F_RESULT | AEM_CQE_F_LANE))
		return 0;
	if (aem_lane_note(cqe, &n))
		return -EINVAL;
	if (n.kind == AEM_LANE_NOTE_KICK)
		return 1;	/* it only woke the reader, who reads the lanes next */
	if (n.kind != AEM_LANE_NOTE_ATTACH || n.slot >= AEM_MAX_LANES || n.prio >= AEM_MAX_CLASSES)
		return -EINVAL;
	e = lanes_take(s, &idx);
	if (!e)
		return -ENOSPC;
	ret = aem_lane_map_remote(s->ring, &n, &e->lane);
	if (ret) {
		lanes_leave(s, idx, false);
		return ret;
	}
	e->user_data = cqe->user_data;
	e->slot = n.slot;
	e->state = SET_LIVE | SET_REMOTE;
	return 1;
}

int aem_lane_set_add(struct aem_lane_set *s, const struct aem_lane *l, uint64_t user_data)
{
	struct aem_lane_set_entry *e;
	unsigned idx;

	if (!l->kctl || l->prio >= AEM_MAX_CLASSES)
		return -EINVAL;
	e = lanes_take(s, &idx);
	if (!e)
		return -ENOSPC;
	e->lane = *l;
	e->user_data = user_data;
	e->state = SET_LIVE;
	return (int)idx;
}

int aem_lane_set_live(const struct aem_lane_set *s, unsigned idx)
{
	return idx < AEM_LANE_SET_MAX && s->entry[idx].state != 0;
}

/*
 * After a hand-back that found the producer waiting for room (@waiting:
 * aem_lane_advance()'s answer): wake it.  A local producer retries on its
 * own; a remote one sleeps in the module.
 */
static void lanes_wake(struct aem_lane_set *s, struct aem_lane_set_entry *e, int waiting)
{
	if (waiting && (e->state & SET_REMOTE))
		(void)aem_lane_room(s->ring, e->slot);	/* -ENOENT: the producer is gone, nobody waits */
}

unsigned aem_lane_set_peek(struct aem_lane_set *s, unsigned cls, struct aem_cqe *cqes, unsigned max)
{
	unsigned i, j, k, hi = s->hi, n = 0;

	if (!hi || !max || cls >= AEM_MAX_CLASSES)
		return 0;
	/* Each read starts one lane further on, so a full batch from one lane starves no other. */
	i = s->next[cls] < hi ? s->next[cls] : 0;
	s->next[cls] = i + 1;
	for (j = 0; j < hi && n < max; j++, i = i + 1 == hi ? 0 : i + 1) {
		struct aem_lane_set_entry *e = &s->entry[i];
		unsigned head, got;

		if (!e->state || e->lane.prio != cls)
			continue;
		if (e->state & SET_ENDED) {
			lanes_wake(s, e, aem_lane_discard(&e->lane, &s->dropped));
			if (aem_lane_drained(&e->lane))
				lanes_leave(s, i, true);
			continue;
		}
		head = e->lane.head;
		got = aem_lane_peek(&e->lane, cqes + n, max - n, e->user_data);
		for (k = 0; k < got; k++)
			if (cqes[n + k].flags & AEM_CQE_F_CALL)
				cqes[n + k].slot = SET_CALL_SLOT(i, e->gen);
		/* A malformed record skipped moved the head too: hand it back as well. */
		if (got || e->lane.head != head)
			lanes_wake(s, e, aem_lane_advance(&e->lane, got));
		else if (aem_lane_drained(&e->lane))
			lanes_leave(s, i, true);
		n += got;
	}
	return n;
}

int aem_lane_set_reply(struct aem_lane_set *s, const struct aem_cqe *cqe, const void *data,
		       unsigned len, int err)
{
	unsigned idx = cqe->slot & ((1U << SET_IDX_BITS) - 1);
	struct aem_lane_set_entry *e;

	if (!(cqe->flags & AEM_CQE_F_CALL) || idx >= AEM_LANE_SET_MAX)
		return -ENOENT;
	e = &s->entry[idx];
	if (!e->state || cqe->slot != SET_CALL_SLOT(idx, e->gen))
		return -ENOENT;
	return aem_lane_reply(&e->lane, cqe->id, data, len, err);
}

unsigned aem_lane_set_sleeping(struct aem_lane_set *s, int sleeping)
{
	unsigned i, ready = 0;

	for (i = 0; i < s->hi; i++) {
		struct aem_lane_set_entry *e = &s->entry[i];

		if (!e->state)
			continue;
		aem_lane_sleeping(&e->lane, sleeping);	/* a full barrier before the look at the tail */
		if (sleeping)
			ready += aem_load_acquire(&e->lane.kctl->tail) != e->lane.head ||
				 (aem_load_acquire(&e->lane.kctl->prod_flags) & AEM_LANE_P_CLOSED);
	}
	return ready;
}

unsigned aem_lane_set_end(struct aem_lane_set *s, uint64_t sub_id)
{
	unsigned i, ended = 0;

	for (i = 0; i < s->hi; i++) {
		struct aem_lane_set_entry *e = &s->entry[i];

		if (!(e->state & SET_LIVE) || (e->state & SET_ENDED) || e->lane.sub_id != sub_id)
			continue;
		aem_lane_end(&e->lane);
		e->state |= SET_ENDED;
		lanes_wake(s, e, aem_lane_discard(&e->lane, &s->dropped));
		ended++;
	}
	return ended;
}

void aem_lane_set_close(struct aem_lane_set *s)
{
	unsigned i;

	for (i = 0; i < s->hi; i++)
		if (s->entry[i].state) {
			aem_lane_end(&s->entry[i].lane);
			lanes_leave(s, i, false);
		}
	s->hi = 0;
}
