/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK on the module, through the raw ABI: the kernel accepts,
 * receives into slots and sends what is written back.  Every byte of many
 * connections comes back once and in order (random sizes); half-close,
 * close and reset end a connection as PROTOCOL.md section 10 says; a
 * slow reader holds the peer back (nothing dropped, slots bounded); the
 * connection limit pauses accepting; hostile input gets its errno.
 *   src_sock [SEED]
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "aem_test.h"

#define NCONN		8
#define MAXBYTES	(256 * 1024)
#define SLOT		4096

struct peer {
	int		fd;
	uint64_t	id;		/* its connection's id, once CONNECT came */
	uint8_t		*out;		/* what the client sends */
	size_t		len, sent, got;
	bool		eof_sent;
};

/* A writeback or send in flight, by user_data - WB_TAG. */
#define WB_TAG		(1ULL << 40)
struct inflight {
	uint64_t	id;
	uint32_t	slot;		/* ~0: a SEND of the inline bytes below */
	uint32_t	len;
	uint8_t		data[AEM_SQE_INLINE];
	bool		busy;
};

static struct inflight fl[4096];
static uint64_t seed;

static void release_slot(struct vring *r, uint32_t ref)
{
	const struct aem_ring_offsets *so = &r->p.slot_off;
	uint32_t *arr = vr_u32(r, so->array);
	uint32_t t = *vr_u32(r, so->tail);

	arr[t & *vr_u32(r, so->ring_mask)] = ref;
	__atomic_store_n(vr_u32(r, so->tail), t + 1, __ATOMIC_RELEASE);
}

static uint8_t *slot_ptr(struct vring *r, uint32_t ref)
{
	return (uint8_t *)r->region[AEM_REGION_PAYLOAD] + (size_t)AEM_SLOT_INDEX(ref) * r->p.slot_size;
}

static int32_t sub_sock(struct vring *r, int fd, uint32_t flags, uint64_t tag, uint64_t *id)
{
	struct aem_sqe *sqe = vr_sqe(r);
	struct aem_cqe c;
	int32_t res;

	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = AEM_SRC_SOCK;
	sqe->sock.fd = fd;
	sqe->sock.flags = flags;
	sqe->user_data = tag;
	res = vr_result(r, tag, &c);
	if (id)
		*id = c.id;
	return res;
}

static int tcp_listener(struct sockaddr_in *a)
{
	socklen_t alen = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t_assert(fd >= 0, "socket");
	t_assert(bind(fd, (struct sockaddr *)a, sizeof(*a)) == 0, "bind: %s", strerror(errno));
	t_assert(listen(fd, 64) == 0, "listen");
	t_assert(getsockname(fd, (struct sockaddr *)a, &alen) == 0, "getsockname");
	return fd;
}

static int tcp_connect(const struct sockaddr_in *a)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	t_assert(fd >= 0, "socket");
	t_assert(connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0, "connect: %s", strerror(errno));
	return fd;
}

/* Submit one SQE with @fill'ed fields, no wait; user_data picks its slot in fl[]. */
static struct aem_sqe *sqe_or_flush(struct vring *r)
{
	struct aem_sqe *sqe = vr_sqe(r);

	if (!sqe) {
		vr_enter(r, r->p.sq_entries, 0, 0);
		sqe = vr_sqe(r);
	}
	t_assert(sqe, "SQ ring stays full");
	return sqe;
}

static void echo_submit(struct vring *r, unsigned k)
{
	struct aem_sqe *sqe = sqe_or_flush(r);

	sqe->user_data = WB_TAG + k;
	sqe->target = fl[k].id;
	sqe->len = fl[k].len;
	if (fl[k].slot != ~0U) {
		sqe->opcode = AEM_OP_WRITEBACK;
		sqe->flags = AEM_SQE_F_SLOT;
		sqe->slot = fl[k].slot;
	} else {
		sqe->opcode = AEM_OP_SEND;
		memcpy(sqe->data, fl[k].data, fl[k].len);
	}
}

static unsigned fl_take(void)
{
	unsigned k;

	for (k = 0; k < sizeof(fl) / sizeof(fl[0]); k++)
		if (!fl[k].busy) {
			fl[k].busy = true;
			return k;
		}
	t_fail("more than %zu echoes in flight", sizeof(fl) / sizeof(fl[0]));
}

static struct peer *peer_of(struct peer *p, int n, uint64_t id)
{
	int i;

	for (i = 0; i < n; i++)
		if (p[i].id == id)
			return &p[i];
	return NULL;
}

/* The echo test: every byte of NCONN connections back once, in order. */
static void echo(struct vring *r, uint64_t lid, const struct sockaddr_in *a)
{
	struct peer p[NCONN];
	unsigned connected = 0, done = 0, events = 0, i;
	uint64_t end = t_now_ns() + 60 * 1000 * T_MS;
	struct aem_cqe c;
	uint8_t buf[65536];

	for (i = 0; i < NCONN; i++) {
		size_t j;

		memset(&p[i], 0, sizeof(p[i]));
		p[i].fd = tcp_connect(a);
		fcntl(p[i].fd, F_SETFL, O_NONBLOCK);
		p[i].len = 1 + t_rand(&seed) % MAXBYTES;
		p[i].out = malloc(p[i].len);
		t_assert(p[i].out, "malloc");
		for (j = 0; j < p[i].len; j++)
			p[i].out[j] = (uint8_t)t_rand(&seed);
	}
	while (done < NCONN) {
		t_assert(t_now_ns() < end, "echo: %u of %u connections done after 60 s (%u events)",
			 done, NCONN, events);
		/* Clients: send a random piece, read what came back and check it. */
		for (i = 0; i < NCONN; i++) {
			ssize_t n;

			if (p[i].sent < p[i].len) {
				size_t want = 1 + t_rand(&seed) % 9000;

				if (want > p[i].len - p[i].sent)
					want = p[i].len - p[i].sent;
				n = send(p[i].fd, p[i].out + p[i].sent, want, MSG_NOSIGNAL);
				if (n > 0)
					p[i].sent += (size_t)n;
			}
			while ((n = recv(p[i].fd, buf, sizeof(buf), 0)) > 0) {
				t_assert(p[i].got + (size_t)n <= p[i].len, "conn %u: %zu bytes echoed of %zu",
					 i, p[i].got + (size_t)n, p[i].len);
				t_assert(!memcmp(buf, p[i].out + p[i].got, (size_t)n),
					 "conn %u: echo differs at byte %zu..", i, p[i].got);
				p[i].got += (size_t)n;
			}
			t_assert(n < 0 && errno == EAGAIN, "conn %u: recv: %zd %s", i, n, strerror(errno));
			if (p[i].got == p[i].len && !p[i].eof_sent) {
				p[i].eof_sent = true;
				done++;
			}
		}
		/* Server: echo every data event by writeback (slot) or send (inline). */
		vr_enter(r, 0, 1, 2 * T_MS);
		while (vr_reap_any(r, &c)) {
			if (c.flags & AEM_CQE_F_RESULT) {
				unsigned k = (unsigned)(c.user_data - WB_TAG);

				t_assert(c.user_data >= WB_TAG && k < 4096 && fl[k].busy,
					 "unexpected result %llx res %d", (unsigned long long)c.user_data, c.res);
				if (c.res == -ENOBUFS) {	/* the connection's queue is full: again */
					echo_submit(r, k);
					continue;
				}
				t_assert(c.res == (int32_t)fl[k].len, "echo of %u bytes: res %d", fl[k].len, c.res);
				fl[k].busy = false;
				continue;
			}
			events++;
			t_eq(c.source, AEM_SRC_SOCK);
			t_eq(c.user_data, 0x10);
			if (c.flags & AEM_CQE_F_SOCK_CTL) {
				struct aem_sock_event ev;

				memcpy(&ev, c.data, sizeof(ev));
				t_assert(ev.type == AEM_SOCK_EV_CONNECT, "control event %u (res %d) during echo",
					 ev.type, ev.res);
				t_eq(ev.family, AF_INET);
				t_assert(c.id != lid, "a connection has the listener's id");
				t_assert(connected < NCONN, "more connections than clients");
				/* Accept order is connect order on loopback, but do not rely on it: match by port. */
				for (i = 0; i < NCONN; i++) {
					struct sockaddr_in me;
					socklen_t ml = sizeof(me);

					getsockname(p[i].fd, (struct sockaddr *)&me, &ml);
					if (ntohs(me.sin_port) == ev.port && !p[i].id)
						p[i].id = c.id;
				}
				connected++;
				continue;
			}
			t_assert(peer_of(p, NCONN, c.id), "data for unknown connection %llx", (unsigned long long)c.id);
			t_assert(c.res > 0 && (uint32_t)c.res <= r->p.slot_size, "data res %d", c.res);
			{
				unsigned k = fl_take();

				fl[k].id = c.id;
				fl[k].len = (uint32_t)c.res;
				if (c.flags & AEM_CQE_F_SLOT) {
					fl[k].slot = c.slot;
				} else {
					fl[k].slot = ~0U;
					memcpy(fl[k].data, c.data, (size_t)c.res);
				}
				echo_submit(r, k);
			}
		}
		vr_enter(r, r->sq_tail - *vr_u32(r, r->p.sq_off.head), 0, 0);
	}
	t_eq(connected, NCONN);
	for (i = 0; i < NCONN; i++) {
		close(p[i].fd);
		free(p[i].out);
	}
	printf("echo: %u connections, %u events\n", NCONN, events);
}

struct want {
	uint64_t	id;
	uint8_t		type;	/* 0: data */
};

static bool is_sock_ev(const struct aem_cqe *c, void *arg)
{
	struct want *w = arg;
	struct aem_sock_event ev;

	if ((c->flags & AEM_CQE_F_RESULT) || (w->id && c->id != w->id))
		return false;
	if (!w->type)
		return !(c->flags & AEM_CQE_F_SOCK_CTL);
	if (!(c->flags & AEM_CQE_F_SOCK_CTL))
		return false;
	memcpy(&ev, c->data, sizeof(ev));
	return ev.type == w->type;
}

static struct aem_sock_event wait_ev(struct vring *r, uint64_t id, uint8_t type, struct aem_cqe *c,
				     const char *what)
{
	struct want w = { .id = id, .type = type };
	struct aem_sock_event ev;

	t_assert(vr_wait_cqe(r, c, 5000, is_sock_ev, &w), "no %s event", what);
	memcpy(&ev, c->data, sizeof(ev));
	return ev;
}

/* One connection of listener @lid: connect, its id. */
static uint64_t accept_one(struct vring *r, const struct sockaddr_in *a, int *cfd)
{
	struct aem_cqe c;

	*cfd = tcp_connect(a);
	wait_ev(r, 0, AEM_SOCK_EV_CONNECT, &c, "connect");
	return c.id;
}

static int32_t op(struct vring *r, uint8_t opcode, uint64_t target, uint32_t arg, const void *d, uint32_t len,
		  uint64_t tag)
{
	struct aem_sqe *sqe = vr_sqe(r);

	sqe->opcode = opcode;
	sqe->target = target;
	sqe->arg = arg;
	sqe->len = len;
	if (len)
		memcpy(sqe->data, d, len);
	sqe->user_data = tag;
	return vr_result(r, tag, NULL);
}

static void read_exact(int fd, const char *want, size_t n)
{
	char buf[256];
	size_t got = 0;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	while (got < n) {
		ssize_t k;

		t_assert(poll(&pfd, 1, 5000) == 1, "client waits for %zu bytes", n - got);
		k = recv(fd, buf + got, n - got, 0);
		t_assert(k > 0, "client recv: %zd %s", k, strerror(errno));
		got += (size_t)k;
	}
	t_assert(!memcmp(buf, want, n), "client got other bytes");
}

static void expect_eof(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	char b;

	t_assert(poll(&pfd, 1, 5000) == 1, "client waits for end of stream");
	t_eq(recv(fd, &b, 1, 0), 0);
}

/* Half-close, then close by the application; a reset by the peer. */
static void ends(struct vring *r, const struct sockaddr_in *a, uint64_t lid)
{
	struct aem_sock_event ev;
	struct aem_cqe c;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	uint64_t id;
	int cfd;

	id = accept_one(r, a, &cfd);
	t_assert(shutdown(cfd, SHUT_WR) == 0, "shutdown");
	wait_ev(r, id, AEM_SOCK_EV_EOF, &c, "end-of-stream");
	/* Still open for sends after the peer's FIN. */
	t_eq(op(r, AEM_OP_SEND, id, 0, "bye", 3, 0x20), 3);
	read_exact(cfd, "bye", 3);
	t_eq(op(r, AEM_OP_SHUTDOWN, id, AEM_SOCK_CLOSE, NULL, 0, 0x21), 0);
	ev = wait_ev(r, id, AEM_SOCK_EV_CLOSED, &c, "closed");
	t_eq(ev.res, 0);
	t_assert(c.flags & AEM_CQE_F_FINAL, "CLOSED without F_FINAL");
	expect_eof(cfd);
	close(cfd);
	/* The id is dead. */
	t_eq(op(r, AEM_OP_SEND, id, 0, "x", 1, 0x22), -ENOENT);
	t_eq(op(r, AEM_OP_SHUTDOWN, id, AEM_SOCK_SHUT_WR, NULL, 0, 0x23), -ENOENT);

	/* Our half-close: the peer sees end-of-stream, later sends are -ESHUTDOWN. */
	id = accept_one(r, a, &cfd);
	t_eq(op(r, AEM_OP_SHUTDOWN, id, AEM_SOCK_SHUT_WR, NULL, 0, 0x24), 0);
	expect_eof(cfd);
	t_eq(op(r, AEM_OP_SEND, id, 0, "x", 1, 0x25), -ESHUTDOWN);
	t_eq(op(r, AEM_OP_SHUTDOWN, id, 0, NULL, 0, 0x26), -EINVAL);
	t_eq(op(r, AEM_OP_SHUTDOWN, id, AEM_SOCK_CLOSE | AEM_SOCK_SHUT_RD, NULL, 0, 0x27), -EINVAL);
	/* Then the peer resets. */
	t_assert(send(cfd, "ab", 2, 0) == 2, "send");
	wait_ev(r, id, 0, &c, "data");
	t_assert(setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0, "SO_LINGER");
	close(cfd);
	ev = wait_ev(r, id, AEM_SOCK_EV_CLOSED, &c, "closed by reset");
	t_eq(ev.res, -ECONNRESET);

	/* The listener takes no sends. */
	t_eq(op(r, AEM_OP_SEND, lid, 0, "x", 1, 0x28), -ENOTCONN);
}

/*
 * A slow reader: the peer sends far more than the slots hold while the
 * application reads nothing.  The kernel side stops receiving (the peer's
 * send blocks), nothing is dropped, and every byte arrives once in order
 * when the application catches up.
 */
static void slow_reader(const struct sockaddr_in *a, int lfd)
{
	struct aem_params p = { .sq_entries = 64, .cq_entries = 64, .nr_classes = 1,
				.slot_size = SLOT, .slot_count = 32, .api_version = AEM_API_VERSION };
	size_t total = 16u << 20, sent = 0, got = 0;
	struct aem_ring_stats st;
	struct aem_sub_stats ss;
	struct aem_cqe c;
	struct vring r;
	uint64_t id, lid, end;
	uint8_t *out;
	int cfd;
	size_t j;

	vr_setup_or_die(&r, &p);
	t_eq(sub_sock(&r, lfd, 0, 0x30, &lid), 0);
	id = accept_one(&r, a, &cfd);
	fcntl(cfd, F_SETFL, O_NONBLOCK);
	out = malloc(total);
	t_assert(out, "malloc");
	for (j = 0; j < total; j++)
		out[j] = (uint8_t)(j * 7 + j / 4096);
	/* Send until the peer is held back, reading nothing on the ring. */
	end = t_now_ns() + 10 * 1000 * T_MS;
	while (sent < total && t_now_ns() < end) {
		ssize_t n = send(cfd, out + sent, total - sent, MSG_NOSIGNAL);

		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		t_assert(errno == EAGAIN, "send: %s", strerror(errno));
		usleep(200 * 1000);
		n = send(cfd, out + sent, total - sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN)
			break;	/* held back */
		if (n > 0)
			sent += (size_t)n;
	}
	t_assert(sent < total, "the peer sent all %zu bytes to a ring that read none", total);
	vr_stats(&r, &st);
	t_eq(st.dropped, 0);
	t_assert(st.backlog <= r.p.slot_count, "backlog %llu beyond the slots", (unsigned long long)st.backlog);
	printf("slow reader: peer held back after %zu bytes; ring backlog %llu\n", sent, (unsigned long long)st.backlog);
	/* Catch up: every byte once, in order. */
	end = t_now_ns() + 60 * 1000 * T_MS;
	while (got < total) {
		if (t_now_ns() >= end) {
			ss.id = id;
			ioctl(r.fd, AEM_IOC_SUB_STATS, &ss);
			vr_stats(&r, &st);
			t_fail("slow reader: %zu of %zu bytes (%zu sent) after 60 s; conn produced %llu "
			       "delivered %llu backlog %llu; ring slots_free %llu backlog %llu",
			       got, total, sent, (unsigned long long)ss.produced,
			       (unsigned long long)ss.delivered, (unsigned long long)ss.backlog,
			       (unsigned long long)st.slots_free, (unsigned long long)st.backlog);
		}
		if (sent < total) {
			ssize_t n = send(cfd, out + sent, total - sent, MSG_NOSIGNAL);

			if (n > 0)
				sent += (size_t)n;
		}
		vr_enter(&r, 0, 1, 5 * T_MS);
		while (vr_reap_any(&r, &c)) {
			const uint8_t *d;

			if ((c.flags & (AEM_CQE_F_RESULT | AEM_CQE_F_SOCK_CTL)) || c.id != id) {
				t_assert(!(c.flags & AEM_CQE_F_SLOT), "a slot on a non-data event");
				continue;
			}
			d = (c.flags & AEM_CQE_F_SLOT) ? slot_ptr(&r, c.slot) : c.data;
			t_assert(got + (size_t)c.res <= total, "more bytes than sent");
			t_assert(!memcmp(d, out + got, (size_t)c.res), "byte %zu differs", got);
			got += (size_t)c.res;
			if (c.flags & AEM_CQE_F_SLOT)
				release_slot(&r, c.slot);
		}
	}
	ss.id = id;
	t_assert(ioctl(r.fd, AEM_IOC_SUB_STATS, &ss) == 0, "SUB_STATS: %s", strerror(errno));
	t_eq(ss.dropped, 0);
	t_eq(ss.produced, ss.delivered + ss.backlog + ss.dropped);
	close(cfd);
	free(out);
	vr_close(&r);
}

/* sock_conns: a third connection waits (LIMIT -EMFILE) until one of two closes. */
static void limit(const struct sockaddr_in *a, int lfd)
{
	struct aem_params p = { .sock_conns = 2, .api_version = AEM_API_VERSION };
	struct aem_sock_event ev;
	struct aem_cqe c;
	struct vring r;
	uint64_t lid, id1;
	int c1, c2, c3;

	vr_setup_or_die(&r, &p);
	t_eq(r.p.sock_conns, 2);
	t_eq(sub_sock(&r, lfd, 0, 0x40, &lid), 0);
	id1 = accept_one(&r, a, &c1);
	accept_one(&r, a, &c2);
	c3 = tcp_connect(a);	/* the kernel's listen queue holds it */
	ev = wait_ev(&r, lid, AEM_SOCK_EV_LIMIT, &c, "limit");
	t_eq(ev.res, -EMFILE);
	t_eq(op(&r, AEM_OP_SHUTDOWN, id1, AEM_SOCK_CLOSE, NULL, 0, 0x41), 0);
	wait_ev(&r, id1, AEM_SOCK_EV_CLOSED, &c, "closed");
	wait_ev(&r, 0, AEM_SOCK_EV_CONNECT, &c, "connect after the limit");
	close(c1);
	close(c2);
	close(c3);
	vr_close(&r);
}

/* Unix listeners: served where SO_PASSRIGHTS exists, and then no file passes. */
static void unix_listener(struct vring *r)
{
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = "f", .iov_len = 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm;
	struct aem_cqe c;
	int32_t res;
	int lfd, cfd;

	snprintf(un.sun_path, sizeof(un.sun_path), "/tmp/aem-sock-%d", getpid());
	unlink(un.sun_path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	t_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&un, sizeof(un)) == 0, "unix bind");
	t_assert(listen(lfd, 8) == 0, "unix listen");
	res = sub_sock(r, lfd, 0, 0x50, NULL);
	if (res == -EOPNOTSUPP) {
		t_note("Unix listeners refused here (no SO_PASSRIGHTS before Linux 6.16)");
		close(lfd);
		unlink(un.sun_path);
		return;
	}
	t_eq(res, 0);
	cfd = socket(AF_UNIX, SOCK_STREAM, 0);
	t_assert(connect(cfd, (struct sockaddr *)&un, sizeof(un)) == 0, "unix connect");
	wait_ev(r, 0, AEM_SOCK_EV_CONNECT, &c, "unix connect");
	/* A ring fd in flight would be a cycle: the peer's SCM_RIGHTS is refused. */
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &r->fd, sizeof(int));
	t_eq(sendmsg(cfd, &m, 0), -1);
	t_eq(errno, EPERM);
	t_assert(send(cfd, "u", 1, 0) == 1, "unix send");
	wait_ev(r, c.id, 0, &c, "unix data");
	t_eq(c.res, 1);
	close(cfd);
	close(lfd);
	unlink(un.sun_path);
}

static void hostile(struct vring *r)
{
	struct sockaddr_in b;
	int pfd[2], ufd, cfd, bfd;

	t_assert(pipe(pfd) == 0, "pipe");
	t_eq(sub_sock(r, pfd[0], 0, 2, NULL), -ENOTSOCK);
	t_eq(sub_sock(r, 1000, 0, 3, NULL), -EBADF);
	t_eq(sub_sock(r, -1, 0, 4, NULL), -EINVAL);
	ufd = socket(AF_INET, SOCK_DGRAM, 0);
	t_eq(sub_sock(r, ufd, 0, 5, NULL), -EOPNOTSUPP);
	bfd = socket(AF_INET, SOCK_STREAM, 0);
	t_eq(sub_sock(r, bfd, 0, 6, NULL), -EINVAL);	/* fresh, not listening */
	close(bfd);
	bfd = tcp_listener(&b);				/* not subscribed: its connections stay */
	cfd = tcp_connect(&b);
	t_eq(sub_sock(r, cfd, 0, 7, NULL), -EINVAL);	/* connected, not listening */
	t_eq(sub_sock(r, ufd, 1, 8, NULL), -EINVAL);	/* flags */
	t_eq(op(r, AEM_OP_SEND, 0x0100000000000001ULL | (7ULL << 32), 0, "x", 1, 9), -ENOENT);
	close(pfd[0]);
	close(pfd[1]);
	close(ufd);
	close(bfd);
	close(cfd);
}

int main(int argc, char **argv)
{
	struct aem_params p = { .sq_entries = 256, .cq_entries = 1024, .slot_size = SLOT,
				.slot_count = 256, .api_version = AEM_API_VERSION };
	struct sockaddr_in a;
	struct vring r;
	uint64_t lid;
	int32_t res;
	int lfd, cfd;

	seed = argc > 1 ? strtoull(argv[1], NULL, 0) : t_seed();
	printf("seed %" PRIu64 "\n", seed);
	vr_setup_or_die(&r, &p);
	lfd = tcp_listener(&a);
	res = sub_sock(&r, lfd, 0, 0x10, &lid);
	if (res == -EOPNOTSUPP)
		t_skip("aem_sock not loaded");
	t_eq(res, 0);
	hostile(&r);
	echo(&r, lid, &a);
	ends(&r, &a, lid);
	unix_listener(&r);
	/* Rings of their own on listeners of their own: a listener wakes every ring on it. */
	{
		struct sockaddr_in b;
		int bfd = tcp_listener(&b);

		limit(&b, bfd);
		close(bfd);
		bfd = tcp_listener(&b);
		slow_reader(&b, bfd);
		close(bfd);
	}
	/* Closing the listener's socket ends its subscription (the sweep, within a second or two). */
	{
		struct aem_sock_event ev;
		struct aem_cqe c;
		struct aem_ring_stats st;

		cfd = tcp_connect(&a);
		close(lfd);
		ev = wait_ev(&r, lid, AEM_SOCK_EV_CLOSED, &c, "listener closed");
		t_eq(ev.res, -ECONNABORTED);
		close(cfd);
		vr_stats(&r, &st);
		t_eq(st.dropped, 0);
	}
	vr_close(&r);
	return t_exit();
}
