/* SPDX-License-Identifier: MIT */
/*
 * One ring cannot deny calls to the others.  The pending-call table is
 * machine-wide; each pending call counts against its calling ring's quota
 * (aem_params.call_quota).  Ring A calls its own channel and never answers:
 * once its quota is used, its next CALL is refused with -ENOSPC and its next
 * blocking call with -EBUSY (both counted under AEM_REFUSE_NOMEM), while
 * ring B's calls, asynchronous and blocking, still reach their handler.
 * Before quotas, A's unanswered calls filled the whole table and B's calls
 * failed.  A call timeout beyond AEM_CALL_MAX_TIMEOUT_MS is refused with
 * -EINVAL, whatever the quota.
 */
#include <pthread.h>
#include "aem_test.h"

#define CHANNEL		7
#define TABLE		16384	/* the machine-wide table: A tries to fill it */
#define BATCH		64

static struct aem_ring a, b, h;

/* Results of A's CALL SQEs: how many were refused, each with -ENOSPC. */
static unsigned drain_refusals(void)
{
	unsigned head, n, i, refused = 0;

	n = aem_result_peek(&a, &head);
	for (i = 0; i < n; i++) {
		const struct aem_cqe *c = aem_result_at(&a, head + i);

		t_assert(c->res == -ENOSPC, "A's call %#llx answered %d, want -ENOSPC",
			 (unsigned long long)c->user_data, c->res);
		refused++;
	}
	aem_result_advance(&a, n);
	return refused;
}

/* Serve one call on H with the reply "ok"; false when none came within @ms. */
static bool serve_one(unsigned ms)
{
	struct aem_sqe *sqe;
	struct aem_cqe c;

	if (!t_next(&h, &c, ms))
		return false;
	t_assert(c.flags & AEM_CQE_F_CALL, "H: flags %#x res %d, want a call event", c.flags, c.res);
	sqe = t_sqe(&h);
	aem_prep_writeback(sqe, c.id, "ok", 2);
	if (c.flags & AEM_CQE_F_SLOT)
		t_release(&h, c.slot);
	aem_sqe_set_data(sqe, 0x77);
	t_eq(t_do(&h, 0x77), 0);
	return true;
}

static int block_ret;

static void *block_call(void *arg)
{
	char resp[8];

	(void)arg;
	block_ret = aem_call(&b, AEM_ADDR(h.ring_id, CHANNEL), "blk", 3, resp, sizeof(resp), 0, 5000);
	return NULL;
}

int main(void)
{
	struct aem_params pa = t_params(1024, TABLE, 1), pq;
	struct aem_ring_stats st0, st;
	struct aem_ring tmp;
	unsigned sent = 0, refused = 0, i;
	struct aem_sqe *sqe;
	struct aem_cqe res;
	pthread_t th;
	char resp[8];

	/* A holds every call it makes: a slot for each request, room for each event. */
	pa.slot_size = 64;
	pa.slot_count = TABLE;
	t_setup(&a, &pa);
	t_eq(pa.call_quota, AEM_DEFAULT_CALL_QUOTA);
	t_setup(&b, NULL);
	t_setup(&h, NULL);
	t_sub_msg(&a, CHANNEL, 0, 0xa);
	t_sub_msg(&h, CHANNEL, 0, 0xb);

	st0 = t_stats(&a);
	while (sent < TABLE && !refused) {
		for (i = 0; i < BATCH; i++) {
			sqe = t_sqe(&a);
			aem_prep_call(sqe, AEM_ADDR(a.ring_id, CHANNEL), "x", 1, 0,
				      AEM_CALL_MAX_TIMEOUT_MS);
			aem_sqe_set_data(sqe, ++sent);
		}
		t_submit(&a);
		refused = drain_refusals();
	}
	printf("A: %u calls pending, %u refused\n", sent - refused, refused);
	t_eq(sent - refused, AEM_DEFAULT_CALL_QUOTA);
	st = t_stats(&a);
	t_eq(st.refused[AEM_REFUSE_NOMEM] - st0.refused[AEM_REFUSE_NOMEM], refused);
	/* A blocking call through A's fd counts against A's quota too: refused at once. */
	t_eq(aem_call(&a, AEM_ADDR(h.ring_id, CHANNEL), "x", 1, resp, sizeof(resp), 0, 5000), -EBUSY);
	t_eq(t_stats(&a).refused[AEM_REFUSE_NOMEM], st.refused[AEM_REFUSE_NOMEM] + 1);

	/* B's asynchronous call goes through. */
	sqe = t_sqe(&b);
	aem_prep_call(sqe, AEM_ADDR(h.ring_id, CHANNEL), "async", 5, 0, 5000);
	aem_sqe_set_data(sqe, 0xb1);
	t_submit(&b);
	t_assert(serve_one(5000), "B's call never reached its handler");
	res = t_result(&b, 0xb1, 5000);
	t_eq(res.res, 2);
	/* So does its blocking call. */
	t_eq(pthread_create(&th, NULL, block_call, NULL), 0);
	t_assert(serve_one(5000), "B's blocking call never reached its handler");
	pthread_join(th, NULL);
	t_eq(block_ret, 2);

	/* The timeout cap: one millisecond more is refused, the cap itself is taken. */
	st0 = t_stats(&b);
	sqe = t_sqe(&b);
	aem_prep_call(sqe, AEM_ADDR(h.ring_id, CHANNEL), "long", 4, 0, AEM_CALL_MAX_TIMEOUT_MS + 1);
	aem_sqe_set_data(sqe, 0xb2);
	t_eq(t_do(&b, 0xb2), -EINVAL);
	t_eq(t_stats(&b).refused[AEM_REFUSE_FIELD], st0.refused[AEM_REFUSE_FIELD] + 1);
	t_eq(aem_call(&b, AEM_ADDR(h.ring_id, CHANNEL), "long", 4, resp, sizeof(resp), 0,
		      AEM_CALL_MAX_TIMEOUT_MS + 1), -EINVAL);
	t_expect_quiet(&h, 50, "a refused call reached the handler");

	/* The quota is a setup parameter: taken up to its bound, refused beyond. */
	pq = t_params(0, 0, 0);
	pq.call_quota = AEM_MAX_CALL_QUOTA + 1;
	t_eq(aem_setup(&pq, &tmp), -EINVAL);
	pq = t_params(0, 0, 0);
	pq.call_quota = 2;
	t_setup(&tmp, &pq);
	t_eq(pq.call_quota, 2);
	aem_teardown(&tmp);

	aem_teardown(&a);	/* its pending calls end with it */
	aem_teardown(&b);
	aem_teardown(&h);
	return t_exit();
}
