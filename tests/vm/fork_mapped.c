/* SPDX-License-Identifier: MIT */
/*
 * Fork with rings mapped: the child inherits the fd and shared mappings of
 * the same ring.  It can use the ring (its NOP shows up for the parent to
 * see too), it can scribble on it, and it can exit or be killed with it
 * mapped; the parent's ring survives all of it and closes cleanly.
 */
#include "aem_test.h"

static struct vring r;

static void child_nop(void *arg)
{
	(void)arg;
	vr_nop_ok(&r);
}

static void child_scribble(void *arg)
{
	uint64_t seed = *(uint64_t *)arg;
	int i, k;

	for (i = 0; i < 50; i++) {
		for (k = 0; k < AEM_NR_REGIONS; k++) {
			uint8_t *b = r.region[k];

			if (k == AEM_REGION_CQES || !b)
				continue;
			b[t_rand(&seed) % r.size[k]] = (uint8_t)t_rand(&seed);
		}
		struct aem_enter e = { .to_submit = (uint32_t)t_rand(&seed) % 4096 };

		ioctl(r.fd, AEM_IOC_ENTER, &e);
	}
}

static void child_hang(void *arg)
{
	(void)arg;
	for (;;)
		vr_enter(&r, 0, 1, -1);
}

int main(void)
{
	uint64_t seed = t_seed();
	struct aem_cqe c;
	int status, i;
	pid_t pid;

	vr_setup_or_die(&r, NULL);
	vr_nop_ok(&r);

	/* The child uses the inherited ring. */
	status = t_child(child_nop, NULL);
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child NOP: status 0x%x", status);
	/* Its submissions went through the shared SQ ring: catch our tail up. */
	r.sq_tail = *vr_u32(&r, r.p.sq_off.tail);
	while (vr_reap_any(&r, &c))
		;
	vr_nop_ok(&r);

	/* The child scribbles on the shared ring and exits. */
	for (i = 0; i < 5; i++) {
		status = t_child(child_scribble, &seed);
		t_assert(WIFEXITED(status), "scribbling child: status 0x%x", status);
		seed++;
	}

	/* A child asleep on the ring is killed; the parent closes. */
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0) {
		child_hang(NULL);
		_exit(0);
	}
	usleep(50000);
	vr_close(&r);		/* the child still holds the fd and mappings */
	kill(pid, SIGKILL);
	t_assert(waitpid(pid, &status, 0) == pid, "waitpid");

	/* Fork right after setup, parent exits first (the child holds the last reference). */
	vr_setup_or_die(&r, NULL);
	pid = fork();
	t_assert(pid >= 0, "fork");
	if (pid == 0) {
		usleep(100000);
		vr_nop_ok(&r);
		vr_close(&r);
		_exit(0);
	}
	vr_close(&r);
	t_assert(waitpid(pid, &status, 0) == pid, "waitpid");
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		 "child using the ring after the parent closed: status 0x%x", status);
	return T_EXIT_PASS;
}
