/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the socket-source tests (AEM_SRC_SOCK, PROTOCOL.md section
 * 10): listeners, a probe that skips when the backend has no such source,
 * and an echo server on the ring that writes every received byte back on
 * its connection and retries a send refused for a full queue.
 */
#ifndef SOCK_TEST_H
#define SOCK_TEST_H

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "aem_test.h"

/* Skip (77) when the backend serves no socket source: main stays green without it. */
static inline void ts_need_sock(struct aem_ring *r)
{
	struct aem_probe p;
	unsigned i;

	t_ok(aem_probe(r, 0, &p));
	for (i = 0; i < p.nr_sources; i++)
		if (p.sources[i].source == AEM_SRC_SOCK && !(p.sources[i].flags & AEM_PROBE_SRC_CLOSING))
			return;
	t_skip("no socket source (AEM_SRC_SOCK) on the %s backend: the probe does not list it",
	       aem_backend_name(r));
}

/* A TCP listener on loopback (v4, or v6 with @v6), port in *@port. */
static inline int ts_listen_tcp(bool v6, unsigned short *port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	t_assert(fd >= 0, "socket: %s", strerror(errno));
	memset(&ss, 0, sizeof(ss));
	if (v6) {
		struct sockaddr_in6 *a = (void *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)&ss;

		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*a);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
		if (v6)
			t_skip("no IPv6 loopback: %s", strerror(errno));
		t_fail("bind: %s", strerror(errno));
	}
	t_assert(listen(fd, 4096) == 0, "listen: %s", strerror(errno));
	t_assert(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0, "getsockname");
	*port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static inline int ts_connect_tcp(bool v6, unsigned short port)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port),
				   .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	t_assert(fd >= 0, "socket: %s", strerror(errno));
	if (connect(fd, v6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a4,
		    v6 ? sizeof(a6) : sizeof(a4)) < 0)
		t_fail("connect: %s", strerror(errno));
	return fd;
}

/* A Unix stream listener at a fresh abstract address. */
static inline int ts_listen_unix(struct sockaddr_un *a, socklen_t *al)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	t_assert(fd >= 0, "socket: %s", strerror(errno));
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "aem-sock-test-%d-%llu", (int)getpid(),
		 (unsigned long long)t_now_ns());
	*al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
	t_assert(bind(fd, (struct sockaddr *)a, *al) == 0, "bind unix: %s", strerror(errno));
	t_assert(listen(fd, 4096) == 0, "listen: %s", strerror(errno));
	return fd;
}

/* Subscribe listener @fd; the listener's id, or -errno. */
static inline int64_t ts_subscribe(struct aem_ring *r, int fd, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(r);
	struct aem_cqe c;

	aem_prep_subscribe_sock(sqe, fd, 0, tag);
	t_submit(r);
	c = t_result(r, tag, 5000);
	return c.res < 0 ? c.res : (int64_t)c.id;
}

/*
 * Whether @lid is the module's refusal of a Unix listener on a kernel
 * without SO_PASSRIGHTS (before 6.16: PROTOCOL.md section 10), which the
 * caller then skips, saying so.  Anywhere else a refusal is a failure.
 */
static inline bool ts_unix_refused(struct aem_ring *r, int64_t lid)
{
	if (lid != -EOPNOTSUPP || !(r->features & AEM_FEAT_KERNEL))
		return false;
	printf("note: this kernel cannot refuse SCM_RIGHTS on a Unix listener: "
	       "the module refuses Unix listeners (EOPNOTSUPP), skipped\n");
	return true;
}

/* An SQE, submitting what is queued while the SQ ring is full. */
static inline struct aem_sqe *ts_sqe(struct aem_ring *r)
{
	struct aem_sqe *sqe;
	int i;

	for (i = 0; i < 10000; i++) {
		sqe = aem_get_sqe(r);
		if (sqe)
			return sqe;
		t_ok(aem_submit(r));
		usleep(100);
	}
	t_fail("SQ ring stays full");
}

#define TS_WB_TAG	0x5b00000000000000ull	/* user_data of the echo server's sends */
#define TS_SHUT_TAG	0x5c00000000000000ull	/* and of its closes */

/* A send in flight: retried when refused for a full queue. */
struct ts_wb {
	uint64_t	conn;
	uint32_t	slot;		/* the event's slot reference, or ~0: inline */
	uint32_t	len;
	uint8_t		data[AEM_CQE_INLINE];
	bool		used;
};

struct ts_srv {
	struct aem_ring	*r;
	uint64_t	tag;		/* the listener's */
	uint64_t	lid;
	bool		echo;		/* write data back */
	bool		close_on_eof;	/* AEM_SOCK_CLOSE after the peer's EOF */
	unsigned	connects, eofs, closed, closed_err, limits;
	int		last_err;	/* res of the last CLOSED with an error */
	uint64_t	bytes_in, bytes_out, events;
	uint64_t	conn_ids[16];	/* the first connections' ids, for tests that name them */
	struct ts_wb	*wb;
	unsigned	nwb, capwb, retries;
};

static inline void ts_srv_init(struct ts_srv *s, struct aem_ring *r, uint64_t tag, uint64_t lid)
{
	memset(s, 0, sizeof(*s));
	s->r = r;
	s->tag = tag;
	s->lid = lid;
	s->echo = true;
	s->close_on_eof = true;
}

static inline void ts_wb_submit(struct ts_srv *s, unsigned i)
{
	struct aem_sqe *sqe = ts_sqe(s->r);
	struct ts_wb *w = &s->wb[i];

	if (w->slot != ~0u)
		aem_prep_writeback_slot(sqe, w->conn, w->slot, w->len);
	else
		aem_prep_sock_send(sqe, w->conn, w->data, w->len);
	sqe->user_data = TS_WB_TAG | i;
}

static inline void ts_echo(struct ts_srv *s, const struct aem_cqe *c)
{
	unsigned i;

	for (i = 0; i < s->nwb && s->wb[i].used; i++)
		;
	if (i == s->nwb) {
		if (s->nwb == s->capwb) {
			s->capwb = s->capwb ? 2 * s->capwb : 1024;
			s->wb = realloc(s->wb, s->capwb * sizeof(*s->wb));
			t_assert(s->wb, "realloc");
		}
		s->nwb++;
	}
	s->wb[i].used = true;
	s->wb[i].conn = c->id;
	s->wb[i].len = (uint32_t)c->res;
	s->wb[i].slot = (c->flags & AEM_CQE_F_SLOT) ? c->slot : ~0u;
	if (!(c->flags & AEM_CQE_F_SLOT))
		memcpy(s->wb[i].data, c->data, (size_t)c->res);
	ts_wb_submit(s, i);
}

/* One CQE of the echo server's ring. */
static inline void ts_handle(struct ts_srv *s, const struct aem_cqe *c)
{
	const struct aem_sock_event *ev;
	struct aem_sqe *sqe;

	if (c->flags & AEM_CQE_F_RESULT) {
		uint64_t kind = c->user_data & 0xff00000000000000ull;
		unsigned i = (unsigned)(c->user_data & 0xffffffffu);

		if (kind == TS_WB_TAG) {
			t_assert(i < s->nwb && s->wb[i].used, "send result for unknown %#llx",
				 (unsigned long long)c->user_data);
			if (c->res == -ENOBUFS) {
				s->retries++;
				ts_wb_submit(s, i);	/* the slot is still ours: again */
				return;
			}
			if (c->res >= 0)
				t_assert(c->res == (int)s->wb[i].len, "sent %d of %u (ud %#llx flags %#x slot %#x)", c->res, s->wb[i].len, (unsigned long long)c->user_data, c->flags, s->wb[i].slot);
			else if (s->wb[i].slot != ~0u && aem_sock_refused(c->res))
				t_release(s->r, s->wb[i].slot);	/* refused: the slot is ours */
			if (c->res > 0)
				s->bytes_out += (uint64_t)c->res;
			s->wb[i].used = false;
			return;
		}
		if (kind == TS_SHUT_TAG)
			return;	/* a close's answer; the connection may have failed first */
		t_fail("unexpected result %#llx res %d", (unsigned long long)c->user_data, c->res);
	}
	t_assert(c->source == AEM_SRC_SOCK, "event of source %u", c->source);
	t_assert(c->user_data == s->tag, "event tag %#llx", (unsigned long long)c->user_data);
	s->events++;
	ev = aem_cqe_sock_event(c);
	if (!ev) {
		t_assert(c->res > 0, "data event of %d bytes", c->res);
		s->bytes_in += (uint64_t)c->res;
		if (s->echo) {
			ts_echo(s, c);
		} else if (c->flags & AEM_CQE_F_SLOT) {
			t_release(s->r, c->slot);
		}
		return;
	}
	switch (ev->type) {
	case AEM_SOCK_EV_CONNECT:
		t_assert(c->id != s->lid && AEM_ID_KIND(c->id) == AEM_ID_KIND_SUB, "connection id");
		if (s->connects < 16)
			s->conn_ids[s->connects] = c->id;
		s->connects++;
		break;
	case AEM_SOCK_EV_EOF:
		s->eofs++;
		if (s->close_on_eof) {
			sqe = ts_sqe(s->r);
			aem_prep_sock_shutdown(sqe, c->id, AEM_SOCK_CLOSE);
			sqe->user_data = TS_SHUT_TAG;
		}
		break;
	case AEM_SOCK_EV_CLOSED:
		t_assert(c->flags & AEM_CQE_F_FINAL, "CLOSED without F_FINAL");
		s->closed++;
		if (ev->res) {
			s->closed_err++;
			s->last_err = ev->res;
		}
		break;
	case AEM_SOCK_EV_LIMIT:
		s->limits++;
		break;
	default:
		t_fail("unknown socket event type %u", ev->type);
	}
}

/* Serve for up to @ms or until @done says so; returns CQEs handled. */
static inline uint64_t ts_serve(struct ts_srv *s, unsigned ms, bool (*done)(struct ts_srv *))
{
	uint64_t end = t_now_ns() + ms * T_MS, n = 0;
	struct aem_cqe c;

	while (t_now_ns() < end && !(done && done(s))) {
		if (!t_next(s->r, &c, 10)) {
			aem_submit(s->r);
			continue;
		}
		ts_handle(s, &c);
		n++;
		if (!(n & 63))
			aem_submit(s->r);
	}
	aem_submit(s->r);
	return n;
}

/* Byte @i of connection @k's stream: reproducible, order-sensitive. */
static inline uint8_t ts_byte(uint64_t seed, unsigned k, uint64_t i)
{
	uint64_t x = seed ^ ((uint64_t)k << 40) ^ (i >> 3);

	x = (x ^ (x >> 31)) * 0x7fb5d329728ea185ull;
	x = (x ^ (x >> 27)) * 0x81dadef4bc2dd44dull;
	return (uint8_t)(x >> (8 * (i & 7)));
}

static inline void ts_raise_nofile(unsigned want)
{
	struct rlimit rl;

	t_assert(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
	if (rl.rlim_cur >= want)
		return;
	if (rl.rlim_max < want) {
		/* Root (CAP_SYS_RESOURCE) may raise the hard limit too, as in the test VM. */
		struct rlimit up = { .rlim_cur = want, .rlim_max = want };

		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			return;
		t_skip("RLIMIT_NOFILE hard limit %llu < %u, and raising it: %s",
		       (unsigned long long)rl.rlim_max, want, strerror(errno));
	}
	rl.rlim_cur = want;
	t_assert(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
}

#endif /* SOCK_TEST_H */
