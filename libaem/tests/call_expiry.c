/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous calls expire while others are pending, and after none was:
 * only the call that makes the first one pending kicks the expiry driver,
 * which must then keep ticking for the later ones.  Nobody answers here:
 * every call ends with -ETIMEDOUT, a short one before a long one submitted
 * with it, and a lone call after the driver has gone idle as well.  The
 * server never answers: it only hands the requests' slots back at the end.
 */
#include "aem_test.h"

#define CHANNEL		5
#define TAG		0xe4
#define LONG_MS		3000
#define SHORT_MS	100

/* The next result CQE of @r (events are not expected on the caller). */
static struct aem_cqe next_result(struct aem_ring *r, unsigned timeout_ms)
{
	struct aem_cqe c;

	if (!t_next(r, &c, timeout_ms))
		t_fail("no result within %u ms", timeout_ms);
	t_assert(c.flags & AEM_CQE_F_RESULT, "caller got an event (flags %#x)", c.flags);
	return c;
}

static void call(struct aem_ring *r, uint64_t addr, unsigned timeout_ms, uint64_t ud)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_call(sqe, addr, "x", 1, 0, timeout_ms);
	aem_sqe_set_data(sqe, ud);
}

int main(void)
{
	struct aem_params p = t_params(64, 256, 1);
	struct aem_ring server, client;
	struct aem_cqe c;
	uint64_t addr;
	unsigned i;

	t_setup(&server, &p);
	t_setup(&client, &p);
	t_sub_msg(&server, CHANNEL, 0, TAG);
	addr = AEM_ADDR(server.ring_id, CHANNEL);

	/* A long call pending first: the short one after it kicks nothing, yet expires first. */
	call(&client, addr, LONG_MS, 1);
	call(&client, addr, SHORT_MS, 2);
	t_eq(t_submit(&client), 2);
	c = next_result(&client, LONG_MS + 5000);
	t_eq(c.user_data, 2);
	t_eq(c.res, -ETIMEDOUT);
	c = next_result(&client, LONG_MS + 5000);
	t_eq(c.user_data, 1);
	t_eq(c.res, -ETIMEDOUT);

	/* None pending, then one again, several times: each start kicks the driver anew. */
	for (i = 0; i < 3; i++) {
		if (i == 2)
			usleep(50 * 1000);	/* long enough for the driver to go idle */
		call(&client, addr, SHORT_MS, 10 + i);
		t_eq(t_submit(&client), 1);
		c = next_result(&client, SHORT_MS + 5000);
		t_eq(c.user_data, 10 + i);
		t_eq(c.res, -ETIMEDOUT);
	}

	/* The unanswered requests: the server hands their slots back. */
	for (i = 0; i < 5; i++) {
		t_assert(t_next(&server, &c, 5000), "request %u of 5 not delivered", i);
		t_assert(c.flags & AEM_CQE_F_CALL, "server event flags %#x lack F_CALL", c.flags);
		t_release(&server, c.slot);
	}
	aem_release_commit(&server);
	t_teardown_pair(&client, &server);
	return T_EXIT_PASS;
}
