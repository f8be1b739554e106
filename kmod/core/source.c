// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The source registry: which event source serves each AEM_SRC_* id.  A
 * subscription holds a reference on its source's module; a source being
 * unregistered takes no new subscriptions (ring.c ends the live ones).
 */
#include "aem_core_int.h"

static aem_spinlock_t aem_src_lock;
static const struct aem_source_ops *aem_srcs[AEM_SRC_LAST];
static bool aem_src_closing[AEM_SRC_LAST];

void __aem_sources_init(void)
{
	aem_spin_init(&aem_src_lock);
}

int aem_core_register_source(const struct aem_source_ops *ops)
{
	unsigned long f;
	int ret = 0;

	if (!ops || ops->api_version != AEM_SOURCE_API_VERSION || !ops->source ||
	    ops->source >= AEM_SRC_LAST || !ops->subscribe || !ops->unsubscribe)
		return -EINVAL;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	if (aem_srcs[ops->source])
		ret = -EEXIST;
	else
		aem_srcs[ops->source] = ops;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ret;
}

/* The ops of @src with a module reference, or NULL: not registered, or going away. */
const struct aem_source_ops *__aem_source_get(u8 src)
{
	const struct aem_source_ops *ops;
	unsigned long f;

	if (!src || src >= AEM_SRC_LAST)
		return NULL;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	ops = aem_src_closing[src] ? NULL : aem_srcs[src];
	if (ops && !aem_module_get(ops->owner))
		ops = NULL;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ops;
}

/*
 * The ops registered for @src: a live subscription's source stays
 * registered until all its subscriptions are gone, so no reference is taken.
 */
const struct aem_source_ops *__aem_source_ops(u8 src)
{
	return src < AEM_SRC_LAST ? aem_srcs[src] : NULL;
}

/* Unregistration, first step: no new subscriptions.  False if @ops is not registered. */
bool __aem_source_close(const struct aem_source_ops *ops)
{
	unsigned long f;
	bool ok;

	aem_spin_lock_irqsave(&aem_src_lock, f);
	ok = ops && ops->source < AEM_SRC_LAST && aem_srcs[ops->source] == ops;
	if (ok)
		aem_src_closing[ops->source] = true;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ok;
}

/* Unregistration, last step: every subscription of @ops has ended. */
void __aem_source_forget(const struct aem_source_ops *ops)
{
	unsigned long f;

	aem_spin_lock_irqsave(&aem_src_lock, f);
	aem_srcs[ops->source] = NULL;
	aem_src_closing[ops->source] = false;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
}
