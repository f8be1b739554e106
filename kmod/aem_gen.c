// SPDX-License-Identifier: GPL-2.0
/*
 * aem_gen.ko: the synthetic generator (AEM_SRC_GEN) for load tests.  The
 * generator logic is the host-neutral kmod/core/src_gen.c inside aem.ko;
 * this module registers its ops and runs it on one kernel thread, which sleeps until the
 * next step is due (an hrtimer sleep, so rates above HZ work) or, when no
 * generator is active, until aem_host_gen_kick().
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/kthread.h>
#include <linux/hrtimer.h>
#include <linux/sched.h>
#include <linux/atomic.h>

#include "core/aem_sources.h"
#include "aem_kmod.h"

/* Slack for the sleep between steps: a rate is an average, not a deadline. */
#define AEM_GEN_SLACK_NS	(20 * NSEC_PER_USEC)

static struct task_struct *aem_gen_thread;
static atomic_t aem_gen_kicked;

/* Something was armed; any context, possibly under spinlocks. */
static void aem_gen_kick(void)
{
	atomic_set(&aem_gen_kicked, 1);
	/* Implies a full barrier before it looks at the thread's state. */
	if (aem_gen_thread)
		wake_up_process(aem_gen_thread);
}

static int aem_gen_fn(void *unused)
{
	while (!kthread_should_stop()) {
		u64 now = ktime_get_ns(), next;
		ktime_t until;

		atomic_set(&aem_gen_kicked, 0);
		next = aem_gen_step(now);
		if (next <= now) {
			/* Progress at rate 0: go on, but let others run. */
			cond_resched();
			continue;
		}
		set_current_state(TASK_INTERRUPTIBLE);
		/* Pairs with the barrier in wake_up_process(): no lost kick. */
		if (atomic_read(&aem_gen_kicked) || kthread_should_stop()) {
			__set_current_state(TASK_RUNNING);
			continue;
		}
		if (next == AEM_GEN_IDLE) {
			schedule();
		} else {
			until = ns_to_ktime(next);
			schedule_hrtimeout_range(&until, AEM_GEN_SLACK_NS, HRTIMER_MODE_ABS);
		}
	}
	return 0;
}

static int __init aem_gen_init(void)
{
	int ret;

	aem_gen_thread = kthread_run(aem_gen_fn, NULL, "aem_gen");
	if (IS_ERR(aem_gen_thread)) {
		ret = PTR_ERR(aem_gen_thread);
		aem_gen_thread = NULL;
		return ret;
	}
	aem_host_set_driver(AEM_SRC_GEN, aem_gen_kick);
	ret = aem_core_register_source(&aem_gen_source_ops);
	if (ret) {
		aem_host_set_driver(AEM_SRC_GEN, NULL);
		kthread_stop(aem_gen_thread);
		aem_gen_thread = NULL;
	}
	return ret;
}

static void __exit aem_gen_exit(void)
{
	/* Ends every generator (final events), then the thread has nothing to do. */
	aem_host_unregister_source(&aem_gen_source_ops);
	aem_host_set_driver(AEM_SRC_GEN, NULL);
	kthread_stop(aem_gen_thread);
	aem_gen_thread = NULL;
}

module_init(aem_gen_init);
module_exit(aem_gen_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION(AEM_VERSION);
MODULE_DESCRIPTION("AEM event source: synthetic generator (rate, payload size, burst)");
