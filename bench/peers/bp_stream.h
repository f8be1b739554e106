/* SPDX-License-Identifier: MIT */
/* bp_stream.h - what each stream peer plugs into the harness. */
#ifndef BP_STREAM_H
#define BP_STREAM_H

#include "bp.h"

struct bp_stream;

struct bp_stream_ops {
	uint32_t max_producers;
	int (*setup)(struct bp_stream *s);
	/* send until bp_prod_next() says stop; pr->sent counts what went out */
	int (*produce)(struct bp_stream *s, struct bp_prod *pr);
	/* after the producer has counted itself done; last: it was the last */
	void (*finish)(struct bp_stream *s, struct bp_prod *pr, bool last);
	/* drain until every producer is done and every event is accounted */
	int (*consume)(struct bp_stream *s, struct bp_cons *c);
	void (*teardown)(struct bp_stream *s);
};

struct bp_stream {
	const struct bp_params *p;
	struct bp_result *r;
	const struct bp_stream_ops *ops;
	uint32_t nprod;
	uint32_t esize;
	uint32_t entries;
	int abort;
	uint64_t start;
	_Alignas(BP_CACHELINE) _Atomic uint32_t ready;
	_Atomic uint32_t go;
	_Alignas(BP_CACHELINE) _Atomic uint32_t done;
	_Atomic uint64_t produced;
	_Atomic uint64_t dropped;
	void *priv;
};

/* true once every producer is done and nothing more can arrive */
static inline bool bp_all_done(struct bp_stream *s)
{
	return atomic_load(&s->done) == s->nprod;
}

extern const struct bp_stream_ops bp_spsc_ops;
extern const struct bp_stream_ops bp_eventfd_ops;
extern const struct bp_stream_ops bp_pipe_ops;
extern const struct bp_stream_ops bp_unix_ops;
#ifdef BP_HAVE_URING
extern const struct bp_stream_ops bp_uring_msg_ops;
extern const struct bp_stream_ops bp_uring_nop_ops;
#endif

#endif
