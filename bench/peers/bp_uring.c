// SPDX-License-Identifier: MIT
/*
 * io_uring peers, through liburing.
 *
 * io_uring_msg_ring: every producer owns a ring and sends IORING_OP_MSG_RING
 * SQEs, a batch per io_uring_submit(), to the consumer's ring; its own
 * successful completions are skipped (IOSQE_CQE_SKIP_SUCCESS).  The consumer
 * reads its mapped CQ ring, spinning when busy, else in io_uring_wait_cqe().
 *
 * io_uring_nop: one ring; the producer thread submits batches of NOPs and the
 * consumer thread reaps their completions from the same ring.
 *
 * A CQE carries 12 bytes (user_data, res), not the 32-byte event: user_data
 * holds the event number (low half) and, when stamped, bit 63 set and the send
 * time in ns after the start modulo 2^31 (bits 32-62); a MSG_RING's res
 * carries the producer.
 * Producers keep what is in flight below the consumer's CQ size, so no
 * completion overflows.
 */
/* built only with liburing: see uring.go */
#ifdef BP_HAVE_URING
#include <liburing.h>
#include <stdlib.h>

#include "bp.h"
#include "bp_stream.h"

#define BP_URING_END	UINT64_MAX
#define BP_STAMPED	(UINT64_C(1) << 63)
#define BP_STAMP_MASK	((UINT64_C(1) << 31) - 1)
#define BP_CQ_BATCH	256

struct bp_uring {
	struct io_uring cring;			/* consumer's ring (NOP: the ring) */
	bool cring_ok;
	struct io_uring prings[BP_MAX_PRODUCERS];
	bool pring_ok[BP_MAX_PRODUCERS];
	bool nop;
	uint32_t cq_entries;
	/* flow control: events submitted and consumed, over all producers */
	_Alignas(BP_CACHELINE) _Atomic uint64_t posted;
	_Alignas(BP_CACHELINE) _Atomic uint64_t consumed;
};

static uint32_t bp_pow2(uint32_t v)
{
	uint32_t r = 1;

	while (r < v)
		r <<= 1;
	return r;
}

static int bp_uring_setup_common(struct bp_stream *s, bool nop)
{
	struct io_uring_params params;
	struct bp_uring *u;
	uint32_t sq, i;
	int ret;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	s->priv = u;
	u->nop = nop;
	sq = bp_pow2(s->p->batch ? s->p->batch : 1);
	if (sq > 4096)
		sq = 4096;
	u->cq_entries = bp_pow2(s->entries);
	if (u->cq_entries < 2 * sq)
		u->cq_entries = 2 * sq;

	memset(&params, 0, sizeof(params));
	params.flags = IORING_SETUP_CQSIZE;
	params.cq_entries = u->cq_entries;
	ret = io_uring_queue_init_params(nop ? sq : 8, &u->cring, &params);
	if (ret)
		return ret;
	u->cring_ok = true;
	u->cq_entries = params.cq_entries;
	if (nop)
		return 0;
	for (i = 0; i < s->nprod; i++) {
		ret = io_uring_queue_init(sq, &u->prings[i], 0);
		if (ret)
			return ret;
		u->pring_ok[i] = true;
	}
	return 0;
}

static int bp_uring_msg_setup(struct bp_stream *s)
{
	return bp_uring_setup_common(s, false);
}

static int bp_uring_nop_setup(struct bp_stream *s)
{
	return bp_uring_setup_common(s, true);
}

static void bp_uring_teardown(struct bp_stream *s)
{
	struct bp_uring *u = s->priv;
	uint32_t i;

	if (!u)
		return;
	for (i = 0; i < BP_MAX_PRODUCERS; i++)
		if (u->pring_ok[i])
			io_uring_queue_exit(&u->prings[i]);
	if (u->cring_ok)
		io_uring_queue_exit(&u->cring);
	free(u);
	s->priv = NULL;
}

/* Wait until n more events fit in the consumer's CQ, then claim them. */
static void bp_uring_reserve(struct bp_uring *u, uint32_t n)
{
	uint32_t spins = 0;

	for (;;) {
		uint64_t posted = atomic_load(&u->posted);
		uint64_t consumed = atomic_load_explicit(&u->consumed,
							 memory_order_acquire);

		if (posted + n - consumed <= u->cq_entries &&
		    atomic_compare_exchange_weak(&u->posted, &posted,
						 posted + n))
			return;
		bp_spin(&spins);
	}
}

/* Count failed sends; successes post no CQE on the sender's ring. */
static void bp_uring_reap_own(struct bp_stream *s, struct io_uring *ring)
{
	struct io_uring_cqe *cqes[BP_CQ_BATCH];
	unsigned n, i;

	while ((n = io_uring_peek_batch_cqe(ring, cqes, BP_CQ_BATCH))) {
		for (i = 0; i < n; i++)
			if (cqes[i]->res < 0) {
				struct bp_uring *u = s->priv;

				atomic_fetch_add(&s->dropped, 1);
				/* it will never be consumed: give its slot back */
				atomic_fetch_sub(&u->posted, 1);
			}
		io_uring_cq_advance(ring, n);
	}
}

static int bp_uring_submit_all(struct io_uring *ring)
{
	for (;;) {
		int ret = io_uring_submit(ring);

		if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY)
			continue;
		if (ret < 0)
			return ret;
		if (!io_uring_sq_ready(ring))
			return 0;
	}
}

static int bp_uring_produce(struct bp_stream *s, struct bp_prod *pr)
{
	struct bp_uring *u = s->priv;
	struct io_uring *ring = u->nop ? &u->cring : &u->prings[pr->id];
	const struct bp_params *p = s->p;
	uint32_t n, i;
	int ret;

	while ((n = bp_prod_next(pr))) {
		unsigned space = io_uring_sq_space_left(ring);

		if (n > space)
			n = space;
		bp_uring_reserve(u, n);
		for (i = 0; i < n; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
			uint64_t k = pr->sent + i, ts = bp_stamp(p, k);
			uint64_t data = (uint32_t)k;

			if (ts)
				data |= BP_STAMPED |
					 (((ts - s->start) & BP_STAMP_MASK) << 32);
			if (u->nop) {
				io_uring_prep_nop(sqe);
			} else {
				io_uring_prep_msg_ring(sqe, u->cring.ring_fd,
						       pr->id, data, 0);
				sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
			}
			io_uring_sqe_set_data64(sqe, data);
		}
		ret = bp_uring_submit_all(ring);
		if (ret)
			return ret;
		pr->sent += n;
		if (!u->nop)
			bp_uring_reap_own(s, ring);
	}
	return 0;
}

static void bp_uring_finish(struct bp_stream *s, struct bp_prod *pr, bool last)
{
	struct bp_uring *u = s->priv;
	struct io_uring *ring = u->nop ? &u->cring : &u->prings[pr->id];
	struct io_uring_sqe *sqe;

	if (!u->nop)
		bp_uring_reap_own(s, ring);
	if (!last)
		return;
	/* wake a consumer asleep in io_uring_wait_cqe() with an end marker */
	bp_uring_reserve(u, 1);
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return;
	if (u->nop) {
		io_uring_prep_nop(sqe);
	} else {
		io_uring_prep_msg_ring(sqe, u->cring.ring_fd, 0, BP_URING_END, 0);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	}
	io_uring_sqe_set_data64(sqe, BP_URING_END);
	(void)bp_uring_submit_all(ring);
}

static void bp_uring_take(struct bp_stream *s, struct bp_cons *c,
			  uint32_t id, uint64_t data)
{
	uint64_t ts = 0, seq;
	uint64_t expect = id < BP_MAX_PRODUCERS ? c->expect[id] : 0;

	/* widen the 32-bit event number around the expected one */
	seq = expect + (uint64_t)(int64_t)(int32_t)((uint32_t)data -
						    (uint32_t)expect);
	if (data & BP_STAMPED) {
		uint64_t now = bp_now();
		uint64_t sent = (data >> 32) & BP_STAMP_MASK;
		/* latencies stay far below the 2 s the 31 bits wrap at */
		uint64_t lat = ((now - s->start) - sent) & BP_STAMP_MASK;

		ts = now - lat;
	}
	bp_take(c, ((uint64_t)id << BP_SEQ_SHIFT) | (seq & BP_SEQ_MASK), ts);
}

static int bp_uring_consume(struct bp_stream *s, struct bp_cons *c)
{
	struct bp_uring *u = s->priv;
	struct io_uring_cqe *cqes[BP_CQ_BATCH];
	uint64_t seen = 0;
	bool ended = false;
	uint32_t spins = 0;
	unsigned n, i;

	for (;;) {
		n = io_uring_peek_batch_cqe(&u->cring, cqes, BP_CQ_BATCH);
		if (n) {
			for (i = 0; i < n; i++) {
				struct io_uring_cqe *cqe = cqes[i];

				if (cqe->user_data == BP_URING_END) {
					ended = true;
					continue;
				}
				if (cqe->res < 0) {
					c->r->errors++;
					continue;
				}
				bp_uring_take(s, c, u->nop ? 0 : (uint32_t)cqe->res,
					      cqe->user_data);
			}
			io_uring_cq_advance(&u->cring, n);
			seen += n;
			/* pairs with the producers' acquire in bp_uring_reserve */
			atomic_store_explicit(&u->consumed, seen,
					      memory_order_release);
			continue;
		}
		/* the end marker may overtake another producer's last CQEs */
		if (ended && bp_all_done(s) &&
		    seen - 1 + atomic_load(&s->dropped) >=
		    atomic_load(&s->produced))
			return 0;
		if (s->p->busy || ended) {
			bp_spin(&spins);
		} else {
			struct io_uring_cqe *cqe;
			int ret = io_uring_wait_cqe(&u->cring, &cqe);

			if (ret < 0 && ret != -EINTR && ret != -ETIME)
				return ret;
		}
	}
}

const struct bp_stream_ops bp_uring_msg_ops = {
	.max_producers = BP_MAX_PRODUCERS,
	.setup = bp_uring_msg_setup,
	.produce = bp_uring_produce,
	.finish = bp_uring_finish,
	.consume = bp_uring_consume,
	.teardown = bp_uring_teardown,
};

const struct bp_stream_ops bp_uring_nop_ops = {
	.max_producers = 1,
	.setup = bp_uring_nop_setup,
	.produce = bp_uring_produce,
	.finish = bp_uring_finish,
	.consume = bp_uring_consume,
	.teardown = bp_uring_teardown,
};
#endif /* BP_HAVE_URING */
