/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK at the edges of a connection's life: a peer's reset ends
 * it with CLOSED -ECONNRESET (or -EPIPE); half-close both ways (the peer's
 * EOF leaves the connection open for sends; the server's SHUT_WR lets the
 * peer go on sending, and a later send is -EPIPE); the per-ring connection
 * limit pauses accepting with one LIMIT event and resumes when a
 * connection ends; a Unix peer cannot queue a file (SO_PASSRIGHTS).
 */
#include "sock_test.h"

struct ring_ctx {
	struct aem_ring	r;
	struct ts_srv	s;
	int		lfd;
	unsigned short	port;
};

static void open_ring(struct ring_ctx *x, unsigned conns)
{
	struct aem_params p = t_params(128, 1024, 1);
	int64_t lid;

	p.sock_conns = conns;
	p.send_slots = 4;
	t_setup(&x->r, &p);
	ts_need_sock(&x->r);
	t_eq(p.sock_conns, conns ? conns : AEM_DEFAULT_SOCK_CONNS);
	t_assert(p.features & AEM_FEAT_SOCK, "features %#x lack AEM_FEAT_SOCK", p.features);
	x->lfd = ts_listen_tcp(false, &x->port);
	lid = ts_subscribe(&x->r, x->lfd, 0xed6e);
	t_assert(lid > 0, "subscribe: %s", strerror((int)-lid));
	ts_srv_init(&x->s, &x->r, 0xed6e, (uint64_t)lid);
}

static void close_ring(struct ring_ctx *x)
{
	close(x->lfd);
	free(x->s.wb);
	aem_teardown(&x->r);
}

static unsigned g_want;
static bool connects_reached(struct ts_srv *s) { return s->connects >= g_want; }
static bool closed_reached(struct ts_srv *s) { return s->closed >= g_want; }
static bool eofs_reached(struct ts_srv *s) { return s->eofs >= g_want; }
static bool bytes_reached(struct ts_srv *s) { return s->bytes_in >= g_want; }
static bool limits_reached(struct ts_srv *s) { return s->limits >= g_want; }

/* Submit one SQE on connection @conn and return its result. */
static int op(struct aem_ring *r, uint64_t conn, int opcode, unsigned arg, const char *data)
{
	struct aem_sqe *sqe = t_sqe(r);

	if (opcode == AEM_OP_SEND)
		aem_prep_sock_send(sqe, conn, data, (unsigned)strlen(data));
	else
		aem_prep_sock_shutdown(sqe, conn, arg);
	sqe->user_data = 0x0b;
	return t_do(r, 0x0b);
}

static void read_exact(int fd, const char *want)
{
	char buf[64];
	size_t got = 0, n = strlen(want);
	ssize_t k;

	while (got < n) {
		k = recv(fd, buf + got, n - got, 0);
		t_assert(k > 0, "recv: %zd %s", k, strerror(errno));
		got += (size_t)k;
	}
	t_assert(memcmp(buf, want, n) == 0, "peer read %.*s, want %s", (int)n, buf, want);
}

static void test_reset(void)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	struct ring_ctx x;
	int fd, res;

	open_ring(&x, 0);
	x.s.echo = false;
	fd = ts_connect_tcp(false, x.port);
	t_assert(send(fd, "abc", 3, 0) == 3, "send");
	g_want = 3;
	ts_serve(&x.s, 5000, bytes_reached);
	t_eq(x.s.bytes_in, 3);
	t_assert(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0, "SO_LINGER");
	close(fd);	/* RST */
	/* A send now fails with the reset (or finds the connection gone). */
	usleep(20000);
	res = op(&x.r, x.s.conn_ids[0], AEM_OP_SEND, 0, "late");
	t_assert(res == -ECONNRESET || res == -EPIPE || res == -ENOENT || res == -ENOTCONN || res == 4,
		 "send after reset: %d", res);
	g_want = 1;
	ts_serve(&x.s, 5000, closed_reached);
	t_eq(x.s.closed, 1);
	t_assert(x.s.last_err == -ECONNRESET || x.s.last_err == -EPIPE,
		 "CLOSED after a reset has res %d", x.s.last_err);
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SEND, 0, "x"), -ENOENT);	/* its id is dead */
	t_eq(t_stats(&x.r).dropped, 0);
	close_ring(&x);
}

static void test_half_close(void)
{
	struct ring_ctx x;
	char buf[8];
	int fd;

	open_ring(&x, 0);
	x.s.echo = false;
	x.s.close_on_eof = false;
	/* The peer ends its sending; the server still answers, then closes. */
	fd = ts_connect_tcp(false, x.port);
	t_assert(send(fd, "hello", 5, 0) == 5, "send");
	t_assert(shutdown(fd, SHUT_WR) == 0, "shutdown");
	g_want = 1;
	ts_serve(&x.s, 5000, eofs_reached);
	t_eq(x.s.bytes_in, 5);
	t_eq(x.s.eofs, 1);
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SEND, 0, "reply"), 5);
	read_exact(fd, "reply");
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SHUTDOWN, AEM_SOCK_SHUT_WR, NULL), 0);
	t_eq(recv(fd, buf, sizeof(buf), 0), 0);	/* the server's EOF */
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SEND, 0, "no"), -ESHUTDOWN);
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SHUTDOWN, AEM_SOCK_CLOSE, NULL), 0);
	ts_serve(&x.s, 5000, closed_reached);
	t_eq(x.s.closed, 1);
	t_eq(x.s.closed_err, 0);
	close(fd);

	/* The server ends its sending first; the peer goes on. */
	fd = ts_connect_tcp(false, x.port);
	g_want = 2;
	ts_serve(&x.s, 5000, connects_reached);
	t_eq(op(&x.r, x.s.conn_ids[1], AEM_OP_SEND, 0, "bye"), 3);
	t_eq(op(&x.r, x.s.conn_ids[1], AEM_OP_SHUTDOWN, AEM_SOCK_SHUT_WR, NULL), 0);
	read_exact(fd, "bye");
	t_eq(recv(fd, buf, sizeof(buf), 0), 0);
	t_assert(send(fd, "more", 4, MSG_NOSIGNAL) == 4, "peer send after the server's SHUT_WR");
	g_want = 9;
	ts_serve(&x.s, 5000, bytes_reached);
	t_eq(x.s.bytes_in, 9);
	close(fd);
	g_want = 2;
	ts_serve(&x.s, 5000, eofs_reached);	/* the EOF closes it (close_on_eof) */
	x.s.close_on_eof = true;
	t_eq(op(&x.r, x.s.conn_ids[1], AEM_OP_SHUTDOWN, AEM_SOCK_CLOSE, NULL), 0);
	ts_serve(&x.s, 5000, closed_reached);
	t_eq(x.s.closed, 2);
	/* After CLOSE the id is dead. */
	t_eq(op(&x.r, x.s.conn_ids[1], AEM_OP_SHUTDOWN, AEM_SOCK_CLOSE, NULL), -ENOENT);
	t_eq(t_stats(&x.r).dropped, 0);
	close_ring(&x);
}

static void test_limit(void)
{
	struct ring_ctx x;
	int fds[6], i;

	open_ring(&x, 4);
	for (i = 0; i < 6; i++)
		fds[i] = ts_connect_tcp(false, x.port);
	g_want = 1;
	ts_serve(&x.s, 5000, limits_reached);
	t_eq(x.s.limits, 1);
	ts_serve(&x.s, 200, NULL);
	t_eq(x.s.connects, 4);
	t_eq(x.s.limits, 1);	/* once per pause */
	t_eq(t_stats(&x.r).subscriptions, 5);
	/* One ends: the fifth is accepted. */
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SHUTDOWN, AEM_SOCK_CLOSE, NULL), 0);
	g_want = 5;
	ts_serve(&x.s, 5000, connects_reached);
	t_eq(x.s.connects, 5);
	for (i = 0; i < 6; i++)
		close(fds[i]);
	g_want = 6;
	ts_serve(&x.s, 5000, closed_reached);
	t_eq(x.s.closed, 6);
	t_eq(t_stats(&x.r).subscriptions, 1);
	close_ring(&x);
}

static void test_unix_rights(void)
{
	struct aem_params p = t_params(64, 256, 1);
	struct sockaddr_un ua;
	socklen_t ual;
	struct aem_ring r;
	struct ts_srv s;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = "f", .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	int64_t lid;
	int lfd, fd, rfd = aem_ring_fd(&r);
	ssize_t n;

	t_setup(&r, &p);
	rfd = aem_ring_fd(&r);
	lfd = ts_listen_unix(&ua, &ual);
	lid = ts_subscribe(&r, lfd, 0x0a1);
	if (ts_unix_refused(&r, lid)) {
		close(lfd);
		aem_teardown(&r);
		return;
	}
	t_assert(lid > 0, "subscribe unix: %s", strerror((int)-lid));
	ts_srv_init(&s, &r, 0x0a1, (uint64_t)lid);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	t_assert(connect(fd, (struct sockaddr *)&ua, ual) == 0, "connect");
	g_want = 1;
	ts_serve(&s, 5000, connects_reached);
	t_eq(s.connects, 1);
	memset(cbuf, 0, sizeof(cbuf));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &rfd, sizeof(int));	/* the ring's own fd: the cycle of issue 16 */
	n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	if (n >= 0)
		t_note("this kernel queues SCM_RIGHTS on the connection (no SO_PASSRIGHTS)");
	else
		t_eq(errno, EPERM);
	close(fd);
	ts_serve(&s, 5000, closed_reached);
	t_eq(s.closed, 1);
	close(lfd);
	free(s.wb);
	aem_teardown(&r);
}

/*
 * A peer that does not read: sends queue on its connection up to
 * AEM_SOCK_MAX_QUEUED, then -ENOBUFS; once the peer reads, every queued
 * send is answered with its full length and the bytes arrive in order.
 * Then a teardown with connections open and sends queued frees it all
 * (the sanitizer build checks for leaks) and the peers see the close.
 */
static void test_queue_teardown(void)
{
	struct aem_params p = t_params(256, 1024, 1);
	struct aem_ring r;
	struct ts_srv s;
	struct aem_cqe c;
	unsigned short port2;
	uint64_t conn, sent = 0, got = 0, ok = 0, answered = 0, end;
	unsigned i, issued = 0, nobufs = 0, slot_len = 65536;
	int64_t lid;
	int lfd, fd, fd2;
	uint8_t *buf;
	char tmp[16];

	p.slot_size = slot_len;
	p.send_slots = 1;
	p.slot_count = 8;
	t_setup(&r, &p);
	lfd = ts_listen_tcp(false, &port2);
	lid = ts_subscribe(&r, lfd, 0x9e);
	t_assert(lid > 0, "subscribe: %s", strerror((int)-lid));
	ts_srv_init(&s, &r, 0x9e, (uint64_t)lid);
	fd = ts_connect_tcp(false, port2);
	fd2 = ts_connect_tcp(false, port2);
	g_want = 2;
	ts_serve(&s, 5000, connects_reached);
	conn = s.conn_ids[0];
	buf = aem_send_slot(&r, 0);
	for (i = 0; i < slot_len; i++)
		buf[i] = (uint8_t)(i % 251);
	/* Until the queue is full: the peer reads nothing. */
	for (i = 0; i < 4096 && !nobufs; i++) {
		struct aem_sqe *sqe = ts_sqe(&r);

		aem_prep_sock_send_slot(sqe, conn, 0, slot_len);
		sqe->user_data = 0x7700000000000000ull | i;
		issued++;
		t_submit(&r);
		while (t_next(&r, &c, 0)) {
			if (!(c.flags & AEM_CQE_F_RESULT))
				continue;
			answered++;
			if (c.res == -ENOBUFS)
				nobufs++;
			else
				t_eq(c.res, (int)slot_len);
		}
	}
	t_assert(nobufs == 1, "no -ENOBUFS after %u sends", issued);
	sent = (uint64_t)(issued - 1) * slot_len;
	/* Now the peer reads: every accepted send is answered, the bytes in order. */
	end = t_now_ns() + 30000 * T_MS;
	while ((got < sent || answered < issued) && t_now_ns() < end) {
		static uint8_t rb[65536];
		ssize_t n = recv(fd, rb, sizeof(rb), MSG_DONTWAIT);

		for (ssize_t k = 0; k < n; k++)
			t_assert(rb[k] == (uint8_t)((got + (uint64_t)k) % slot_len % 251), "byte %llu",
				 (unsigned long long)(got + (uint64_t)k));
		if (n > 0)
			got += (uint64_t)n;
		while (t_next(&r, &c, n > 0 ? 0 : 1)) {
			if (!(c.flags & AEM_CQE_F_RESULT))
				continue;
			answered++;
			t_eq(c.res, (int)slot_len);
			ok++;
		}
	}
	t_eq(got, sent);
	t_eq(answered, issued);
	/* Queue again on the second connection, then tear down with both open. */
	for (i = 0; i < AEM_SOCK_MAX_QUEUED; i++) {
		struct aem_sqe *sqe = ts_sqe(&r);

		aem_prep_sock_send_slot(sqe, s.conn_ids[1], 0, slot_len);
		sqe->flags |= AEM_SQE_F_SILENT;
	}
	t_submit(&r);
	t_eq(t_stats(&r).dropped, 0);
	aem_teardown(&r);
	/* The peers see their connections end. */
	while (recv(fd2, buf = (uint8_t *)tmp, sizeof(tmp), 0) > 0)
		;
	t_eq(recv(fd, tmp, sizeof(tmp), 0), 0);
	close(fd);
	close(fd2);
	close(lfd);
	free(s.wb);
}

/*
 * UNSUBSCRIBE of a listener stops accepting but leaves its connections
 * working; UNSUBSCRIBE of a connection aborts it: no CLOSED event, the
 * result carries its counts, and the peer sees the close.
 */
static void test_unsubscribe(void)
{
	struct ring_ctx x;
	struct aem_sqe *sqe;
	struct aem_cqe c;
	char buf[8];
	int fd, fd2;

	open_ring(&x, 0);
	x.s.echo = false;
	fd = ts_connect_tcp(false, x.port);
	g_want = 1;
	ts_serve(&x.s, 5000, connects_reached);
	sqe = t_sqe(&x.r);
	aem_prep_unsubscribe(sqe, x.s.lid);
	sqe->user_data = 0x0c;
	t_eq(t_do(&x.r, 0x0c), 0);
	fd2 = ts_connect_tcp(false, x.port);	/* the listen queue takes it; nobody accepts */
	ts_serve(&x.s, 200, NULL);
	t_eq(x.s.connects, 1);
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SEND, 0, "still"), 5);
	read_exact(fd, "still");
	sqe = t_sqe(&x.r);
	aem_prep_unsubscribe(sqe, x.s.conn_ids[0]);
	sqe->user_data = 0x0d;
	t_submit(&x.r);
	c = t_result(&x.r, 0x0d, 5000);
	t_eq(c.res, 0);
	t_assert(c.flags & AEM_CQE_F_STATS, "unsubscribe result without counts");
	t_eq(recv(fd, buf, sizeof(buf), 0), 0);
	ts_serve(&x.s, 200, NULL);
	t_eq(x.s.closed, 0);	/* an abort posts no CLOSED */
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SEND, 0, "x"), -ENOENT);
	t_eq(t_stats(&x.r).subscriptions, 0);
	close(fd);
	close(fd2);
	close_ring(&x);
}

/* A listening socket shut down under the listener: CLOSED -ECONNABORTED ends it; its connection goes on. */
static void test_listener_gone(void)
{
	struct ring_ctx x;
	int fd;

	open_ring(&x, 0);
	fd = ts_connect_tcp(false, x.port);
	g_want = 1;
	ts_serve(&x.s, 5000, connects_reached);
	t_assert(shutdown(x.lfd, SHUT_RDWR) == 0, "shutdown listener: %s", strerror(errno));
	ts_serve(&x.s, 5000, closed_reached);
	t_eq(x.s.closed, 1);
	t_eq(x.s.last_err, -ECONNABORTED);
	t_eq(t_stats(&x.r).subscriptions, 1);	/* the connection */
	t_eq(op(&x.r, x.s.conn_ids[0], AEM_OP_SEND, 0, "alive"), 5);
	read_exact(fd, "alive");
	close(fd);
	close_ring(&x);
}

int main(void)
{
	test_reset();
	test_half_close();
	test_limit();
	test_unix_rights();
	test_queue_teardown();
	test_unsubscribe();
	test_listener_gone();
	return t_exit();
}
