/* SPDX-License-Identifier: MIT */
/*
 * Holds a ring open while vmtest unloads and reloads a source module:
 *   reload_holder MODULE READY_FILE GO_FILE [GONE_FILE PROBED_FILE]
 * Subscribes to the module's source, sees it produce, creates READY_FILE,
 * (with GONE_FILE: waits for it, the module being removed, checks that
 * AEM_IOC_PROBE no longer lists the source, creates PROBED_FILE), then
 * waits for GO_FILE (the module has been removed and loaded again), then
 * checks that the unload ended the subscription with a final event, that
 * the ring survived, and that a new subscription to the reloaded module
 * produces again.
 *
 * aem_sock is unloaded with live connections: a listener with several
 * accepted connections, one of them holding sends its peer does not read
 * (queued in the kernel).  Every connection and the listener must end
 * with a final event, the queued sends must be answered -ECONNABORTED,
 * every peer must see its connection closed, and nothing may be dropped.
 */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "aem_test.h"

static int sv[2] = { -1, -1 };

/* aem_sock: the listener, and the clients of its live connections. */
#define SOCK_PEERS	16
#define SOCK_SENDS	40		/* 64 KiB sends to a peer that reads nothing */
#define SOCK_SEND_TAG	0x5e00
static int lfd = -1;
static struct sockaddr_in laddr;
static int peers[SOCK_PEERS];
static int npeers;

static uint8_t source_of(const char *mod)
{
	if (!strcmp(mod, "aem_timer"))
		return AEM_SRC_TIMER;
	if (!strcmp(mod, "aem_gen"))
		return AEM_SRC_GEN;
	if (!strcmp(mod, "aem_proc"))
		return AEM_SRC_PROC;
	if (!strcmp(mod, "aem_fd"))
		return AEM_SRC_FD;
	if (!strcmp(mod, "aem_sock"))
		return AEM_SRC_SOCK;
	return AEM_SRC_NONE;
}

static void fill(struct aem_sqe *sqe, uint8_t src)
{
	sqe->opcode = AEM_OP_SUBSCRIBE;
	sqe->source = src;
	switch (src) {
	case AEM_SRC_TIMER:
		sqe->timer.first_ns = 2 * T_MS;
		sqe->timer.interval_ns = 5 * T_MS;
		break;
	case AEM_SRC_GEN:
		sqe->gen.rate = 200;
		sqe->gen.burst = 1;
		sqe->gen.payload_len = 16;
		break;
	case AEM_SRC_PROC:
		sqe->proc.events = AEM_PROC_ALL;
		sqe->proc.pid = (uint32_t)getpid();
		break;
	case AEM_SRC_FD:
		sqe->fd.fd = sv[0];
		sqe->fd.events = AEM_FD_READABLE | AEM_FD_HANGUP;
		break;
	case AEM_SRC_SOCK:
		sqe->sock.fd = lfd;
		break;
	}
}

/* A new peer of the listener; @rcvbuf > 0 makes it a slow reader. */
static int sock_peer(int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	t_assert(fd >= 0 && npeers < SOCK_PEERS, "socket");
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	t_assert(connect(fd, (struct sockaddr *)&laddr, sizeof(laddr)) == 0, "connect: %s", strerror(errno));
	peers[npeers++] = fd;
	return fd;
}

/* Make the source produce: timers and generators do it by themselves. */
static void poke(uint8_t src)
{
	if (src == AEM_SRC_PROC) {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
	} else if (src == AEM_SRC_FD) {
		t_assert(write(sv[1], "x", 1) == 1, "socket write");
	} else if (src == AEM_SRC_SOCK) {
		t_assert(send(sock_peer(0), "x", 1, 0) == 1, "peer send");
	}
}

static bool is_connect(const struct aem_cqe *c, void *arg)
{
	struct aem_sock_event ev;

	memcpy(&ev, c->data, sizeof(ev));
	return !(c->flags & AEM_CQE_F_RESULT) && (c->flags & AEM_CQE_F_SOCK_CTL) &&
	       ev.type == AEM_SOCK_EV_CONNECT;
}

/*
 * Before the unload: more live connections, each with a byte in flight,
 * and one whose peer reads nothing while SOCK_SENDS sends of 64 KiB are
 * submitted to it (most of them stay queued in the kernel).
 */
static void sock_live(struct vring *r)
{
	uint8_t *slot = r->region[AEM_REGION_PAYLOAD];
	struct aem_cqe c;
	uint64_t slow = 0;
	int i, fd;

	for (i = 0; i < 8; i++) {
		fd = sock_peer(i == 7 ? 4096 : 0);
		t_assert(vr_wait_cqe(r, &c, 5000, is_connect, NULL), "no connect for peer %d", i);
		if (i == 7)
			slow = c.id;
		else
			t_assert(send(fd, "live", 4, 0) == 4, "peer send");
	}
	memset(slot, 'q', r->p.slot_size);
	for (i = 0; i < SOCK_SENDS; i++) {
		struct aem_sqe *sqe = vr_sqe(r);

		t_assert(sqe, "SQ full");
		sqe->opcode = AEM_OP_SEND;
		sqe->flags = AEM_SQE_F_SLOT;
		sqe->slot = 0;
		sqe->len = r->p.slot_size;
		sqe->target = slow;
		sqe->user_data = SOCK_SEND_TAG + (uint64_t)i;
	}
	t_eq(vr_enter(r, SOCK_SENDS, 0, 0), SOCK_SENDS);
}

static bool is_final(const struct aem_cqe *c, void *arg)
{
	return !(c->flags & AEM_CQE_F_RESULT) && (c->flags & AEM_CQE_F_FINAL);
}

/*
 * After the reload: every connection and the listener ended (one final
 * event each, besides the one main() saw), every queued send answered,
 * the last ones -ECONNABORTED, every peer closed, nothing dropped.
 */
static void sock_after(struct vring *r)
{
	struct aem_ring_stats st;
	struct aem_cqe c;
	int i, finals = 0, sent = 0, aborted = 0;

	/* The listener and every connection (npeers of them) end; every send is answered. */
	while (finals < 1 + npeers || sent + aborted < SOCK_SENDS) {
		t_assert(vr_wait_cqe(r, &c, 5000, NULL, NULL),
			 "%d final events of %d, %d sends answered of %d", finals, 1 + npeers,
			 sent + aborted, SOCK_SENDS);
		if ((c.flags & AEM_CQE_F_RESULT) && c.user_data >= SOCK_SEND_TAG &&
		    c.user_data < SOCK_SEND_TAG + SOCK_SENDS) {
			if (c.res == -ECONNABORTED)
				aborted++;
			else if (c.res == (int32_t)r->p.slot_size)
				sent++;
			else
				t_fail("a queued send answered %d", c.res);
		} else if (is_final(&c, NULL)) {
			t_eq(c.user_data, 0x501);
			t_eq(c.res, 0);
			finals++;
		}
	}
	t_assert(aborted > 0, "no send was queued at the unload (%d sent)", sent);
	for (i = 0; i < npeers; i++) {
		struct pollfd pfd = { .fd = peers[i], .events = POLLIN };
		char buf[65536];
		ssize_t n;
		int k;

		/* Drain what was sent, then the end: FIN, or a reset for unread bytes. */
		for (k = 0; k < 1000; k++) {
			t_assert(poll(&pfd, 1, 5000) == 1, "peer %d still open after the unload", i);
			n = recv(peers[i], buf, sizeof(buf), 0);
			if (n <= 0)
				break;
		}
		t_assert(n == 0 || (n < 0 && errno == ECONNRESET), "peer %d: recv %zd %s", i, n, strerror(errno));
		close(peers[i]);
	}
	vr_stats(r, &st);
	t_eq(st.dropped, 0);
	printf("aem_sock unloaded with %d live connections: %d queued sends aborted, %d sent\n",
	       npeers, aborted, sent);
	npeers = 0;
}

struct want {
	uint64_t sub;
	bool final;
};

static bool is_event_of(const struct aem_cqe *c, void *arg)
{
	struct want *w = arg;

	if (c->flags & AEM_CQE_F_RESULT)
		return false;
	if (w->final)
		return (c->flags & AEM_CQE_F_FINAL) != 0;
	return true;
}

static uint64_t subscribe(struct vring *r, uint8_t src, uint64_t tag)
{
	struct aem_sqe *sqe = vr_sqe(r);
	struct aem_cqe c;
	int32_t res;

	fill(sqe, src);
	sqe->user_data = tag;
	res = vr_result(r, tag, &c);
	t_assert(res == 0, "subscribe to source %u: %s", src, strerror(-res));
	return c.id;
}

/* The probe's entry for @src, copied to @out; false if the source is not loaded. */
static bool probe_source(struct vring *r, uint8_t src, struct aem_probe_source *out)
{
	struct aem_probe p;
	uint32_t i;

	t_assert(ioctl(r->fd, AEM_IOC_PROBE, &p) == 0, "AEM_IOC_PROBE: %s", strerror(errno));
	t_assert(p.nr_sources <= AEM_PROBE_SOURCES, "%u sources", p.nr_sources);
	for (i = 0; i < p.nr_sources; i++) {
		if (p.sources[i].source == src) {
			*out = p.sources[i];
			return true;
		}
	}
	return false;
}

static void touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY, 0644);

	t_assert(fd >= 0, "create %s", path);
	close(fd);
}

static void wait_file(const char *path)
{
	struct stat st;
	int i;

	for (i = 0; i < 1200 && stat(path, &st) != 0; i++)
		usleep(50000);
	t_assert(i < 1200, "%s never appeared", path);
}

int main(int argc, char **argv)
{
	struct aem_cqe c;
	struct want w = { 0 };
	struct aem_probe_source ps;
	struct vring r;
	uint8_t src;
	int i;

	if (argc != 4 && argc != 6)
		t_fail("usage: reload_holder MODULE READY_FILE GO_FILE [GONE_FILE PROBED_FILE]");
	src = source_of(argv[1]);
	if (src == AEM_SRC_NONE)
		t_skip("no source known for module %s", argv[1]);
	t_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	if (src == AEM_SRC_SOCK) {
		socklen_t alen = sizeof(laddr);

		lfd = socket(AF_INET, SOCK_STREAM, 0);
		laddr.sin_family = AF_INET;
		laddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		t_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&laddr, sizeof(laddr)) == 0, "bind");
		t_assert(listen(lfd, 64) == 0, "listen");
		t_assert(getsockname(lfd, (struct sockaddr *)&laddr, &alen) == 0, "getsockname");
	}

	{
		struct aem_params p = { .slot_size = 65536, .slot_count = 64, .send_slots = 1,
					.api_version = AEM_API_VERSION };

		vr_setup_or_die(&r, src == AEM_SRC_SOCK ? &p : NULL);
	}
	w.sub = subscribe(&r, src, 0x501);
	poke(src);
	t_assert(vr_wait_cqe(&r, &c, 5000, is_event_of, &w), "no event from %s before the reload", argv[1]);
	if (src == AEM_SRC_SOCK)
		sock_live(&r);

	t_assert(probe_source(&r, src, &ps), "probe lacks %s before the unload", argv[1]);
	t_assert(!(ps.flags & AEM_PROBE_SRC_CLOSING), "%s closing before the unload", argv[1]);
	t_assert(ps.version >= 1 && ps.name[0], "probe entry of %s: version %u", argv[1], ps.version);

	touch(argv[2]);
	if (argc == 6) {
		wait_file(argv[4]);
		t_assert(!probe_source(&r, src, &ps), "probe lists %s after rmmod", argv[1]);
		touch(argv[5]);
	}
	wait_file(argv[3]);
	t_assert(probe_source(&r, src, &ps), "probe lacks %s after the reload", argv[1]);
	t_assert(!(ps.flags & AEM_PROBE_SRC_CLOSING), "%s closing after the reload", argv[1]);

	/* The unload ended the subscription with a final event. */
	w.final = true;
	if (src == AEM_SRC_SOCK) {
		sock_after(&r);
	} else {
		t_assert(vr_wait_cqe(&r, &c, 5000, is_event_of, &w), "no final event after unloading %s", argv[1]);
		t_eq(c.user_data, 0x501);
	}
	vr_nop_ok(&r);

	/* The reloaded module serves a new subscription. */
	w.final = false;
	subscribe(&r, src, 0x502);
	for (i = 0; i < 3; i++) {
		poke(src);
		t_assert(vr_wait_cqe(&r, &c, 5000, is_event_of, &w), "no event after reloading %s", argv[1]);
		if (c.user_data == 0x502)
			break;
	}
	t_eq(c.user_data, 0x502);
	vr_close(&r);
	return T_EXIT_PASS;
}
