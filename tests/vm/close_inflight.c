/* SPDX-License-Identifier: MIT */
/*
 * Close with events in flight: rings full of firing timers, a running
 * generator, an overflowing backlog, unreleased slots and a caller blocked
 * on the ring are closed without draining.  The blocked caller gets
 * ECONNRESET, and nothing is left behind (the harness checks the kernel
 * log; kmemleak runs check the rest).
 */
#include "aem_test.h"

#define RINGS		20
#define TIMERS		500

static int32_t subscribe(struct vring *r, struct aem_sqe *tmpl, uint64_t ud)
{
	struct aem_sqe *sqe = vr_sqe(r);

	*sqe = *tmpl;
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->user_data = ud;
	return vr_result(r, ud, NULL);
}

int main(void)
{
	struct aem_params p = { .sq_entries = 1024, .cq_entries = 64, .nr_classes = 2,
				.backlog_limit = 256 };
	int n, i, status, have_timer = 1, have_gen = 1;
	struct aem_sqe t = { 0 };
	struct vring r;

	for (n = 0; n < RINGS; n++) {
		pid_t caller;

		vr_setup_or_die(&r, &p);

		/* Results first: a flood can push later results past the backlog bound. */
		/*
		 * An unbounded inline flood, and a bounded run in slots (some
		 * still unreleased at close; bounded so the call's request
		 * always finds a slot).  Floods stay in class 1; the call comes
		 * in class 0.
		 */
		memset(&t, 0, sizeof(t));
		t.source = AEM_SRC_GEN;
		t.gen.burst = 16;
		t.gen.payload_len = 16;
		t.prio = 1;
		if (have_gen && subscribe(&r, &t, 2) == -EOPNOTSUPP) {
			printf("note: generator source not loaded\n");
			have_gen = 0;
		}
		if (have_gen) {
			t.gen.payload_len = 200;
			t.gen.count = 200;
			t_eq(subscribe(&r, &t, 4), 0);
		}

		memset(&t, 0, sizeof(t));
		t.source = AEM_SRC_MSG;
		t.msg.channel = 1;
		t_eq(subscribe(&r, &t, 3), 0);

		memset(&t, 0, sizeof(t));
		t.source = AEM_SRC_TIMER;
		t.timer.first_ns = 100000;
		t.timer.interval_ns = 100000;
		t.prio = 1;
		if (have_timer && subscribe(&r, &t, 1) == -EOPNOTSUPP) {
			printf("note: timer source not loaded\n");
			have_timer = 0;
		}
		if (have_timer) {
			/* Many at once, results silent: the CQ ring overflows into the backlog. */
			for (i = 0; i < TIMERS; i++) {
				struct aem_sqe *sqe = vr_sqe(&r);

				*sqe = t;
				sqe->opcode = AEM_OP_SUBSCRIBE;
				sqe->flags = AEM_SQE_F_SILENT;
				sqe->user_data = 100 + (uint64_t)i;
				sqe->prio = 1;
			}
			t_assert(vr_enter(&r, TIMERS, 0, 0) == TIMERS, "submit timers");
		}

		caller = fork();
		t_assert(caller >= 0, "fork: %s", strerror(errno));
		if (caller == 0) {
			struct aem_call_args a = { 0 };
			uint64_t req = 1;
			uint32_t id = r.p.ring_id;
			int fd;

			/* The inherited fd and mappings would keep the ring alive. */
			vr_close(&r);
			fd = vr_open();

			a.addr = AEM_ADDR(id, 1);
			a.req = (uintptr_t)&req;
			a.req_len = 8;
			a.timeout_ms = 20000;
			if (ioctl(fd, AEM_IOC_CALL, &a) == 0)
				_exit(2);
			if (errno == ECONNRESET)
				_exit(0);
			fprintf(stderr, "call: %s\n", strerror(errno));
			_exit(3);
		}
		/*
		 * Wait until the call is here (the caller is blocked), then walk
		 * away.  Bounded by time, not by events: under a loaded TCG host
		 * the timers' events can outnumber any count before the caller
		 * has even started.
		 */
		{
			uint64_t deadline = t_now_ns() + 30ULL * 1000000000;
			struct aem_cqe c;

			do {
				t_assert(t_now_ns() < deadline, "round %d: no call event in 30 s", n);
				t_assert(vr_wait_cqe(&r, &c, 10000, NULL, NULL), "round %d: no call event", n);
			} while (!(c.flags & AEM_CQE_F_CALL));
		}
		usleep((useconds_t)(n % 5) * 10000);
		vr_close(&r);
		t_assert(waitpid(caller, &status, 0) == caller, "waitpid");
		t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			 "round %d: blocked caller did not get ECONNRESET (status 0x%x)", n, status);
	}
	return T_EXIT_PASS;
}
