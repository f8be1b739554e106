/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous calls (AEM_OP_CALL): many calls in flight from one ring, the
 * reply to each arriving as its SQE's result CQE (inline or in a delivery
 * slot) with the handler's in-place changes; a large request from a send
 * slot; an unanswered call times out with -ETIMEDOUT; calls to nowhere get
 * -ENOENT.
 */
#include <pthread.h>
#include "aem_test.h"

#define CHANNEL		3
#define TAG		0xa5
#define INFLIGHT	100
#define IGNORE_BYTE	0xff	/* requests starting with it are left unanswered */

static struct aem_ring server;
static _Atomic int handler_stop;

static void *handler(void *arg)
{
	uint64_t wb = 1ull << 40;
	struct aem_cqe c;
	unsigned len, i;
	uint8_t *d;

	(void)arg;
	while (!handler_stop) {
		if (!t_next(&server, &c, 20))
			continue;
		if (c.flags & AEM_CQE_F_RESULT) {
			t_assert(c.res >= 0, "handler: writeback refused: %s", strerror(-c.res));
			continue;
		}
		t_assert((c.flags & (AEM_CQE_F_CALL | AEM_CQE_F_SLOT)) == (AEM_CQE_F_CALL | AEM_CQE_F_SLOT),
			 "call event flags %#x", c.flags);
		d = aem_cqe_payload(&server, &c, &len);
		t_assert(d, "call payload out of range");
		if (len && d[0] == IGNORE_BYTE) {
			t_release(&server, c.slot);
			aem_release_commit(&server);
			continue;
		}
		for (i = 0; i < len; i++)
			d[i] = (uint8_t)~d[i];
		struct aem_sqe *sqe = t_sqe(&server);
		aem_prep_writeback_slot(sqe, c.id, c.slot, len);
		sqe->flags |= AEM_SQE_F_SILENT;
		aem_sqe_set_data(sqe, wb++);
		t_submit(&server);
	}
	return NULL;
}

/* Check one reply CQE against the request bytes @req of @len. */
static void check_reply(struct aem_ring *r, const struct aem_cqe *c, const uint8_t *req, unsigned len)
{
	unsigned got, i;
	uint8_t *d;

	t_assert(c->flags & AEM_CQE_F_RESULT, "reply without F_RESULT");
	if (c->res < 0)
		t_fail("call %#llx: %s", (unsigned long long)c->user_data, strerror(-c->res));
	t_eq(c->res, len);
	t_eq(!!(c->flags & AEM_CQE_F_SLOT), len > AEM_CQE_INLINE);
	d = aem_cqe_payload(r, c, &got);
	t_assert(d && got == len, "reply payload %u bytes, want %u", got, len);
	for (i = 0; i < len; i++) {
		uint8_t want = (uint8_t)~req[i];

		if (d[i] != want)
			t_fail("call %#llx byte %u is %#x, want %#x", (unsigned long long)c->user_data,
			       i, d[i], want);
	}
	if (c->flags & AEM_CQE_F_SLOT)
		t_release(r, c->slot);
}

static int call_result(struct aem_ring *r, uint64_t addr, const void *data, unsigned len,
		       unsigned timeout_ms, uint64_t ud)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_call(sqe, addr, data, len, 0, timeout_ms);
	aem_sqe_set_data(sqe, ud);
	t_submit(r);
	return t_result(r, ud, timeout_ms + 5000).res;
}

int main(void)
{
	struct aem_params p = t_params(256, 1024, 1);
	uint8_t req[INFLIGHT][AEM_SQE_INLINE], big[200], *slot;
	bool seen[INFLIGHT] = { false };
	uint64_t seed = t_seed(), addr, t0;
	struct aem_ring client;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	pthread_t th;
	unsigned i, j;
	int res;

	t_setup(&server, &p);
	t_setup(&client, &p);
	t_sub_msg(&server, CHANNEL, 0, TAG);
	addr = AEM_ADDR(server.ring_id, CHANNEL);
	t_assert(pthread_create(&th, NULL, handler, NULL) == 0, "pthread_create");

	/* INFLIGHT calls in one submit; replies in any order. */
	for (i = 0; i < INFLIGHT; i++) {
		for (j = 0; j < AEM_SQE_INLINE; j++)
			req[i][j] = (uint8_t)t_rand(&seed);
		req[i][0] &= 0x7f;
		sqe = t_sqe(&client);
		aem_prep_call(sqe, addr, req[i], 1 + i % AEM_SQE_INLINE, 0, 5000);
		aem_sqe_set_data(sqe, i);
	}
	t_eq(t_submit(&client), INFLIGHT);
	for (i = 0; i < INFLIGHT; i++) {
		t_assert(t_next(&client, &c, 10000), "%u of %u replies", i, INFLIGHT);
		t_assert(c.user_data < INFLIGHT && !seen[c.user_data], "reply for %#llx",
			 (unsigned long long)c.user_data);
		seen[c.user_data] = true;
		check_reply(&client, &c, req[c.user_data], 1 + c.user_data % AEM_SQE_INLINE);
	}

	/* A large request from a send slot; the reply comes in a delivery slot. */
	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i + 3);
	slot = aem_send_slot(&client, 1);
	memcpy(slot, big, sizeof(big));
	sqe = t_sqe(&client);
	aem_prep_call(sqe, addr, NULL, sizeof(big), 0, 5000);
	sqe->flags |= AEM_SQE_F_SLOT;
	sqe->slot = 1;
	aem_sqe_set_data(sqe, 1000);
	t_submit(&client);
	c = t_result(&client, 1000, 10000);
	check_reply(&client, &c, big, sizeof(big));

	/* Unanswered: -ETIMEDOUT after about the timeout. */
	uint8_t ignore = IGNORE_BYTE;
	t0 = t_now_ns();
	res = call_result(&client, addr, &ignore, 1, 100, 1001);
	t_eq(res, -ETIMEDOUT);
	t_assert(t_now_ns() - t0 >= 90 * T_MS, "call timed out after %llu ms",
		 (unsigned long long)((t_now_ns() - t0) / T_MS));

	/* Nowhere. */
	t_eq(call_result(&client, AEM_ADDR(server.ring_id, CHANNEL + 1), "x", 1, 1000, 1002), -ENOENT);
	t_eq(call_result(&client, AEM_ADDR(0xfffffff0u, 1), "x", 1, 1000, 1003), -ENOENT);

	handler_stop = 1;
	pthread_join(th, NULL);
	t_teardown_pair(&client, &server);
	return T_EXIT_PASS;
}
