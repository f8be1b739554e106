/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Host-neutral event sources driven by a host thread or timer: the timer
 * wheel (src_timer.c) and the synthetic generator (src_gen.c).  The kernel
 * module and libaem's embedded backend register the ops with
 * aem_core_register_source() and run the drivers below; the contract of
 * each driver is at the top of its .c file.
 */
#ifndef AEM_SOURCES_H
#define AEM_SOURCES_H

#include "aem_core.h"

/* Once per host, before registering the ops below. */
int aem_sources_init(void);

/* Timer wheel granularity: one tick is 2^20 ns (about 1.05 ms). */
#define AEM_TIMER_TICK_SHIFT	20
#define AEM_TIMER_TICK_NS	(1ULL << AEM_TIMER_TICK_SHIFT)

extern const struct aem_source_ops aem_timer_source_ops;

/* start() of @n timers of @r at once: a run of SUBSCRIBEs (op_sub.c). */
void __aem_timers_start(struct aem_ctx *r, struct aem_sub *const *subs, u32 n);

/*
 * Fire every timer due at @now_ns (CLOCK_MONOTONIC) in every ring, and
 * expire asynchronous calls.  Returns true while anything is armed (the
 * host ticks again about AEM_TIMER_TICK_NS later), false when nothing is:
 * the host may sleep until aem_host_timer_kick().  Not reentrant: one
 * driver calls it.  Takes spinlocks only; never sleeps.
 */
bool aem_timer_tick(u64 now_ns);

/* Timers armed over all rings (for tests and statistics). */
u64 aem_timer_armed(void);

extern const struct aem_source_ops aem_gen_source_ops;

#define AEM_GEN_IDLE	(~0ULL)

/*
 * Produce for every generator due at @now_ns.  Returns the CLOCK_MONOTONIC
 * time of the next step: <= now_ns means "at once" (a rate-0 generator
 * made progress), AEM_GEN_IDLE means no generator is active (sleep until
 * aem_host_gen_kick()).  Not reentrant: one driver calls it.  May sleep
 * briefly on the generator mutex; call it from a thread.
 */
u64 aem_gen_step(u64 now_ns);

#endif /* AEM_SOURCES_H */
