/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_FD: a listening socket reports accept, a connected one readable
 * and hang-up; readiness that is already true when subscribing is reported
 * at once; non-sockets and bad fds are refused.
 */
#include <netinet/in.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include "aem_test.h"

static bool is_fd_event(const struct aem_cqe *c, void *arg)
{
	return !(c->flags & AEM_CQE_F_RESULT) && c->user_data == *(uint64_t *)arg;
}

static int32_t sub_fd(struct vring *r, int fd, uint32_t events, uint64_t tag)
{
	struct aem_sqe *sqe = vr_sqe(r);

	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_FD;
	sqe->fd.fd = fd;
	sqe->fd.events = events;
	sqe->user_data = tag;
	return vr_result(r, tag, NULL);
}

/* Wait for an event of @tag with @bit set; returns its fd event. */
static struct aem_fd_event expect(struct vring *r, uint64_t tag, uint32_t bit, const char *what)
{
	struct aem_fd_event ev;
	struct aem_cqe c;
	int i;

	for (i = 0; i < 16; i++) {
		t_assert(vr_wait_cqe(r, &c, 5000, is_fd_event, &tag), "no %s event", what);
		memcpy(&ev, c.data, sizeof(ev));
		if (ev.events & bit)
			return ev;
	}
	t_fail("no %s event among 16", what);
}

int main(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	struct aem_fd_event ev;
	struct vring r;
	int lfd, cfd, sfd, pfd[2];
	int32_t res;

	vr_setup_or_die(&r, NULL);
	res = sub_fd(&r, 0, AEM_FD_ALL, 1);
	if (res == -EOPNOTSUPP)
		t_skip("aem_fd not loaded");

	t_assert(pipe(pfd) == 0, "pipe");
	t_eq(sub_fd(&r, pfd[0], AEM_FD_READABLE, 2), -ENOTSOCK);
	t_eq(sub_fd(&r, 1000, AEM_FD_READABLE, 3), -EBADF);
	t_eq(sub_fd(&r, -1, AEM_FD_READABLE, 4), -EINVAL);
	t_eq(sub_fd(&r, pfd[0], 1U << 8, 5), -EINVAL);

	lfd = socket(AF_INET, SOCK_STREAM, 0);
	t_assert(lfd >= 0, "socket");
	t_assert(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
	t_assert(listen(lfd, 8) == 0, "listen");
	t_assert(getsockname(lfd, (struct sockaddr *)&a, &alen) == 0, "getsockname");
	t_eq(sub_fd(&r, lfd, AEM_FD_ACCEPT, 10), 0);

	cfd = socket(AF_INET, SOCK_STREAM, 0);
	t_assert(connect(cfd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
	ev = expect(&r, 10, AEM_FD_ACCEPT, "accept");
	t_eq(ev.fd, lfd);
	sfd = accept(lfd, NULL, NULL);
	t_assert(sfd >= 0, "accept");

	t_eq(sub_fd(&r, sfd, AEM_FD_READABLE | AEM_FD_HANGUP, 11), 0);
	t_assert(write(cfd, "ping", 4) == 4, "write");
	ev = expect(&r, 11, AEM_FD_READABLE, "readable");
	t_eq(ev.fd, sfd);

	/* Already readable when subscribing: reported at once. */
	t_eq(sub_fd(&r, sfd, AEM_FD_READABLE, 12), 0);
	expect(&r, 12, AEM_FD_READABLE, "already-readable");

	close(cfd);
	ev = expect(&r, 11, AEM_FD_HANGUP, "hang-up");
	t_eq(ev.fd, sfd);

	/* The ring closes with live socket subscriptions. */
	vr_close(&r);
	close(sfd);
	close(lfd);
	return T_EXIT_PASS;
}
