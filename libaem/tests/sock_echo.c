/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK: an echo server on the ring, over TCP/IPv4, TCP/IPv6 and
 * Unix stream.  Many connections send random amounts in random chunks;
 * every byte must come back exactly once and in order, each connection
 * sees the server close after its end-of-stream, and the ring drops
 * nothing: produced == delivered + backlog + dropped with dropped == 0,
 * every slot back at the end.
 */
#include "sock_test.h"

#define CONNS		32
#define MAX_TOTAL	(192u << 10)
#define MAX_CHUNK	(16u << 10)

enum { FAM_V4, FAM_V6, FAM_UNIX };

struct client {
	int		fam;
	unsigned short	port;
	struct sockaddr_un ua;
	socklen_t	ual;
	uint64_t	seed;
	volatile bool	done;
	const char	*err;
};

struct cconn {
	int		fd;
	uint64_t	total, sent, got;
	bool		shut, eof;
};

static int dial(struct client *cl)
{
	int fd;

	if (cl->fam == FAM_UNIX) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		t_assert(fd >= 0 && connect(fd, (struct sockaddr *)&cl->ua, cl->ual) == 0,
			 "connect unix: %s", strerror(errno));
	} else {
		fd = ts_connect_tcp(cl->fam == FAM_V6, cl->port);
	}
	t_assert(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
	return fd;
}

static void *client_main(void *arg)
{
	struct client *cl = arg;
	struct cconn c[CONNS];
	struct pollfd pf[CONNS];
	static uint8_t buf[MAX_CHUNK];
	uint64_t rs = cl->seed, end = t_now_ns() + 60000 * T_MS;
	unsigned k, left = CONNS;
	ssize_t n;

	for (k = 0; k < CONNS; k++) {
		memset(&c[k], 0, sizeof(c[k]));
		c[k].fd = dial(cl);
		c[k].total = t_rand(&rs) % MAX_TOTAL;
		if (k % 8 == 0)
			c[k].total = k % 16 ? 1 : 0;	/* the smallest cases too */
	}
	while (left && t_now_ns() < end) {
		for (k = 0; k < CONNS; k++) {
			pf[k].fd = c[k].eof ? -1 : c[k].fd;
			pf[k].events = POLLIN | (c[k].sent < c[k].total ? POLLOUT : 0);
		}
		if (poll(pf, CONNS, 100) < 0)
			continue;
		for (k = 0; k < CONNS; k++) {
			struct cconn *x = &c[k];

			if (x->eof)
				continue;
			if (x->sent < x->total && (pf[k].revents & POLLOUT)) {
				uint64_t m = 1 + t_rand(&rs) % MAX_CHUNK, i;

				if (m > x->total - x->sent)
					m = x->total - x->sent;
				for (i = 0; i < m; i++)
					buf[i] = ts_byte(cl->seed, k, x->sent + i);
				n = send(x->fd, buf, m, MSG_NOSIGNAL);
				if (n > 0)
					x->sent += (uint64_t)n;
				else if (n < 0 && errno != EAGAIN) {
					cl->err = "send failed";
					goto out;
				}
			}
			if (x->sent == x->total && !x->shut) {
				shutdown(x->fd, SHUT_WR);
				x->shut = true;
			}
			if (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) {
				n = recv(x->fd, buf, sizeof(buf), 0);
				if (n > 0) {
					for (ssize_t i = 0; i < n; i++) {
						if (buf[i] != ts_byte(cl->seed, k, x->got + (uint64_t)i)) {
							fprintf(stderr, "conn %u: byte %llu wrong\n", k,
								(unsigned long long)(x->got + (uint64_t)i));
							cl->err = "echo differs";
							goto out;
						}
					}
					x->got += (uint64_t)n;
					if (x->got > x->total) {
						cl->err = "more bytes echoed than sent";
						goto out;
					}
				} else if (n == 0) {
					if (x->got != x->total || !x->shut) {
						fprintf(stderr, "conn %u: closed after %llu of %llu\n", k,
							(unsigned long long)x->got, (unsigned long long)x->total);
						cl->err = "closed early";
						goto out;
					}
					x->eof = true;
					left--;
				} else if (errno != EAGAIN) {
					cl->err = "recv failed";
					goto out;
				}
			}
		}
	}
	if (left)
		cl->err = "timed out";
out:
	for (k = 0; k < CONNS; k++)
		close(c[k].fd);
	cl->done = true;
	return NULL;
}

static struct client *g_cl;

static bool all_closed(struct ts_srv *s)
{
	return s->closed == CONNS && g_cl->done;
}

static void run(int fam, uint64_t seed)
{
	static const char *const names[] = { "tcp4", "tcp6", "unix" };
	struct aem_params p = t_params(256, 4096, 1);
	struct client cl = { .fam = fam, .seed = seed };
	struct aem_ring_stats st;
	struct aem_ring r;
	struct ts_srv s;
	pthread_t th;
	int64_t lid;
	int lfd;

	p.slot_size = 2048;
	p.slot_count = 256;
	t_setup(&r, &p);
	ts_need_sock(&r);
	if (fam == FAM_UNIX)
		lfd = ts_listen_unix(&cl.ua, &cl.ual);
	else
		lfd = ts_listen_tcp(fam == FAM_V6, &cl.port);
	lid = ts_subscribe(&r, lfd, 0x50c0);
	if (fam == FAM_UNIX && ts_unix_refused(&r, lid)) {
		close(lfd);
		aem_teardown(&r);
		return;
	}
	t_assert(lid > 0, "subscribe %s listener: %s", names[fam], strerror((int)-lid));
	ts_srv_init(&s, &r, 0x50c0, (uint64_t)lid);
	g_cl = &cl;
	t_assert(pthread_create(&th, NULL, client_main, &cl) == 0, "pthread_create");
	ts_serve(&s, 60000, all_closed);
	pthread_join(th, NULL);
	t_assert(!cl.err, "%s: client: %s (server: %u connects, %u eofs, %u closed)", names[fam],
		 cl.err, s.connects, s.eofs, s.closed);
	t_eq(s.connects, CONNS);
	t_eq(s.closed, CONNS);
	t_eq(s.closed_err, 0);
	t_eq(s.bytes_in, s.bytes_out);
	aem_release_commit(&r);
	aem_submit(&r);
	st = t_stats(&r);
	t_eq(st.dropped, 0);
	t_eq(st.slots_free, r.slot_count);
	t_eq(st.subscriptions, 1);	/* the listener; every connection ended */
	printf("%s: %u connections, %llu bytes each way, %llu events, %u sends retried\n", names[fam],
	       CONNS, (unsigned long long)s.bytes_in, (unsigned long long)s.events, s.retries);
	close(lfd);
	free(s.wb);
	aem_teardown(&r);
}

int main(void)
{
	uint64_t seed = t_seed();

	run(FAM_V4, seed);
	run(FAM_V6, seed + 1);
	run(FAM_UNIX, seed + 2);
	return t_exit();
}
