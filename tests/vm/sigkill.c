/* SPDX-License-Identifier: MIT */
/*
 * SIGKILL mid-batch: processes killed while submitting big batches, while
 * asleep in enter, while blocked in a call, and while a peer calls them.
 * Kills take effect promptly (waits are interruptible, calls killable) and
 * the kernel cleans up after every one.
 */
#include "aem_test.h"

#define ROUNDS	24

static void busy_submitter(int mode, uint32_t target_ring)
{
	struct aem_params p = { .sq_entries = 4096, .cq_entries = 256 };
	struct vring r;
	int i;

	vr_setup_or_die(&r, &p);
	switch (mode) {
	case 0:	/* big NOP batches, results unread: overflow */
		for (;;) {
			for (i = 0; i < 4096; i++) {
				struct aem_sqe *sqe = vr_sqe(&r);

				if (!sqe)
					break;
				sqe->opcode = AEM_OP_NOP;
			}
			vr_enter(&r, (uint32_t)i, 0, 0);
		}
	case 1:	/* asleep in enter, forever */
		for (;;)
			vr_enter(&r, 0, 1, -1);
	case 2: { /* blocked in a call nobody answers */
		struct aem_call_args a = { 0 };
		uint64_t x = 0;

		a.addr = AEM_ADDR(target_ring, 5);
		a.req = (uintptr_t)&x;
		a.req_len = 8;
		a.timeout_ms = 60000;
		for (;;)
			ioctl(r.fd, AEM_IOC_CALL, &a);
	}
	}
}

int main(void)
{
	uint64_t seed = t_seed();
	struct vring callee;
	struct aem_sqe *sqe;
	int round;

	/* A ring with a channel that never answers. */
	vr_setup_or_die(&callee, NULL);
	sqe = vr_sqe(&callee);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_MSG;
	sqe->msg.channel = 5;
	sqe->user_data = 1;
	t_eq(vr_result(&callee, 1, NULL), 0);

	for (round = 0; round < ROUNDS; round++) {
		int mode = round % 3, status;
		uint64_t t0;
		pid_t pid = fork();

		t_assert(pid >= 0, "fork");
		if (pid == 0) {
			busy_submitter(mode, callee.p.ring_id);
			_exit(0);
		}
		usleep(5000 + (useconds_t)(t_rand(&seed) % 50000));
		t0 = t_now_ns();
		kill(pid, SIGKILL);
		t_assert(waitpid(pid, &status, 0) == pid, "waitpid");
		t_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			 "mode %d: status 0x%x", mode, status);
		/* Generous for TCG; a call timeout would be 60 s. */
		t_assert(t_now_ns() - t0 < 10000 * T_MS, "mode %d: kill took %" PRIu64 " ms",
			 mode, (uint64_t)((t_now_ns() - t0) / T_MS));
		/* Drain the callee's dead calls, releasing their slots. */
		{
			struct aem_cqe c;

			while (vr_wait_cqe(&callee, &c, 0, NULL, NULL))
				;
		}
	}
	/* Kill a ring's owner while a call into that ring is pending. */
	{
		int pfd[2], status;
		uint32_t id = 0;
		pid_t pid, caller;

		t_assert(pipe(pfd) == 0, "pipe");
		pid = fork();
		t_assert(pid >= 0, "fork");
		if (pid == 0) {
			struct vring r2;

			vr_setup_or_die(&r2, NULL);
			sqe = vr_sqe(&r2);
			sqe->opcode = AEM_OP_SUBSCRIBE;
			sqe->source = AEM_SRC_MSG;
			sqe->msg.channel = 6;
			sqe->user_data = 1;
			t_eq(vr_result(&r2, 1, NULL), 0);
			t_assert(write(pfd[1], &r2.p.ring_id, 4) == 4, "write");
			for (;;)
				vr_enter(&r2, 0, 1, -1);
		}
		t_assert(read(pfd[0], &id, 4) == 4, "ring owner died");
		caller = fork();
		t_assert(caller >= 0, "fork");
		if (caller == 0) {
			struct aem_call_args a = { 0 };
			int fd = vr_open();

			a.addr = AEM_ADDR(id, 6);
			a.timeout_ms = 30000;
			if (ioctl(fd, AEM_IOC_CALL, &a) < 0 && errno == ECONNRESET)
				_exit(0);
			fprintf(stderr, "call: %s\n", strerror(errno));
			_exit(4);
		}
		usleep(200000);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		t_assert(waitpid(caller, &status, 0) == caller, "waitpid caller");
		t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			 "caller into a killed ring: status 0x%x", status);
	}
	vr_close(&callee);
	return T_EXIT_PASS;
}
