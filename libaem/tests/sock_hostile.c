/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK under hostile use: every bad subscribe, send, shutdown and
 * writeback gets its errno from PROTOCOL.md section 10, is counted, and
 * changes nothing — the connection still echoes afterwards, and every
 * slot comes back.  Random garbage in the new SQE fields never gets
 * anything but a clear errno.
 */
#include "sock_test.h"

static struct aem_ring r;
static struct ts_srv s;
static unsigned short port;
static uint64_t conn;

static int sub_fd(int fd, uint32_t flags, uint64_t resv)
{
	struct aem_sqe *sqe = t_sqe(&r);

	aem_prep_subscribe_sock(sqe, fd, 0, 0x77);
	sqe->sock.flags = flags;
	sqe->sock.resv[1] = resv;
	return t_do(&r, 0x77);
}

static void test_subscribe(void)
{
	int p[2], fd, sv[2];
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	uint64_t before = t_stats(&r).refused[AEM_REFUSE_FIELD];

	t_eq(sub_fd(-1, 0, 0), -EINVAL);
	t_assert(pipe(p) == 0, "pipe");
	t_eq(sub_fd(p[0], 0, 0), -ENOTSOCK);
	close(p[0]);
	close(p[1]);
	t_eq(sub_fd(p[0], 0, 0), -EBADF);	/* closed */
	t_assert(fcntl(900, F_GETFD) < 0, "fd 900 open");
	t_eq(sub_fd(900, 0, 0), -EBADF);	/* another process's number names nothing here */
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	t_eq(sub_fd(sv[0], 0, 0), -EINVAL);	/* connected, not listening */
	close(sv[0]);
	close(sv[1]);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	t_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind");
	t_eq(sub_fd(fd, 0, 0), -EINVAL);	/* bound only */
	t_assert(listen(fd, 4) == 0, "listen");
	t_eq(sub_fd(fd, 1, 0), -EINVAL);	/* flags */
	t_eq(sub_fd(fd, 0, 1), -EINVAL);	/* resv */
	close(fd);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	t_eq(sub_fd(fd, 0, 0), -EOPNOTSUPP);
	close(fd);
	t_eq(t_stats(&r).refused[AEM_REFUSE_FIELD] - before, 9);
	t_eq(t_stats(&r).subscriptions, 1);
}

static int send_sqe(void (*spoil)(struct aem_sqe *))
{
	struct aem_sqe *sqe = t_sqe(&r);

	aem_prep_sock_send(sqe, conn, "ok", 2);
	sqe->user_data = 0x55;
	if (spoil)
		spoil(sqe);
	return t_do(&r, 0x55);
}

static void sp_listener(struct aem_sqe *q) { q->target = s.lid; }
static void sp_garbage_id(struct aem_sqe *q) { q->target ^= 0x5a5a00000000ull; }
static void sp_kind(struct aem_sqe *q) { q->target = (q->target & 0xffffffffffffffull) | 3ull << 56; }
static void sp_long(struct aem_sqe *q) { q->len = AEM_SQE_INLINE + 1; }
static void sp_arg(struct aem_sqe *q) { q->arg = 1; }
static void sp_source(struct aem_sqe *q) { q->source = AEM_SRC_SOCK; }
static void sp_flag(struct aem_sqe *q) { q->flags |= AEM_SQE_F_LOSSY; }
static void sp_slot_big(struct aem_sqe *q) { q->flags |= AEM_SQE_F_SLOT; q->slot = 0; q->len = r.slot_size + 1; }
static void sp_slot_delivery(struct aem_sqe *q) { q->flags |= AEM_SQE_F_SLOT; q->slot = r.send_slots; }
static void sp_slot_range(struct aem_sqe *q) { q->flags |= AEM_SQE_F_SLOT; q->slot = 0xfffffff0u; }
static void sp_prio(struct aem_sqe *q) { q->prio = 7; }

static int shut(unsigned how, uint64_t target, unsigned len)
{
	struct aem_sqe *sqe = t_sqe(&r);

	aem_prep_sock_shutdown(sqe, target, how);
	sqe->len = len;
	sqe->user_data = 0x56;
	return t_do(&r, 0x56);
}

static bool one_more(struct ts_srv *x) { return x->bytes_in >= 6; }

static void test_ops(int cfd)
{
	struct aem_sqe *sqe;
	uint64_t timer;
	char buf[16];

	t_eq(send_sqe(sp_listener), -ENOTCONN);
	t_eq(send_sqe(sp_garbage_id), -ENOENT);
	t_eq(send_sqe(sp_kind), -ENOENT);
	t_eq(send_sqe(sp_long), -EINVAL);
	t_eq(send_sqe(sp_arg), -EINVAL);
	t_eq(send_sqe(sp_source), -EINVAL);
	t_eq(send_sqe(sp_flag), -EINVAL);
	t_eq(send_sqe(sp_slot_big), -EINVAL);
	t_eq(send_sqe(sp_slot_delivery), -EINVAL);
	t_eq(send_sqe(sp_slot_range), -EINVAL);
	t_eq(send_sqe(sp_prio), -EINVAL);
	t_eq(shut(0, conn, 0), -EINVAL);
	t_eq(shut(8, conn, 0), -EINVAL);
	t_eq(shut(AEM_SOCK_CLOSE | AEM_SOCK_SHUT_WR, conn, 0), -EINVAL);
	t_eq(shut(AEM_SOCK_SHUT_WR, conn, 3), -EINVAL);
	t_eq(shut(AEM_SOCK_SHUT_WR, s.lid, 0), -ENOTCONN);
	/* A source without the socket operations. */
	sqe = t_sqe(&r);
	aem_prep_subscribe_timer(sqe, 1000 * T_MS, 0, 0, 0x71);
	t_submit(&r);
	timer = t_result(&r, 0x71, 5000).id;
	t_eq(shut(AEM_SOCK_SHUT_WR, timer, 0), -EOPNOTSUPP);
	sqe = t_sqe(&r);
	aem_prep_sock_send(sqe, timer, "x", 1);
	sqe->user_data = 0x72;
	t_eq(t_do(&r, 0x72), -EOPNOTSUPP);
	/* Nothing changed: the connection still works both ways. */
	t_eq(send_sqe(NULL), 2);
	t_assert(recv(cfd, buf, 2, 0) == 2 && !memcmp(buf, "ok", 2), "peer got the good send");
	t_assert(send(cfd, "again!", 6, 0) == 6, "peer send");
	s.echo = false;
	ts_serve(&s, 5000, one_more);
	t_eq(s.bytes_in, 6);
}

/* A data event's slot written back to its connection after that connection ended. */
static void test_wb_closed(void)
{
	struct aem_cqe c;
	struct aem_sqe *sqe;
	uint64_t id = 0, end = t_now_ns() + 5000 * T_MS;
	unsigned slot = ~0u;
	char big[200];
	int fd, got_closed = 0;

	memset(big, 'b', sizeof(big));
	fd = ts_connect_tcp(false, port);
	t_assert(send(fd, big, sizeof(big), 0) == (ssize_t)sizeof(big), "send");
	/* Keep the data event's slot; close the connection. */
	while (slot == ~0u && t_now_ns() < end) {
		if (!t_next(&r, &c, 50))
			continue;
		if (c.flags & AEM_CQE_F_RESULT)
			continue;
		if (aem_cqe_sock_event(&c)) {
			id = c.id;
			continue;
		}
		t_assert(c.flags & AEM_CQE_F_SLOT, "200 bytes come in a slot");
		t_eq(c.id, id);
		slot = c.slot;
	}
	t_assert(slot != ~0u, "no data event");
	sqe = t_sqe(&r);
	aem_prep_sock_shutdown(sqe, id, AEM_SOCK_CLOSE);
	sqe->user_data = 0x57;
	t_eq(t_do(&r, 0x57), 0);
	while (!got_closed && t_now_ns() < end) {
		if (t_next(&r, &c, 50) && aem_cqe_sock_event(&c) &&
		    aem_cqe_sock_event(&c)->type == AEM_SOCK_EV_CLOSED)
			got_closed = 1;
	}
	t_assert(got_closed, "no CLOSED");
	sqe = t_sqe(&r);
	aem_prep_writeback_slot(sqe, id, slot, 100);
	sqe->user_data = 0x58;
	t_eq(t_do(&r, 0x58), -ENOENT);
	t_release(&r, slot);	/* still ours */
	close(fd);
}

static void test_garbage(uint64_t seed)
{
	unsigned i;

	for (i = 0; i < 2000; i++) {
		struct aem_sqe *sqe = t_sqe(&r);
		uint64_t w[8];
		unsigned k;
		struct aem_cqe c;

		for (k = 0; k < 8; k++)
			w[k] = t_rand(&seed);
		memcpy(sqe, w, sizeof(*sqe));
		sqe->opcode = (uint8_t)(AEM_OP_SEND + (w[0] & 1));
		if (w[1] & 1)
			sqe->target = conn;
		if (w[1] & 2)
			sqe->target = s.lid;
		sqe->user_data = 0x6600000000000000ull | i;
		t_submit(&r);
		c = t_result(&r, sqe->user_data, 5000);
		t_assert(c.res < 0 || c.res <= (int)r.slot_size, "garbage SQE %u: res %d", i, c.res);
	}
}

int main(void)
{
	struct aem_params p = t_params(128, 1024, 2);
	struct aem_ring_stats st;
	int64_t lid;
	int lfd, cfd;
	uint64_t seed = t_seed();

	p.send_slots = 4;
	p.slot_size = 256;
	t_setup(&r, &p);
	ts_need_sock(&r);
	lfd = ts_listen_tcp(false, &port);
	lid = ts_subscribe(&r, lfd, 0x5e);
	t_assert(lid > 0, "subscribe: %s", strerror((int)-lid));
	ts_srv_init(&s, &r, 0x5e, (uint64_t)lid);
	test_subscribe();
	cfd = ts_connect_tcp(false, port);
	ts_serve(&s, 300, NULL);
	t_assert(s.connects == 1, "no CONNECT");
	conn = s.conn_ids[0];
	test_ops(cfd);
	test_wb_closed();
	test_garbage(seed);
	close(cfd);
	/*
	 * On the module a receive work item may hold a slot for a moment after
	 * the peer closed: serve what still arrives until every slot is back
	 * (bounded; a slot that never returns fails below).
	 */
	{
		uint64_t end = t_now_ns() + 5000 * T_MS;

		do {
			ts_serve(&s, 20, NULL);
			aem_release_commit(&r);
			aem_submit(&r);
			st = t_stats(&r);
		} while (st.slots_free != r.slot_count && t_now_ns() < end);
	}
	t_eq(st.dropped, 0);
	t_eq(st.slots_free, r.slot_count);
	close(lfd);
	free(s.wb);
	aem_teardown(&r);
	return t_exit();
}
