// SPDX-License-Identifier: GPL-2.0 OR MIT
/*
 * The global ring table: ring id -> ring, for posts and calls between
 * rings.  A lookup takes a reference; unregistering waits until every
 * reference is gone.  An id is index | generation << AEM_RING_BITS, never
 * zero; the generation is random (20 bits), so ids are not sequential and
 * a reused index gets a new id.
 *
 * Who may post and call into a ring: its owner's user (same uid, same
 * user namespace), the uids it granted, or everyone once it granted
 * AEM_GRANT_ANY.  Grants change under ring_lock, where lookups check them.
 *
 * The tables are machine-wide, so each user's share is bounded: rings
 * (aem_core_user_max_rings) and pending calls (aem_core_user_max_calls),
 * counted per uid in a small hash of users that have either.
 */
#include "aem_core_int.h"

#define AEM_RING_BITS	12
#define AEM_MAX_RINGS	(1U << AEM_RING_BITS)
#define AEM_RING_GEN_MASK	0xfffffU
#define AEM_USER_BUCKETS	64

unsigned int aem_core_user_max_rings = AEM_DEFAULT_USER_RINGS;
unsigned int aem_core_user_max_calls = AEM_DEFAULT_USER_CALLS;

struct aem_user {
	struct aem_user	*next;
	u32		uid;
	u32		rings;		/* registered rings of this uid */
	u32		calls;		/* pending calls charged to this uid */
};

static aem_spinlock_t ring_lock;
static struct aem_ctx *rings[AEM_MAX_RINGS];
static u32 ring_gen[AEM_MAX_RINGS];
static u32 ring_hint;
static struct aem_user *users[AEM_USER_BUCKETS];	/* under ring_lock */

/* Under ring_lock: @uid's entry, or @spare made into it (*spare then NULL); NULL without one. */
static struct aem_user *user_get_locked(u32 uid, struct aem_user **spare)
{
	struct aem_user **head = &users[(uid * 0x9e3779b1U) >> 26], *u;

	for (u = *head; u; u = u->next)
		if (u->uid == uid)
			return u;
	u = *spare;
	if (!u)
		return NULL;
	*spare = NULL;
	u->uid = uid;
	u->rings = u->calls = 0;
	u->next = *head;
	*head = u;
	return u;
}

/* Under ring_lock: unlink @u once it counts nothing; returns what the caller frees after unlocking. */
static struct aem_user *user_drop_locked(struct aem_user *u)
{
	struct aem_user **pp;

	if (u->rings || u->calls)
		return NULL;
	for (pp = &users[(u->uid * 0x9e3779b1U) >> 26]; *pp; pp = &(*pp)->next) {
		if (*pp == u) {
			*pp = u->next;
			return u;
		}
	}
	return NULL;
}

void __aem_rings_init(void)
{
	aem_spin_init(&ring_lock);
}

/* A new random generation for index @idx: never 0, never the one it had. */
static u32 ring_new_gen(u32 idx)
{
	u32 gen;

	do {
		gen = aem_host_random_u32() & AEM_RING_GEN_MASK;
	} while (!gen || gen == ring_gen[idx]);
	return gen;
}

/* -EMFILE past the owner's share of rings, -ENOSPC when the table is full. */
int __aem_ring_register(struct aem_ctx *r)
{
	struct aem_user *spare = aem_zalloc(sizeof(*spare)), *u, *gone = NULL;
	u32 i, idx = 0, gen;
	unsigned long f;
	int ret = 0;

	if (!spare)
		return -ENOMEM;
	aem_spin_lock_irqsave(&ring_lock, f);
	u = user_get_locked(r->owner.uid, &spare);
	if (u->rings >= aem_read_once(aem_core_user_max_rings)) {
		gone = user_drop_locked(u);
		ret = -EMFILE;
		goto out;
	}
	for (i = 0; i < AEM_MAX_RINGS; i++) {
		idx = (ring_hint + i) & (AEM_MAX_RINGS - 1);
		if (!rings[idx])
			break;
	}
	if (i == AEM_MAX_RINGS) {
		gone = user_drop_locked(u);
		ret = -ENOSPC;
		goto out;
	}
	gen = ring_new_gen(idx);
	ring_gen[idx] = gen;
	/* Id never 0 (gen >= 1); a reused index gets a new id. */
	r->id = (gen << AEM_RING_BITS) | idx;
	rings[idx] = r;
	ring_hint = idx + 1;
	u->rings++;
	r->user = u;
out:
	aem_spin_unlock_irqrestore(&ring_lock, f);
	aem_free(spare);
	aem_free(gone);
	return ret;
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

/* Under ring_lock. */
static bool ring_may_send_locked(const struct aem_ctx *r, const struct aem_cred *from)
{
	u32 i;

	if (r->grant_any || (from->uid == r->owner.uid && from->ns == r->owner.ns))
		return true;
	for (i = 0; i < r->nr_grants; i++)
		if (r->grants[i] == from->uid)
			return true;
	return false;
}

int __aem_ring_get_for(u32 id, const struct aem_cred *from, struct aem_ctx **out)
{
	struct aem_ctx *r;
	unsigned long f;
	int ret = 0;

	aem_spin_lock_irqsave(&ring_lock, f);
	r = rings[id & (AEM_MAX_RINGS - 1)];
	if (!r || r->id != id)
		ret = -ENOENT;
	else if (!ring_may_send_locked(r, from))
		ret = -EACCES;
	else
		aem_atomic_inc(&r->refs);
	aem_spin_unlock_irqrestore(&ring_lock, f);
	*out = ret ? NULL : r;
	return ret;
}

int aem_core_grant(struct aem_ctx *r, u32 uid, u32 flags)
{
	bool revoke = flags & AEM_GRANT_REVOKE;
	unsigned long f;
	int ret = 0;
	u32 i;

	if ((flags & ~AEM_GRANT_FLAGS_ALL) || ((flags & AEM_GRANT_ANY) && uid))
		return -EINVAL;
	aem_spin_lock_irqsave(&ring_lock, f);
	if (flags & AEM_GRANT_ANY) {
		if (revoke && !r->grant_any)
			ret = -ENOENT;
		else
			r->grant_any = !revoke;
		goto out;
	}
	for (i = 0; i < r->nr_grants && r->grants[i] != uid; i++)
		;
	if (revoke) {
		if (i == r->nr_grants)
			ret = -ENOENT;
		else
			r->grants[i] = r->grants[--r->nr_grants];
	} else if (i == r->nr_grants) {
		if (r->nr_grants == AEM_MAX_GRANTS)
			ret = -ENOSPC;
		else
			r->grants[r->nr_grants++] = uid;
	}
out:
	aem_spin_unlock_irqrestore(&ring_lock, f);
	return ret;
}

/*
 * The target of a call and the caller's share of the call table in one
 * round of ring_lock: ring @id that @from may call into (-ENOENT, -EACCES),
 * taking requests of @req_len bytes (-E2BIG; 0 skips the check), and one
 * pending call charged to @caller's owner, or to @who without a ring
 * (-EBUSY past aem_core_user_max_calls, -ENOMEM).  On success the caller
 * holds a reference to *@out and a charge on *@user; on an error, neither.
 */
int __aem_ring_get_for_call(u32 id, const struct aem_cred *from, u32 req_len,
			    struct aem_ctx *caller, const struct aem_cred *who,
			    struct aem_ctx **out, struct aem_user **user)
{
	struct aem_user *spare = NULL, *u, *gone = NULL;
	struct aem_ctx *r;
	unsigned long f;
	int ret = 0;

	if (!caller) {
		spare = aem_zalloc(sizeof(*spare));
		if (!spare)
			return -ENOMEM;
	}
	aem_spin_lock_irqsave(&ring_lock, f);
	r = rings[id & (AEM_MAX_RINGS - 1)];
	if (!r || r->id != id) {
		ret = -ENOENT;
		goto out;
	}
	if (!ring_may_send_locked(r, from)) {
		ret = -EACCES;
		goto out;
	}
	if (req_len > r->slot_size) {
		ret = -E2BIG;
		goto out;
	}
	u = caller ? caller->user : user_get_locked(who->uid, &spare);
	if (u->calls >= aem_read_once(aem_core_user_max_calls)) {
		gone = user_drop_locked(u);
		ret = -EBUSY;
		goto out;
	}
	u->calls++;
	aem_atomic_inc(&r->refs);
	*out = r;
	*user = u;
out:
	aem_spin_unlock_irqrestore(&ring_lock, f);
	aem_free(spare);
	aem_free(gone);
	return ret;
}

/* Any context the call table lock is taken in (ring_lock nests inside it). */
void __aem_user_call_uncharge(struct aem_user *u)
{
	struct aem_user *gone;
	unsigned long f;

	aem_spin_lock_irqsave(&ring_lock, f);
	u->calls--;
	gone = user_drop_locked(u);
	aem_spin_unlock_irqrestore(&ring_lock, f);
	aem_free(gone);
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
	struct aem_user *gone = NULL;
	unsigned long f;

	aem_spin_lock_irqsave(&ring_lock, f);
	if (rings[r->id & (AEM_MAX_RINGS - 1)] == r) {
		rings[r->id & (AEM_MAX_RINGS - 1)] = NULL;
		r->user->rings--;
		gone = user_drop_locked(r->user);
	}
	aem_spin_unlock_irqrestore(&ring_lock, f);
	aem_free(gone);
	__aem_ring_put(r);
	while (aem_wait_completion_timeout(&r->unref, 1000))
		;
}
