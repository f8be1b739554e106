/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_PROC: with a subscription for this process and its children, a
 * child that forks, execs and exits produces FORK, EXEC and EXIT events
 * with the right pids, file name, comm and wait status.  Skips (77) when
 * the backend has no process source (-EOPNOTSUPP) or no privilege (-EPERM).
 *
 * The child execs cat on a pipe and lives until the exec event has been
 * seen: the embedded backend reads the file name and comm from /proc when
 * it handles the event, which a program that exits at once (true) can
 * outrun.
 *
 * Under injected allocation failures (failslab marks the child too) the
 * child's exec may fail: before its point of no return the child says so
 * through a close-on-exec pipe, after it the child dies of a signal; then
 * no exec event is due.  An event that is due and never comes passes only
 * when the subscription's dropped counter accounts for it.
 */
#include <sys/wait.h>
#include "aem_test.h"

int main(void)
{
	struct aem_params p = t_params(64, 4096, 1);
	struct aem_proc_event ev;
	bool fork_seen = false, exec_seen = false, exit_seen = false;
	const char *prog = NULL;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	unsigned len, n;
	pid_t child;
	int status = 0, pfd[2], efd[2], exec_err = 0;
	bool reaped = false, want_exec;
	struct aem_sub_stats ss;
	uint64_t sub;
	ssize_t got;
	void *d;

	p.slot_size = 128;	/* an aem_proc_event fits a slot */
	t_setup(&r, &p);

	sqe = t_sqe(&r);
	aem_prep_subscribe_proc(sqe, AEM_PROC_ALL, getpid(), 0, 0x9);
	t_submit(&r);
	c = t_result(&r, 0x9, 5000);
	if (c.res == -EOPNOTSUPP)
		t_skip("no process source on the %s backend (-EOPNOTSUPP)", aem_backend_name(&r));
	if (c.res == -EPERM || c.res == -EACCES)
		t_skip("process source needs privilege here (%s)", strerror(-c.res));
	t_assert(c.res >= 0, "subscribe proc: %s", strerror(-c.res));
	sub = c.id;

	if (access("/bin/cat", X_OK) == 0)
		prog = "/bin/cat";
	t_assert(pipe(pfd) == 0, "pipe: %s", strerror(errno));
	t_assert(pipe2(efd, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
	child = fork();
	t_assert(child >= 0, "fork: %s", strerror(errno));
	if (child == 0) {
		int err = 0;

		/* cat reads the pipe until the parent closes it, then exits 0. */
		close(efd[0]);
		if (prog && dup2(pfd[0], 0) == 0) {
			close(pfd[0]);
			close(pfd[1]);
			execl(prog, "cat", (char *)NULL);
			err = errno;
		}
		if (prog && write(efd[1], &err, sizeof(err)) < 0)
			_exit(4);
		_exit(3);
	}
	close(pfd[0]);
	close(efd[1]);
	/* End of file: the exec went past its point of no return (or there is none). */
	got = read(efd[0], &exec_err, sizeof(exec_err));
	close(efd[0]);
	if (got == (ssize_t)sizeof(exec_err)) {
		if (!exec_err)
			exec_err = EIO;	/* no exec tried: dup2 failed */
		t_note("the child's exec failed: %s; no exec event is due", strerror(exec_err));
	} else {
		exec_err = 0;
	}
	want_exec = prog && !exec_err;
	if (!want_exec) {
		close(pfd[1]);
		pfd[1] = -1;
	}

	for (n = 0; n < 1000 && !exit_seen; n++) {
		/* Let the child go once its exec is seen (or no exec is coming). */
		if (pfd[1] >= 0 && exec_seen) {
			close(pfd[1]);
			pfd[1] = -1;
		}
		if (pfd[1] < 0 && !reaped) {
			t_assert(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
			reaped = true;
			/* Killed inside exec past its point of no return: no exec event is due. */
			if (want_exec && !exec_seen && WIFSIGNALED(status)) {
				t_note("the child died of signal %d before its exec event", WTERMSIG(status));
				want_exec = false;
			}
		}
		if (!t_next(&r, &c, 5000)) {
			unsigned missing = !fork_seen + (want_exec && !exec_seen) + !exit_seen;

			if (pfd[1] >= 0) {
				/* The exec event is gone: let the child go, and look for the rest. */
				close(pfd[1]);
				pfd[1] = -1;
				continue;
			}
			ss = t_sub_stats(&r, sub);
			t_assert(ss.dropped >= missing,
				 "missing events: fork %d exec %d exit %d, %llu counted dropped", fork_seen,
				 exec_seen, exit_seen, (unsigned long long)ss.dropped);
			t_note("%u event(s) missing, counted dropped (%llu)", missing,
			       (unsigned long long)ss.dropped);
			break;
		}
		t_eq(c.user_data, 0x9);
		t_eq(c.source, AEM_SRC_PROC);
		d = aem_cqe_payload(&r, &c, &len);
		t_assert(d && len >= offsetof(struct aem_proc_event, comm), "proc payload %u bytes", len);
		memset(&ev, 0, sizeof(ev));
		memcpy(&ev, d, len < sizeof(ev) ? len : sizeof(ev));
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
		if (ev.pid != child)
			continue;	/* helper threads of the backend, say */
		switch (ev.what) {
		case AEM_PROC_FORK:
			t_eq(ev.ppid, getpid());
			fork_seen = true;
			break;
		case AEM_PROC_EXEC:
			/* A fork event that is gone must have been counted. */
			t_assert(fork_seen || t_sub_stats(&r, sub).dropped, "exec before fork");
			if (prog) {
				t_assert(strstr(ev.filename, "cat"), "exec of '%.64s'", ev.filename);
				t_assert(!strncmp(ev.comm, "cat", sizeof(ev.comm)), "exec comm '%.16s'",
					 ev.comm);
			}
			exec_seen = true;
			break;
		case AEM_PROC_EXIT:
			t_assert(fork_seen || t_sub_stats(&r, sub).dropped, "exit before fork");
			if (!reaped) {
				/*
				 * It ended before it was let go: its exec failed,
				 * or cat did (cat ends well only at end of file).
				 */
				t_assert(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
				reaped = true;
				t_assert(!exec_seen || !WIFEXITED(status) || WEXITSTATUS(status),
					 "exit before the child was let go");
			}
			t_eq(ev.exit_code, status);
			exit_seen = true;
			break;
		default:
			t_fail("event what=%#x", ev.what);
		}
	}
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (!reaped)
		waitpid(child, &status, 0);
	if (!fork_seen || !exit_seen || exec_seen != want_exec) {
		/* Accounted above, or: */
		ss = t_sub_stats(&r, sub);
		t_assert(ss.dropped >= (unsigned)(!fork_seen + !exit_seen + (want_exec && !exec_seen)),
			 "fork %d exec %d (due %d) exit %d, %llu counted dropped", fork_seen, exec_seen,
			 want_exec, exit_seen, (unsigned long long)ss.dropped);
	}
	aem_teardown(&r);
	return T_EXIT_PASS;
}
