/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_FD semantics both backends share: readiness already true at
 * subscribe is reported once, after the SUBSCRIBE result; events are
 * edge-triggered (unread data is not reported again until more arrives);
 * only the subscribed conditions are reported; after the UNSUBSCRIBE
 * result nothing more comes.  The application closing its (last) fd: the
 * embedded backend holds a duplicate, so nothing changes until it
 * unsubscribes; the module holds no file reference (a ring must not keep
 * itself alive through its own fd queued on the watched socket), so the
 * socket is released and the subscription ends with a final hang-up.  A pipe is
 * -ENOTSOCK, a closed fd -EBADF, a reserved field -EINVAL.  A subscription
 * left live is ended by teardown.  Skips (77) without an fd source.
 */
#include <sys/socket.h>
#include "aem_test.h"

/* The next CQE must be an event of @tag; returns its aem_fd_event. */
static struct aem_fd_event next_fd_event(struct aem_ring *r, uint64_t tag, const char *what)
{
	struct aem_fd_event ev;
	struct aem_cqe c;
	unsigned len;
	void *d;

	t_assert(t_next(r, &c, 5000), "no %s event", what);
	t_assert(!(c.flags & AEM_CQE_F_RESULT), "%s: result %#llx res %d instead of an event", what,
		 (unsigned long long)c.user_data, c.res);
	t_eq(c.user_data, tag);
	t_eq(c.source, AEM_SRC_FD);
	d = aem_cqe_payload(r, &c, &len);
	t_assert(d && len == sizeof(ev), "%s: payload %u bytes", what, len);
	memcpy(&ev, d, sizeof(ev));
	if (c.flags & AEM_CQE_F_SLOT)
		t_release(r, c.slot);
	return ev;
}

static struct aem_cqe sub_fd_args(struct aem_ring *r, const struct aem_fd_args *a, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);

	aem_prep_subscribe_fd(sqe, a->fd, a->events, 0, tag);
	memcpy(sqe->fd.resv, a->resv, sizeof(a->resv));
	t_submit(r);
	return t_result(r, tag, 5000);
}

static int sub_fd(struct aem_ring *r, int fd, unsigned events, uint64_t tag)
{
	struct aem_fd_args a = { .fd = fd, .events = events };

	return sub_fd_args(r, &a, tag).res;
}

int main(void)
{
	struct aem_fd_args bad = { .events = AEM_FD_READABLE };
	struct aem_fd_event ev;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	struct aem_ring r;
	int sv[2], hv[2], pv[2], fd0, closed;
	uint64_t id;
	char buf[16];

	t_setup(&r, NULL);
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s", strerror(errno));
	fd0 = sv[0];

	/* Data waiting before the subscription: reported once, after the result. */
	t_assert(write(sv[1], "a", 1) == 1, "write");
	sqe = t_sqe(&r);
	aem_prep_subscribe_fd(sqe, fd0, AEM_FD_READABLE | AEM_FD_HANGUP, 0, 0x10);
	t_submit(&r);
	t_assert(t_next(&r, &c, 5000), "no subscribe result");
	if ((c.flags & AEM_CQE_F_RESULT) && c.res == -EOPNOTSUPP)
		t_skip("no fd source on the %s backend (-EOPNOTSUPP)", aem_backend_name(&r));
	t_assert(c.flags & AEM_CQE_F_RESULT, "an event (user_data %#llx) came before the subscribe result",
		 (unsigned long long)c.user_data);
	t_assert(c.res >= 0, "subscribe fd: %s", strerror(-c.res));
	id = c.id;
	ev = next_fd_event(&r, 0x10, "already readable");
	t_eq(ev.fd, fd0);
	t_eq(ev.events, AEM_FD_READABLE);

	/* Edge-triggered: the unread byte is not news. */
	t_expect_quiet(&r, 100, "unread data reported again");
	t_assert(write(sv[1], "b", 1) == 1, "write");
	ev = next_fd_event(&r, 0x10, "more data");
	t_eq(ev.events, AEM_FD_READABLE);
	t_expect_quiet(&r, 100, "one write, more than one event");

	if (r.backend == AEM_BACKEND_KERNEL) {
		/* Our only fd closed: the socket is released, the subscription ends. */
		close(fd0);
		t_assert(t_next(&r, &c, 5000), "no final event after the watched socket was closed");
		t_assert(!(c.flags & AEM_CQE_F_RESULT), "a result instead of the final event");
		t_eq(c.user_data, 0x10);
		t_assert(c.flags & AEM_CQE_F_FINAL, "event after close not final (flags %#x)", c.flags);
		memcpy(&ev, c.data, sizeof(ev));
		t_eq(ev.fd, fd0);
		t_eq(ev.events, AEM_FD_HANGUP);
		/* The peer sees the socket gone; the ended id is unknown now. */
		t_assert(send(sv[1], "c", 1, MSG_NOSIGNAL) < 0, "the closed socket still took data");
		sqe = t_sqe(&r);
		aem_prep_unsubscribe(sqe, id);
		sqe->user_data = 0x11;
		t_assert(t_do(&r, 0x11) < 0, "unsubscribe of an ended subscription succeeded");
		close(sv[1]);
		t_expect_quiet(&r, 100, "event after the final one");
	} else {
		/* Our fd closed, the subscription's socket stays open and keeps reporting under the old number. */
		close(fd0);
		t_assert(send(sv[1], "c", 1, MSG_NOSIGNAL) == 1, "write after the subscriber closed its fd: %s",
			 strerror(errno));
		ev = next_fd_event(&r, 0x10, "data after close");
		t_eq(ev.fd, fd0);
		t_assert(ev.events & AEM_FD_READABLE, "events %#x", ev.events);

		/* Unsubscribed: the socket is let go, nothing more comes. */
		sqe = t_sqe(&r);
		aem_prep_unsubscribe(sqe, id);
		sqe->user_data = 0x11;
		t_eq(t_do(&r, 0x11), 0);
		send(sv[1], "d", 1, MSG_NOSIGNAL | MSG_DONTWAIT);	/* may fail: the socket may be gone */
		close(sv[1]);
		t_expect_quiet(&r, 100, "event after unsubscribe");
	}

	/* Only what was asked for: hang-up alone ignores data. */
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, hv) == 0, "socketpair: %s", strerror(errno));
	t_assert(sub_fd(&r, hv[0], AEM_FD_HANGUP, 0x20) >= 0, "subscribe hang-up");
	t_assert(write(hv[1], "e", 1) == 1, "write");
	t_expect_quiet(&r, 100, "data reported to a hang-up subscription");
	close(hv[1]);
	ev = next_fd_event(&r, 0x20, "hang-up");
	t_eq(ev.fd, hv[0]);
	t_eq(ev.events, AEM_FD_HANGUP);
	t_assert(read(hv[0], buf, sizeof(buf)) == 1, "read");

	/* Refusals. */
	t_assert(pipe(pv) == 0, "pipe");
	t_eq(sub_fd(&r, pv[0], AEM_FD_READABLE, 0x30), -ENOTSOCK);
	closed = dup(pv[0]);
	t_assert(closed >= 0, "dup");
	close(closed);
	t_eq(sub_fd(&r, closed, AEM_FD_READABLE, 0x31), -EBADF);
	t_eq(sub_fd(&r, -1, AEM_FD_READABLE, 0x32), -EINVAL);
	bad.fd = hv[0];
	bad.resv[1] = 1;
	t_eq(sub_fd_args(&r, &bad, 0x33).res, -EINVAL);
	close(pv[0]);
	close(pv[1]);

	/* The hang-up subscription is still live: teardown ends it. */
	aem_teardown(&r);
	close(hv[0]);
	return T_EXIT_PASS;
}
