/* SPDX-License-Identifier: MIT */
/*
 * AEM_SETUP_BOOST is never accepted and ignored.  The embedded backend has
 * nothing that would apply it, so setup refuses it with -EOPNOTSUPP,
 * leaving nothing behind, and its probe does not offer it; the module takes
 * it with CAP_SYS_NICE (-EPERM without, tests/vm/prio_boost.c) and offers
 * it in its probe.
 */
#include "aem_test.h"

int main(void)
{
	struct aem_probe pr;
	struct aem_params p;
	struct aem_ring r;
	int i;

	/* Embedded: refused, every time, and a plain setup still works after. */
	for (i = 0; i < 3; i++) {
		memset(&p, 0, sizeof(p));
		memset(&r, 0, sizeof(r));
		p.flags = AEM_SETUP_EMBEDDED | AEM_SETUP_BOOST;
		t_eq(aem_setup(&p, &r), -EOPNOTSUPP);
		t_eq(r.backend, 0);
	}
	t_eq(aem_probe(NULL, AEM_SETUP_EMBEDDED, &pr), 0);
	t_assert(!(pr.setup_flags & AEM_SETUP_BOOST), "embedded probe offers BOOST: %#x", pr.setup_flags);
	t_assert(pr.setup_flags & AEM_SETUP_EMBEDDED, "embedded probe lacks EMBEDDED: %#x", pr.setup_flags);
	memset(&p, 0, sizeof(p));
	p.flags = AEM_SETUP_EMBEDDED;
	t_setup(&r, &p);
	aem_teardown(&r);

	/* The module: offered in its probe (its refusal without CAP_SYS_NICE is tests/vm/prio_boost.c). */
	if (aem_probe(NULL, AEM_SETUP_KERNEL, &pr) == 0)
		t_assert(pr.setup_flags & AEM_SETUP_BOOST, "kernel probe lacks BOOST: %#x", pr.setup_flags);
	return t_exit();
}
