/* SPDX-License-Identifier: MIT */
/*
 * The probe and the ABI version stated at setup: the probe names the
 * versions served, the core's opcodes and the loaded sources (timer, msg
 * and gen at least) with the opcodes each answers, the same with and
 * without a ring; a version setup does not serve is -EOPNOTSUPP and
 * leaves no ring behind.
 */
#include "aem_test.h"

static const struct aem_probe_source *find_source(const struct aem_probe *p, uint8_t src)
{
	uint32_t i;

	for (i = 0; i < p->nr_sources; i++)
		if (p->sources[i].source == src)
			return &p->sources[i];
	return NULL;
}

static void check_probe(const struct aem_probe *p)
{
	const struct aem_probe_source *s;
	uint32_t i;

	t_eq(p->api_version, AEM_API_VERSION);
	t_eq(p->api_min, AEM_API_VERSION_MIN);
	t_eq(p->sqe_flags, AEM_SQE_FLAGS_ALL);
	t_eq(p->ops, (1U << AEM_OP_LAST) - 1);
	t_assert(p->nr_sources >= 3 && p->nr_sources <= AEM_PROBE_SOURCES, "%u sources", p->nr_sources);
	for (i = 1; i < p->nr_sources; i++)
		t_assert(p->sources[i - 1].source < p->sources[i].source ||
			 (p->sources[i - 1].source == p->sources[i].source &&
			  p->sources[i - 1].impl < p->sources[i].impl), "sources out of order");
	s = find_source(p, AEM_SRC_TIMER);
	t_assert(s && !strcmp(s->name, "timer"), "no timer source");
	t_assert(s->ops & (1U << AEM_OP_TIMER_SET), "timer without timer_set: %#x", s->ops);
	t_assert(!(s->ops & (1U << AEM_OP_GEN_SET)), "timer with gen_set: %#x", s->ops);
	t_assert(s->version >= 1, "timer version %u", s->version);
	s = find_source(p, AEM_SRC_GEN);
	t_assert(s && (s->ops & (1U << AEM_OP_GEN_SET)), "no gen source with gen_set");
	s = find_source(p, AEM_SRC_MSG);
	t_assert(s && (s->ops & (1U << AEM_OP_CALL)), "no msg source with call");
}

int main(void)
{
	struct aem_probe bare, with;
	struct aem_params p;
	struct aem_ring r;
	int ret;

	ret = aem_probe(NULL, 0, &bare);
	if (ret == -ENODEV)
		t_skip("no /dev/aem");
	t_eq(ret, 0);
	check_probe(&bare);

	memset(&p, 0, sizeof(p));
	t_eq(aem_setup(&p, &r), 0);
	t_eq(p.api_version, AEM_API_VERSION);
	t_eq(aem_probe(&r, 0, &with), 0);
	check_probe(&with);
	t_eq(with.nr_sources, bare.nr_sources);
	t_eq(with.features, p.features);
	aem_teardown(&r);

	/* A version this build does not read, newer or older. */
	memset(&p, 0, sizeof(p));
	p.api_version = AEM_API_VERSION + 1;
	t_eq(aem_setup(&p, &r), -EOPNOTSUPP);
	t_eq(r.backend, 0);
	memset(&p, 0, sizeof(p));
	p.api_version = AEM_API_VERSION_MIN - 1;
	t_eq(aem_setup(&p, &r), -EOPNOTSUPP);
	t_eq(aem_probe(NULL, 0, NULL), -EINVAL);
	return t_exit();
}
