// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The source registry: which implementations serve each AEM_SRC_* id (up
 * to AEM_SRC_IMPLS at once, each with its implementation version and the
 * ABI versions it serves).  A subscription holds a reference on its
 * implementation's module and names its registration slot; an
 * implementation being unregistered takes no new subscriptions (ring.c
 * ends the live ones) while the others of its id go on.
 */
#include "aem_core_int.h"

static aem_spinlock_t aem_src_lock;
/* Per source id, its implementations in registration slots; a subscription names its slot. */
static const struct aem_source_ops *aem_srcs[AEM_SRC_LAST][AEM_SRC_IMPLS];
static bool aem_src_closing[AEM_SRC_LAST][AEM_SRC_IMPLS];

void __aem_sources_init(void)
{
	aem_spin_init(&aem_src_lock);
}

static u32 impl_of(const struct aem_source_ops *ops)
{
	return ops->impl ? ops->impl : 1;
}

/* ABI versions @ops serves, as bits (1 << v). */
static u32 api_versions_of(const struct aem_source_ops *ops)
{
	u32 all = ((2U << AEM_API_VERSION) - 1) & ~((1U << AEM_API_VERSION_MIN) - 1);

	return ops->api_versions ? ops->api_versions & all : all;
}

int aem_core_register_source(const struct aem_source_ops *ops)
{
	unsigned long f;
	int ret = -EEXIST, free_slot = -1, i;

	if (!ops || ops->api_version != AEM_SOURCE_API_VERSION || !ops->source ||
	    ops->source >= AEM_SRC_LAST || !ops->subscribe || !ops->unsubscribe ||
	    !api_versions_of(ops))
		return -EINVAL;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	for (i = 0; i < AEM_SRC_IMPLS; i++) {
		const struct aem_source_ops *o = aem_srcs[ops->source][i];

		if (o && impl_of(o) == impl_of(ops))
			break;
		if (!o && free_slot < 0)
			free_slot = i;
	}
	if (i == AEM_SRC_IMPLS && free_slot >= 0) {
		aem_srcs[ops->source][free_slot] = ops;
		ret = 0;
	}
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ret;
}

/*
 * The implementation of @src a subscription of an ABI @api ring gets, with
 * a module reference, and its slot in *slot: implementation @impl, or with
 * @impl 0 the newest that serves @api.  NULL: none such registered (or it
 * is going away).
 */
const struct aem_source_ops *__aem_source_get(u8 src, u32 impl, u32 api, u8 *slot)
{
	const struct aem_source_ops *ops = NULL;
	unsigned long f;
	int i, best = -1;

	if (!src || src >= AEM_SRC_LAST)
		return NULL;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	for (i = 0; i < AEM_SRC_IMPLS; i++) {
		const struct aem_source_ops *o = aem_srcs[src][i];

		if (!o || aem_src_closing[src][i] || !(api_versions_of(o) & (1U << api)))
			continue;
		if (impl ? impl_of(o) == impl : best < 0 || impl_of(o) > impl_of(aem_srcs[src][best]))
			best = i;
	}
	if (best >= 0) {
		ops = aem_srcs[src][best];
		*slot = (u8)best;
		if (!aem_module_get(ops->owner))
			ops = NULL;
	}
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ops;
}

/*
 * The implementation in @slot of @src with a module reference, for another
 * subscription of an implementation a live one already uses (a listener's
 * connection); NULL when it is going away.
 */
const struct aem_source_ops *__aem_source_get_slot(u8 src, u8 slot)
{
	const struct aem_source_ops *ops = NULL;
	unsigned long f;

	if (!src || src >= AEM_SRC_LAST || slot >= AEM_SRC_IMPLS)
		return NULL;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	if (!aem_src_closing[src][slot] && aem_srcs[src][slot] &&
	    aem_module_get(aem_srcs[src][slot]->owner))
		ops = aem_srcs[src][slot];
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return ops;
}

/*
 * The implementation in @slot of @src: a live subscription's source stays
 * registered until all its subscriptions are gone, so no reference is taken.
 */
const struct aem_source_ops *__aem_source_ops(u8 src, u8 slot)
{
	return src < AEM_SRC_LAST && slot < AEM_SRC_IMPLS ? aem_srcs[src][slot] : NULL;
}

/* The registration slot of @ops (registered), or AEM_SRC_IMPLS. */
u32 __aem_source_slot(const struct aem_source_ops *ops)
{
	u32 i;

	if (!ops || ops->source >= AEM_SRC_LAST)
		return AEM_SRC_IMPLS;
	for (i = 0; i < AEM_SRC_IMPLS; i++)
		if (aem_read_once(aem_srcs[ops->source][i]) == ops)
			return i;
	return AEM_SRC_IMPLS;
}

/* Unregistration, first step: no new subscriptions.  False if @ops is not registered. */
bool __aem_source_close(const struct aem_source_ops *ops)
{
	unsigned long f;
	u32 i;

	aem_spin_lock_irqsave(&aem_src_lock, f);
	i = __aem_source_slot(ops);
	if (i < AEM_SRC_IMPLS)
		aem_src_closing[ops->source][i] = true;
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
	return i < AEM_SRC_IMPLS;
}

/* Unregistration, last step: every subscription of @ops has ended. */
void __aem_source_forget(const struct aem_source_ops *ops)
{
	unsigned long f;
	u32 i;

	aem_spin_lock_irqsave(&aem_src_lock, f);
	i = __aem_source_slot(ops);
	if (i < AEM_SRC_IMPLS) {
		aem_srcs[ops->source][i] = NULL;
		aem_src_closing[ops->source][i] = false;
	}
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
}

void __aem_sources_room(struct aem_ctx *r)
{
	unsigned long f;
	u8 src, i;

	aem_spin_lock_irqsave(&aem_src_lock, f);
	for (src = 1; src < AEM_SRC_LAST; src++)
		for (i = 0; i < AEM_SRC_IMPLS; i++)
			if (aem_srcs[src][i] && aem_srcs[src][i]->room)
				aem_srcs[src][i]->room(r);
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
	p->features = AEM_CORE_FEATURES | host_features | AEM_FEAT_SENDER;	/* a ring of the newest version */
	p->sqe_flags = AEM_SQE_FLAGS_ALL;
	p->setup_flags = setup_flags;
	for (op = 0; op < AEM_OP_LAST; op++)
		if (__aem_op_def((u8)op))
			p->ops |= 1U << op;
	aem_spin_lock_irqsave(&aem_src_lock, f);
	for (src = 1; src < AEM_SRC_LAST; src++) {
		const struct aem_source_ops *by_impl[AEM_SRC_IMPLS];
		u32 n = 0, j, k;

		/* This id's implementations, ascending by version. */
		for (j = 0; j < AEM_SRC_IMPLS; j++) {
			const struct aem_source_ops *ops = aem_srcs[src][j];

			if (!ops)
				continue;
			for (k = n++; k > 0 && impl_of(by_impl[k - 1]) > impl_of(ops); k--)
				by_impl[k] = by_impl[k - 1];
			by_impl[k] = ops;
		}
		for (j = 0; j < n && p->nr_sources < AEM_PROBE_SOURCES; j++) {
			const struct aem_source_ops *ops = by_impl[j];
			struct aem_probe_source *ps = &p->sources[p->nr_sources++];

			ps->source = src;
			ps->version = ops->api_version;
			ps->impl = impl_of(ops);
			ps->api_versions = api_versions_of(ops);
			ps->ops = source_ops_mask(ops);
			ps->flags = aem_src_closing[src][__aem_source_slot(ops)] ? AEM_PROBE_SRC_CLOSING : 0;
			for (i = 0; ops->name && ops->name[i] && i < sizeof(ps->name) - 1; i++)
				ps->name[i] = ops->name[i];
		}
	}
	aem_spin_unlock_irqrestore(&aem_src_lock, f);
}
