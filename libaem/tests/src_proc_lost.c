/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_PROC on the embedded backend while allocations fail: the source
 * keeps the pids of the watched process's descendants in a set that grows
 * on the heap.  With every allocation failing (the core's fault hook,
 * sticky), forking more children than the set holds must lose nothing
 * silently: each child's fork is delivered, and its exit is delivered or,
 * for a child the source could not keep track of, counted in the
 * subscription's dropped.  Embedded backend only (the module walks the
 * ancestors at each event and allocates nothing there); skips where the
 * process connector does not serve us.
 */
#include <sys/wait.h>
#include "aem_test.h"
#include "../../kmod/core/compat_user.h"

#define CHILDREN	40	/* past the set's first 16 entries and the spare pids beside them */

int main(void)
{
	struct aem_params p = t_params(64, 1024, 1);
	unsigned forks = 0, exits = 0, i, len, idle = 0;
	struct aem_proc_event ev;
	struct aem_sub_stats ss;
	pid_t kids[CHILDREN];
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	uint64_t sub;
	int pfd[2];

	if (getenv("AEM_FAULT_ALLOC"))
		t_skip("AEM_FAULT_ALLOC is set: this test arms the hook itself");
	p.slot_size = 128;	/* an aem_proc_event fits a slot */
	p.slot_count = 4 * CHILDREN;
	t_setup(&r, &p);
	if (t_kernel(&r))
		t_skip("the module's process source keeps no per-process state");
	sqe = t_sqe(&r);
	aem_prep_subscribe_proc(sqe, AEM_PROC_FORK | AEM_PROC_EXIT, getpid(), 0, 0x9);
	t_submit(&r);
	c = t_result(&r, 0x9, 5000);
	if (c.res == -EOPNOTSUPP || c.res == -EPERM || c.res == -EACCES)
		t_skip("no process source here (%s)", strerror(-c.res));
	t_assert(c.res >= 0, "subscribe proc: %s", strerror(-c.res));
	sub = c.id;

	t_assert(pipe(pfd) == 0, "pipe: %s", strerror(errno));
	/* From here every allocation of the library fails, until disarmed. */
	__aem_fault_nth(1, true);
	for (i = 0; i < CHILDREN; i++) {
		char b;

		kids[i] = fork();
		if (kids[i] < 0) {
			__aem_fault_nth(0, false);
			t_fail("fork: %s", strerror(errno));
		}
		if (kids[i] == 0) {
			close(pfd[1]);
			_exit(read(pfd[0], &b, 1) == 0 ? 0 : 1);	/* until the parent closes */
		}
	}
	close(pfd[0]);
	close(pfd[1]);
	for (i = 0; i < CHILDREN; i++)
		t_assert(waitpid(kids[i], NULL, 0) == kids[i], "waitpid: %s", strerror(errno));

	/* Every fork arrives; every exit arrives or is counted dropped. */
	for (;;) {
		ss = t_sub_stats(&r, sub);
		if (forks == CHILDREN && exits + ss.dropped >= CHILDREN && !ss.backlog)
			break;
		if (!t_next(&r, &c, 100)) {
			t_assert(++idle < 50, "after 5 s: %u forks, %u exits, %llu dropped of %u children",
				 forks, exits, (unsigned long long)ss.dropped, CHILDREN);
			continue;
		}
		idle = 0;
		t_eq(c.user_data, 0x9);
		memset(&ev, 0, sizeof(ev));
		{
			const void *d = aem_cqe_payload(&r, &c, &len);

			t_assert(d, "no payload");
			memcpy(&ev, d, len < sizeof(ev) ? len : sizeof(ev));
		}
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
		for (i = 0; i < CHILDREN && kids[i] != ev.pid; i++)
			;
		if (i == CHILDREN)
			continue;	/* not one of ours */
		if (ev.what == AEM_PROC_FORK)
			forks++;
		else if (ev.what == AEM_PROC_EXIT)
			exits++;
	}
	__aem_fault_nth(0, false);
	printf("src_proc_lost: %u children: %u forks and %u exits delivered, %llu counted dropped\n",
	       CHILDREN, forks, exits, (unsigned long long)ss.dropped);
	t_eq(exits + ss.dropped, CHILDREN);
	t_assert(ss.dropped > 0, "no child went untracked: the test no longer reaches the set's limit");
	aem_teardown(&r);
	return t_exit();
}
