/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the libFuzzer harnesses for the ring core: an input
 * reader, a host for the core (regions on anonymous memory, a wake hook
 * that only counts), libaem's view of a ring built from the offsets
 * setup publishes, and a "fuzz source" whose events the harness posts
 * itself so that every produced event is known.
 *
 * The harnesses are single-threaded: nothing but the harness produces
 * events, so every invariant can be checked exactly between two steps.
 * A broken invariant aborts via fz_fail(), which libFuzzer reports as a
 * crash with the input that caused it.
 */
#ifndef AEM_FUZZ_HARNESS_H
#define AEM_FUZZ_HARNESS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aem_core.h"
/* libaem's view of a ring, as applications have it; its barriers are the core's. */
#include "../../libaem/include/libaem.h"
#include "../../libaem/src/view.c"

/* ---------------------------------------------------------------------- */
/* Failing                                                                */

static void fz_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fz_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "INVARIANT BROKEN: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define FZ_CHECK(cond, ...)			\
	do {					\
		if (!(cond))			\
			fz_fail(__VA_ARGS__);	\
	} while (0)

/* FZ_TRACE=1 in the environment prints every step: for reading a crasher. */
static int fz_trace = -1;

#define FZ_TRACE(...)							\
	do {								\
		if (fz_trace < 0)					\
			fz_trace = getenv("FZ_TRACE") != NULL;		\
		if (fz_trace)						\
			fprintf(stderr, __VA_ARGS__);			\
	} while (0)

/* ---------------------------------------------------------------------- */
/* Input                                                                  */

struct fz_in {
	const uint8_t	*p;
	size_t		n;
};

static inline bool fz_more(const struct fz_in *in)
{
	return in->n > 0;
}

/* Exhausted input reads as zeros, so every prefix is a complete program. */
static inline void fz_bytes(struct fz_in *in, void *dst, size_t n)
{
	size_t k = n < in->n ? n : in->n;

	memcpy(dst, in->p, k);
	memset((uint8_t *)dst + k, 0, n - k);
	in->p += k;
	in->n -= k;
}

static inline uint8_t fz_u8(struct fz_in *in)
{
	uint8_t v;

	fz_bytes(in, &v, 1);
	return v;
}

static inline uint16_t fz_u16(struct fz_in *in)
{
	uint16_t v;

	fz_bytes(in, &v, 2);
	return v;
}

static inline uint32_t fz_u32(struct fz_in *in)
{
	uint32_t v;

	fz_bytes(in, &v, 4);
	return v;
}

/* ---------------------------------------------------------------------- */
/* Host hooks                                                             */

static unsigned long fz_wakes, fz_kicks;

void aem_host_wake(struct aem_ctx *r, void *host, bool urgent)
{
	(void)r;
	(void)host;
	(void)urgent;
	fz_wakes++;
}

/* One process: the sender a version 4 ring's message events name. */
void aem_host_sender(void *target_host, struct aem_sender *out)
{
	(void)target_host;
	out->pid = getpid();
	out->uid = geteuid();
}

/* One user: every ring is the harness's, so grants never refuse here. */
void aem_host_cred_get(struct aem_cred *c)
{
	c->uid = (u32)geteuid();
	c->ns = NULL;
}

void aem_host_cred_put(struct aem_cred *c)
{
	(void)c;
}

/* Ring ids: reproducible from run to run, so a crashing input replays. */
u32 aem_host_random_u32(void)
{
	static u32 state = 0x2545f491;

	state = state * 1664525u + 1013904223u;
	return state;
}

/* The ring's memory account: no limit here (ASan finds what leaks). */
int aem_host_charge(void *host, u64 bytes, bool force)
{
	(void)host;
	(void)bytes;
	(void)force;
	return 0;
}

void aem_host_uncharge(void *host, u64 bytes)
{
	(void)host;
	(void)bytes;
}

/* The harness drives the timer and generator itself, when it says so. */
void aem_host_timer_kick(void)
{
	fz_kicks++;
}

void aem_host_gen_kick(void)
{
	fz_kicks++;
}

/* ---------------------------------------------------------------------- */
/* The fuzz source: subscriptions whose events the harness posts.         */

#define FZ_MAX_SUBS	16

struct fz_sub {
	struct aem_ctx	*ring;
	struct aem_sub	*s;
	uint64_t	id;
	uint32_t	index;		/* our index: stamped into every payload */
	bool		live;		/* the core may still hand it to us */
	uint64_t	posted;		/* aem_core_post calls made for it */
	uint64_t	seen;		/* its events drained from CQ rings */
	uint64_t	next_seq;	/* sequence number of the next post */
	uint64_t	last_seen;	/* last sequence seen + 1 (0: none yet) */
	uint64_t	writebacks;	/* writebacks the source accepted */
};

static struct fz_sub fz_subs[FZ_MAX_SUBS];
static unsigned fz_nsubs;
static int fz_source_id = -1;	/* AEM_SRC_* the fuzz source registered as */

static int fz_src_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	struct fz_sub *fs;

	/* Refuse some argument values, as a real source would. */
	if (sqe->gen.resv)
		return -EINVAL;
	if (fz_nsubs == FZ_MAX_SUBS)
		return -ENOSPC;
	fs = &fz_subs[fz_nsubs];
	memset(fs, 0, sizeof(*fs));
	fs->ring = r;
	fs->s = s;
	fs->id = aem_sub_id(r, s);
	fs->index = fz_nsubs++;
	fs->live = true;
	return 0;
}

static void fz_src_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	unsigned i;

	(void)r;
	for (i = 0; i < fz_nsubs; i++)
		if (fz_subs[i].s == s && fz_subs[i].live)
			fz_subs[i].live = false;
}

static int fz_src_writeback(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
			    const void *data, u32 len)
{
	unsigned i;

	(void)r;
	(void)sqe;
	(void)data;
	FZ_CHECK(len <= AEM_MAX_SLOT_SIZE, "writeback handed the source %u bytes", len);
	for (i = 0; i < fz_nsubs; i++) {
		if (fz_subs[i].s == s && fz_subs[i].live) {
			fz_subs[i].writebacks++;
			return 0;
		}
	}
	fz_fail("writeback for a subscription the source no longer holds");
}

static struct aem_source_ops fz_source_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.name		= "fuzz",
	.subscribe	= fz_src_subscribe,
	.unsubscribe	= fz_src_unsubscribe,
	.writeback	= fz_src_writeback,
};

/*
 * A second fuzz source under AEM_SRC_SOCK with an .io hook, so SEND,
 * SHUTDOWN and writebacks reach a source that answers them now, later
 * (AEM_CORE_PENDING, completed at once), or with a refusal -- an -EAGAIN
 * among them, which the core must not take for a full POST target.
 */
static int fz_io_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	(void)r;
	(void)s;
	return sqe->sock.flags || sqe->sock.resv[0] ? -EINVAL : 0;
}

static void fz_io_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	(void)r;
	(void)s;
}

static int fz_io(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
		 const void *data, u32 len)
{
	static const int refusals[] = { -EPIPE, -EAGAIN, -ENOBUFS, -ENOENT, -EINVAL, -70000 };
	struct aem_pending p;
	volatile u8 sink = 0;
	u32 i;

	(void)s;
	FZ_CHECK(len <= AEM_MAX_SLOT_SIZE, "io handed the source %u bytes", len);
	FZ_CHECK(data || !len, "io: %u bytes at NULL", len);
	for (i = 0; i < len; i++)	/* the payload must be readable where the core says */
		sink ^= ((const u8 *)data)[i];
	(void)sink;
	switch (sqe->user_data % 4) {
	case 0:
		return (int)len;
	case 1:
		aem_core_pending_init(&p, sqe);
		aem_core_complete(r, &p, (s32)(sqe->user_data & 8 ? len : (u32)-ECONNRESET));
		return AEM_CORE_PENDING;
	case 2:
		return refusals[(sqe->user_data >> 2) % (sizeof(refusals) / sizeof(refusals[0]))];
	default:
		return 0;
	}
}

static const struct aem_source_ops fz_io_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_SOCK,
	.name		= "fuzz-io",
	.subscribe	= fz_io_subscribe,
	.unsubscribe	= fz_io_unsubscribe,
	.io		= fz_io,
};

/*
 * Start the core and register the fuzz source under the first source id
 * left free: the kernel-only sources' ids (process, fd) are, since the
 * harness links only kmod/core.
 */
static void fz_register_source(void)
{
	static const u8 candidates[] = { AEM_SRC_PROC, AEM_SRC_FD, AEM_SRC_GEN, AEM_SRC_TIMER };
	int ret;

	ret = aem_core_init();
	FZ_CHECK(ret == 0, "aem_core_init: %d", ret);
	unsigned i;

	FZ_CHECK(aem_core_register_source(&fz_io_ops) == 0, "registering the io source");
	for (i = 0; i < sizeof(candidates); i++) {
		fz_source_ops.source = candidates[i];
		if (aem_core_register_source(&fz_source_ops) == 0) {
			fz_source_id = candidates[i];
			return;
		}
	}
	fz_source_id = -1;
}

/* Payload of fuzz-source event: a header, then bytes derived from it. */
struct fz_payload {
	uint32_t	sub;
	uint32_t	len;
	uint64_t	seq;
};

static inline uint8_t fz_fill_byte(const struct fz_payload *h, uint32_t i)
{
	return (uint8_t)(h->seq * 31 + h->sub * 7 + i);
}

static void fz_make_payload(uint8_t *buf, uint32_t sub, uint64_t seq, uint32_t len)
{
	struct fz_payload h = { .sub = sub, .len = len, .seq = seq };
	uint32_t i;

	for (i = 0; i < len; i++)
		buf[i] = fz_fill_byte(&h, i);
	memcpy(buf, &h, len < sizeof(h) ? len : sizeof(h));
}

/* ---------------------------------------------------------------------- */
/* A ring and the user's view of it                                       */

#define FZ_MAX_SLOTS	64

enum fz_slot_state {
	FZ_SLOT_KERNEL = 0,	/* the core's (free or about to be handed out) */
	FZ_SLOT_HELD,		/* handed to us in a CQE, not yet returned */
	FZ_SLOT_LIMBO,		/* named in a writeback whose outcome we have not seen */
};

struct fz_ring {
	struct aem_params	p;
	struct aem_layout	l;
	void			*regions[AEM_NR_REGIONS];
	size_t			map_len[AEM_NR_REGIONS];
	struct aem_ctx		*r;
	u32			id;

	/* libaem's view, from the published offsets (completion ring c: fz_cq()) */
	struct aem_ring		view;

	/* our side; CQ c: the classes [0, nr_classes), then the result ring */
	u32			sq_local_tail;
	u32			cq_local_head[AEM_MAX_CLASSES + 1];
	u32			sr_local_tail;
	u8			slot_state[FZ_MAX_SLOTS];
	u64			consumed;	/* sum of aem_core_submit() returns */
	u64			results;	/* result CQEs drained */
	u64			events;		/* event CQEs drained */
};

static inline void *fz_at(void *base, u32 off)
{
	return (uint8_t *)base + off;
}

/* Completion ring @c: class c below nr_classes, the result ring at nr_classes. */
static inline struct aem_cq *fz_cq(struct fz_ring *fr, unsigned c)
{
	return c < fr->p.nr_classes ? &fr->view.cq[c] : &fr->view.res;
}

static void fz_ring_free(struct fz_ring *fr)
{
	unsigned i;

	if (fr->r)
		aem_core_ring_destroy(fr->r);
	fr->r = NULL;
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		free(fr->regions[i]);
		fr->regions[i] = NULL;
	}
}

/*
 * Lay out and create a ring from @p; returns the core's error unchanged
 * (a fuzzed setup may well be refused).  Sizes are kept small by the
 * callers so that rings fill, overflow and wrap within one input.
 */
static int fz_ring_init(struct fz_ring *fr, const struct aem_params *p)
{
	unsigned i, c;
	int ret;

	memset(fr, 0, sizeof(*fr));
	fr->p = *p;
	ret = aem_core_layout(&fr->p, 0, &fr->l);
	if (ret)
		return ret;
	FZ_CHECK(fr->l.slot_count + fr->l.send_slots <= FZ_MAX_SLOTS || p->slot_count + p->send_slots > FZ_MAX_SLOTS,
		 "layout grew the slots from %u+%u to %u+%u", p->slot_count, p->send_slots,
		 fr->l.slot_count, fr->l.send_slots);
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		size_t len = fr->l.region_size[i] ? fr->l.region_size[i] : 1;

		/*
		 * Heap, not mmap: ASan puts redzones around heap blocks, so a
		 * core access one byte past a region is reported.
		 */
		fr->map_len[i] = len;
		if (posix_memalign(&fr->regions[i], 64, len)) {
			fr->regions[i] = NULL;
			fz_ring_free(fr);
			return -ENOMEM;
		}
		memset(fr->regions[i], 0, len);
	}
	ret = aem_core_ring_create(&fr->p, &fr->l, fr->regions, fr, &fr->r, &fr->id);
	if (ret) {
		fr->r = NULL;
		fz_ring_free(fr);
		return ret;
	}

	for (i = 0; i < AEM_NR_REGIONS; i++) {
		fr->view.region[i] = fr->regions[i];
		fr->view.region_size[i] = fr->l.region_size[i];
	}
	__aem_init_view(&fr->view, &fr->p);
	for (c = 0; c <= fr->p.nr_classes; c++) {
		const struct aem_ring_offsets *o = c < fr->p.nr_classes ? &fr->p.cq_off[c] : &fr->p.res_off;
		u32 entries = fz_cq(fr, c)->ring_entries;

		FZ_CHECK(entries && !(entries & (entries - 1)) && fz_cq(fr, c)->ring_mask == entries - 1,
			 "CQ %u: %u entries, mask %u", c, entries, fz_cq(fr, c)->ring_mask);
		FZ_CHECK(o->array + (u64)entries * sizeof(struct aem_cqe) <= fr->l.region_size[AEM_REGION_CQES],
			 "CQ %u array beyond the CQES region", c);
	}
	/* The published offsets must stay inside the regions they name. */
	FZ_CHECK(fr->p.sq_off.array + (u64)fr->p.sq_entries * sizeof(struct aem_sqe) <=
			 fr->l.region_size[AEM_REGION_SQES], "SQ array beyond the SQES region");
	FZ_CHECK(fr->p.slot_off.array + (u64)fr->view.slots.ring_entries * 4 <= fr->l.region_size[AEM_REGION_RINGS],
		 "slot ring array beyond the RINGS region");
	FZ_CHECK((u64)(fr->p.slot_count + fr->p.send_slots) * fr->p.slot_size <=
			 fr->l.region_size[AEM_REGION_PAYLOAD], "slots beyond the PAYLOAD region");
	return 0;
}

/*
 * Events stop at backlog_limit; results (answers to SQEs) may take a second
 * backlog's worth plus one SQ ring on top (post.c, __aem_post_locked).
 */
#define FZ_BACKLOG_BOUND(p)	(2 * (p)->backlog_limit + (p)->sq_entries)

static inline bool fz_is_delivery_slot(const struct fz_ring *fr, u32 slot)
{
	return slot >= fr->p.send_slots && slot < fr->p.send_slots + fr->p.slot_count;
}

/* ---------------------------------------------------------------------- */
/* Accounting invariants                                                  */

static u64 fz_refused_total(const struct aem_ring_stats *st)
{
	u64 sum = 0;
	unsigned i;

	for (i = 0; i < AEM_REFUSE_NR; i++)
		sum += st->refused[i];
	return sum;
}

/* produced == delivered + backlog + dropped, for the ring and each live sub. */
static void fz_check_accounting(struct fz_ring *fr)
{
	struct aem_ring_stats st;
	unsigned i;

	memset(&st, 0, sizeof(st));
	aem_core_ring_stats(fr->r, &st);
	FZ_CHECK(st.produced == st.delivered + st.backlog + st.dropped,
		 "ring %u: produced %llu != delivered %llu + backlog %llu + dropped %llu", fr->id,
		 (unsigned long long)st.produced, (unsigned long long)st.delivered,
		 (unsigned long long)st.backlog, (unsigned long long)st.dropped);
	FZ_CHECK(st.sqes == fr->consumed, "ring %u: stats.sqes %llu, submit returned %llu in all",
		 fr->id, (unsigned long long)st.sqes, (unsigned long long)fr->consumed);
	FZ_CHECK(st.slots_free <= fr->p.slot_count, "ring %u: %llu free slots of %u", fr->id,
		 (unsigned long long)st.slots_free, fr->p.slot_count);
	FZ_CHECK(st.backlog <= FZ_BACKLOG_BOUND(&fr->p), "ring %u: backlog %llu beyond its bound %u",
		 fr->id, (unsigned long long)st.backlog, FZ_BACKLOG_BOUND(&fr->p));

	for (i = 0; i < fz_nsubs; i++) {
		struct fz_sub *fs = &fz_subs[i];
		struct aem_sub_stats ss;
		int ret;

		if (fs->ring != fr->r || !fs->live)
			continue;
		memset(&ss, 0, sizeof(ss));
		ss.id = fs->id;
		ret = aem_core_sub_stats(fr->r, &ss);
		FZ_CHECK(ret == 0, "sub_stats of live subscription %llx: %d",
			 (unsigned long long)fs->id, ret);
		FZ_CHECK(ss.produced == ss.delivered + ss.backlog + ss.dropped,
			 "sub %llx: produced %llu != delivered %llu + backlog %llu + dropped %llu",
			 (unsigned long long)fs->id, (unsigned long long)ss.produced,
			 (unsigned long long)ss.delivered, (unsigned long long)ss.backlog,
			 (unsigned long long)ss.dropped);
		FZ_CHECK(ss.produced == fs->posted, "sub %llx: core says %llu produced, we posted %llu",
			 (unsigned long long)fs->id, (unsigned long long)ss.produced,
			 (unsigned long long)fs->posted);
		FZ_CHECK(fs->seen <= ss.delivered, "sub %llx: drained %llu events, core delivered %llu",
			 (unsigned long long)fs->id, (unsigned long long)fs->seen,
			 (unsigned long long)ss.delivered);
	}
}

/* Post @n events of @len bytes for fuzz subscription @fs; checks the return. */
static void fz_post(struct fz_sub *fs, unsigned n, u32 len, u32 cqe_flags)
{
	uint8_t buf[AEM_MAX_SLOT_SIZE > 4096 ? 4096 : AEM_MAX_SLOT_SIZE];
	unsigned i;

	if (len > sizeof(buf))
		len = sizeof(buf);
	for (i = 0; i < n && fs->live; i++) {
		int ret;

		fz_make_payload(buf, fs->index, fs->next_seq, len);
		ret = aem_core_post(fs->ring, fs->s, buf, len, cqe_flags, fs->id);
		FZ_CHECK(ret == 0 || ret == -ENOSPC, "aem_core_post: %d", ret);
		fs->next_seq++;
		fs->posted++;
		if (cqe_flags & AEM_CQE_F_FINAL)
			fs->live = false;	/* the core owns its end now */
	}
}

struct fz_batch_arg {
	struct fz_sub	*fs;
	u64		first_seq;
	u32		len;
};

static void fz_batch_fill(void *arg, u64 first, u32 count, u8 *dst, u32 stride)
{
	struct fz_batch_arg *a = arg;
	u32 i;

	FZ_CHECK(count == 1 || stride >= AEM_CQE_INLINE, "post_batch fill: %u payloads %u bytes apart",
		 count, stride);
	for (i = 0; i < count; i++)
		fz_make_payload(dst + (size_t)i * stride, a->fs->index, a->first_seq + first + i, a->len);
}

static void fz_post_batch(struct fz_sub *fs, unsigned n, u32 len)
{
	struct fz_batch_arg a = { .fs = fs, .first_seq = fs->next_seq, .len = len };
	u32 got;

	if (!fs->live)
		return;
	if (len > AEM_CQE_INLINE)
		len = a.len = AEM_CQE_INLINE;
	got = aem_core_post_batch_run(fs->ring, fs->s, n, len, fz_batch_fill, &a, 0);
	FZ_CHECK(got <= n, "post_batch produced %u of %u", got, n);
	fs->next_seq += got;
	fs->posted += got;
}

/*
 * Check a fuzz-source event's payload: its header names this subscription,
 * its sequence number is beyond the last one seen (events of one
 * subscription stay in order), and its filler is intact.
 */
static void fz_check_event_payload(struct fz_sub *fs, const uint8_t *data, u32 len, bool trunc)
{
	struct fz_payload h;
	u32 i, n;

	if (len < sizeof(h))
		return;	/* too short to carry a header: nothing to compare */
	memcpy(&h, data, sizeof(h));
	FZ_CHECK(h.sub == fs->index, "event of sub %u carries sub %u's payload", fs->index, h.sub);
	FZ_CHECK(h.seq < fs->next_seq, "event seq %llu never posted (next %llu)",
		 (unsigned long long)h.seq, (unsigned long long)fs->next_seq);
	FZ_CHECK(fs->last_seen == 0 || h.seq >= fs->last_seen,
		 "sub %u: event seq %llu after %llu (out of order or duplicated)", fs->index,
		 (unsigned long long)h.seq, (unsigned long long)(fs->last_seen - 1));
	fs->last_seen = h.seq + 1;
	FZ_CHECK(trunc || h.len == len, "sub %u seq %llu: %u bytes delivered, %u posted", fs->index,
		 (unsigned long long)h.seq, len, h.len);
	n = len < h.len ? len : h.len;
	for (i = sizeof(h); i < n; i++)
		FZ_CHECK(data[i] == fz_fill_byte(&h, i), "sub %u seq %llu: byte %u corrupted",
			 fs->index, (unsigned long long)h.seq, i);
}

static struct fz_sub *fz_sub_by_id(struct fz_ring *fr, u64 id)
{
	unsigned i;

	for (i = 0; i < fz_nsubs; i++)
		if (fz_subs[i].ring == fr->r && fz_subs[i].id == id)
			return &fz_subs[i];
	return NULL;
}

static void fz_reset_subs(void)
{
	memset(fz_subs, 0, sizeof(fz_subs));
	fz_nsubs = 0;
}

#endif /* AEM_FUZZ_HARNESS_H */
