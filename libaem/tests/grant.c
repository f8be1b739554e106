/* SPDX-License-Identifier: MIT */
/*
 * aem_grant(): who besides the owner's user may post and call into a ring.
 * Bad requests get a clear errno and change nothing; grants and revokes
 * are idempotent where they say so and bounded by AEM_MAX_GRANTS; the
 * owner's own posts and calls go through whatever the grants say.  Posts
 * from another user are the module's (tests/vm/acl.c); this checks the API
 * the same on both backends.
 */
#include "aem_test.h"

#define CHANNEL	5

static void post_ok(struct aem_ring *from, struct aem_ring *to, uint64_t sub, uint64_t want)
{
	struct aem_post_msg m = { "hi", 2 };
	struct aem_cqe c;

	t_eq(aem_post_batch(from, AEM_ADDR(to->ring_id, CHANNEL), &m, 1, 0, 0), 1);
	t_assert(t_next(to, &c, 2000), "the post did not arrive");
	t_eq(c.id, sub);
	t_eq(t_sub_stats(to, sub).delivered, want);
}

int main(void)
{
	struct aem_ring a, b;
	struct aem_ring_stats st;
	uint64_t sub;
	unsigned i;

	t_setup(&a, NULL);
	t_setup(&b, NULL);
	t_assert(a.features & AEM_FEAT_GRANT, "features %#x lack AEM_FEAT_GRANT", a.features);
	sub = t_sub_msg(&b, CHANNEL, 0, 0x51);
	post_ok(&a, &b, sub, 1);

	/* Bad requests: nothing changes. */
	t_eq(aem_grant(&b, 0, 1U << 7), -EINVAL);
	t_eq(aem_grant(&b, 1000, AEM_GRANT_ANY), -EINVAL);
	t_eq(aem_grant(&b, 1000, AEM_GRANT_REVOKE), -ENOENT);
	t_eq(aem_grant(&b, 0, AEM_GRANT_ANY | AEM_GRANT_REVOKE), -ENOENT);

	/* Grants up to the bound; a repeated grant takes no room. */
	for (i = 0; i < AEM_MAX_GRANTS; i++)
		t_eq(aem_grant(&b, 60000 + i, 0), 0);
	t_eq(aem_grant(&b, 60000, 0), 0);
	t_eq(aem_grant(&b, 70000, 0), -ENOSPC);
	t_eq(aem_grant(&b, 60003, AEM_GRANT_REVOKE), 0);
	t_eq(aem_grant(&b, 60003, AEM_GRANT_REVOKE), -ENOENT);
	t_eq(aem_grant(&b, 70000, 0), 0);
	t_eq(aem_grant(&b, 70001, 0), -ENOSPC);

	t_eq(aem_grant(&b, 0, AEM_GRANT_ANY), 0);
	t_eq(aem_grant(&b, 0, AEM_GRANT_ANY), 0);
	post_ok(&a, &b, sub, 2);
	t_eq(aem_grant(&b, 0, AEM_GRANT_ANY | AEM_GRANT_REVOKE), 0);

	/* The owner's user needs no grant: with every grant gone it still posts. */
	for (i = 0; i < AEM_MAX_GRANTS; i++)
		aem_grant(&b, 60000 + i, AEM_GRANT_REVOKE);
	t_eq(aem_grant(&b, 70000, AEM_GRANT_REVOKE), 0);
	post_ok(&a, &b, sub, 3);
	post_ok(&b, &b, sub, 4);

	st = t_stats(&a);
	t_eq(t_refused_total(&st), 0);
	aem_teardown(&a);
	aem_teardown(&b);
	return t_exit();
}
