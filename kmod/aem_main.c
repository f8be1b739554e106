// SPDX-License-Identifier: GPL-2.0
/*
 * aem.ko: the /dev/aem character device over the host-neutral ring core.
 *
 * One open file holds at most one ring.  AEM_IOC_SETUP sizes it (the core
 * validates and lays it out), charges its pages to RLIMIT_MEMLOCK and to
 * the memory cgroup (the core charges the ring's kernel-side state to the
 * same account as it grows), and hands the pages to the core through one vmap per
 * region.  mmap() inserts those same pages into user space with
 * vm_insert_pages(), so each mapping holds its own page references until
 * munmap, whatever happens to the ring.  AEM_IOC_ENTER submits and waits;
 * poll() reports CQEs.  A ring set up with AEM_SETUP_SQPOLL has a kernel
 * thread of its own that consumes its SQ (the submission poller below).  The event sources are other modules that register
 * through the exported core API at the bottom of this file.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/fs.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/mm.h>
#include <linux/vmalloc.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/poll.h>
#include <linux/wait.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/sched/task.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/delay.h>
#include <linux/memcontrol.h>
#include <linux/sched/mm.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/workqueue.h>
#include <linux/pid_namespace.h>
#include <linux/random.h>
#include <linux/user_namespace.h>

#include "core/aem_sources.h"
#include "aem_kmod.h"
#include "aem_lane.h"

/* ---------------------------------------------------------------------- */
/* Parameters                                                             */

static ushort mode = 0600;
module_param(mode, ushort, 0444);
MODULE_PARM_DESC(mode, "permission bits of /dev/aem (default 0600: root only)");

static uint group;
module_param(group, uint, 0444);
MODULE_PARM_DESC(group, "group id owning /dev/aem (default 0)");

static uint max_ring_mb = 1024;
module_param(max_ring_mb, uint, 0644);
MODULE_PARM_DESC(max_ring_mb, "largest ring, all regions and its kernel-side state together, in MiB; larger setups fail with E2BIG, state past it with ENOMEM (default 1024)");

static int boost_nice = -10;
module_param(boost_nice, int, 0644);
MODULE_PARM_DESC(boost_nice, "nice value of a waiter boosted by urgent events (AEM_SETUP_BOOST; default -10)");

/* The core's per-user limits on the machine-wide ring and call tables. */
module_param_named(user_max_rings, aem_core_user_max_rings, uint, 0644);
MODULE_PARM_DESC(user_max_rings, "rings one user (uid) may have at once; setup past it fails with EMFILE (default 1024 of 4096)");
module_param_named(user_max_calls, aem_core_user_max_calls, uint, 0644);
MODULE_PARM_DESC(user_max_calls, "calls one user (uid) may have pending at once, all its rings together (default 4096 of 16384)");

/* ---------------------------------------------------------------------- */
/* Per-file state                                                         */

struct aem_region {
	struct page	**pages;
	unsigned long	nr_pages;
	void		*vaddr;		/* vmap of pages: the core's view */
};

struct aem_sqpoll;

struct aem_file {
	struct mutex		lock;		/* setup; the core's SQ has one consumer */
	struct aem_ctx		*ring;		/* set once under lock, published with release */
	wait_queue_head_t	wq;
	struct aem_region	region[AEM_NR_REGIONS];
	struct user_struct	*user;		/* charged for locked pages */
	unsigned long		locked_pages;	/* charged to user->locked_vm: regions and state */
	/* The ring's account, as it was at setup (see aem_host_charge) */
	unsigned long		ring_pages;	/* regions and kernel-side state */
	unsigned long		budget_pages;	/* max_ring_mb */
	unsigned long		memlock_pages;	/* RLIMIT_MEMLOCK */
	bool			memlock_exempt;	/* CAP_IPC_LOCK */

	/* Boost: who waits, and whom we boosted. */
	bool			boost;
	spinlock_t		boost_lock;
	struct task_struct	*waiter;	/* task sleeping in ENTER */
	struct task_struct	*boosted;	/* holds a reference */
	int			saved_nice;
	u32			*cq0_head, *cq0_tail;	/* class 0 indices, to see when it drained */
	u32			cq_capacity;	/* CQEs in all classes: the most a wait can ask */

	/* The ring's creator's view: senders' pid and uid are told in these (version 4). */
	struct pid_namespace	*pid_ns;
	struct user_namespace	*user_ns;

	struct aem_sqpoll	*sqp;		/* AEM_SETUP_SQPOLL: set at setup, before the ring is published */
	struct aem_lanes	*lanes;		/* remote lanes (aem_params.remote_lanes): set at setup, before the ring is published */
};

/*
 * The submission poller of an AEM_SETUP_SQPOLL ring: a kernel thread,
 * aem-sqp-<ring id>, that consumes the SQ as the ring's creator would:
 * with its credentials, charging its memory cgroup, posting as its
 * process.  Created at setup; stopped and joined at release before the
 * ring goes, so it never outlives the file (which pins this module).
 */
struct aem_sqpoll {
	struct task_struct	*task;		/* a reference: kthread_stop() at release */
	struct aem_ctx		*ring;
	wait_queue_head_t	wq;		/* the poller sleeps here */
	atomic_t		kick;		/* bumped by every enter: ends the sleep */
	const struct cred	*cred;		/* the creator's */
	struct pid		*tgid;		/* the creator's process: the sender of its posts */
	struct mem_cgroup	*memcg;		/* the creator's: what the poller allocates is charged there */
};

/*
 * Ring teardown (read side) against source unregistration (write side).
 * aem_core_ring_destroy() first takes the ring out of the ring table, then
 * ends its subscriptions; a source unregistering meanwhile would not see
 * that ring and could leave before the teardown called its unsubscribe.
 */
static DECLARE_RWSEM(aem_teardown_rwsem);

static void aem_ring_destroy(struct aem_ctx *ring)
{
	down_read(&aem_teardown_rwsem);
	aem_core_ring_destroy(ring);
	up_read(&aem_teardown_rwsem);
}

void aem_host_unregister_source(const struct aem_source_ops *ops)
{
	down_write(&aem_teardown_rwsem);
	aem_core_unregister_source(ops);
	up_write(&aem_teardown_rwsem);
}
EXPORT_SYMBOL_GPL(aem_host_unregister_source);

struct aem_lanes *aem_host_lanes(void *host)
{
	return ((struct aem_file *)host)->lanes;
}

static struct aem_ctx *aem_file_ring(struct aem_file *f)
{
	/* Pairs with the store-release in aem_ioc_setup(): regions are visible. */
	return smp_load_acquire(&f->ring);
}

/* ---------------------------------------------------------------------- */
/* Locked-memory accounting: per user, like io_uring, so it follows the    */
/* ring when its fd is passed on.  The regions are charged at setup; the   */
/* core charges the ring's kernel-side state to the same account as it     */
/* grows (aem_host_charge), against the limits as they were at setup:      */
/* the core charges from any context, where current is not the owner.      */

/* @pages more for @f's user: false past RLIMIT_MEMLOCK (nothing taken) unless @force. */
static bool aem_locked_add(struct aem_file *f, unsigned long pages, bool force, bool *over)
{
	unsigned long cur, next;

	if (f->memlock_exempt)
		return true;
	cur = atomic_long_read(&f->user->locked_vm);
	do {
		next = cur + pages;
		if (next < cur)
			return false;
		*over |= next > f->memlock_pages;
		if (*over && !force)
			return false;
	} while (!atomic_long_try_cmpxchg(&f->user->locked_vm, &cur, next));
	f->locked_pages += pages;
	return true;
}

static int aem_account_mem(struct aem_file *f, unsigned long pages)
{
	bool over = false;

	f->user = get_uid(current_user());
	f->memlock_exempt = capable(CAP_IPC_LOCK);
	f->memlock_pages = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
	f->budget_pages = ((unsigned long)READ_ONCE(max_ring_mb) << 20) >> PAGE_SHIFT;
	if (!aem_locked_add(f, pages, false, &over)) {
		free_uid(f->user);
		f->user = NULL;
		return -ENOMEM;
	}
	f->ring_pages = pages;
	return 0;
}

static void aem_unaccount_mem(struct aem_file *f)
{
	if (!f->user)
		return;
	if (f->locked_pages)
		atomic_long_sub(f->locked_pages, &f->user->locked_vm);
	free_uid(f->user);
	f->user = NULL;
	f->locked_pages = 0;
	f->ring_pages = 0;
}

/*
 * The core's charge of the ring's kernel-side state (under the ring's
 * completion lock, any context): the ring's total stays within max_ring_mb
 * and the user's locked memory within RLIMIT_MEMLOCK, unless @force.
 */
int aem_host_charge(void *host, u64 bytes, bool force)
{
	struct aem_file *f = host;
	unsigned long pages = DIV_ROUND_UP(bytes, PAGE_SIZE);
	bool over = f->ring_pages + pages > f->budget_pages;

	if (over && !force)
		return -ENOMEM;
	if (!aem_locked_add(f, pages, force, &over))
		return -ENOMEM;
	f->ring_pages += pages;
	return over ? AEM_CHARGE_OVER : 0;
}

void aem_host_uncharge(void *host, u64 bytes)
{
	struct aem_file *f = host;
	unsigned long pages = DIV_ROUND_UP(bytes, PAGE_SIZE);

	f->ring_pages -= pages;
	if (f->memlock_exempt)
		return;
	atomic_long_sub(pages, &f->user->locked_vm);
	f->locked_pages -= pages;
}

/* ---------------------------------------------------------------------- */
/* Regions                                                                */

static void aem_region_free(struct aem_region *rg)
{
	unsigned long i;

	if (rg->vaddr)
		vunmap(rg->vaddr);
	if (rg->pages) {
		/* Mappings still hold their own references (vm_insert_pages). */
		for (i = 0; i < rg->nr_pages; i++)
			if (rg->pages[i])
				put_page(rg->pages[i]);
		kvfree(rg->pages);
	}
	memset(rg, 0, sizeof(*rg));
}

static int aem_region_alloc(struct aem_region *rg, u64 size)
{
	unsigned long i, n = PAGE_ALIGN(size) >> PAGE_SHIFT;

	if (!n)
		return 0;
	rg->pages = kvcalloc(n, sizeof(*rg->pages), GFP_KERNEL_ACCOUNT);
	if (!rg->pages)
		return -ENOMEM;
	rg->nr_pages = n;
	for (i = 0; i < n; i++) {
		/*
		 * Zeroed: the core and user space both start from zero.  NORETRY:
		 * a ring too big for the memory cgroup fails setup with ENOMEM
		 * instead of waking the OOM killer.
		 */
		rg->pages[i] = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_NOWARN | __GFP_NORETRY);
		if (!rg->pages[i])
			goto err;
		if (fatal_signal_pending(current))
			goto err;
	}
	rg->vaddr = vmap(rg->pages, n, VM_MAP, PAGE_KERNEL);
	if (!rg->vaddr)
		goto err;
	return 0;
err:
	aem_region_free(rg);
	return -ENOMEM;
}

/* ---------------------------------------------------------------------- */
/* Boost                                                                  */

static void aem_boost_restore(struct aem_file *f)
{
	struct task_struct *t;
	unsigned long flags;
	int nice;

	spin_lock_irqsave(&f->boost_lock, flags);
	t = f->boosted;
	nice = f->saved_nice;
	f->boosted = NULL;
	spin_unlock_irqrestore(&f->boost_lock, flags);
	if (t) {
		set_user_nice(t, nice);
		put_task_struct(t);
	}
}

/* Restore once class 0 has drained: user space consumed the urgent events. */
static void aem_boost_check(struct aem_file *f)
{
	if (!READ_ONCE(f->boosted))
		return;
	if (READ_ONCE(*f->cq0_head) == READ_ONCE(*f->cq0_tail))
		aem_boost_restore(f);
}

/* Called by the core with urgent events pending; any context. */
static void aem_boost_waiter(struct aem_file *f)
{
	struct task_struct *t;
	unsigned long flags;

	spin_lock_irqsave(&f->boost_lock, flags);
	t = f->waiter;
	if (t && !f->boosted && task_nice(t) > boost_nice) {
		f->saved_nice = task_nice(t);
		get_task_struct(t);
		f->boosted = t;
		/* set_user_nice only takes the task's rq locks: safe here. */
		set_user_nice(t, boost_nice);
	}
	spin_unlock_irqrestore(&f->boost_lock, flags);
}

void aem_host_cred_get(struct aem_cred *c)
{
	c->uid = __kuid_val(current_euid());
	c->ns = get_user_ns(current_user_ns());
}

void aem_host_cred_put(struct aem_cred *c)
{
	if (c->ns)
		put_user_ns((struct user_namespace *)c->ns);
	c->ns = NULL;
}

u32 aem_host_random_u32(void)
{
	return get_random_u32();
}

void aem_host_wake(struct aem_ctx *r, void *host, bool urgent)
{
	struct aem_file *f = host;

	if (urgent && f->boost)
		aem_boost_waiter(f);
	/* One wake per poll arming; waiters in ENTER are woken every time. */
	aem_core_poll_take(r);
	/* The core issued the full barrier after publishing the tail. */
	if (waitqueue_active(&f->wq))
		wake_up_all(&f->wq);
}

/* ---------------------------------------------------------------------- */
/* Asynchronous calls (AEM_OP_CALL) expire by the clock.  The timer module  */
/* ticks them too, but it may not be loaded: this work item does it while  */
/* any is pending, once a jiffy (call timeouts are milliseconds).          */

static void aem_calls_expire(struct work_struct *work);
static DECLARE_DELAYED_WORK(aem_calls_work, aem_calls_expire);

static void aem_calls_expire(struct work_struct *work)
{
	aem_core_expire_calls(ktime_get_ns());
	if (aem_core_calls_pending())
		schedule_delayed_work(&aem_calls_work, 1);
}

/*
 * The drivers of the timer wheel and the generator live in aem_timer.ko and
 * aem_gen.ko; the core calls the kicks below when it arms something.  The
 * kick functions are published with RCU so a driver module can go away.
 */
static void (__rcu *aem_timer_driver)(void);
static void (__rcu *aem_gen_driver)(void);

static void aem_driver_kick(void (__rcu **driver)(void))
{
	void (*kick)(void);

	rcu_read_lock();
	kick = rcu_dereference(*driver);
	if (kick)
		kick();
	rcu_read_unlock();
}

/* A timer was armed or a call started pending; any context. */
static int aem_sqp_main(void *data);

void aem_host_sender(void *target_host, struct aem_sender *out)
{
	struct aem_file *f = target_host;

	/* A submission poller posts for its ring's creator (credentials overridden to its). */
	if ((current->flags & PF_KTHREAD) && kthread_func(current) == aem_sqp_main) {
		struct aem_sqpoll *sp = kthread_data(current);

		out->pid = pid_nr_ns(sp->tgid, f->pid_ns);
	} else {
		/* Set before the ring is created, put only after it is destroyed. */
		out->pid = task_tgid_nr_ns(current, f->pid_ns);
	}
	out->uid = from_kuid_munged(f->user_ns, current_euid());
}

void aem_host_timer_kick(void)
{
	if (aem_core_calls_pending())
		schedule_delayed_work(&aem_calls_work, 1);
	aem_driver_kick(&aem_timer_driver);
}

void aem_host_gen_kick(void)
{
	aem_driver_kick(&aem_gen_driver);
}

/*
 * Install (or, with NULL, remove) the driver of a source the core runs
 * itself: AEM_SRC_TIMER or AEM_SRC_GEN.  Removing waits until no kick is
 * in progress.
 */
int aem_host_set_driver(u8 source, void (*kick)(void))
{
	void (__rcu **driver)(void);

	switch (source) {
	case AEM_SRC_TIMER:
		driver = &aem_timer_driver;
		break;
	case AEM_SRC_GEN:
		driver = &aem_gen_driver;
		break;
	default:
		return -EINVAL;
	}
	rcu_assign_pointer(*driver, kick);
	if (!kick)
		synchronize_rcu();
	return 0;
}
EXPORT_SYMBOL_GPL(aem_host_set_driver);

/* ---------------------------------------------------------------------- */
/* The submission poller (AEM_SETUP_SQPOLL)                                */

/*
 * A POST whose target is full stays at the SQ head: the poller looks again
 * after a pause that doubles while it finds no room (as the embedded
 * backend's), so a stalled ring costs a wake-up a millisecond, not a CPU.
 */
#define AEM_SQP_STALL_US_MIN	20
#define AEM_SQP_STALL_US_MAX	1000

static int aem_sqp_main(void *data)
{
	struct aem_sqpoll *sp = data;
	struct aem_ctx *ring = sp->ring;
	unsigned long idle = msecs_to_jiffies(aem_core_sq_idle_ms(ring));
	unsigned long last = jiffies;
	unsigned int stall = 0;
	const struct cred *old_cred = override_creds(sp->cred);
	struct mem_cgroup *old_memcg = set_active_memcg(sp->memcg);

	while (!kthread_should_stop()) {
		int seen;

		if (aem_core_sqpoll_round(ring) > 0) {
			last = jiffies;
			stall = 0;
			cond_resched();
			continue;
		}
		if (aem_core_sq_pending(ring)) {
			stall = stall ? min(stall * 2, AEM_SQP_STALL_US_MAX) : AEM_SQP_STALL_US_MIN;
			usleep_range(stall, stall * 2);
			continue;
		}
		stall = 0;
		if (time_before(jiffies, last + idle)) {
			cond_resched();
			cpu_relax();
			continue;
		}
		/* Before the flag: an enter after this read ends the wait below. */
		seen = atomic_read(&sp->kick);
		if (aem_core_sqpoll_sleep_begin(ring)) {
			wait_event_idle(sp->wq, kthread_should_stop() || atomic_read(&sp->kick) != seen);
			aem_core_sqpoll_sleep_end(ring);
		}
		last = jiffies;
	}
	set_active_memcg(old_memcg);
	revert_creds(old_cred);
	return 0;
}

static void aem_sqp_free(struct aem_sqpoll *sp)
{
	if (sp->task)
		put_task_struct(sp->task);
	mem_cgroup_put(sp->memcg);
	put_pid(sp->tgid);
	put_cred(sp->cred);
	kfree(sp);
}

/* Created stopped: aem_sqp_start() runs it once the ring is published. */
static int aem_sqp_create(struct aem_file *f, struct aem_ctx *ring, u32 ring_id)
{
	struct aem_sqpoll *sp = kzalloc(sizeof(*sp), GFP_KERNEL_ACCOUNT);
	struct task_struct *t;

	if (!sp)
		return -ENOMEM;
	sp->ring = ring;
	init_waitqueue_head(&sp->wq);
	atomic_set(&sp->kick, 0);
	sp->cred = get_current_cred();
	sp->tgid = get_task_pid(current, PIDTYPE_TGID);
	sp->memcg = get_mem_cgroup_from_mm(current->mm);
	t = kthread_create(aem_sqp_main, sp, "aem-sqp-%u", ring_id);
	if (IS_ERR(t)) {
		aem_sqp_free(sp);
		return PTR_ERR(t);
	}
	get_task_struct(t);
	sp->task = t;
	f->sqp = sp;
	return 0;
}

static void aem_sqp_start(struct aem_file *f)
{
	if (f->sqp)
		wake_up_process(f->sqp->task);
}

/* Before the ring goes: kthread_stop() returns once the poller has left its loop. */
static void aem_sqp_stop(struct aem_file *f)
{
	struct aem_sqpoll *sp = f->sqp;

	if (!sp)
		return;
	kthread_stop(sp->task);
	aem_sqp_free(sp);
	f->sqp = NULL;
}

/* Every enter wakes a sleeping poller (AEM_ENTER_SQ_WAKEUP says it was asked for). */
static void aem_sqp_wake(struct aem_file *f)
{
	struct aem_sqpoll *sp = f->sqp;

	atomic_inc(&sp->kick);
	wake_up(&sp->wq);
}

/* ---------------------------------------------------------------------- */
/* File operations                                                        */

static int aem_open(struct inode *inode, struct file *file)
{
	struct aem_file *f;

	f = kzalloc(sizeof(*f), GFP_KERNEL_ACCOUNT);
	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	init_waitqueue_head(&f->wq);
	spin_lock_init(&f->boost_lock);
	file->private_data = f;
	return nonseekable_open(inode, file);
}

static void aem_free_regions(struct aem_file *f)
{
	int i;

	for (i = 0; i < AEM_NR_REGIONS; i++)
		aem_region_free(&f->region[i]);
}

static int aem_release(struct inode *inode, struct file *file)
{
	struct aem_file *f = file->private_data;
	struct aem_ctx *ring = f->ring;

	/* No ioctl, poll or mmap can run now: the file has no users left. */
	aem_sqp_stop(f);
	/* Before the teardown: no lane attaches or notes a ring that is going. */
	aem_lanes_close(f->lanes);
	if (ring) {
		/* Ends every subscription, fails calls, frees the backlog. */
		aem_ring_destroy(ring);
	}
	aem_lanes_free(f->lanes);
	aem_boost_restore(f);
	if (f->pid_ns)
		put_pid_ns(f->pid_ns);
	if (f->user_ns)
		put_user_ns(f->user_ns);
	aem_free_regions(f);
	aem_unaccount_mem(f);
	mutex_destroy(&f->lock);
	kfree(f);
	return 0;
}

static long aem_ioc_setup(struct aem_file *f, void __user *arg)
{
	void *vaddr[AEM_NR_REGIONS];
	struct aem_params p;
	struct aem_layout l;
	struct aem_ctx *ring;
	unsigned long pages = 0;
	u64 bytes = 0;
	u32 ring_id;
	int i, ret;

	if (copy_from_user(&p, arg, sizeof(p)))
		return -EFAULT;
	/* The embedded backend is libaem's; asking the kernel for it is an error. */
	if (p.flags & AEM_SETUP_EMBEDDED)
		return -EINVAL;
	ret = aem_core_layout(&p, AEM_FEAT_KERNEL | AEM_FEAT_LANES |
			      (p.flags & AEM_SETUP_SQPOLL ? AEM_FEAT_SQPOLL : 0), &l);
	if (ret)
		return ret;
	if ((p.flags & AEM_SETUP_BOOST) && !capable(CAP_SYS_NICE))
		return -EPERM;

	for (i = 0; i < AEM_NR_REGIONS; i++) {
		bytes += PAGE_ALIGN(l.region_size[i]);
		pages += PAGE_ALIGN(l.region_size[i]) >> PAGE_SHIFT;
	}
	if (bytes > (u64)max_ring_mb << 20)
		return -E2BIG;

	mutex_lock(&f->lock);
	ret = -EBUSY;
	if (f->ring)
		goto out_unlock;
	ret = aem_account_mem(f, pages);
	if (ret)
		goto out_unlock;
	for (i = 0; i < AEM_NR_REGIONS; i++) {
		ret = aem_region_alloc(&f->region[i], l.region_size[i]);
		if (ret)
			goto err;
		vaddr[i] = f->region[i].vaddr;
	}
	f->boost = !!(p.flags & AEM_SETUP_BOOST);
	f->cq_capacity = p.cq_entries * p.nr_classes + l.res_entries;	/* the class rings and the result ring */
	f->cq0_head = f->region[AEM_REGION_RINGS].vaddr + p.cq_off[0].head;
	f->cq0_tail = f->region[AEM_REGION_RINGS].vaddr + p.cq_off[0].tail;
	if (!f->pid_ns) {
		f->pid_ns = get_pid_ns(task_active_pid_ns(current));
		f->user_ns = get_user_ns(current_user_ns());
	}

	ret = aem_core_ring_create(&p, &l, vaddr, f, &ring, &ring_id);
	if (ret)
		goto err;
	p.ring_id = ring_id;
	ret = aem_lanes_create(&f->lanes, ring, p.remote_lanes);
	if (ret) {
		aem_ring_destroy(ring);
		goto err;
	}
	if (p.flags & AEM_SETUP_SQPOLL) {
		ret = aem_sqp_create(f, ring, ring_id);
		if (ret)
			goto err_ring;
	}
	if (copy_to_user(arg, &p, sizeof(p))) {
		ret = -EFAULT;
		aem_sqp_stop(f);
		goto err_ring;
	}
	/* Pairs with the load-acquire in aem_file_ring(). */
	smp_store_release(&f->ring, ring);
	aem_sqp_start(f);
	mutex_unlock(&f->lock);
	return 0;
err_ring:
	/* The ring was in the ring table: a producer may have attached meanwhile. */
	aem_lanes_close(f->lanes);
	aem_ring_destroy(ring);
	aem_lanes_free(f->lanes);
	f->lanes = NULL;
err:
	aem_free_regions(f);
	aem_unaccount_mem(f);
out_unlock:
	mutex_unlock(&f->lock);
	return ret;
}

/*
 * Sleep until the core reports @min CQEs (or an urgent one), the timeout
 * passes, or a signal arrives.  The core's wait_begin/wait_end bracket the
 * sleep so that producers know to wake us (see aem_core.h).
 */
static int aem_wait(struct aem_file *f, struct aem_ctx *ring, u32 min, s64 timeout_ns)
{
	ktime_t expires = 0;
	DEFINE_WAIT(wait);
	unsigned long flags;
	int ret = 0;

	if (aem_core_cq_ready(ring, min))
		return 0;
	if (timeout_ns == 0)
		return -ETIME;
	if (timeout_ns > 0)
		expires = ktime_add_ns(ktime_get(), timeout_ns);

	spin_lock_irqsave(&f->boost_lock, flags);
	if (!f->waiter)
		f->waiter = current;
	spin_unlock_irqrestore(&f->boost_lock, flags);

	aem_core_wait_begin(ring);
	for (;;) {
		prepare_to_wait(&f->wq, &wait, TASK_INTERRUPTIBLE);
		/* Room may have opened up: move backlogged events in first. */
		aem_core_flush_backlog(ring);
		if (aem_core_cq_ready(ring, min))
			break;
		if (signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		if (!expires) {
			schedule();
			continue;
		}
		/* The timer lives only while we sleep; slack as for any sleeper. */
		if (!schedule_hrtimeout_range(&expires, current->timer_slack_ns, HRTIMER_MODE_ABS)) {
			ret = -ETIME;
			break;
		}
	}
	finish_wait(&f->wq, &wait);
	aem_core_wait_end(ring);

	spin_lock_irqsave(&f->boost_lock, flags);
	if (f->waiter == current)
		f->waiter = NULL;
	spin_unlock_irqrestore(&f->boost_lock, flags);
	return ret;
}

static long aem_enter(struct aem_file *f, void __user *arg)
{
	struct aem_ctx *ring = aem_file_ring(f);
	struct aem_enter e;
	int ret = 0, n;

	if (!ring)
		return -EBADFD;
	if (copy_from_user(&e, arg, sizeof(e)))
		return -EFAULT;
	if ((e.flags & ~AEM_ENTER_FLAGS_ALL) || e.resv[0] || e.resv[1])
		return -EINVAL;

	e.submitted = 0;
	/* With a poller it is the SQ's only consumer: the enter wakes it and consumes nothing. */
	if (f->sqp) {
		aem_sqp_wake(f);
		e.to_submit = 0;
	}
	mutex_lock(&f->lock);
	aem_core_reclaim_slots(ring);
	/*
	 * Even with nothing to submit: the core then wakes the sources paused
	 * for room (PROTOCOL.md section 10), whose slots this enter may have
	 * just reclaimed; a reader that never waits enters only this way.
	 */
	n = aem_core_submit(ring, e.to_submit);
	if (n < 0)
		ret = n;
	else
		e.submitted = n;
	aem_core_flush_backlog(ring);
	mutex_unlock(&f->lock);
	if (f->boost)
		aem_boost_check(f);

	/* More than the rings can hold would only ever end by timeout. */
	if (!ret && (e.flags & AEM_ENTER_GETEVENTS))
		ret = aem_wait(f, ring, min(e.min_complete, f->cq_capacity), e.timeout_ns);

	/* SQEs consumed before an error or a signal are still reported. */
	if (put_user(e.submitted, &((struct aem_enter __user *)arg)->submitted))
		return -EFAULT;
	return ret;
}

static long aem_ioc_sub_stats(struct aem_ctx *ring, void __user *arg)
{
	struct aem_sub_stats st;
	int ret;

	if (copy_from_user(&st, arg, sizeof(st)))
		return -EFAULT;
	ret = aem_core_sub_stats(ring, &st);
	if (ret)
		return ret;
	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

static long aem_ioc_ring_stats(struct aem_ctx *ring, void __user *arg)
{
	struct aem_ring_stats st;

	memset(&st, 0, sizeof(st));
	aem_core_ring_stats(ring, &st);
	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

/* The uid is named in the caller's user namespace; the core keeps the kuid. */
static long aem_ioc_grant(struct aem_ctx *ring, void __user *arg)
{
	struct aem_grant g;
	kuid_t kuid;

	if (copy_from_user(&g, arg, sizeof(g)))
		return -EFAULT;
	if (g.resv)
		return -EINVAL;
	if (g.flags & AEM_GRANT_ANY)
		return aem_core_grant(ring, g.uid, g.flags);
	kuid = make_kuid(current_user_ns(), g.uid);
	if (!uid_valid(kuid))
		return -EINVAL;
	return aem_core_grant(ring, __kuid_val(kuid), g.flags);
}

static long aem_ioc_probe(void __user *arg)
{
	struct aem_probe *p = kmalloc(sizeof(*p), GFP_KERNEL);
	long ret;

	if (!p)
		return -ENOMEM;
	aem_core_probe(p, AEM_FEAT_KERNEL | AEM_FEAT_LANES, AEM_SETUP_BOOST | AEM_SETUP_KERNEL | AEM_SETUP_SQPOLL);
	ret = copy_to_user(arg, p, sizeof(*p)) ? -EFAULT : 0;
	kfree(p);
	return ret;
}

static long aem_ioc_call(struct aem_file *f, void __user *arg)
{
	struct aem_call_args a;
	void *req = NULL, *resp = NULL;
	long ret;

	if (copy_from_user(&a, arg, sizeof(a)))
		return -EFAULT;
	if (memchr_inv(a.resv0, 0, sizeof(a.resv0)) || a.resv[0] || a.resv[1])
		return -EINVAL;
	if (a.req_len > AEM_MAX_SLOT_SIZE || a.resp_cap > AEM_MAX_SLOT_SIZE)
		return -EINVAL;
	if (a.req_len) {
		req = memdup_user(u64_to_user_ptr(a.req), a.req_len);
		if (IS_ERR(req))
			return PTR_ERR(req);
	}
	if (a.resp_cap) {
		resp = kzalloc(a.resp_cap, GFP_KERNEL_ACCOUNT);
		ret = -ENOMEM;
		if (!resp)
			goto out;
	}
	a.resp_len = 0;
	/* Charged to this fd's ring when it has one (its quota of pending calls). */
	ret = aem_core_call(aem_file_ring(f), &a, req, resp);
	if (ret)
		goto out;
	ret = -EFAULT;
	if (a.resp_cap &&
	    copy_to_user(u64_to_user_ptr(a.resp), resp, min(a.resp_len, a.resp_cap)))
		goto out;
	if (put_user(a.resp_len, &((struct aem_call_args __user *)arg)->resp_len))
		goto out;
	ret = 0;
out:
	kfree(resp);
	kfree(req);
	return ret;
}

static long aem_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct aem_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct aem_ctx *ring;

	switch (cmd) {
	case AEM_IOC_SETUP:
		return aem_ioc_setup(f, uarg);
	case AEM_IOC_ENTER:
		return aem_enter(f, uarg);
	case AEM_IOC_CALL:
		return aem_ioc_call(f, uarg);
	case AEM_IOC_PROBE:
		return aem_ioc_probe(uarg);
	case AEM_IOC_LANE_OPEN:
		return aem_ioc_lane_open(uarg);
	}
	ring = aem_file_ring(f);
	if (!ring)
		return cmd == AEM_IOC_SUB_STATS || cmd == AEM_IOC_RING_STATS ||
		       cmd == AEM_IOC_GRANT || cmd == AEM_IOC_LANE_ROOM ? -EBADFD : -ENOTTY;
	switch (cmd) {
	case AEM_IOC_SUB_STATS:
		return aem_ioc_sub_stats(ring, uarg);
	case AEM_IOC_RING_STATS:
		return aem_ioc_ring_stats(ring, uarg);
	case AEM_IOC_GRANT:
		return aem_ioc_grant(ring, uarg);
	case AEM_IOC_LANE_ROOM:
		/* f->lanes was set before the ring was published (aem_file_ring's acquire). */
		return aem_lanes_room(f->lanes, arg);
	}
	return -ENOTTY;
}

static __poll_t aem_poll(struct file *file, poll_table *pt)
{
	struct aem_file *f = file->private_data;
	struct aem_ctx *ring = aem_file_ring(f);

	poll_wait(file, &f->wq, pt);
	if (!ring)
		return 0;
	/*
	 * Arm before looking (Dekker with the producer, as for waiters): the
	 * next post after this wakes the queue.  Every poll() and every epoll
	 * delivery calls us again, which re-arms.
	 */
	aem_core_poll_arm(ring);
	if (aem_core_cq_ready(ring, 1))
		return EPOLLIN | EPOLLRDNORM | EPOLLOUT | EPOLLWRNORM;
	return EPOLLOUT | EPOLLWRNORM;
}

static vm_fault_t aem_vm_fault(struct vm_fault *vmf)
{
	/* Every page was inserted at mmap time; anything else is outside. */
	return VM_FAULT_SIGBUS;
}

static const struct vm_operations_struct aem_vm_ops = {
	.fault = aem_vm_fault,
};

static int aem_mmap(struct file *file, struct vm_area_struct *vma)
{
	static const u64 offsets[AEM_NR_REGIONS] = {
		[AEM_REGION_RINGS]	= AEM_OFF_RINGS,
		[AEM_REGION_SQES]	= AEM_OFF_SQES,
		[AEM_REGION_CQES]	= AEM_OFF_CQES,
		[AEM_REGION_PAYLOAD]	= AEM_OFF_PAYLOAD,
	};
	struct aem_file *f = file->private_data;
	u64 off = (u64)vma->vm_pgoff << PAGE_SHIFT;
	unsigned long size = vma->vm_end - vma->vm_start;
	unsigned long num;
	struct aem_region *rg;
	int i, ret;

	if (!aem_file_ring(f))
		return -EBADFD;
	if (aem_lanes_is_offset(off))
		return aem_lanes_mmap(f->lanes, vma, off);
	for (i = 0; i < AEM_NR_REGIONS; i++)
		if (off == offsets[i])
			break;
	if (i == AEM_NR_REGIONS)
		return -EINVAL;
	rg = &f->region[i];
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (size > rg->nr_pages << PAGE_SHIFT)
		return -EINVAL;
	/* Rings and payloads are data: never code, not now, not by mprotect. */
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	aem_kvm_flags_clear(vma, VM_MAYEXEC);
	if (i == AEM_REGION_CQES) {
		/* Only the kernel writes CQEs: no write now, none via mprotect later. */
		if (vma->vm_flags & VM_WRITE)
			return -EPERM;
		aem_kvm_flags_clear(vma, VM_MAYWRITE);
	}
	aem_kvm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &aem_vm_ops;
	num = size >> PAGE_SHIFT;
	ret = vm_insert_pages(vma, vma->vm_start, rg->pages, &num);
	if (ret)
		return ret;
	return num ? -EFAULT : 0;
}

static const struct file_operations aem_fops = {
	.owner		= THIS_MODULE,
	.open		= aem_open,
	.release	= aem_release,
	.unlocked_ioctl	= aem_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.mmap		= aem_mmap,
	.poll		= aem_poll,
	.llseek		= aem_kno_llseek,
};

/* ---------------------------------------------------------------------- */
/* Device: a char device of our own class, because the group parameter    */
/* needs a devnode callback that sets the gid, which misc devices lack.    */

static dev_t aem_devt;
static struct cdev aem_cdev;
static struct class *aem_class;
static struct device aem_device;

static char *aem_devnode(aem_kdevnode_device *dev, umode_t *m, kuid_t *uid, kgid_t *gid)
{
	if (m)
		*m = mode & 0777;
	if (gid)
		*gid = make_kgid(&init_user_ns, group);
	return NULL;
}

static const struct device_type aem_device_type = {
	.name		= "aem",
	.devnode	= aem_devnode,
};

static void aem_device_release(struct device *dev)
{
}

/* ---------------------------------------------------------------------- */
/* Exported core API for the source modules: versioned by                 */
/* AEM_SOURCE_API_VERSION in aem_source_ops and by modversions.            */

EXPORT_SYMBOL_GPL(aem_core_register_source);
EXPORT_SYMBOL_GPL(aem_core_post);
EXPORT_SYMBOL_GPL(aem_core_lost);
EXPORT_SYMBOL_GPL(aem_sub_id);
EXPORT_SYMBOL_GPL(aem_core_charge);
EXPORT_SYMBOL_GPL(aem_core_uncharge);
EXPORT_SYMBOL_GPL(aem_timer_source_ops);
EXPORT_SYMBOL_GPL(aem_timer_tick);
EXPORT_SYMBOL_GPL(aem_gen_source_ops);
EXPORT_SYMBOL_GPL(aem_gen_step);
/* The socket source (aem_sock.ko): posts that never drop, connections, completions. */
EXPORT_SYMBOL_GPL(aem_ctx_slot_size);
EXPORT_SYMBOL_GPL(aem_ctx_src_priv);
EXPORT_SYMBOL_GPL(aem_ctx_sock_conns);
EXPORT_SYMBOL_GPL(aem_sub_active);
EXPORT_SYMBOL_GPL(aem_core_want_room);
EXPORT_SYMBOL_GPL(aem_core_has_room);
EXPORT_SYMBOL_GPL(aem_core_post_fit);
EXPORT_SYMBOL_GPL(aem_core_slot_take);
EXPORT_SYMBOL_GPL(aem_core_slot_put);
EXPORT_SYMBOL_GPL(aem_core_post_slot);
EXPORT_SYMBOL_GPL(aem_core_sub_spawn);
EXPORT_SYMBOL_GPL(aem_core_pending_init);
EXPORT_SYMBOL_GPL(aem_core_complete);

static int __init aem_init(void)
{
	int ret;

	/* The ABI is fixed: a change in size is a change in the ABI. */
	BUILD_BUG_ON(sizeof(struct aem_sqe) != 64);
	BUILD_BUG_ON(sizeof(struct aem_cqe) != 64);
	BUILD_BUG_ON(sizeof(struct aem_ring_offsets) != 32);
	BUILD_BUG_ON(offsetof(struct aem_sqe, data) != 32);
	BUILD_BUG_ON(offsetof(struct aem_cqe, data) != 32);
	BUILD_BUG_ON(sizeof(struct aem_sub) != 60);
	BUILD_BUG_ON(sizeof(struct aem_grant) != 16);

	ret = aem_core_init();
	if (ret)
		return ret;
	ret = aem_sources_init();
	if (ret)
		goto err_core;
	ret = alloc_chrdev_region(&aem_devt, 0, 1, "aem");
	if (ret)
		goto err_core;
	aem_class = aem_kclass_create("aem");
	if (IS_ERR(aem_class)) {
		ret = PTR_ERR(aem_class);
		goto err_region;
	}
	cdev_init(&aem_cdev, &aem_fops);
	aem_cdev.owner = THIS_MODULE;
	device_initialize(&aem_device);
	aem_device.devt = aem_devt;
	aem_device.class = aem_class;
	aem_device.type = &aem_device_type;
	aem_device.release = aem_device_release;
	ret = dev_set_name(&aem_device, "aem");
	if (ret)
		goto err_dev;
	ret = cdev_device_add(&aem_cdev, &aem_device);
	if (ret)
		goto err_dev;
	pr_info("/dev/aem ready (mode %04o, group %u, api %u)\n", mode & 0777, group,
		AEM_API_VERSION);
	return 0;
err_dev:
	put_device(&aem_device);
	class_destroy(aem_class);
err_region:
	unregister_chrdev_region(aem_devt, 1);
err_core:
	aem_core_exit();
	return ret;
}

static void __exit aem_exit(void)
{
	cdev_device_del(&aem_cdev, &aem_device);
	put_device(&aem_device);
	class_destroy(aem_class);
	unregister_chrdev_region(aem_devt, 1);
	/* No ring is left (each open file pinned this module). */
	cancel_delayed_work_sync(&aem_calls_work);
	aem_core_exit();
}

module_init(aem_init);
module_exit(aem_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("AEM: asynchronous events through shared rings (/dev/aem)");
MODULE_VERSION(AEM_VERSION);
