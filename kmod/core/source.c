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

void __aem_sources_room(struct aem_ctx *r)
{
	unsigned long f;
	u8 src;

	aem_spin_lock_irqsave(&aem_src_lock, f);
	for (src = 1; src < AEM_SRC_LAST; src++)
		if (aem_srcs[src] && aem_srcs[src]->room)
			aem_srcs[src]->room(r);
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
}

/* Opcodes a subscription of @ops answers, beyond subscribe and unsubscribe. */
static u32 source_ops_mask(const struct aem_source_ops *ops)
{
	u32 m = 1U << AEM_OP_SUBSCRIBE | 1U << AEM_OP_UNSUBSCRIBE;

	if (ops->source == AEM_SRC_MSG)
		m |= 1U << AEM_OP_POST | 1U << AEM_OP_CALL;
	if (ops->io)
		m |= 1U << AEM_OP_WRITEBACK | 1U << AEM_OP_SEND | 1U << AEM_OP_SHUTDOWN;
	if (!ops->writeback)
		return m;
	m |= 1U << AEM_OP_WRITEBACK;
	if (ops->source == AEM_SRC_TIMER)
		m |= 1U << AEM_OP_TIMER_SET;
	if (ops->source == AEM_SRC_GEN)
		m |= 1U << AEM_OP_GEN_SET;
	return m;
}

void aem_core_probe(struct aem_probe *p, u32 host_features, u32 setup_flags)
{
	unsigned long f;
	u32 op, i;
	u8 src;

	memset(p, 0, sizeof(*p));
	p->api_version = AEM_API_VERSION;
	p->api_min = AEM_API_VERSION_MIN;
	p->features = AEM_CORE_FEATURES | host_features;
	p->sqe_flags = AEM_SQE_FLAGS_ALL;
	p->setup_flags = setup_flags;
	for (op = 0; op < AEM_OP_LAST; op++)
		if (__aem_op_def((u8)op))
			p->ops |= 1U << op;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	for (src = 1; src < AEM_SRC_LAST && p->nr_sources < AEM_PROBE_SOURCES; src++) {
		const struct aem_source_ops *ops = aem_srcs[src];
		struct aem_probe_source *ps;

		if (!ops)
			continue;
		ps = &p->sources[p->nr_sources++];
		ps->source = src;
		ps->version = ops->api_version;
		ps->ops = source_ops_mask(ops);
		ps->flags = aem_src_closing[src] ? AEM_PROBE_SRC_CLOSING : 0;
		for (i = 0; ops->name && ops->name[i] && i < sizeof(ps->name) - 1; i++)
			ps->name[i] = ops->name[i];
	}
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
}
