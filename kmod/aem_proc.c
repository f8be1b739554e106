// SPDX-License-Identifier: GPL-2.0
/*
 * aem_proc.ko: process lifecycle events (AEM_SRC_PROC) from the scheduler
 * tracepoints sched_process_fork, sched_process_exec and
 * sched_process_exit.  Those tracepoints are not exported to modules, so
 * they are found by name with for_each_kernel_tracepoint() and probed with
 * tracepoint_probe_register().
 *
 * Who may watch whom follows the kernel's rule for reading another
 * process (ptrace_may_access(PTRACE_MODE_READ_REALCREDS), which /proc
 * uses; it is not exported, so aem_proc_may_observe() restates it without
 * the LSM hook and with the capability asked in the initial namespace).
 * It is checked at subscribe and again for every event of a descendant,
 * against the subscriber's credentials as they were at subscribe: a
 * descendant that becomes setuid is reported as AEM_PROC_DENIED, without
 * its details, from then on.
 *
 * Subscriptions sit on one RCU list; a probe walks it and posts to every
 * matching ring.  Probes run with preemption disabled, which is why
 * unsubscribe waits for an RCU grace period before it lets go of the
 * subscription.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/tracepoint.h>
#include <linux/rculist.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/pid_namespace.h>
#include <linux/binfmts.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/slab.h>

#include "aem_kmod.h"
#include "compat_kernel.h"

/* An ancestor walk stops here: deep trees are rare and the probe is hot. */
#define AEM_PROC_MAX_DEPTH	64

struct aem_proc_sub {
	struct list_head	node;		/* on aem_proc_subs, RCU */
	struct aem_ctx		*ring;
	struct aem_sub		*sub;
	struct pid_namespace	*ns;		/* pids are reported as the subscriber sees them */
	struct pid		*filter;	/* NULL: every process */
	const struct cred	*cred;		/* the subscriber's, at subscribe */
	bool			privileged;	/* may observe any process */
	u32			events;
	struct rcu_head		rcu;
};

static LIST_HEAD(aem_proc_subs);
static DEFINE_SPINLOCK(aem_proc_lock);	/* writers of aem_proc_subs */

/* Is @p the filter process or one of its descendants? RCU held. */
static bool aem_proc_match(struct aem_proc_sub *ps, struct task_struct *p)
{
	struct task_struct *t = p;
	int depth;

	if (!ps->filter)
		return true;
	for (depth = 0; depth < AEM_PROC_MAX_DEPTH; depth++) {
		if (task_tgid(t) == ps->filter)
			return true;
		if (t->real_parent == t || is_global_init(t))
			return false;
		t = rcu_dereference(t->real_parent);
	}
	return false;
}

/*
 * __ptrace_may_access() in PTRACE_MODE_READ_REALCREDS for a subscriber
 * without the capability: its real uid and gid must be every uid and gid
 * of @p, and @p must be dumpable by its owner.  RCU held.
 */
static bool aem_proc_may_observe(const struct cred *cred, struct task_struct *p)
{
	const struct cred *tc = __task_cred(p);

	if (!uid_eq(cred->uid, tc->euid) || !uid_eq(cred->uid, tc->suid) ||
	    !uid_eq(cred->uid, tc->uid) || !gid_eq(cred->gid, tc->egid) ||
	    !gid_eq(cred->gid, tc->sgid) || !gid_eq(cred->gid, tc->gid))
		return false;
	return aem_ktask_owner_dumpable(p);
}

static void aem_proc_emit(struct task_struct *p, u32 what, int exit_code, const char *filename)
{
	struct aem_proc_event ev;
	struct aem_proc_sub *ps;
	struct task_struct *parent;

	if (list_empty(&aem_proc_subs))
		return;
	rcu_read_lock();
	list_for_each_entry_rcu(ps, &aem_proc_subs, node) {
		if (!(ps->events & what) || !aem_proc_match(ps, p))
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.what = what;
		ev.pid = task_tgid_nr_ns(p, ps->ns);
		/* Not visible in the subscriber's namespace: not its business. */
		if (!ev.pid)
			continue;
		if (!ps->privileged && !aem_proc_may_observe(ps->cred, p)) {
			/* Withheld, but not silently: the subscriber learns it lost sight. */
			ev.what = what | AEM_PROC_DENIED;
			ev.pid = 0;
			aem_core_post(ps->ring, ps->sub, &ev, sizeof(ev), 0,
				      aem_sub_id(ps->ring, ps->sub));
			continue;
		}
		parent = rcu_dereference(p->real_parent);
		ev.ppid = task_tgid_nr_ns(parent, ps->ns);
		ev.exit_code = exit_code;
		/* comm changes under task_lock(); a torn name is harmless here. */
		strscpy_pad(ev.comm, p->comm, sizeof(ev.comm));
		if (filename)
			strscpy_pad(ev.filename, filename, sizeof(ev.filename));
		aem_core_post(ps->ring, ps->sub, &ev, sizeof(ev), 0, aem_sub_id(ps->ring, ps->sub));
	}
	rcu_read_unlock();
}

static void aem_proc_fork(void *data, struct task_struct *parent, struct task_struct *child)
{
	/* A new thread is not a new process. */
	if (!thread_group_leader(child))
		return;
	aem_proc_emit(child, AEM_PROC_FORK, 0, NULL);
}

static void aem_proc_exec(void *data, struct task_struct *p, pid_t old_pid,
			  struct linux_binprm *bprm)
{
	aem_proc_emit(p, AEM_PROC_EXEC, 0, bprm->filename);
}

static void aem_proc_exit(void *data, struct task_struct *p)
{
	/* Report the process once, when its last thread goes. */
	if (atomic_read(&p->signal->live))
		return;
	aem_proc_emit(p, AEM_PROC_EXIT, p->exit_code, NULL);
}

static struct {
	const char		*name;
	void			*probe;
	struct tracepoint	*tp;
} aem_proc_tps[] = {
	{ "sched_process_fork", aem_proc_fork },
	{ "sched_process_exec", aem_proc_exec },
	{ "sched_process_exit", aem_proc_exit },
};

static void aem_proc_find_tp(struct tracepoint *tp, void *priv)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(aem_proc_tps); i++)
		if (!strcmp(tp->name, aem_proc_tps[i].name))
			aem_proc_tps[i].tp = tp;
}

static int aem_proc_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	const struct aem_proc_args *a = &sqe->proc;
	struct aem_proc_sub *ps;
	struct task_struct *t;
	unsigned long flags;
	int ret;

	if (!a->events || (a->events & ~AEM_PROC_ALL) || a->resv[0] || a->resv[1] || a->resv[2])
		return -EINVAL;
	if (!aem_subscriber_is_current())
		return -EOPNOTSUPP;
	ps = kzalloc(sizeof(*ps), GFP_KERNEL_ACCOUNT);
	if (!ps)
		return -ENOMEM;
	ps->ring = r;
	ps->sub = s;
	ps->events = a->events;
	ps->ns = get_pid_ns(task_active_pid_ns(current));
	ps->cred = get_current_cred();
	ps->privileged = capable(CAP_NET_ADMIN) || capable(CAP_SYS_PTRACE);

	if (!a->pid) {
		/* Every process on the system: as privileged as the proc connector. */
		ret = -EPERM;
		if (!capable(CAP_NET_ADMIN))
			goto err;
	} else {
		ret = -ESRCH;
		ps->filter = find_get_pid(a->pid);
		if (!ps->filter)
			goto err;
		/* Watching a process needs the right to read it, as /proc asks. */
		rcu_read_lock();
		t = pid_task(ps->filter, PIDTYPE_PID);
		if (!t) {
			ret = -ESRCH;
		} else if (ps->privileged || same_thread_group(t, current)) {
			ret = 0;
		} else {
			/* The lock keeps t->mm (and so its dumpability) in place. */
			task_lock(t);
			ret = aem_proc_may_observe(ps->cred, t) ? 0 : -EPERM;
			task_unlock(t);
		}
		rcu_read_unlock();
		if (ret)
			goto err;
	}

	s->priv[0] = (u64)(uintptr_t)ps;
	spin_lock_irqsave(&aem_proc_lock, flags);
	list_add_tail_rcu(&ps->node, &aem_proc_subs);
	spin_unlock_irqrestore(&aem_proc_lock, flags);
	return 0;
err:
	put_pid(ps->filter);
	put_cred(ps->cred);
	put_pid_ns(ps->ns);
	kfree(ps);
	return ret;
}

static void aem_proc_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_proc_sub *ps = (struct aem_proc_sub *)(uintptr_t)s->priv[0];
	unsigned long flags;

	if (!ps)
		return;
	spin_lock_irqsave(&aem_proc_lock, flags);
	list_del_rcu(&ps->node);
	spin_unlock_irqrestore(&aem_proc_lock, flags);
	/* A probe may still be posting to @s: wait until none can. */
	synchronize_rcu();
	s->priv[0] = 0;
	put_pid(ps->filter);
	put_cred(ps->cred);
	put_pid_ns(ps->ns);
	kfree(ps);
}

static const struct aem_source_ops aem_proc_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_PROC,
	.name		= "proc",
	.owner		= THIS_MODULE,
	.subscribe	= aem_proc_subscribe,
	.unsubscribe	= aem_proc_unsubscribe,
};

static void aem_proc_unprobe(int n)
{
	while (n--)
		tracepoint_probe_unregister(aem_proc_tps[n].tp, aem_proc_tps[n].probe, NULL);
	tracepoint_synchronize_unregister();
}

static int __init aem_proc_init(void)
{
	int i, ret;

	for_each_kernel_tracepoint(aem_proc_find_tp, NULL);
	for (i = 0; i < ARRAY_SIZE(aem_proc_tps); i++) {
		if (!aem_proc_tps[i].tp) {
			pr_err("tracepoint %s not found\n", aem_proc_tps[i].name);
			return -ENOENT;
		}
	}
	for (i = 0; i < ARRAY_SIZE(aem_proc_tps); i++) {
		ret = tracepoint_probe_register(aem_proc_tps[i].tp, aem_proc_tps[i].probe, NULL);
		if (ret) {
			aem_proc_unprobe(i);
			return ret;
		}
	}
	ret = aem_core_register_source(&aem_proc_ops);
	if (ret)
		aem_proc_unprobe(ARRAY_SIZE(aem_proc_tps));
	return ret;
}

static void __exit aem_proc_exit_module(void)
{
	/* Ends every subscription through aem_proc_unsubscribe(). */
	aem_host_unregister_source(&aem_proc_ops);
	aem_proc_unprobe(ARRAY_SIZE(aem_proc_tps));
}

module_init(aem_proc_init);
module_exit(aem_proc_exit_module);
MODULE_LICENSE("GPL");
MODULE_VERSION(AEM_VERSION);
MODULE_DESCRIPTION("AEM event source: process fork, exec and exit");
