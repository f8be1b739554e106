// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The global ring table: ring id -> ring, for posts and calls between
 * rings.  A lookup takes a reference; unregistering waits until every
 * reference is gone.  An id is index | generation << AEM_RING_BITS, never
 * zero, and a reused index gets a new id.
 */
#include "aem_core_int.h"

#define AEM_RING_BITS	12
#define AEM_MAX_RINGS	(1U << AEM_RING_BITS)
#define AEM_RING_GEN_MASK	0xfffffU

static aem_spinlock_t ring_lock;
static struct aem_ctx *rings[AEM_MAX_RINGS];
static u32 ring_gen[AEM_MAX_RINGS];
static u32 ring_hint;

void __aem_rings_init(void)
{
	aem_spin_init(&ring_lock);
}

int __aem_ring_register(struct aem_ctx *r)
{
	unsigned long f;
	u32 i, idx, gen;

	aem_spin_lock_irqsave(&ring_lock, f);
	for (i = 0; i < AEM_MAX_RINGS; i++) {
		idx = (ring_hint + i) & (AEM_MAX_RINGS - 1);
		if (!rings[idx])
			break;
	}
	if (i == AEM_MAX_RINGS) {
		aem_spin_unlock_irqrestore(&ring_lock, f);
		return -ENOSPC;
	}
	gen = (ring_gen[idx] + 1) & AEM_RING_GEN_MASK;
	if (!gen)
		gen = 1;
	ring_gen[idx] = gen;
	/* Id never 0 (gen >= 1); a reused index gets a new id. */
	r->id = (gen << AEM_RING_BITS) | idx;
	rings[idx] = r;
	ring_hint = idx + 1;
	aem_spin_unlock_irqrestore(&ring_lock, f);
	return 0;
}

struct aem_ctx *__aem_ring_get(u32 id)
{
	struct aem_ctx *r;
	unsigned long f;

	aem_spin_lock_irqsave(&ring_lock, f);
	r = rings[id & (AEM_MAX_RINGS - 1)];
	if (r && r->id == id)
		aem_atomic_inc(&r->refs);
	else
		r = NULL;
	aem_spin_unlock_irqrestore(&ring_lock, f);
	return r;
}

void __aem_ring_put(struct aem_ctx *r)
{
	if (aem_atomic_dec_return(&r->refs) == 0)
		aem_complete(&r->unref);
}

struct aem_ctx *__aem_ring_iter(u32 *pos)
{
	struct aem_ctx *r = NULL;
	unsigned long f;

	aem_spin_lock_irqsave(&ring_lock, f);
	for (; *pos < AEM_MAX_RINGS; (*pos)++) {
		if (rings[*pos]) {
			r = rings[(*pos)++];
			aem_atomic_inc(&r->refs);
			break;
		}
	}
	aem_spin_unlock_irqrestore(&ring_lock, f);
	return r;
}

/* After return nobody can find @r and nobody still holds it from a lookup. */
void __aem_ring_unregister(struct aem_ctx *r)
{
	unsigned long f;

	aem_spin_lock_irqsave(&ring_lock, f);
	if (rings[r->id & (AEM_MAX_RINGS - 1)] == r)
		rings[r->id & (AEM_MAX_RINGS - 1)] = NULL;
	aem_spin_unlock_irqrestore(&ring_lock, f);
	__aem_ring_put(r);
	while (aem_wait_completion_timeout(&r->unref, 1000))
		;
}
