/* SPDX-License-Identifier: MIT */
/*
 * AEM_SRC_SOCK with 10 000 connections on one ring: each is accepted,
 * echoes its peer's bytes, and closes after the peer's end-of-stream; the
 * ring holds them all at once (sock_conns), and every subscription ends.
 * The peers run in a child process: each side needs its own 10 000 fds.
 */
#include <sys/utsname.h>

#include "sock_test.h"

#define CONNS	10000

/*
 * 10 000, but a tenth on the debug kernel (release "*-aem-debug": KASAN and
 * lockdep under TCG run this some thirty times slower than a stock kernel,
 * past the harness's limit); AEM_TEST_SOCK_CONNS (1..10 000) overrides.
 */
static unsigned nconns = CONNS;

static unsigned conns_for_this_kernel(void)
{
	const char *env = getenv("AEM_TEST_SOCK_CONNS");
	struct utsname u;
	unsigned long n;

	if (env && *env) {
		n = strtoul(env, NULL, 0);
		return n >= 1 && n <= CONNS ? (unsigned)n : CONNS;
	}
	if (uname(&u) == 0 && strstr(u.release, "-aem-debug"))
		return CONNS / 10;
	return CONNS;
}

static unsigned short port;
static volatile unsigned connected, verified;
static const char *peer_err;
static int go[2];	/* the server says "all held" before the peers finish */

/* Open every connection, send 8 bytes on each, then read each echo and finish. */
static void peers(void)
{
	static int fds[CONNS];	/* the most there can be */
	char buf[8], want[8];
	unsigned k;

	for (k = 0; k < nconns; k++) {
		fds[k] = ts_connect_tcp(false, port);
		snprintf(want, sizeof(want), "%07u", k);
		if (send(fds[k], want, 8, MSG_NOSIGNAL) != 8) {
			peer_err = "send";
			return;
		}
		connected = k + 1;
	}
	if (read(go[0], buf, 1) != 1) {
		peer_err = "no word from the server";
		return;
	}
	for (k = 0; k < nconns; k++) {
		size_t got = 0;
		ssize_t n;

		snprintf(want, sizeof(want), "%07u", k);
		while (got < 8 && (n = recv(fds[k], buf + got, 8 - got, 0)) > 0)
			got += (size_t)n;
		if (got != 8 || memcmp(buf, want, 8)) {
			peer_err = "echo differs";
			return;
		}
		shutdown(fds[k], SHUT_WR);
		verified = k + 1;
	}
	for (k = 0; k < nconns; k++) {
		while (recv(fds[k], buf, sizeof(buf), 0) > 0)
			;
		close(fds[k]);
	}
}

static unsigned peak_subs;
static bool g_child_done;

static bool all_done(struct ts_srv *s)
{
	if (s->connects == nconns && !peak_subs) {
		struct aem_ring_stats st = t_stats(s->r);

		peak_subs = (unsigned)st.subscriptions;
		t_assert(write(go[1], "g", 1) == 1, "write");
	}
	return s->closed == nconns || (g_child_done && s->closed + s->closed_err >= nconns);
}

int main(void)
{
	struct aem_params p = t_params(1024, 8192, 1);
	struct aem_ring_stats st;
	struct aem_ring r;
	struct ts_srv s;
	int64_t lid;
	int lfd, st_child = 0;
	pid_t child;

	nconns = conns_for_this_kernel();
	p.sock_conns = nconns;
	p.slot_count = 1024;
	t_setup(&r, &p);
	ts_need_sock(&r);
	ts_raise_nofile(nconns + 256);
	lfd = ts_listen_tcp(false, &port);
	lid = ts_subscribe(&r, lfd, 0x10e4);
	t_assert(lid > 0, "subscribe: %s", strerror((int)-lid));
	ts_srv_init(&s, &r, 0x10e4, (uint64_t)lid);
	t_assert(pipe(go) == 0, "pipe");
	child = fork();
	t_assert(child >= 0, "fork");
	if (child == 0) {
		close(go[1]);	/* a parent that fails ends the wait */
		peers();
		if (peer_err)
			fprintf(stderr, "peer: %s (connected %u, verified %u)\n", peer_err, connected, verified);
		_exit(peer_err ? 1 : 0);
	}
	close(go[0]);
	ts_serve(&s, 120000, all_done);
	t_assert(waitpid(child, &st_child, 0) == child, "waitpid");
	t_assert(WIFEXITED(st_child) && WEXITSTATUS(st_child) == 0, "peers failed (status %#x)", st_child);
	t_eq(s.connects, nconns);
	t_eq(s.closed, nconns);
	t_eq(s.closed_err, 0);
	t_eq(s.limits, 0);
	t_eq(peak_subs, nconns + 1);
	t_eq(s.bytes_in, 8ull * nconns);
	t_eq(s.bytes_out, 8ull * nconns);
	aem_release_commit(&r);
	aem_submit(&r);
	st = t_stats(&r);
	t_eq(st.dropped, 0);
	t_eq(st.subscriptions, 1);
	t_eq(st.slots_free, r.slot_count);
	printf("%u connections held at once on one ring, each echoed and closed\n", nconns);
	close(lfd);
	free(s.wb);
	aem_teardown(&r);
	return t_exit();
}
