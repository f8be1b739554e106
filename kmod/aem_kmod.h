/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What aem.ko exports to the source modules beyond the core API.
 */
#ifndef AEM_KMOD_H
#define AEM_KMOD_H

#include <linux/sched.h>

#include "core/aem_core.h"

/*
 * Unregister a source from its module_exit: ends every subscription of it
 * in every ring (each gets its final event), including rings being torn
 * down at that moment, which no longer show in the ring table.  After it
 * returns nothing calls into the source again.  Sleeps.
 */
void aem_host_unregister_source(const struct aem_source_ops *ops);

/*
 * The timer wheel and the generator run inside aem.ko (kmod/core); their
 * modules drive them.  @kick is called when the core arms something while
 * the driver may be asleep (any context, spinlocks possibly held: must not
 * sleep).  NULL removes the driver and waits for running kicks.
 */
int aem_host_set_driver(u8 source, void (*kick)(void));

/*
 * Whether a SUBSCRIBE runs in its submitter's own task, whose fd table,
 * namespaces and credentials a source may take as the subscriber's.  Not
 * so in a ring's submission poller (AEM_SETUP_SQPOLL: a kernel thread,
 * aem-sqp-<ring id>): sources that need them refuse there with
 * -EOPNOTSUPP (docs/PROTOCOL.md, "The submission poller").
 */
static inline bool aem_subscriber_is_current(void)
{
	return !(current->flags & PF_KTHREAD);
}

#endif /* AEM_KMOD_H */
