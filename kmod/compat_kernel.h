/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The kernel side of the ring core's host interface (see
 * kmod/core/aem_compat.h for the list).  Everything maps onto the kernel's
 * own primitives one to one; nothing here adds behaviour.
 *
 * It is also the one place for the kernel API differences between the
 * supported lines (6.1 to 7.2, see docs/KERNEL_MODULE.md): the modules' .c
 * files call the aem_k* names below and test no kernel version themselves.
 */
#ifndef AEM_COMPAT_KERNEL_H
#define AEM_COMPAT_KERNEL_H

#include <linux/types.h>
#include <linux/compiler.h>
#include <linux/errno.h>
#include <linux/string.h>
#include <linux/atomic.h>
#include <linux/spinlock.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/mm.h>
#include <linux/timekeeping.h>
#include <linux/completion.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/version.h>
#include <linux/fs.h>
#include <linux/device.h>
#include <linux/hrtimer.h>
#include <asm/barrier.h>

/* --- kernel API differences between the supported lines ----------------- */

/* 6.3: vm_flags became read-only outside the vm_flags_*() helpers. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
#define aem_kvm_flags_set(vma, flags)		vm_flags_set(vma, flags)
#define aem_kvm_flags_clear(vma, flags)		vm_flags_clear(vma, flags)
#else
#define aem_kvm_flags_set(vma, flags)		((vma)->vm_flags |= (flags))
#define aem_kvm_flags_clear(vma, flags)		((vma)->vm_flags &= ~(flags))
#endif

/*
 * Whether @t's dumpability lets its owner observe it (what ptrace's read
 * rule asks besides the credentials).  7.2 moved dumpability from
 * mm->flags to the RCU-managed task->exec_state.  RCU held; before 7.2 the
 * caller also keeps @t->mm stable (task_lock, or @t is current or a child
 * not yet running).
 */
#if __has_include(<linux/sched/exec_state.h>)
#include <linux/sched/exec_state.h>
static inline bool aem_ktask_owner_dumpable(struct task_struct *t)
{
	struct task_exec_state *es = rcu_dereference(t->exec_state);

	return !es || READ_ONCE(es->dumpable) == TASK_DUMPABLE_OWNER;
}
#else
#include <linux/sched/coredump.h>
static inline bool aem_ktask_owner_dumpable(struct task_struct *t)
{
	struct mm_struct *mm = t->mm;

	return !mm || get_dumpable(mm) == SUID_DUMP_USER;
}
#endif

/* 6.2: a device_type's devnode callback takes a const device. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
#define aem_kdevnode_device			const struct device
#else
#define aem_kdevnode_device			struct device
#endif

/* 6.4: class_create() lost its owner argument. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
#define aem_kclass_create(name)			class_create(name)
#else
#define aem_kclass_create(name)			class_create(THIS_MODULE, name)
#endif

/*
 * 6.12 removed no_llseek: a file without .llseek refuses to seek (-ESPIPE)
 * since 6.0, so NULL says the same on the newer lines.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#define aem_kno_llseek				NULL
#else
#define aem_kno_llseek				no_llseek
#endif

/* 6.13: hrtimer_setup() sets the callback with the rest; 6.15 dropped hrtimer_init(). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
#define aem_khrtimer_setup(t, fn, clock, mode)	hrtimer_setup(t, fn, clock, mode)
#else
#define aem_khrtimer_setup(t, fn, clock, mode)	\
	do { hrtimer_init(t, clock, mode); (t)->function = (fn); } while (0)
#endif

/*
 * 6.16: SO_PASSRIGHTS (sk_scm_rights): a Unix socket that refuses
 * SCM_RIGHTS, so no file can sit in its receive queue.  Off on @sk (its
 * socket lock held); false where the kernel cannot refuse them.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
#define aem_ksk_refuse_rights(sk)		((sk)->sk_scm_rights = 0, true)
#else
#define aem_ksk_refuse_rights(sk)		((void)(sk), false)
#endif

/* --- the ring core's host interface -------------------------------------- */

#define aem_read_once(x)		READ_ONCE(x)
#define aem_write_once(x, v)		WRITE_ONCE(x, v)

#define aem_load_acquire(p)		smp_load_acquire(p)
#define aem_store_release(p, v)		smp_store_release(p, v)
#define aem_smp_mb()			smp_mb()

#define aem_static_assert(e, msg)	static_assert(e, msg)
#define AEM_PAGE_SIZE			PAGE_SIZE

typedef atomic_t aem_atomic_t;
#define aem_atomic_read(a)		atomic_read(a)
#define aem_atomic_set(a, v)		atomic_set(a, v)
#define aem_atomic_inc(a)		atomic_inc(a)
#define aem_atomic_dec_return(a)	atomic_dec_return(a)
#define aem_atomic_add_return(i, a)	atomic_add_return(i, a)

typedef spinlock_t aem_spinlock_t;
#define aem_spin_init(l)			spin_lock_init(l)
#define aem_spin_destroy(l)			do { } while (0)
#define aem_spin_lock_irqsave(l, f)		spin_lock_irqsave(l, f)
#define aem_spin_unlock_irqrestore(l, f)	spin_unlock_irqrestore(l, f)

typedef struct mutex aem_mutex_t;
#define aem_mutex_init(m)		mutex_init(m)
#define aem_mutex_lock(m)		mutex_lock(m)
#define aem_mutex_unlock(m)		mutex_unlock(m)
#define aem_mutex_destroy(m)		mutex_destroy(m)

/*
 * Ring state belongs to the process that created the ring: charge it to
 * that process's memory cgroup.  Atomic allocations (timer and softirq
 * context) are charged to whatever cgroup the interrupted context names,
 * which the kernel resolves to none; they are bounded by the backlog limit.
 */
#define aem_zalloc(size)		kzalloc(size, GFP_KERNEL_ACCOUNT)
#define aem_zalloc_atomic(size)		kzalloc(size, GFP_ATOMIC | __GFP_ACCOUNT | __GFP_NOWARN)
#define aem_kvzalloc(size)		kvzalloc(size, GFP_KERNEL_ACCOUNT)
#define aem_free(p)			kfree(p)
#define aem_kvfree(p)			kvfree(p)
/* A large table's block (user space maps these with huge pages). */
#define aem_table_zalloc(size)		kvzalloc(size, GFP_KERNEL_ACCOUNT)
#define aem_table_free(p, size)		kvfree(p)

#define aem_now_ns()			ktime_get_ns()

/* Walking a table of millions (teardown) must not hold the CPU for seconds. */
#define aem_cond_resched()		cond_resched()

struct aem_completion {
	struct completion done;
};

static inline void aem_completion_init(struct aem_completion *c)
{
	init_completion(&c->done);
}

static inline void aem_complete(struct aem_completion *c)
{
	complete(&c->done);
}

static inline bool aem_completion_done(struct aem_completion *c)
{
	return completion_done(&c->done);
}

/* One step of a bounded busy wait. */
#define aem_cpu_relax()			cpu_relax()

/* 0 done, -ETIMEDOUT, -EINTR (a fatal signal: the caller is being killed). */
static inline int aem_wait_completion_timeout(struct aem_completion *c, u32 timeout_ms)
{
	long left = wait_for_completion_killable_timeout(&c->done,
							 msecs_to_jiffies(timeout_ms));

	if (left > 0)
		return 0;
	if (left == 0)
		return -ETIMEDOUT;
	/*
	 * A dying task returns here at once on every call; a caller that
	 * loops until done (waiting out ring lookups) must still let the
	 * holders run.
	 */
	cond_resched();
	return -EINTR;
}

/*
 * The core takes a "reference" on a source's module for every live
 * subscription.  A real module reference would make rmmod of a source
 * impossible while any ring subscribes to it, yet unloading a source under
 * open rings is the point: module_exit ends every subscription through
 * aem_host_unregister_source() (aem_main.c), which also waits out ring
 * teardowns that no longer show in the ring table.  So "get" only refuses a
 * module that is already going away, and "put" has nothing to drop.
 */
static inline bool aem_module_get(void *owner)
{
	struct module *m = owner;

	if (!try_module_get(m))
		return false;
	module_put(m);
	return true;
}
#define aem_module_put(owner)		do { (void)(owner); } while (0)

#define aem_warn(fmt, ...)		pr_warn_ratelimited("aem: " fmt "\n", ##__VA_ARGS__)

/*
 * The core's file-local helpers have short names that the kernel's headers
 * (included above) already declare globally; rename them from here on,
 * and let the core define its own constants.
 */
#define parse_args			aem_core_parse_args
#undef NSEC_PER_SEC

#endif /* AEM_COMPAT_KERNEL_H */
