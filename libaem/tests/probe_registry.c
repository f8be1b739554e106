/* SPDX-License-Identifier: MIT */
/*
 * The embedded backend's source registry seen through the probe: a source
 * unregistered while a ring holds a subscription of it ends that
 * subscription with a final event, leaves the probe's answer and refuses
 * new subscriptions; registered again, it is in the probe and serves the
 * same ring.  The registry is libaem's own (the static library's core
 * symbols), so this runs on the embedded backend whatever AEM_BACKEND says.
 */
#include "aem_test.h"

/* The in-process registry; the ops are opaque here. */
struct aem_source_ops;
extern const struct aem_source_ops aem_gen_source_ops;
int aem_core_register_source(const struct aem_source_ops *ops);
void aem_core_unregister_source(const struct aem_source_ops *ops);

static bool probe_has(struct aem_ring *r, uint8_t src)
{
	struct aem_probe p;
	uint32_t i;

	t_eq(aem_probe(r, 0, &p), 0);
	for (i = 0; i < p.nr_sources; i++)
		if (p.sources[i].source == src)
			return true;
	return false;
}

static int subscribe_gen(struct aem_ring *r, uint64_t tag, uint64_t *id)
{
	struct aem_sqe *sqe = t_sqe(r);
	struct aem_cqe c;

	aem_prep_subscribe_gen(sqe, 1000, 0, 1, 16, 0, tag);
	t_submit(r);
	c = t_result(r, tag, 5000);
	*id = c.id;
	return c.res;
}

/* Wait for an event of @tag (with @final: its final one). */
static void wait_event(struct aem_ring *r, uint64_t tag, bool final)
{
	uint64_t end = t_now_ns() + 5000 * T_MS;
	struct aem_cqe c;

	while (t_now_ns() < end) {
		if (!t_next(r, &c, 50))
			continue;
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "unexpected result %d", c.res);
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(r, c.slot);
		if (c.user_data == tag && (!final || (c.flags & AEM_CQE_F_FINAL)))
			return;
	}
	t_fail("no %sevent for tag %#llx", final ? "final " : "", (unsigned long long)tag);
}

int main(void)
{
	struct aem_params p;
	struct aem_ring r;
	uint64_t id;

	memset(&p, 0, sizeof(p));
	p.flags = AEM_SETUP_EMBEDDED;
	t_setup(&r, &p);
	t_assert(probe_has(&r, AEM_SRC_GEN), "gen not in the probe");
	t_assert(subscribe_gen(&r, 0x601, &id) == 0, "subscribe gen");
	wait_event(&r, 0x601, false);

	aem_core_unregister_source(&aem_gen_source_ops);
	t_assert(!probe_has(&r, AEM_SRC_GEN), "gen still in the probe after unregistering");
	t_assert(probe_has(&r, AEM_SRC_TIMER), "timer left the probe with gen");
	wait_event(&r, 0x601, true);
	t_assert(subscribe_gen(&r, 0x602, &id) < 0, "subscribed to an unregistered source");

	t_eq(aem_core_register_source(&aem_gen_source_ops), 0);
	t_assert(probe_has(&r, AEM_SRC_GEN), "gen not back in the probe");
	t_assert(subscribe_gen(&r, 0x603, &id) == 0, "subscribe gen after registering again");
	wait_event(&r, 0x603, false);
	aem_teardown(&r);
	return t_exit();
}
