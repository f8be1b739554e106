/* SPDX-License-Identifier: MIT */
/*
 * Error replies: a handler answers a call with an errno instead of data
 * (AEM_OP_WRITEBACK with arg = errno), and the caller gets -errno at once,
 * blocking (aem_call) or asynchronous (the call's result CQE).  An errno
 * out of range, an errno with data, and an errno to a subscription token
 * are refused with -EINVAL.
 */
#include <pthread.h>
#include "aem_test.h"

#define CHANNEL		5
#define TAG		0x5e
#define REPLY_ERRNO	EACCES

static struct aem_ring server;
static _Atomic int handler_stop;

static void *handler(void *arg)
{
	struct aem_cqe c;

	(void)arg;
	while (!handler_stop) {
		if (!t_next(&server, &c, 20))
			continue;
		if (c.flags & AEM_CQE_F_RESULT) {
			t_assert(c.res >= 0, "handler: error reply refused: %s", strerror(-c.res));
			continue;
		}
		t_assert(c.flags & AEM_CQE_F_CALL, "call event flags %#x", c.flags);
		struct aem_sqe *sqe = t_sqe(&server);
		aem_prep_writeback_error(sqe, &c, REPLY_ERRNO);
		sqe->flags |= AEM_SQE_F_SILENT;
		t_submit(&server);
	}
	return NULL;
}

/* A writeback of @token with @err and @len bytes; returns its result. */
static int writeback_result(struct aem_ring *r, uint64_t token, uint32_t err, unsigned len,
			    uint64_t ud)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_writeback(sqe, token, "x", len);
	sqe->arg = err;
	aem_sqe_set_data(sqe, ud);
	t_submit(r);
	return t_result(r, ud, 5000).res;
}

int main(void)
{
	struct aem_params p = t_params(64, 256, 1);
	struct aem_ring client;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	uint64_t addr, sub;
	pthread_t th;
	int ret;

	t_setup(&server, &p);
	t_setup(&client, &p);
	sub = t_sub_msg(&server, CHANNEL, 0, TAG);
	addr = AEM_ADDR(server.ring_id, CHANNEL);

	/* Refusals, before the handler thread owns the server's rings. */
	t_eq(writeback_result(&server, sub, REPLY_ERRNO, 0, 1), -EINVAL);

	t_assert(pthread_create(&th, NULL, handler, NULL) == 0, "pthread_create");

	/* Blocking: the caller gets -errno long before its 20 s timeout. */
	ret = aem_call(&client, addr, "req", 3, NULL, 0, 0, 20000);
	t_eq(ret, -REPLY_ERRNO);

	/* Asynchronous: the result CQE carries -errno. */
	sqe = t_sqe(&client);
	aem_prep_call(sqe, addr, "req", 3, 0, 20000);
	aem_sqe_set_data(sqe, 7);
	t_submit(&client);
	c = t_result(&client, 7, 20000);
	t_eq(c.res, -REPLY_ERRNO);

	handler_stop = 1;
	pthread_join(th, NULL);

	/* Errno out of range or with data: refused, the call stays pending. */
	sqe = t_sqe(&client);
	aem_prep_call(sqe, addr, "req", 3, 0, 20000);
	aem_sqe_set_data(sqe, 8);
	t_submit(&client);
	t_assert(t_next(&server, &c, 5000) && (c.flags & AEM_CQE_F_CALL), "call event");
	t_eq(writeback_result(&server, c.id, AEM_CALL_ERRNO_MAX + 1, 0, 2), -EINVAL);
	t_eq(writeback_result(&server, c.id, REPLY_ERRNO, 1, 3), -EINVAL);
	sqe = t_sqe(&server);
	aem_prep_writeback_error(sqe, &c, EIO);
	aem_sqe_set_data(sqe, 4);
	t_submit(&server);
	t_eq(t_result(&server, 4, 5000).res, 0);
	t_eq(t_result(&client, 8, 5000).res, -EIO);

	t_teardown_pair(&client, &server);
	return T_EXIT_PASS;
}
