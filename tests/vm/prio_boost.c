/* SPDX-License-Identifier: MIT */
/*
 * Priorities: an urgent (class 0) event ends a wait at once, whatever
 * min_complete says; with AEM_SETUP_BOOST (needs CAP_SYS_NICE) the waiter
 * runs boosted (a lower nice value) from that wake until it has consumed
 * the urgent events, then gets its own nice value back.  Without the flag
 * nothing changes, and without the capability the flag is refused.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "aem_test.h"

static int my_nice(void)
{
	errno = 0;
	return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

/* A one-shot class-0 timer @ms from now; -errno (EOPNOTSUPP: no timer module). */
static int32_t urgent_timer(struct vring *r, unsigned ms, uint64_t tag)
{
	struct aem_sqe *sqe = vr_sqe(r);

	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_TIMER;
	sqe->prio = 0;
	sqe->timer.first_ns = (uint64_t)ms * T_MS;
	sqe->user_data = tag;
	return vr_result(r, tag, NULL);
}

static void no_cap(void *arg)
{
	struct aem_params p = { .nr_classes = 2, .flags = AEM_SETUP_BOOST };
	struct vring r;

	(void)arg;
	t_assert(setgid(65534) == 0 && setuid(65534) == 0, "drop to nobody");
	t_eq(vr_setup(&r, &p), -EPERM);
	_exit(0);
}

int main(void)
{
	struct aem_params p = { .nr_classes = 2, .flags = AEM_SETUP_BOOST };
	struct aem_enter e;
	struct aem_cqe c;
	struct vring r;
	uint64_t t0;
	int base, status;
	int32_t res;

	if (geteuid() != 0)
		t_skip("needs CAP_SYS_NICE");
	t_assert(setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 5) == 0, "setpriority");
	base = my_nice();
	t_eq(base, 5);

	vr_setup_or_die(&r, &p);
	res = urgent_timer(&r, 100, 1);
	if (res == -EOPNOTSUPP)
		t_skip("aem_timer not loaded");
	t_eq(res, 0);

	/* min_complete is far away; the urgent event ends the wait anyway. */
	memset(&e, 0, sizeof(e));
	e.flags = AEM_ENTER_GETEVENTS;
	e.min_complete = 1000;
	e.timeout_ns = 10000 * (int64_t)T_MS;
	t0 = t_now_ns();
	t_assert(ioctl(r.fd, AEM_IOC_ENTER, &e) == 0, "enter: %s", strerror(errno));
	t_assert(t_now_ns() - t0 < 5000 * T_MS, "urgent event did not end the wait");

	/* Woken by an urgent event: boosted until it is consumed. */
	t_assert(my_nice() < base, "not boosted: nice %d", my_nice());
	t_assert(vr_reap(&r, 0, &c), "no class 0 event");
	t_eq(c.source, AEM_SRC_TIMER);
	t_eq(vr_enter(&r, 0, 0, 0), 0);
	t_eq(my_nice(), base);
	vr_close(&r);

	/* Without the flag: no boost. */
	p.flags = 0;
	vr_setup_or_die(&r, &p);
	t_eq(urgent_timer(&r, 50, 2), 0);
	t_assert(vr_enter(&r, 0, 1, 10000 * (int64_t)T_MS) >= 0, "enter");
	t_eq(my_nice(), base);
	vr_close(&r);

	/* Without CAP_SYS_NICE the flag is refused. */
	{
		struct stat st;

		t_assert(stat(AEM_DEVICE_PATH, &st) == 0, "stat");
		chmod(AEM_DEVICE_PATH, 0666);
		status = t_child(no_cap, NULL);
		chmod(AEM_DEVICE_PATH, st.st_mode & 07777);
		t_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "unprivileged BOOST: status 0x%x", status);
	}
	return T_EXIT_PASS;
}
