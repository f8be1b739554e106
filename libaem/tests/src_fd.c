/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_FD: a socket that becomes readable, a listening socket with a
 * connection to accept, and a peer that hangs up each produce an event with
 * struct aem_fd_event naming the fd and the condition.  Skips (77) when the
 * backend has no fd source (-EOPNOTSUPP).
 */
#include <netinet/in.h>
#include <sys/socket.h>
#include "aem_test.h"

/* Wait for an event on @fd with @bit; other readiness events for it are fine. */
static void expect_fd_event(struct aem_ring *r, uint64_t tag, int fd, unsigned bit, const char *what)
{
	struct aem_fd_event ev;
	struct aem_cqe c;
	unsigned len, n;
	void *d;

	for (n = 0; n < 1000; n++) {
		t_assert(t_next(r, &c, 5000), "no %s event", what);
		if (c.flags & AEM_CQE_F_RESULT) {
			t_assert(c.res >= 0, "result %#llx: %s", (unsigned long long)c.user_data,
				 strerror(-c.res));
			continue;
		}
		t_eq(c.source, AEM_SRC_FD);
		d = aem_cqe_payload(r, &c, &len);
		t_assert(d && len == sizeof(ev), "fd payload %u bytes", len);
		memcpy(&ev, d, sizeof(ev));
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(r, c.slot);
		if (c.user_data != tag)
			continue;
		t_eq(ev.fd, fd);
		t_assert(ev.events && !(ev.events & ~AEM_FD_ALL), "events %#x", ev.events);
		if (ev.events & bit)
			return;
	}
	t_fail("no %s event among 1000", what);
}

static int sub_fd(struct aem_ring *r, int fd, unsigned events, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_subscribe_fd(sqe, fd, events, 0, tag);
	t_submit(r);
	return t_result(r, tag, 5000).res;
}

int main(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct aem_ring r;
	int sv[2], ls, cs, as, res;
	char buf[8];

	t_setup(&r, NULL);
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));

	res = sub_fd(&r, sv[0], AEM_FD_READABLE | AEM_FD_HANGUP, 0xf0);
	if (res == -EOPNOTSUPP)
		t_skip("no fd source on the %s backend (-EOPNOTSUPP)", aem_backend_name(&r));
	t_assert(res >= 0, "subscribe fd: %s", strerror(-res));

	t_assert(write(sv[1], "ping", 4) == 4, "write");
	expect_fd_event(&r, 0xf0, sv[0], AEM_FD_READABLE, "readable");
	t_assert(read(sv[0], buf, sizeof(buf)) == 4, "read");
	close(sv[1]);
	expect_fd_event(&r, 0xf0, sv[0], AEM_FD_HANGUP, "hang-up");

	/* Accept. */
	ls = socket(AF_INET, SOCK_STREAM, 0);
	t_assert(ls >= 0, "socket");
	t_assert(bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind: %s", strerror(errno));
	t_assert(listen(ls, 8) == 0, "listen");
	t_assert(getsockname(ls, (struct sockaddr *)&sa, &sl) == 0, "getsockname");
	res = sub_fd(&r, ls, AEM_FD_ACCEPT, 0xf1);
	t_assert(res >= 0, "subscribe listening fd: %s", strerror(-res));
	cs = socket(AF_INET, SOCK_STREAM, 0);
	t_assert(connect(cs, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s", strerror(errno));
	expect_fd_event(&r, 0xf1, ls, AEM_FD_ACCEPT, "accept");
	as = accept(ls, NULL, NULL);
	t_assert(as >= 0, "accept");

	/* Bad fds and masks are refused. */
	t_assert(sub_fd(&r, -1, AEM_FD_READABLE, 0xf2) < 0, "subscribe fd -1 accepted");
	t_assert(sub_fd(&r, 1 << 30, AEM_FD_READABLE, 0xf3) < 0, "subscribe fd 2^30 accepted");
	t_eq(sub_fd(&r, as, 1U << 31, 0xf4), -EINVAL);
	t_eq(sub_fd(&r, as, 0, 0xf5), -EINVAL);

	close(as);
	close(cs);
	close(ls);
	close(sv[0]);
	aem_teardown(&r);
	return T_EXIT_PASS;
}
