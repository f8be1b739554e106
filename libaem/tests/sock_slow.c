/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK with a slow reader: peers send far more than the ring
 * holds while the application does not read it.  Receiving pauses (TCP
 * back-pressure) instead of buffering: the ring holds at most its slots
 * and a bounded backlog, nothing is dropped (dropped == 0, produced ==
 * delivered + backlog + dropped for every connection), and once the
 * application reads again every byte arrives once and in order.
 */
#include "sock_test.h"

#define CONNS	3
#define TOTAL	(24u << 20)	/* per connection: more than the socket buffers hold */

static unsigned short port;
static volatile uint64_t sent[CONNS];

static uint8_t byte_of(unsigned k, uint64_t i)
{
	return (uint8_t)(i * 7 + k * 85 + (i >> 12));
}

static void *peer(void *arg)
{
	unsigned k = (unsigned)(uintptr_t)arg;
	static __thread uint8_t buf[65536];
	int fd = ts_connect_tcp(false, port);
	uint64_t off = 0, i;
	ssize_t n;

	while (off < TOTAL) {
		size_t m = TOTAL - off < sizeof(buf) ? TOTAL - off : sizeof(buf);

		for (i = 0; i < m; i++)
			buf[i] = byte_of(k, off + i);
		n = send(fd, buf, m, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		off += (uint64_t)n;
		sent[k] = off;
	}
	shutdown(fd, SHUT_WR);
	/* Wait for the server's close before closing (no reset). */
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	close(fd);
	return NULL;
}

int main(void)
{
	struct aem_params p = t_params(64, 64, 1);
	uint64_t got[CONNS] = { 0 }, ids[CONNS] = { 0 }, end, total = 0;
	int stream[CONNS] = { -1, -1, -1 };	/* a connection's peer, known from its first byte */
	struct aem_ring_stats st;
	struct aem_sub_stats ss;
	pthread_t th[CONNS];
	struct aem_ring r;
	struct aem_cqe c;
	unsigned k, nconn = 0, closed = 0, i, len;
	int64_t lid;
	int lfd;

	p.slot_size = 1024;
	p.slot_count = 32;
	p.backlog_limit = 64;
	t_setup(&r, &p);
	ts_need_sock(&r);
	lfd = ts_listen_tcp(false, &port);
	lid = ts_subscribe(&r, lfd, 0x51);
	t_assert(lid > 0, "subscribe: %s", strerror((int)-lid));
	for (k = 0; k < CONNS; k++)
		t_assert(pthread_create(&th[k], NULL, peer, (void *)(uintptr_t)k) == 0, "thread");

	/* The application does not read for a while: the kernel side must not buffer. */
	for (i = 0; i < 5; i++) {
		usleep(100000);
		aem_submit(&r);	/* enters (as an application doing other work would) */
		st = t_stats(&r);
		t_eq(st.dropped, 0);
		t_assert(st.backlog <= p.slot_count + 2 * CONNS + 2,
			 "backlog %llu while the reader sleeps", (unsigned long long)st.backlog);
		t_assert(st.delivered <= p.cq_entries + 1 + 1,
			 "delivered %llu into a ring of %u", (unsigned long long)st.delivered, p.cq_entries);
	}
	for (k = 0; k < CONNS; k++)
		t_assert(sent[k] < TOTAL, "peer %u sent everything while nobody read: not back-pressured", k);

	/* Now read it all. */
	end = t_now_ns() + 120000 * T_MS;
	while (closed < CONNS && t_now_ns() < end) {
		const struct aem_sock_event *ev;
		const uint8_t *d;

		if (!t_next(&r, &c, 50))
			continue;
		if (c.flags & AEM_CQE_F_RESULT)
			continue;
		ev = aem_cqe_sock_event(&c);
		for (k = 0; k < nconn && ids[k] != c.id; k++)
			;
		if (c.id == (uint64_t)lid) {
			/* The listener's own: a LIMIT when accept lacked resources (said, not lost). */
			t_assert(ev && ev->type == AEM_SOCK_EV_LIMIT, "listener event");
			t_note("LIMIT %d", ev->res);
			continue;
		}
		if (ev && ev->type == AEM_SOCK_EV_CONNECT) {
			t_assert(nconn < CONNS, "too many connections");
			ids[nconn++] = c.id;
			continue;
		}
		t_assert(k < nconn, "event of an unknown connection (id %#llx, flags %#x, res %d, type %d)", (unsigned long long)c.id, c.flags, c.res, ev ? ev->type : -1);
		if (ev && ev->type == AEM_SOCK_EV_EOF) {
			ss = t_sub_stats(&r, c.id);
			t_eq(ss.dropped, 0);
			struct aem_sqe *sqe = ts_sqe(&r);

			aem_prep_sock_shutdown(sqe, c.id, AEM_SOCK_CLOSE);
			sqe->user_data = 0x99;
			continue;
		}
		if (ev) {
			t_eq(ev->type, AEM_SOCK_EV_CLOSED);
			t_eq(ev->res, 0);
			closed++;
			continue;
		}
		d = aem_cqe_payload(&r, &c, &len);
		t_assert(d && len == (unsigned)c.res, "payload");
		/* Which peer: the first byte of its stream names it. */
		if (stream[k] < 0) {
			unsigned j;

			for (j = 0; j < CONNS && byte_of(j, 0) != d[0]; j++)
				;
			t_assert(j < CONNS && got[j] == 0, "unknown stream");
			stream[k] = (int)j;
		}
		k = (unsigned)stream[k];
		for (i = 0; i < len; i++)
			if (d[i] != byte_of(k, got[k] + i))
				t_fail("conn %u: byte %llu wrong", k, (unsigned long long)(got[k] + i));
		got[k] += len;
		total += len;
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
	}
	for (k = 0; k < CONNS; k++) {
		pthread_join(th[k], NULL);
		t_eq(got[k], TOTAL);
	}
	aem_release_commit(&r);
	aem_submit(&r);
	st = t_stats(&r);
	t_eq(st.dropped, 0);
	t_eq(st.slots_free, r.slot_count);
	printf("%u connections, %llu bytes received in order through %u slots of %u bytes\n", CONNS,
	       (unsigned long long)total, p.slot_count, p.slot_size);
	close(lfd);
	aem_teardown(&r);
	return t_exit();
}
