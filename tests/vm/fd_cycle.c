/* SPDX-License-Identifier: MIT */
/*
 * A ring that watches a socket and whose own fd sits in that socket's
 * receive queue (SCM_RIGHTS) must not keep itself alive: once the process
 * has closed everything and exited, the module's reference count is back
 * where it was and the ring's locked-memory charge (regions and
 * kernel-side state) has come back (a new ring fits under a one-ring
 * RLIMIT_MEMLOCK).  Runs as root and drops to
 * an unprivileged uid (charged to RLIMIT_MEMLOCK) in the children.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include "aem_test.h"

#define NOBODY	65534

static const struct aem_params small = { .sq_entries = 32, .cq_entries = 32, .nr_classes = 1,
					 .slot_count = 16, .send_slots = 4 };

static long refcnt(const char *mod)
{
	char path[64], buf[32] = "";
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/%s/refcnt", mod);
	f = fopen(path, "r");
	t_assert(f, "%s: %s", path, strerror(errno));
	if (fgets(buf, sizeof(buf), f))
		n = strtol(buf, NULL, 10);
	fclose(f);
	return n;
}

/* Room for one small ring, not two; then nobody, without CAP_IPC_LOCK. */
static void limit_and_drop(uint64_t bytes)
{
	struct rlimit rl = { .rlim_cur = 3 * bytes / 2, .rlim_max = 3 * bytes / 2 };

	t_assert(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s", strerror(errno));
	t_assert(setgid(NOBODY) == 0 && setuid(NOBODY) == 0, "drop to nobody: %s", strerror(errno));
}

static void send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = "r", .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	t_assert(sendmsg(sock, &mh, 0) == 1, "sendmsg SCM_RIGHTS: %s", strerror(errno));
}

/* Ring R watches s0; R's fd is sent into s0's receive queue; all closed. */
static void make_cycle(void *arg)
{
	struct aem_params p = small;
	struct aem_sqe *sqe;
	struct vring r;
	int sv[2];

	limit_and_drop(*(uint64_t *)arg);
	vr_setup_or_die(&r, &p);
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	sqe = vr_sqe(&r);
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_FD;
	sqe->fd.fd = sv[0];
	sqe->fd.events = AEM_FD_READABLE | AEM_FD_HANGUP;
	sqe->user_data = 1;
	t_eq(vr_result(&r, 1, NULL), 0);
	send_fd(sv[1], r.fd);
	close(sv[0]);
	close(sv[1]);
	vr_close(&r);
	_exit(0);
}

static void new_ring(void *arg)
{
	struct aem_params p = small;
	struct vring r;
	int ret;

	limit_and_drop(*(uint64_t *)arg);
	ret = vr_setup(&r, &p);
	t_assert(ret == 0, "a ring under a one-ring limit after the cycle: %s", strerror(-ret));
	vr_nop_ok(&r);
	vr_close(&r);
	_exit(0);
}

int main(void)
{
	long aem0, fd0, aem1 = -1, fd1 = -1;
	uint64_t bytes;
	struct stat st;
	int status, i;

	if (geteuid() != 0)
		t_skip("needs root to switch users");
	if (access("/sys/module/aem_fd", F_OK) != 0)
		t_skip("aem_fd not loaded");
	/* The cycle's ring has one subscription: its table's first chunk is charged too. */
	bytes = vr_charge(&small, 1);
	t_assert(stat(AEM_DEVICE_PATH, &st) == 0, "stat: %s", strerror(errno));
	t_assert(chmod(AEM_DEVICE_PATH, 0666) == 0, "chmod: %s", strerror(errno));
	aem0 = refcnt("aem");
	fd0 = refcnt("aem_fd");

	status = t_child(make_cycle, &bytes);
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "cycle child: status 0x%x", status);
	/* The last fput of a closed file may be deferred: wait a bounded while. */
	for (i = 0; i < 100; i++) {
		aem1 = refcnt("aem");
		fd1 = refcnt("aem_fd");
		if (aem1 == aem0 && fd1 == fd0)
			break;
		usleep(50 * 1000);
	}
	status = t_child(new_ring, &bytes);
	chmod(AEM_DEVICE_PATH, st.st_mode & 07777);
	t_assert(aem1 == aem0, "aem refcnt %ld, was %ld: the ring leaked", aem1, aem0);
	t_assert(fd1 == fd0, "aem_fd refcnt %ld, was %ld: the subscription leaked", fd1, fd0);
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "new ring child: status 0x%x", status);
	return T_EXIT_PASS;
}
