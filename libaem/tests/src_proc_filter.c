/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_PROC pid filter and arguments, both backends: a subscription for
 * process A reports A's child G (fork, exit with its status) and A's exit,
 * and nothing of a sibling B that is not A's descendant nor of A's own
 * fork, which came before the subscription.  After the UNSUBSCRIBE result
 * nothing more comes.  An empty or unknown mask and a reserved field are
 * -EINVAL, a pid naming no process -ESRCH.  Every process (pid 0) and
 * another user's process take CAP_NET_ADMIN (-EPERM).  Skips (77) when
 * the backend has no process source (-EOPNOTSUPP) or no privilege for our
 * own child (-EPERM: the connector before Linux 6.6).
 */
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include "aem_test.h"

static bool net_admin(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &h, d) < 0)
		return false;
	return d[CAP_TO_INDEX(CAP_NET_ADMIN)].effective & CAP_TO_MASK(CAP_NET_ADMIN);
}

/* Privileged subscriptions succeed with CAP_NET_ADMIN (or, for one process, its uid), else -EPERM. */
static void check_privilege(struct aem_ring *r, unsigned pid, bool allowed, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);
	struct aem_cqe c;

	aem_prep_subscribe_proc(sqe, AEM_PROC_EXIT, (int)pid, 0, tag);
	t_submit(r);
	c = t_result(r, tag, 5000);
	if (!allowed) {
		t_eq(c.res, -EPERM);
		return;
	}
	t_assert(c.res >= 0, "subscribe proc pid %u: %s", pid, strerror(-c.res));
	sqe = t_sqe(r);
	aem_prep_unsubscribe(sqe, c.id);
	sqe->user_data = tag + 1;
	t_eq(t_do(r, tag + 1), 0);	/* events of the subscription on the way are dropped */
}

static int sub_proc(struct aem_ring *r, unsigned events, unsigned pid, uint64_t resv0,
		    uint64_t tag, uint64_t *id)
{
	struct aem_sqe *sqe = t_sqe(r);
	struct aem_cqe c;

	aem_prep_subscribe_proc(sqe, events, (int)pid, 0, tag);
	sqe->proc.resv[0] = resv0;
	t_submit(r);
	c = t_result(r, tag, 5000);
	if (id)
		*id = c.id;
	return c.res;
}

/* A: on each byte from @cmd, fork a child that exits 5 and reap it, then say so on @ack; exit 0 on EOF. */
static void run_a(int cmd, int ack)
{
	char b;
	pid_t g;

	while (read(cmd, &b, 1) == 1) {
		g = fork();
		if (g == 0)
			_exit(5);
		if (g < 0 || waitpid(g, NULL, 0) != g)
			_exit(2);
		if (write(ack, &g, sizeof(g)) != sizeof(g))
			_exit(2);
	}
	_exit(0);
}

int main(void)
{
	struct aem_params p = t_params(64, 4096, 1);
	bool g_fork = false, g_exit = false, a_exit = false;
	int cmd[2], ack[2], status_a, status_b, res;
	struct aem_proc_event ev;
	uint64_t id_a, id_self;
	struct aem_sqe *sqe;
	pid_t a, b, g, c2;
	struct aem_cqe c;
	struct aem_ring r;
	unsigned len, n;
	void *d;

	p.slot_size = 128;
	t_setup(&r, &p);
	t_assert(pipe(cmd) == 0 && pipe(ack) == 0, "pipe: %s", strerror(errno));
	a = fork();
	t_assert(a >= 0, "fork: %s", strerror(errno));
	if (a == 0) {
		close(cmd[1]);
		close(ack[0]);
		run_a(cmd[0], ack[1]);
	}
	close(cmd[0]);
	close(ack[1]);

	res = sub_proc(&r, AEM_PROC_ALL, (unsigned)a, 0, 0xa, &id_a);
	if (res == -EOPNOTSUPP || res == -EPERM || res == -EACCES) {
		close(cmd[1]);
		waitpid(a, NULL, 0);
		t_skip("no process source on the %s backend here (%s)", aem_backend_name(&r),
		       strerror(-res));
	}
	t_assert(res >= 0, "subscribe proc pid %d: %s", a, strerror(-res));

	/* Refusals. */
	t_eq(sub_proc(&r, 0, 0, 0, 0xe0, NULL), -EINVAL);
	t_eq(sub_proc(&r, 1U << 7, 0, 0, 0xe1, NULL), -EINVAL);
	t_eq(sub_proc(&r, AEM_PROC_EXIT, (unsigned)a, 1, 0xe2, NULL), -EINVAL);
	t_eq(sub_proc(&r, AEM_PROC_EXIT, 0x7ffffff0, 0, 0xe3, NULL), -ESRCH);

	/* B: ours, not A's. */
	b = fork();
	t_assert(b >= 0, "fork: %s", strerror(errno));
	if (b == 0)
		_exit(7);
	t_assert(waitpid(b, &status_b, 0) == b, "waitpid B");

	/* G: A's. */
	t_assert(write(cmd[1], "f", 1) == 1, "write");
	t_assert(read(ack[0], &g, sizeof(g)) == sizeof(g), "A did not fork");
	close(cmd[1]);
	t_assert(waitpid(a, &status_a, 0) == a, "waitpid A");
	t_eq(status_a, 0);

	for (n = 0; n < 1000 && !a_exit; n++) {
		t_assert(t_next(&r, &c, 5000), "missing events: fork G %d exit G %d exit A %d", g_fork,
			 g_exit, a_exit);
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "stray result %#llx",
			 (unsigned long long)c.user_data);
		t_eq(c.user_data, 0xa);
		t_eq(c.source, AEM_SRC_PROC);
		d = aem_cqe_payload(&r, &c, &len);
		t_assert(d && len == sizeof(ev), "proc payload %u bytes", len);
		memcpy(&ev, d, sizeof(ev));
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
		t_assert(ev.pid != b, "event %#x of B, which is not A's", ev.what);
		t_assert(ev.pid == a || ev.pid == g, "event %#x of pid %d, neither A (%d) nor G (%d)",
			 ev.what, ev.pid, a, g);
		if (ev.pid == a) {
			t_eq(ev.what, AEM_PROC_EXIT);	/* A forked before the subscription */
			t_assert(g_exit, "A's exit before G's");
			t_eq(ev.exit_code, status_a);
			a_exit = true;
		} else if (ev.what == AEM_PROC_FORK) {
			t_eq(ev.ppid, a);
			g_fork = true;
		} else {
			t_eq(ev.what, AEM_PROC_EXIT);
			t_assert(g_fork, "G's exit before its fork");
			t_eq(ev.exit_code, 5 << 8);
			t_eq(ev.ppid, a);
			g_exit = true;
		}
	}
	t_assert(a_exit, "no exit of A among 1000 events");

	/* Unsubscribed: our own children's exits no longer come. */
	t_assert(sub_proc(&r, AEM_PROC_EXIT | AEM_PROC_FORK, (unsigned)getpid(), 0, 0xb, &id_self) >= 0,
		 "subscribe self");
	sqe = t_sqe(&r);
	aem_prep_unsubscribe(sqe, id_self);
	sqe->user_data = 0xc;
	t_eq(t_do(&r, 0xc), 0);
	c2 = fork();
	t_assert(c2 >= 0, "fork: %s", strerror(errno));
	if (c2 == 0)
		_exit(0);
	t_assert(waitpid(c2, NULL, 0) == c2, "waitpid");
	t_expect_quiet(&r, 200, "process event after unsubscribe");

	/* Last: a subscription to every process may see a lot before it goes. */
	check_privilege(&r, 0, net_admin(), 0xf0);
	check_privilege(&r, 1, net_admin() || geteuid() == 0, 0xf2);	/* init: root's */

	close(ack[0]);
	aem_teardown(&r);
	return T_EXIT_PASS;
}
