/* SPDX-License-Identifier: MIT */
/*
 * Every malformed ioctl gets a clear errno: unknown command, enter or stats
 * before setup, a second setup, unknown flags and reserved fields, bad user
 * pointers, a zero timeout, a signal while waiting.
 */
#include "aem_test.h"

static void on_alarm(int sig)
{
	(void)sig;
}

static int ioctl_errno(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) < 0 ? errno : 0;
}

int main(void)
{
	struct aem_params p;
	struct aem_enter e;
	struct aem_ring_stats st;
	struct aem_call_args ca;
	struct sigaction sa;
	struct vring r;
	uint64_t t0;
	int fd;

	fd = vr_open();
	t_assert(fd >= 0, "open: %s", strerror(-fd));

	t_eq(ioctl_errno(fd, _IO(AEM_IOC_MAGIC, 0x7f), NULL), ENOTTY);
	memset(&e, 0, sizeof(e));
	t_eq(ioctl_errno(fd, AEM_IOC_ENTER, &e), EBADFD);
	t_eq(ioctl_errno(fd, AEM_IOC_RING_STATS, &st), EBADFD);
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, (void *)8), EFAULT);

	memset(&p, 0, sizeof(p));
	p.flags = 1U << 30;
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	memset(&p, 0, sizeof(p));
	p.resv[0] = 1;	/* the last reserved word left */
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	memset(&p, 0, sizeof(p));
	p.sq_idle_ms = 10;	/* without AEM_SETUP_SQPOLL */
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	memset(&p, 0, sizeof(p));
	p.flags = AEM_SETUP_SQPOLL;
	p.sq_idle_ms = AEM_MAX_SQ_IDLE_MS + 1;
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	memset(&p, 0, sizeof(p));
	p.resv2[3] = 1;
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	memset(&p, 0, sizeof(p));
	p.nr_classes = AEM_MAX_CLASSES + 1;
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	memset(&p, 0, sizeof(p));
	p.sq_entries = AEM_MAX_SQ_ENTRIES + 1;
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	memset(&p, 0, sizeof(p));
	p.flags = AEM_SETUP_EMBEDDED;
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), EINVAL);
	/* Valid for the ABI, too big for the module's max_ring_mb (1 GiB). */
	memset(&p, 0, sizeof(p));
	p.slot_size = 1U << 16;
	p.slot_count = 1U << 15;
	t_eq(ioctl_errno(fd, AEM_IOC_SETUP, &p), E2BIG);
	close(fd);

	vr_setup_or_die(&r, NULL);
	memset(&p, 0, sizeof(p));
	t_eq(ioctl_errno(r.fd, AEM_IOC_SETUP, &p), EBUSY);
	memset(&e, 0, sizeof(e));
	e.flags = 1U << 7;
	t_eq(ioctl_errno(r.fd, AEM_IOC_ENTER, &e), EINVAL);
	memset(&e, 0, sizeof(e));
	e.resv[1] = 1;
	t_eq(ioctl_errno(r.fd, AEM_IOC_ENTER, &e), EINVAL);
	t_eq(ioctl_errno(r.fd, AEM_IOC_ENTER, (void *)16), EFAULT);
	t_eq(ioctl_errno(r.fd, AEM_IOC_RING_STATS, (void *)16), EFAULT);

	/* Nothing to wait for: a zero timeout returns at once, a short one expires. */
	memset(&e, 0, sizeof(e));
	e.flags = AEM_ENTER_GETEVENTS;
	e.min_complete = 1;
	t_eq(ioctl_errno(r.fd, AEM_IOC_ENTER, &e), ETIME);
	e.timeout_ns = 20 * T_MS;
	t0 = t_now_ns();
	t_eq(ioctl_errno(r.fd, AEM_IOC_ENTER, &e), ETIME);
	t_assert(t_now_ns() - t0 >= 20 * T_MS, "woke after %" PRIu64 " ns", t_now_ns() - t0);

	/* A signal ends an unbounded wait with EINTR. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	ualarm(50000, 0);
	e.timeout_ns = -1;
	t_eq(ioctl_errno(r.fd, AEM_IOC_ENTER, &e), EINTR);

	/* Calls: reserved fields, oversized buffers, bad pointers, nobody there. */
	memset(&ca, 0, sizeof(ca));
	ca.resv[0] = 1;
	t_eq(ioctl_errno(r.fd, AEM_IOC_CALL, &ca), EINVAL);
	memset(&ca, 0, sizeof(ca));
	ca.req_len = AEM_MAX_SLOT_SIZE + 1;
	t_eq(ioctl_errno(r.fd, AEM_IOC_CALL, &ca), EINVAL);
	memset(&ca, 0, sizeof(ca));
	ca.req = 24;
	ca.req_len = 16;
	t_eq(ioctl_errno(r.fd, AEM_IOC_CALL, &ca), EFAULT);
	memset(&ca, 0, sizeof(ca));
	ca.addr = AEM_ADDR(0xfffffff0u, 7);
	ca.timeout_ms = 100;
	t_eq(ioctl_errno(r.fd, AEM_IOC_CALL, &ca), ENOENT);

	vr_nop_ok(&r);
	vr_close(&r);
	return T_EXIT_PASS;
}
