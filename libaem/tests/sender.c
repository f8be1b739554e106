/* SPDX-License-Identifier: MIT */
/*
 * The sender of a post or call (version 4, AEM_CQE_F_SENDER) across
 * processes and users on the kernel backend:
 *  - a child that set up its ring and then dropped to another uid
 *    (setresuid, when run as root) posts and calls: the receiver sees the
 *    child's pid, its new effective uid and its ring's id; a blocking call
 *    through the child's ring fd names that ring too;
 *  - a receiver in a new pid namespace sees a sender outside it as pid 0,
 *    and the sender outside sees the receiver's pid as its own namespace
 *    numbers it.
 * The embedded backend's rings all live in one process: api_versions
 * checks the sender there; this test skips (77).
 */
#include <sched.h>
#include "aem_test.h"

#define NOBODY	65534

static void put_u32(int fd, uint32_t v)
{
	if (write(fd, &v, sizeof(v)) != sizeof(v))
		_exit(3);
}

static uint32_t get_u32(int fd)
{
	uint32_t v = 0;

	t_assert(read(fd, &v, sizeof(v)) == sizeof(v), "pipe read: %s", strerror(errno));
	return v;
}

/* The next msg event on @r, its sender in @who; a call is answered. */
static struct aem_cqe next_msg(struct aem_ring *r, struct aem_sender *who)
{
	struct aem_cqe c;

	do
		t_assert(t_next_who(r, &c, 5000, who), "no message");
	while (c.flags & AEM_CQE_F_RESULT);
	t_eq(c.source, AEM_SRC_MSG);
	t_assert(c.flags & AEM_CQE_F_SENDER, "a message without its sender: flags %#x", c.flags);
	if (c.flags & AEM_CQE_F_CALL) {
		struct aem_sqe *sqe = t_sqe(r);

		aem_prep_writeback(sqe, c.id, "ok", 2);
		aem_sqe_set_data(sqe, 0x5e);
		t_eq(t_do(r, 0x5e), 0);
	}
	if (c.flags & AEM_CQE_F_SLOT)
		t_release(r, c.slot);
	return c;
}

/* Child: set up a ring, drop to @uid, tell the ring id, post, call. */
static void child_send(int wfd, uint64_t to, uid_t uid)
{
	struct aem_ring r;
	struct aem_sqe *sqe;
	char resp[8];
	int ret;

	t_setup(&r, NULL);
	if (uid != geteuid() && setresuid(uid, uid, uid))
		_exit(4);
	put_u32(wfd, r.ring_id);
	sqe = t_sqe(&r);
	aem_prep_post(sqe, to, "hello", 5, 0);
	aem_sqe_set_data(sqe, 1);
	if (t_do(&r, 1) != 0)
		_exit(5);
	ret = aem_call(&r, to, "call", 4, resp, sizeof(resp), 0, 5000);
	if (ret < 0)
		_exit(6);
	aem_teardown(&r);
	_exit(0);
}

/* In a new pid namespace (pid 1): a ring whose sender from outside is not visible. */
static void ns_receiver(int wfd)
{
	struct aem_sender who;
	struct aem_ring r;

	t_setup(&r, NULL);
	t_sub_msg(&r, 1, 0, 0x1);
	put_u32(wfd, r.ring_id);
	next_msg(&r, &who);
	/* The poster is outside this namespace: pid 0; its uid maps (same user namespace). */
	if (who.pid != 0 || who.uid != geteuid() || !who.ring_id)
		_exit(7);
	aem_teardown(&r);
	_exit(0);
}

int main(void)
{
	struct aem_sender who;
	struct aem_ring r;
	uint32_t child_ring;
	uid_t uid;
	int pfd[2], status;
	pid_t pid;

	t_setup(&r, NULL);
	if (!t_kernel(&r))
		t_skip("one process on the embedded backend: api_versions checks the sender there");
	t_sub_msg(&r, 1, 0, 0x1);
	uid = geteuid() == 0 ? NOBODY : geteuid();

	/* Another process, another user. */
	t_assert(pipe(pfd) == 0, "pipe");
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0)
		child_send(pfd[1], AEM_ADDR(r.ring_id, 1), uid);
	child_ring = get_u32(pfd[0]);
	next_msg(&r, &who);
	t_eq(who.pid, pid);
	t_eq(who.uid, uid);
	t_eq(who.ring_id, child_ring);
	next_msg(&r, &who);	/* the blocking call, through the child's ring fd */
	t_eq(who.pid, pid);
	t_eq(who.uid, uid);
	t_eq(who.ring_id, child_ring);
	t_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status),
		 "sender child: status %#x", status);
	close(pfd[0]);
	close(pfd[1]);
	printf("sender across processes: pid %d uid %u ring %u\n", (int)pid, (unsigned)uid, child_ring);

	/* A receiver in its own pid namespace. */
	if (unshare(CLONE_NEWPID)) {
		t_note("unshare(CLONE_NEWPID): %s; pid namespace case skipped", strerror(errno));
	} else {
		struct aem_sqe *sqe;
		uint32_t ns_ring;

		t_assert(pipe(pfd) == 0, "pipe");
		pid = fork();	/* pid 1 of the new namespace */
		t_assert(pid >= 0, "fork");
		if (pid == 0)
			ns_receiver(pfd[1]);
		ns_ring = get_u32(pfd[0]);
		sqe = t_sqe(&r);
		aem_prep_post(sqe, AEM_ADDR(ns_ring, 1), "in", 2, 0);
		aem_sqe_set_data(sqe, 2);
		t_eq(t_do(&r, 2), 0);
		t_assert(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status),
			 "receiver in a pid namespace: status %#x", status);
		close(pfd[0]);
		close(pfd[1]);
	}
	aem_teardown(&r);
	return t_exit();
}
