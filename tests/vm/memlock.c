/* SPDX-License-Identifier: MIT */
/*
 * Locked-memory limits: an unprivileged user's rings are charged to
 * RLIMIT_MEMLOCK, per user: their regions and their kernel-side state
 * (aem_ring_stats.charged); a setup past the limit fails with ENOMEM and
 * allocates nothing; closing a ring gives its charge back.  Runs as root
 * and drops to an unprivileged uid (without CAP_IPC_LOCK) in a child.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include "aem_test.h"

#define NOBODY	65534

static void unprivileged(void *arg)
{
	struct aem_params small = { .sq_entries = 32, .cq_entries = 32, .nr_classes = 1,
				    .slot_count = 16, .send_slots = 4 };
	uint64_t small_bytes = *(uint64_t *)arg;
	struct rlimit rl = { .rlim_cur = 3 * small_bytes / 2, .rlim_max = 3 * small_bytes / 2 };
	struct aem_params big = { .cq_entries = 1U << 16, .slot_count = 1U << 14 };
	struct vring a, b;
	int ret;

	t_assert(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s", strerror(errno));
	t_assert(setgid(NOBODY) == 0 && setuid(NOBODY) == 0, "drop to nobody: %s", strerror(errno));

	ret = vr_setup(&a, &big);
	t_eq(ret, -ENOMEM);
	/* One small ring fits, a second does not (the charge is per user). */
	ret = vr_setup(&a, &small);
	t_assert(ret == 0, "small ring within the limit: %s", strerror(-ret));
	vr_nop_ok(&a);
	ret = vr_setup(&b, &small);
	t_eq(ret, -ENOMEM);
	/* Closing gives the charge back. */
	vr_close(&a);
	ret = vr_setup(&b, &small);
	t_assert(ret == 0, "ring after the charge came back: %s", strerror(-ret));
	vr_close(&b);
	_exit(0);
}

int main(void)
{
	struct aem_params small = { .sq_entries = 32, .cq_entries = 32, .nr_classes = 1,
				    .slot_count = 16, .send_slots = 4 };
	uint64_t small_bytes;
	struct stat st;
	int status;

	if (geteuid() != 0)
		t_skip("needs root to switch users");
	small_bytes = vr_charge(&small, 0);
	printf("a small ring is charged %" PRIu64 " bytes\n", small_bytes);

	/* Let the unprivileged child open the device for the length of the test. */
	t_assert(stat(AEM_DEVICE_PATH, &st) == 0, "stat: %s", strerror(errno));
	t_assert(chmod(AEM_DEVICE_PATH, 0666) == 0, "chmod: %s", strerror(errno));
	status = t_child(unprivileged, &small_bytes);
	chmod(AEM_DEVICE_PATH, st.st_mode & 07777);
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unprivileged child: status 0x%x", status);

	/* Root with CAP_IPC_LOCK is not limited by RLIMIT_MEMLOCK. */
	{
		struct rlimit rl = { .rlim_cur = 0, .rlim_max = RLIM_INFINITY };
		struct vring r;

		t_assert(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit");
		vr_setup_or_die(&r, &small);
		vr_close(&r);
	}
	return T_EXIT_PASS;
}
