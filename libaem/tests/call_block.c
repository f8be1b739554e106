/* SPDX-License-Identifier: MIT */
/*
 * Blocking calls: aem_call() from one thread, a handler thread on another
 * ring gets the request as an F_CALL event in a delivery slot, changes it
 * in place and writes it back (from the slot for even lengths, inline for
 * odd ones), and the caller gets the changed bytes.  Replies longer than the caller's buffer are cut
 * and report their full length; calls to nowhere are -ENOENT; a call into
 * a ring that closes under it is -ECONNRESET.
 */
#include <pthread.h>
#include "aem_test.h"

#define CHANNEL	9
#define TAG	0xca11
#define CALLS	300

static struct aem_ring server;
static _Atomic int handler_stop;
static _Atomic unsigned handled;

static uint8_t twist(uint8_t b)
{
	return (uint8_t)(b ^ 0x5a) + 1;
}

/* Handle calls until told to stop: odd lengths are answered inline, even ones in place. */
static void *handler(void *arg)
{
	uint64_t wb = 1 << 20;
	struct aem_cqe c;
	unsigned len, i;
	uint8_t *d;

	(void)arg;
	while (!handler_stop) {
		if (!t_next(&server, &c, 20))
			continue;
		if (c.flags & AEM_CQE_F_RESULT) {
			if (c.res < 0)
				t_fail("handler: writeback %#llx refused: %s",
				       (unsigned long long)c.user_data, strerror(-c.res));
			continue;
		}
		t_eq(c.user_data, TAG);
		t_eq(c.source, AEM_SRC_MSG);
		t_assert(c.flags & AEM_CQE_F_CALL, "call event flags %#x lack F_CALL", c.flags);
		t_assert(c.flags & AEM_CQE_F_SLOT, "call request not in a slot (flags %#x)", c.flags);
		t_eq(AEM_ID_KIND(c.id), AEM_ID_KIND_CALL);
		d = aem_cqe_payload(&server, &c, &len);
		t_assert(d, "call payload slot %u out of range", c.slot);
		for (i = 0; i < len; i++)
			d[i] = twist(d[i]);

		struct aem_sqe *sqe = t_sqe(&server);
		if (len % 2) {
			unsigned n = len < AEM_SQE_INLINE ? len : AEM_SQE_INLINE;

			aem_prep_writeback(sqe, c.id, d, n);
			t_release(&server, c.slot);	/* answered inline: the request slot is ours to return */
		} else {
			aem_prep_writeback_slot(sqe, c.id, c.slot, len);
		}
		aem_sqe_set_data(sqe, wb++);
		aem_release_commit(&server);
		t_submit(&server);
		handled++;
	}
	return NULL;
}

struct pending {
	struct aem_ring *ring;
	int ret;
};

static void *call_and_hang(void *arg)
{
	struct pending *pc = arg;

	pc->ret = aem_call(pc->ring, AEM_ADDR(server.ring_id, CHANNEL), "hang", 4, NULL, 0, 0, 20000);
	return NULL;
}

int main(void)
{
	struct aem_params p = t_params(256, 1024, 1);
	uint8_t req[256], resp[300];
	uint64_t addr, seed = t_seed();
	struct pending pc;
	struct aem_ring client;
	struct aem_cqe c;
	pthread_t th;
	unsigned i, j, len;
	int ret;

	t_setup(&server, &p);
	t_setup(&client, NULL);
	t_sub_msg(&server, CHANNEL, 0, TAG);
	addr = AEM_ADDR(server.ring_id, CHANNEL);
	t_assert(pthread_create(&th, NULL, handler, NULL) == 0, "pthread_create");

	for (i = 0; i < CALLS; i++) {
		len = 1 + t_rand(&seed) % server.slot_size;
		bool inline_reply = len % 2;

		for (j = 0; j < len; j++)
			req[j] = (uint8_t)t_rand(&seed);
		memset(resp, 0xcc, sizeof(resp));
		ret = aem_call(&client, addr, req, len, resp, sizeof(resp), 0, 5000);
		if (ret < 0)
			t_fail("call %u (%u bytes): %s", i, len, strerror(-ret));
		unsigned want = inline_reply && len > AEM_SQE_INLINE ? AEM_SQE_INLINE : len;
		t_eq(ret, want);
		for (j = 0; j < want; j++)
			if (resp[j] != twist(req[j]))
				t_fail("call %u: reply byte %u is %#x, want %#x", i, j, resp[j], twist(req[j]));
		t_assert(resp[want] == 0xcc, "call %u: reply written past its length", i);
	}

	/* A reply longer than the buffer: cut, full length reported. */
	memset(req, 0x11, 100);
	memset(resp, 0xcc, sizeof(resp));
	ret = aem_call(&client, addr, req, 100, resp, 4, 0, 5000);
	t_eq(ret, 100);
	for (j = 0; j < 4; j++)
		t_eq(resp[j], twist(0x11));
	t_eq(resp[4], 0xcc);

	/* No answer without a caller buffer either. */
	ret = aem_call(&client, addr, req, 10, NULL, 0, 0, 5000);
	t_assert(ret >= 0, "call without a reply buffer: %s", strerror(-ret));

	/* Calls to nowhere. */
	t_eq(aem_call(&client, AEM_ADDR(server.ring_id, CHANNEL + 1), req, 1, resp, 8, 0, 1000), -ENOENT);
	t_eq(aem_call(&client, AEM_ADDR(0xfffffff0u, CHANNEL), req, 1, resp, 8, 0, 1000), -ENOENT);
	/* Bad arguments. */
	ret = aem_call(&client, addr, req, server.slot_size + 1, resp, 8, 0, 1000);
	t_assert(ret == -EINVAL || ret == -E2BIG || ret == -EMSGSIZE,
		 "call larger than a slot: %d", ret);
	t_eq(aem_call(&client, addr, req, 1, resp, 8, AEM_MAX_CLASSES, 1000), -EINVAL);

	handler_stop = 1;
	pthread_join(th, NULL);
	printf("%u calls handled\n", handled);

	/* Every delivery slot came back. */
	aem_release_commit(&server);
	t_submit(&server);
	struct aem_ring_stats st = t_stats(&server);
	t_eq(st.slots_free, server.slot_count);
	t_eq(t_refused_total(&st), 0);

	/* The server ring closes while a call waits on it. */
	pc.ring = &client;
	pc.ret = 1;
	t_assert(pthread_create(&th, NULL, call_and_hang, &pc) == 0, "pthread_create");
	do	/* results of the handler's last writebacks may still be queued */
		t_assert(t_next(&server, &c, 5000), "hanging call never arrived");
	while (c.flags & AEM_CQE_F_RESULT);
	t_assert(c.flags & AEM_CQE_F_CALL, "not a call");
	aem_teardown(&server);
	pthread_join(th, NULL);
	t_eq(pc.ret, -ECONNRESET);

	aem_teardown(&client);
	return T_EXIT_PASS;
}
