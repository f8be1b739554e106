/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * Selects the host compatibility layer for the ring core.  Each host
 * header provides exactly this interface (and nothing else is used by
 * the kmod/core .c files):
 *
 *   types      u8 u16 u32 u64 s32 s64 bool size_t; likely()/unlikely()
 *   errno      EINVAL ENOENT ENOSPC ENOMEM EEXIST ETIMEDOUT ECONNRESET
 *              EINTR EOPNOTSUPP EBUSY EPERM EFAULT E2BIG (positive values)
 *   once       aem_read_once(x), aem_write_once(x, v)
 *   barriers   aem_load_acquire(p), aem_store_release(p, v), aem_smp_mb()
 *   atomics    aem_atomic_t (32-bit): aem_atomic_read/set/inc/dec_return/add_return
 *   locks      aem_spinlock_t: aem_spin_init, aem_spin_lock_irqsave(l, f),
 *              aem_spin_unlock_irqrestore(l, f) with `unsigned long f`
 *              (never sleeps; usable from timer and softirq context);
 *              aem_mutex_t: aem_mutex_init/lock/unlock/destroy (may sleep)
 *   memory     aem_zalloc(size) (may sleep), aem_zalloc_atomic(size),
 *              aem_kvzalloc(size) (large, may sleep), aem_free(p), aem_kvfree(p);
 *              aem_table_zalloc(size), aem_table_free(p, size): a large table's
 *              block (may sleep; user space maps it 2 MiB aligned, huge pages)
 *   copies     memcpy, memset
 *   time       aem_now_ns()  CLOCK_MONOTONIC
 *   calls      struct aem_completion: aem_completion_init(c),
 *              aem_complete(c) (any context), aem_completion_done(c),
 *              aem_wait_completion_timeout(c, timeout_ms) -> 0 done,
 *              -ETIMEDOUT, -EINTR (killable)
 *   sched      aem_cond_resched(): a long loop in process context lets others run
 *              aem_cpu_relax(): one step of a bounded busy wait
 *   modules    aem_module_get(owner) -> bool, aem_module_put(owner)
 *   log        aem_warn(fmt, ...) (rate limited)
 */
#ifndef AEM_COMPAT_H
#define AEM_COMPAT_H

#ifdef __KERNEL__
#include "compat_kernel.h"
#else
#include "compat_user.h"
#endif

#endif /* AEM_COMPAT_H */
