/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_PROC follows the kernel's rule for reading another process
 * (ptrace read with real credentials, as /proc): an unprivileged user may
 * not subscribe to a setuid-root process it started, and a descendant that
 * execs a setuid-root program is reported only as AEM_PROC_DENIED (no pid,
 * no name) from then on.  Runs as root, makes a setuid-root copy of itself,
 * and drops to an unprivileged uid in a child.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include "aem_test.h"

#define NOBODY	65534

static char helper[64];

static bool is_proc_event(const struct aem_cqe *c, void *arg)
{
	return !(c->flags & AEM_CQE_F_RESULT) && c->user_data == *(uint64_t *)arg;
}

static void payload(struct vring *r, const struct aem_cqe *c, struct aem_proc_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (c->flags & AEM_CQE_F_SLOT)
		memcpy(ev, (const uint8_t *)r->region[AEM_REGION_PAYLOAD] + (size_t)c->slot * r->p.slot_size,
		       (size_t)c->res < sizeof(*ev) ? (size_t)c->res : sizeof(*ev));
	else
		memcpy(ev, c->data, sizeof(c->data));
}

static int32_t sub_proc(struct vring *r, pid_t pid, uint64_t tag)
{
	struct aem_sqe *sqe = vr_sqe(r);

	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_PROC;
	sqe->proc.events = AEM_PROC_ALL;
	sqe->proc.pid = (uint32_t)pid;
	sqe->user_data = tag;
	return vr_result(r, tag, NULL);
}

/* A setuid-root copy of this binary, in the first directory that takes it. */
static void make_helper(void)
{
	static const char *dirs[] = { "/tmp", "/run", "/root", "" };
	int in, out = -1, i;
	struct stat st;

	in = open("/proc/self/exe", O_RDONLY);
	t_assert(in >= 0, "open /proc/self/exe: %s", strerror(errno));
	t_assert(fstat(in, &st) == 0, "fstat");
	for (i = 0; i < 4 && out < 0; i++) {
		snprintf(helper, sizeof(helper), "%s/aem_suid_%d", dirs[i], (int)getpid());
		out = open(helper, O_WRONLY | O_CREAT | O_TRUNC, 0700);
	}
	t_assert(out >= 0, "no directory for the setuid helper: %s", strerror(errno));
	t_assert(sendfile(out, in, NULL, (size_t)st.st_size) == st.st_size, "copy: %s", strerror(errno));
	close(in);
	close(out);
	t_assert(chown(helper, 0, 0) == 0, "chown: %s", strerror(errno));
	t_assert(chmod(helper, 04755) == 0, "chmod: %s", strerror(errno));
}

/* Fork a child that waits for a byte on a pipe, then execs the helper. */
static pid_t spawn_exec_later(int *go)
{
	int p[2];
	pid_t pid;
	char b;

	t_assert(pipe(p) == 0, "pipe");
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0) {
		close(p[1]);
		if (read(p[0], &b, 1) != 1)
			_exit(98);
		execl(helper, helper, "suid-exit", (char *)NULL);
		_exit(99);
	}
	close(p[0]);
	*go = p[1];
	return pid;
}

static void unprivileged(void *arg)
{
	struct aem_proc_event ev;
	struct aem_cqe c;
	struct vring r;
	uint64_t tag = 2;
	int go, status, i, got = 0, to[2], from[2];
	pid_t pid;
	char b;

	t_assert(setgroups(0, NULL) == 0, "setgroups: %s", strerror(errno));
	t_assert(setresgid(NOBODY, NOBODY, NOBODY) == 0 && setresuid(NOBODY, NOBODY, NOBODY) == 0,
		 "drop to nobody: %s", strerror(errno));
	/* Changing uid made us undumpable; our own children are ours to watch. */
	t_assert(prctl(PR_SET_DUMPABLE, 1) == 0, "PR_SET_DUMPABLE");
	vr_setup_or_die(&r, NULL);

	/* A process already running setuid root: refused at subscribe. */
	t_assert(pipe(to) == 0 && pipe(from) == 0, "pipe");
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0) {
		/* Only the test's ends stay open, or stdin would never see EOF. */
		close(to[1]);
		close(from[0]);
		dup2(to[0], 0);
		dup2(from[1], 1);
		execl(helper, helper, "suid-wait", (char *)NULL);
		_exit(99);
	}
	close(to[0]);
	close(from[1]);
	t_assert(read(from[0], &b, 1) == 1 && b == 'r', "setuid helper did not start as root");
	t_eq(sub_proc(&r, pid, 1), -EPERM);
	close(to[1]);
	t_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "setuid helper: status 0x%x", status);
	close(from[0]);

	/* A watched child that execs a setuid program: its events are withheld, visibly. */
	pid = spawn_exec_later(&go);
	t_eq(sub_proc(&r, pid, tag), 0);
	t_assert(write(go, "x", 1) == 1, "write");
	close(go);
	t_assert(waitpid(pid, &status, 0) == pid, "waitpid");
	/* Exit status 0 says the helper did run with euid 0. */
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "setuid helper: status 0x%x", status);
	for (i = 0; i < 4 && !(got & AEM_PROC_EXIT); i++) {
		t_assert(vr_wait_cqe(&r, &c, 5000, is_proc_event, &tag), "events of the setuid child: got 0x%x", got);
		payload(&r, &c, &ev);
		t_assert(ev.what & AEM_PROC_DENIED, "event 0x%x of a setuid process reported (pid %d, comm '%s')",
			 ev.what, ev.pid, ev.comm);
		t_eq(ev.pid, 0);
		t_eq(ev.ppid, 0);
		t_eq(ev.comm[0], 0);
		t_eq(ev.filename[0], 0);
		got |= (int)(ev.what & ~AEM_PROC_DENIED);
	}
	t_eq(got, AEM_PROC_EXEC | AEM_PROC_EXIT);
	vr_close(&r);
	_exit(0);
}

int main(int argc, char **argv)
{
	struct vring r;
	struct stat st;
	int status;
	char b;

	/* The setuid helper: proves its euid, then exits or waits for stdin to close. */
	if (argc > 1 && !strcmp(argv[1], "suid-exit"))
		return geteuid() == 0 ? 0 : 3;
	if (argc > 1 && !strcmp(argv[1], "suid-wait")) {
		alarm(60);
		if (geteuid() != 0)
			return 3;
		if (write(1, "r", 1) != 1)
			return 4;
		while (read(0, &b, 1) > 0)
			;
		return 0;
	}

	if (geteuid() != 0)
		t_skip("needs root to switch users");
	alarm(120);	/* every wait below is bounded; this bounds a mistake too */
	vr_setup_or_die(&r, NULL);
	{
		struct aem_sqe *sqe = vr_sqe(&r);

		sqe->opcode = AEM_OP_SUBSCRIBE;
		sqe->source = AEM_SRC_PROC;
		sqe->proc.events = AEM_PROC_EXIT;
		sqe->proc.pid = (uint32_t)getpid();
		sqe->user_data = 1;
		if (vr_result(&r, 1, NULL) == -EOPNOTSUPP)
			t_skip("aem_proc not loaded");
	}
	vr_close(&r);

	make_helper();
	t_assert(stat(AEM_DEVICE_PATH, &st) == 0, "stat: %s", strerror(errno));
	t_assert(chmod(AEM_DEVICE_PATH, 0666) == 0, "chmod: %s", strerror(errno));
	status = t_child(unprivileged, NULL);
	chmod(AEM_DEVICE_PATH, st.st_mode & 07777);
	unlink(helper);
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unprivileged child: status 0x%x", status);
	return T_EXIT_PASS;
}
