/* SPDX-License-Identifier: MIT */
/*
 * libaem internals shared by setup.c, view.c, queue.c and embedded.c.
 *
 * embedded.c is the only file that sees the ring core (struct aem_ctx);
 * the others reach the embedded backend through the opaque struct
 * __aem_emb below.
 */
#ifndef LIBAEM_INT_H
#define LIBAEM_INT_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "aem.h"

struct __aem_emb;
struct aem_ring;

void __aem_init_view(struct aem_ring *ring, const struct aem_params *p);

/*
 * ring->calls counts the library calls inside @ring; aem_teardown() sets
 * AEM_RING_DOWN, then waits for the count to drain before it unmaps or
 * frees anything.  A call enters only while AEM_RING_DOWN is clear (one
 * CAS), so one that meets a teardown never raises the count it waits on.
 * The word lives in the caller's struct, which outlives the teardown, so a
 * late call reads it safely and gets -ESHUTDOWN.
 */
#define AEM_RING_DOWN	(1U << 31)

static inline int __aem_ring_get(unsigned *calls)
{
	unsigned v = __atomic_load_n(calls, __ATOMIC_RELAXED);

	do {
		if (v & AEM_RING_DOWN)
			return -ESHUTDOWN;
	} while (!__atomic_compare_exchange_n(calls, &v, v + 1, true,
					      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED));
	return 0;
}

/* Leave; the last call out after AEM_RING_DOWN wakes the teardown. */
static inline void __aem_ring_put(unsigned *calls)
{
	/* release: our reads of the rings happen before teardown's acquire of the count */
	if (__atomic_sub_fetch(calls, 1, __ATOMIC_RELEASE) == AEM_RING_DOWN)
		syscall(SYS_futex, calls, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/*
 * Create an embedded ring for validated-by-the-core @p: a memfd holding
 * the four regions back to back (file offsets in @off), the core's own
 * read-write mapping, an eventfd (*efd) for polling.
 */
int __aem_emb_create(struct aem_params *p, struct __aem_emb **out, int *memfd,
		     uint64_t off[AEM_NR_REGIONS], int *efd);
void __aem_emb_destroy(struct __aem_emb *e);
/* Wake every thread waiting on @e: they return -ESHUTDOWN, and so does any later wait. */
void __aem_emb_shutdown(struct __aem_emb *e);
/* With a submission poller (AEM_SETUP_SQPOLL) it consumes nothing: it wakes the poller. */
int __aem_emb_submit(struct __aem_emb *e, unsigned to_submit);
/* AEM_ENTER_SQ_WAKEUP: wake the ring's submission poller if it sleeps. */
void __aem_emb_sq_wakeup(struct __aem_emb *e);
int __aem_emb_wait(struct __aem_emb *e, unsigned min, int64_t timeout_ns);
int __aem_emb_drain(struct __aem_emb *e, bool read_counter);
int __aem_emb_call(struct __aem_emb *e, struct aem_call_args *a, const void *req, void *resp);
int __aem_emb_sub_stats(struct __aem_emb *e, struct aem_sub_stats *st);
int __aem_emb_ring_stats(struct __aem_emb *e, struct aem_ring_stats *st);
int __aem_emb_grant(struct __aem_emb *e, uint32_t uid, uint32_t flags);
int __aem_emb_probe(struct aem_probe *p);
/* A new fd of the ring's memfd (close-on-exec) and the PAYLOAD region's offset in it. */
int __aem_emb_payload_fd(struct __aem_emb *e, uint64_t *off);

#endif /* LIBAEM_INT_H */
