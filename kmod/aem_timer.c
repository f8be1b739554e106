// SPDX-License-Identifier: GPL-2.0
/*
 * aem_timer.ko: the timer source (AEM_SRC_TIMER).  The wheel itself is the
 * host-neutral kmod/core/src_timer.c inside aem.ko; this module registers
 * its ops and drives it with one soft hrtimer that ticks every AEM_TIMER_TICK_NS while
 * anything is armed and stops when nothing is.  A tick fires every due timer
 * of every ring, so the cost of a tick does not grow with idle timers.
 *
 * The tick runs in softirq context (HRTIMER_MODE_REL_SOFT): a tick that
 * fires many timers at once must not run with interrupts off.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/hrtimer.h>
#include <linux/ktime.h>

#include "core/aem_sources.h"
#include "aem_kmod.h"

static struct hrtimer aem_tick;

/*
 * ticking: the hrtimer is queued, or its callback runs and will decide
 * whether to go on.  kicked: something was armed since the running tick
 * began.  Both under aem_tick_lock, so a kick can neither be lost (the
 * callback sees kicked before it stops) nor start a timer that the callback
 * is about to forward (it only starts when nothing ticks).
 */
static DEFINE_SPINLOCK(aem_tick_lock);
static bool aem_ticking, aem_kicked;

static enum hrtimer_restart aem_tick_fn(struct hrtimer *t)
{
	unsigned long flags;
	bool more;

	spin_lock_irqsave(&aem_tick_lock, flags);
	aem_kicked = false;
	spin_unlock_irqrestore(&aem_tick_lock, flags);

	/* One hrtimer, so never two ticks at once: aem_timer_tick() needs that. */
	more = aem_timer_tick(ktime_get_ns());

	spin_lock_irqsave(&aem_tick_lock, flags);
	if (!more && !aem_kicked) {
		aem_ticking = false;
		spin_unlock_irqrestore(&aem_tick_lock, flags);
		return HRTIMER_NORESTART;
	}
	spin_unlock_irqrestore(&aem_tick_lock, flags);
	hrtimer_forward_now(t, ns_to_ktime(AEM_TIMER_TICK_NS));
	return HRTIMER_RESTART;
}

/*
 * Called by the core when it arms a timer; any context, possibly under the
 * wheel's spinlock.  If the callback has just decided to stop and not yet
 * returned, hrtimer_start() queues the timer anyway and the hrtimer core
 * keeps it queued after the callback returns.
 */
static void aem_timer_kick(void)
{
	unsigned long flags;

	spin_lock_irqsave(&aem_tick_lock, flags);
	aem_kicked = true;
	if (!aem_ticking) {
		aem_ticking = true;
		hrtimer_start(&aem_tick, ns_to_ktime(AEM_TIMER_TICK_NS), HRTIMER_MODE_REL_SOFT);
	}
	spin_unlock_irqrestore(&aem_tick_lock, flags);
}

static int __init aem_timer_init(void)
{
	int ret;

	aem_khrtimer_setup(&aem_tick, aem_tick_fn, CLOCK_MONOTONIC, HRTIMER_MODE_REL_SOFT);
	aem_host_set_driver(AEM_SRC_TIMER, aem_timer_kick);
	ret = aem_core_register_source(&aem_timer_source_ops);
	if (ret)
		aem_host_set_driver(AEM_SRC_TIMER, NULL);
	return ret;
}

static void __exit aem_timer_exit(void)
{
	/* Ends every timer in every ring (final events); nothing arms after. */
	aem_host_unregister_source(&aem_timer_source_ops);
	aem_host_set_driver(AEM_SRC_TIMER, NULL);
	hrtimer_cancel(&aem_tick);
}

module_init(aem_timer_init);
module_exit(aem_timer_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION(AEM_VERSION);
MODULE_DESCRIPTION("AEM event source: one-shot and periodic timers");
