/* SPDX-License-Identifier: MIT */
/*
 * The only barriers libaem uses, on C11 atomics.  Every use names its
 * partner in a comment at the call site; docs/PROTOCOL.md lists the pairs.
 */
#ifndef LIBAEM_BARRIER_H
#define LIBAEM_BARRIER_H

#include <stdatomic.h>

/* Read a shared index so that what the writer published before it is visible. */
#define aem_load_acquire(p)						\
	atomic_load_explicit((_Atomic __typeof__(*(p)) *)(p), memory_order_acquire)

/* Publish everything written before, then the index. */
#define aem_store_release(p, v)						\
	atomic_store_explicit((_Atomic __typeof__(*(p)) *)(p), (v), memory_order_release)

/* A single untorn read or write of a shared field, no ordering. */
#define aem_read_once(x)						\
	atomic_load_explicit((_Atomic __typeof__(x) *)&(x), memory_order_relaxed)
#define aem_write_once(x, v)						\
	atomic_store_explicit((_Atomic __typeof__(x) *)&(x), (v), memory_order_relaxed)

/* Full barrier: the store-then-load of the wake-up protocol (Dekker). */
#define aem_smp_mb()	atomic_thread_fence(memory_order_seq_cst)

#endif /* LIBAEM_BARRIER_H */
