/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_PROC: fork, exec and exit of our own descendants arrive with
 * pid, ppid, comm, the exec filename and the exit status; threads are not
 * processes; other users' processes need privilege; bad arguments are
 * refused.
 *
 * Under injected allocation failures (failslab marks the children too) a
 * child's exec may fail: before its point of no return the child says so
 * through a close-on-exec pipe, after it the child dies of a signal; then
 * no exec event is due.  An event that is due and never comes passes only
 * when the ring's dropped counter accounts for it.
 */
#include "aem_test.h"
#include <pthread.h>

static bool is_proc_event(const struct aem_cqe *c, void *arg)
{
	return !(c->flags & AEM_CQE_F_RESULT) && c->source == AEM_SRC_PROC;
}

static void payload(struct vring *r, const struct aem_cqe *c, struct aem_proc_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (c->flags & AEM_CQE_F_SLOT) {
		const uint8_t *pl = (const uint8_t *)r->region[AEM_REGION_PAYLOAD] +
				    (size_t)AEM_SLOT_INDEX(c->slot) * r->p.slot_size;

		t_assert(c->slot >= r->p.send_slots, "event in a send slot %u", c->slot);
		memcpy(ev, pl, (size_t)c->res < sizeof(*ev) ? (size_t)c->res : sizeof(*ev));
	} else {
		memcpy(ev, c->data, sizeof(c->data));
	}
}

static void *idle_thread(void *arg)
{
	return arg;
}

/* No event came within 5 s while @missing were due: fine only if the ring counted them dropped. */
static void missing_counted(struct vring *r, unsigned missing, const char *what)
{
	struct aem_ring_stats st;

	vr_stats(r, &st);
	t_assert(st.dropped >= missing, "missing events: %s, %llu counted dropped", what,
		 (unsigned long long)st.dropped);
	t_note("%u event(s) missing (%s), counted dropped (%llu)", missing, what,
	       (unsigned long long)st.dropped);
}

int main(void)
{
	struct aem_proc_event ev;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct vring r;
	pid_t child;
	int status, got = 0, want = AEM_PROC_FORK | AEM_PROC_EXEC | AEM_PROC_EXIT, may, i;
	int efd[2], exec_err = 0, err;
	char what[64];
	int32_t res;

	vr_setup_or_die(&r, NULL);

	/* Refusals first. */
	sqe = vr_sqe(&r);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_PROC;
	sqe->proc.events = 1U << 9;
	sqe->user_data = 1;
	res = vr_result(&r, 1, NULL);
	if (res == -EOPNOTSUPP)
		t_skip("aem_proc not loaded");
	t_eq(res, -EINVAL);
	sqe = vr_sqe(&r);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_PROC;
	sqe->proc.events = AEM_PROC_ALL;
	sqe->proc.pid = 0x3fffffff;
	sqe->user_data = 2;
	t_eq(vr_result(&r, 2, NULL), -ESRCH);

	/* Our own process tree. */
	sqe = vr_sqe(&r);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_PROC;
	sqe->proc.events = AEM_PROC_ALL;
	sqe->proc.pid = (uint32_t)getpid();
	sqe->user_data = 3;
	t_eq(vr_result(&r, 3, NULL), 0);

	/* A thread is not a process: no fork event for it. */
	{
		pthread_t th;

		err = pthread_create(&th, NULL, idle_thread, NULL);
		t_assert(err == 0, "pthread_create: %s", strerror(err));
		pthread_join(th, NULL);
	}

	t_assert(pipe2(efd, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	child = fork();
	t_assert(child >= 0, "fork: %s", strerror(errno));
	if (child == 0) {
		close(efd[0]);
		execl("/bin/busybox", "true", (char *)NULL);
		err = errno;
		if (write(efd[1], &err, sizeof(err)) < 0)
			_exit(98);
		_exit(99);
	}
	close(efd[1]);
	/* End of file: the exec went past its point of no return. */
	if (read(efd[0], &exec_err, sizeof(exec_err)) == (ssize_t)sizeof(exec_err)) {
		t_note("the child's exec failed: %s; no exec event is due", strerror(exec_err));
		want &= ~AEM_PROC_EXEC;
	}
	close(efd[0]);
	t_assert(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
	may = want;
	if (!exec_err && WIFSIGNALED(status)) {
		/* Killed inside exec past its point of no return: an exec event may or may not come. */
		t_note("the child died of signal %d", WTERMSIG(status));
		want &= ~AEM_PROC_EXEC;
	}

	for (i = 0; i < 3 && (got & want) != want; i++) {
		if (!vr_wait_cqe(&r, &c, 5000, is_proc_event, NULL)) {
			snprintf(what, sizeof(what), "got 0x%x of 0x%x", got, want);
			missing_counted(&r, (unsigned)__builtin_popcount(want & ~got), what);
			break;
		}
		t_eq(c.user_data, 3);
		payload(&r, &c, &ev);
		t_assert(ev.pid == child, "event 0x%x for pid %d, want %d", ev.what, ev.pid, child);
		t_eq(ev.ppid, getpid());
		switch (ev.what) {
		case AEM_PROC_FORK:
			t_assert(!(got & AEM_PROC_EXEC), "fork after exec");
			break;
		case AEM_PROC_EXEC:
			t_assert(!strcmp(ev.filename, "/bin/busybox"), "exec filename '%s'", ev.filename);
			break;
		case AEM_PROC_EXIT:
			t_eq(ev.exit_code, status);
			/* A child whose exec failed still has our name. */
			t_assert(!strcmp(ev.comm, "true") || !strcmp(ev.comm, "busybox") ||
				 (exec_err && !strcmp(ev.comm, "src_proc")), "exit comm '%s'", ev.comm);
			break;
		default:
			t_fail("unknown event 0x%x", ev.what);
		}
		t_assert(ev.what & (unsigned)may, "event 0x%x not due", ev.what);
		t_assert(!(got & ev.what), "event 0x%x twice", ev.what);
		got |= (int)ev.what;
	}

	/* A killed child reports its signal. */
	child = fork();
	t_assert(child >= 0, "fork: %s", strerror(errno));
	if (child == 0) {
		pause();
		_exit(0);
	}
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	for (;;) {
		if (!vr_wait_cqe(&r, &c, 5000, is_proc_event, NULL)) {
			missing_counted(&r, 1, "no exit event for a killed child");
			vr_close(&r);
			return T_EXIT_PASS;
		}
		payload(&r, &c, &ev);
		if (ev.what == AEM_PROC_EXIT)
			break;
	}
	t_eq(ev.pid, child);
	t_eq(ev.exit_code, status);
	t_assert(WIFSIGNALED(ev.exit_code) && WTERMSIG(ev.exit_code) == SIGKILL, "exit code 0x%x", ev.exit_code);
	vr_close(&r);
	return T_EXIT_PASS;
}
