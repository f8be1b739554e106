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

#include <stddef.h>
#include <stdint.h>
#include "aem.h"

struct __aem_emb;
struct aem_ring;

void __aem_init_view(struct aem_ring *ring, const struct aem_params *p);

/*
 * Create an embedded ring for validated-by-the-core @p: a memfd holding
 * the four regions back to back (file offsets in @off), the core's own
 * read-write mapping, an eventfd (*efd) for polling.
 */
int __aem_emb_create(struct aem_params *p, struct __aem_emb **out, int *memfd,
		     uint64_t off[AEM_NR_REGIONS], int *efd);
void __aem_emb_destroy(struct __aem_emb *e);
int __aem_emb_submit(struct __aem_emb *e, unsigned to_submit);
int __aem_emb_wait(struct __aem_emb *e, unsigned min, int64_t timeout_ns);
int __aem_emb_drain(struct __aem_emb *e, bool read_counter);
int __aem_emb_call(struct __aem_emb *e, struct aem_call_args *a, const void *req, void *resp);
int __aem_emb_sub_stats(struct __aem_emb *e, struct aem_sub_stats *st);
int __aem_emb_ring_stats(struct __aem_emb *e, struct aem_ring_stats *st);
int __aem_emb_probe(struct aem_probe *p);
/* A new fd of the ring's memfd (close-on-exec) and the PAYLOAD region's offset in it. */
int __aem_emb_payload_fd(struct __aem_emb *e, uint64_t *off);

#endif /* LIBAEM_INT_H */
