/* SPDX-License-Identifier: MIT */
/*
 * Writeback to another process's event: tokens and subscription ids are
 * meaningful only in the ring that issued them.  A second process that
 * learns them (here: through a pipe) and writes them back, unsubscribes
 * them or re-arms them on its own ring gets -ENOENT, and the owner's call
 * is still answered by the owner alone.
 */
#include "aem_test.h"

struct tokens {
	uint32_t ring_id;
	uint64_t sub;		/* the owner's MSG subscription */
	uint64_t call_token;	/* the owner's pending call event */
};

static int32_t submit_one(struct vring *r, uint8_t op, uint64_t target, uint64_t ud)
{
	struct aem_sqe *sqe = vr_sqe(r);
	uint64_t payload = 0xbad;

	sqe->opcode = op;
	sqe->target = target;
	sqe->user_data = ud;
	if (op == AEM_OP_WRITEBACK) {
		sqe->len = 8;
		memcpy(sqe->data, &payload, 8);
	}
	if (op == AEM_OP_TIMER_SET) {
		sqe->timer.first_ns = T_MS;
	}
	return vr_result(r, ud, NULL);
}

int main(void)
{
	int to_thief[2], to_owner[2], status;
	struct tokens tk;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct vring owner;
	pid_t caller, thief;
	char go;

	t_assert(pipe(to_thief) == 0 && pipe(to_owner) == 0, "pipe");
	vr_setup_or_die(&owner, NULL);
	sqe = vr_sqe(&owner);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_MSG;
	sqe->user_data = 1;
	sqe->msg.channel = 9;
	t_eq(vr_result(&owner, 1, &c), 0);
	tk.sub = c.id;
	tk.ring_id = owner.p.ring_id;

	/* A third process calls the owner and waits for the reply. */
	caller = fork();
	t_assert(caller >= 0, "fork");
	if (caller == 0) {
		struct aem_call_args a = { 0 };
		uint64_t req = 41, resp = 0;
		int fd = vr_open();

		a.addr = AEM_ADDR(tk.ring_id, 9);
		a.req = (uintptr_t)&req;
		a.req_len = 8;
		a.resp = (uintptr_t)&resp;
		a.resp_cap = 8;
		a.timeout_ms = 10000;
		if (ioctl(fd, AEM_IOC_CALL, &a) < 0) {
			fprintf(stderr, "call: %s\n", strerror(errno));
			_exit(2);
		}
		_exit(resp == 42 && a.resp_len == 8 ? 0 : 3);
	}
	t_assert(vr_wait_cqe(&owner, &c, 5000, NULL, NULL), "the call never arrived");
	t_assert(c.flags & AEM_CQE_F_CALL, "event is not a call (flags 0x%x)", c.flags);
	tk.call_token = c.id;

	/* The thief has its own ring and the owner's ids. */
	thief = fork();
	t_assert(thief >= 0, "fork");
	if (thief == 0) {
		struct vring r;

		t_assert(read(to_thief[0], &tk, sizeof(tk)) == sizeof(tk), "read tokens");
		vr_setup_or_die(&r, NULL);
		t_eq(submit_one(&r, AEM_OP_WRITEBACK, tk.call_token, 10), -ENOENT);
		t_eq(submit_one(&r, AEM_OP_WRITEBACK, tk.sub, 11), -ENOENT);
		t_eq(submit_one(&r, AEM_OP_UNSUBSCRIBE, tk.sub, 12), -ENOENT);
		t_eq(submit_one(&r, AEM_OP_TIMER_SET, tk.sub, 13), -ENOENT);
		/* Garbage ids of every kind. */
		t_eq(submit_one(&r, AEM_OP_WRITEBACK, tk.call_token ^ (1ull << 40), 14), -ENOENT);
		t_eq(submit_one(&r, AEM_OP_WRITEBACK, 0, 15), -ENOENT);
		t_eq(submit_one(&r, AEM_OP_WRITEBACK, ~0ull, 16), -ENOENT);
		vr_close(&r);
		go = 1;
		t_assert(write(to_owner[1], &go, 1) == 1, "write");
		_exit(0);
	}
	t_assert(write(to_thief[1], &tk, sizeof(tk)) == sizeof(tk), "write tokens");
	t_assert(read(to_owner[0], &go, 1) == 1, "thief died");
	t_assert(waitpid(thief, &status, 0) == thief && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "thief: status 0x%x", status);

	/* The owner answers its call; the caller gets exactly that. */
	{
		uint64_t reply = 42;

		sqe = vr_sqe(&owner);
		sqe->opcode = AEM_OP_WRITEBACK;
		sqe->target = tk.call_token;
		sqe->user_data = 2;
		sqe->len = 8;
		memcpy(sqe->data, &reply, 8);
		t_eq(vr_result(&owner, 2, NULL), 0);
	}
	t_assert(waitpid(caller, &status, 0) == caller, "waitpid caller");
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "caller: status 0x%x", status);

	/* A second writeback of the same token is stale now. */
	t_eq(submit_one(&owner, AEM_OP_WRITEBACK, tk.call_token, 3), -ENOENT);
	vr_close(&owner);
	return T_EXIT_PASS;
}
