/* SPDX-License-Identifier: MIT */
/*
 * Memory cgroup accounting: a ring's pages are charged to the creator's
 * memory cgroup, so a ring bigger than the cgroup's memory.max fails setup
 * with ENOMEM (not an OOM kill), and a ring that fits shows in
 * memory.current.  Root runs it (CAP_IPC_LOCK: RLIMIT_MEMLOCK does
 * not apply), so only the cgroup limits.
 */
#include <sys/stat.h>
#include "aem_test.h"

#define CG	"/sys/fs/cgroup/aem-memcg-test"

static int put(const char *path, const char *val)
{
	FILE *f = fopen(path, "w");
	int ret;

	if (!f)
		return -errno;
	ret = fputs(val, f) < 0 ? -EIO : 0;
	if (fclose(f) != 0 && !ret)
		ret = -errno;
	return ret;
}

static long long get(const char *path)
{
	FILE *f = fopen(path, "r");
	long long v = -1;

	if (f) {
		if (fscanf(f, "%lld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void in_cgroup(void *arg)
{
	/* 64 MiB of payload against a 16 MiB limit. */
	struct aem_params big = { .slot_size = 4096, .slot_count = 16384 };
	/* 4 MiB: well past the per-cpu charge batches memory.current hides. */
	struct aem_params fits = { .slot_size = 4096, .slot_count = 1024 };
	long long before, during;
	struct vring r;
	char pid[32];

	(void)arg;
	snprintf(pid, sizeof(pid), "%d", getpid());
	t_assert(put(CG "/cgroup.procs", pid) == 0, "join the cgroup");
	t_eq(vr_setup(&r, &big), -ENOMEM);

	before = get(CG "/memory.current");
	vr_setup_or_die(&r, &fits);
	during = get(CG "/memory.current");
	t_assert(during - before >= 2 << 20, "4 MiB ring not charged: memory.current %lld -> %lld",
		 before, during);
	vr_nop_ok(&r);
	vr_close(&r);
	_exit(0);
}

int main(void)
{
	int status, ret;

	if (geteuid() != 0)
		t_skip("needs root to make a cgroup");
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0)
		t_skip("no cgroup2 at /sys/fs/cgroup");
	ret = put("/sys/fs/cgroup/cgroup.subtree_control", "+memory");
	if (ret)
		t_skip("cannot enable the memory controller: %s", strerror(-ret));
	rmdir(CG);
	t_assert(mkdir(CG, 0755) == 0, "mkdir %s: %s", CG, strerror(errno));
	t_assert(put(CG "/memory.max", "16777216") == 0, "memory.max");
	put(CG "/memory.swap.max", "0");	/* no swap in the VM; harmless where there is */

	status = t_child(in_cgroup, NULL);
	rmdir(CG);
	t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child in the cgroup: status 0x%x", status);
	return T_EXIT_PASS;
}
