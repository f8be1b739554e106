/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK with readers that never wait in the kernel side, while
 * receiving is paused for lack of slots; it must resume (PROTOCOL.md
 * section 3, "Wake-ups"), every byte once and in order:
 *  - "enter": the reader looks at the rings, releases slots and enters
 *    with nothing to submit, as a poller busy with other work does;
 *  - "epoll": the reader sleeps in an edge-triggered epoll on the ring fd
 *    (as Go's netpoller does) after aem_ring_fd_arm(), and enters only to
 *    submit its shutdown.
 */
#include <sys/epoll.h>

#include "sock_test.h"

#define TOTAL	(2u << 20)

static unsigned short port;

static uint8_t byte_at(uint64_t i)
{
	return (uint8_t)(i * 13 + (i >> 10));
}

static void *peer(void *arg)
{
	static uint8_t buf[65536];
	int fd = ts_connect_tcp(false, port);
	uint64_t off = 0, i;
	ssize_t n;

	(void)arg;
	while (off < TOTAL) {
		size_t m = TOTAL - off < sizeof(buf) ? TOTAL - off : sizeof(buf);

		for (i = 0; i < m; i++)
			buf[i] = byte_at(off + i);
		n = send(fd, buf, m, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (uint64_t)n;
	}
	shutdown(fd, SHUT_WR);
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	close(fd);
	return NULL;
}

static void run(bool epoll_mode)
{
	struct aem_params p = t_params(64, 64, 1);
	uint64_t got = 0, conn = 0, end, sleeps = 0;
	struct epoll_event ee = { .events = EPOLLIN | EPOLLET };
	bool closed = false, queued;
	struct aem_ring_stats st;
	const struct aem_cqe *c;
	struct aem_ring r;
	pthread_t th;
	unsigned len, head, i;
	int64_t lid;
	int lfd, ep = -1;

	p.slot_size = 4096;
	p.slot_count = 8;
	t_setup(&r, &p);
	ts_need_sock(&r);
	lfd = ts_listen_tcp(false, &port);
	lid = ts_subscribe(&r, lfd, 0x52);
	t_assert(lid > 0, "subscribe: %s", strerror((int)-lid));
	if (epoll_mode) {
		ep = epoll_create1(EPOLL_CLOEXEC);
		t_assert(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, aem_ring_fd(&r), &ee) == 0,
			 "epoll: %s", strerror(errno));
	}
	t_assert(pthread_create(&th, NULL, peer, NULL) == 0, "thread");
	/* Not reading for a while: every slot fills and receiving pauses. */
	usleep(200000);

	end = t_now_ns() + 60000 * T_MS;
	while (!closed && t_now_ns() < end) {
		bool seen = false;

		queued = false;

		while (aem_result_peek(&r, &head)) {
			t_eq(aem_result_at(&r, head)->res, 0);
			aem_result_advance(&r, 1);
		}
		while (aem_peek_batch(&r, 0, &c, 1)) {
			const struct aem_sock_event *ev = aem_cqe_sock_event(c);
			const uint8_t *d;

			seen = true;
			if (ev && ev->type == AEM_SOCK_EV_CONNECT) {
				t_eq(conn, 0);
				conn = c->id;
			} else if (ev && ev->type == AEM_SOCK_EV_EOF) {
				t_eq(c->id, conn);
				aem_prep_sock_shutdown(ts_sqe(&r), conn, AEM_SOCK_CLOSE);
				queued = true;
			} else if (ev) {
				t_eq(ev->type, AEM_SOCK_EV_CLOSED);
				t_eq(ev->res, 0);
				closed = true;
			} else {
				t_eq(c->id, conn);
				d = aem_cqe_payload(&r, c, &len);
				t_assert(d && len == (unsigned)c->res, "payload");
				for (i = 0; i < len; i++)
					if (d[i] != byte_at(got + i))
						t_fail("byte %llu wrong", (unsigned long long)(got + i));
				got += len;
				if (c->flags & AEM_CQE_F_SLOT)
					t_release(&r, c->slot);
			}
			aem_cq_advance(&r, 0, 1);
		}
		/* No aem_wait, ever. */
		aem_release_commit(&r);
		if (!epoll_mode || queued)
			t_ok(aem_submit(&r));
		if (seen)
			continue;
		sleeps++;
		if (!epoll_mode) {
			usleep(1000);
			continue;
		}
		/* Armed before the last look, then asleep until a wake-up (or 100 ms). */
		t_ok(aem_ring_fd_arm(&r));
		if (aem_peek_batch(&r, 0, &c, 1) || aem_result_peek(&r, &head))
			continue;
		t_assert(epoll_wait(ep, &ee, 1, 100) >= 0, "epoll_wait: %s", strerror(errno));
	}
	t_assert(closed, "%s: stalled at %llu of %u bytes after %llu sleeps", epoll_mode ? "epoll" : "enter",
		 (unsigned long long)got, TOTAL, (unsigned long long)sleeps);
	pthread_join(th, NULL);
	t_eq(got, TOTAL);
	st = t_stats(&r);
	t_eq(st.dropped, 0);
	printf("%s: %u bytes through %u slots without a wait (%llu sleeps)\n", epoll_mode ? "epoll" : "enter",
	       TOTAL, p.slot_count, (unsigned long long)sleeps);
	if (ep >= 0)
		close(ep);
	close(lfd);
	aem_teardown(&r);
}

int main(void)
{
	run(false);
	run(true);
	return t_exit();
}
