/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK with a reader that never waits: it looks at the rings,
 * releases slots and enters only to submit (nothing queued), as a poller
 * busy with other work does.  Receiving paused for lack of slots must
 * resume at such an enter (PROTOCOL.md section 10: the consumer's next
 * enter, wait or poll arming), not only when the reader sleeps in the
 * kernel side: every byte arrives once and in order, without a wait.
 */
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

int main(void)
{
	struct aem_params p = t_params(64, 64, 1);
	uint64_t got = 0, conn = 0, end, enters = 0;
	bool closed = false;
	struct aem_ring_stats st;
	const struct aem_cqe *c;
	struct aem_ring r;
	pthread_t th;
	unsigned len, head, i;
	int64_t lid;
	int lfd;

	p.slot_size = 4096;
	p.slot_count = 8;
	t_setup(&r, &p);
	ts_need_sock(&r);
	lfd = ts_listen_tcp(false, &port);
	lid = ts_subscribe(&r, lfd, 0x52);
	t_assert(lid > 0, "subscribe: %s", strerror((int)-lid));
	t_assert(pthread_create(&th, NULL, peer, NULL) == 0, "thread");
	/* Not reading for a while: every slot fills and receiving pauses. */
	usleep(200000);

	end = t_now_ns() + 60000 * T_MS;
	while (!closed && t_now_ns() < end) {
		bool seen = false;

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
		/* Releases and any shutdown go in; no aem_wait, ever. */
		aem_release_commit(&r);
		t_ok(aem_submit(&r));
		enters++;
		if (!seen)
			usleep(1000);
	}
	t_assert(closed, "stalled: %llu of %u bytes after %llu enters without a wait",
		 (unsigned long long)got, TOTAL, (unsigned long long)enters);
	pthread_join(th, NULL);
	t_eq(got, TOTAL);
	st = t_stats(&r);
	t_eq(st.dropped, 0);
	printf("%u bytes through %u slots, read without waiting (%llu enters)\n", TOTAL,
	       p.slot_count, (unsigned long long)enters);
	close(lfd);
	aem_teardown(&r);
	return t_exit();
}
