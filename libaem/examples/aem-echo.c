// SPDX-License-Identifier: MIT
/*
 * aem-echo: a TCP echo server on the ring.  The kernel side (the module's
 * aem_sock, or the embedded backend's socket thread) accepts and receives;
 * this loop only reads events and writes each received payload back to its
 * connection -- in place, from the very slot it arrived in -- and closes a
 * connection once its peer has finished.  No accept, read or write here.
 *
 *   aem-echo [PORT]        serve on 127.0.0.1:PORT (0 or none: any port, printed)
 *   aem-echo --self-test   serve, connect to itself, check an echo, exit 0/1
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libaem.h"

#define LISTEN_TAG	1
#define SEND_TAG	2
#define CLOSE_TAG	3

static struct aem_sqe *sqe_get(struct aem_ring *r)
{
	struct aem_sqe *sqe;

	while (!(sqe = aem_get_sqe(r)))
		aem_submit(r);	/* the SQ ring is full: hand it over first */
	return sqe;
}

/* One event: echo data, close after the peer's end-of-stream. Returns 1 when a connection ended. */
static int handle(struct aem_ring *r, const struct aem_cqe *c)
{
	const struct aem_sock_event *ev = aem_cqe_sock_event(c);
	struct aem_sqe *sqe;

	if (c->flags & AEM_CQE_F_RESULT) {
		/* Only refusals and failures come back (SILENT).  A refused writeback leaves us its slot. */
		if ((uint32_t)c->user_data == SEND_TAG) {
			fprintf(stderr, "aem-echo: a send failed: %s\n", strerror(-c->res));
			if (c->user_data >> 32 && aem_sock_refused(c->res)) {
				aem_release_slot(r, (unsigned)(c->user_data >> 32) - 1);
				aem_release_commit(r);
			}
		}
		return 0;
	}
	if (!ev) {
		sqe = sqe_get(r);
		if (c->flags & AEM_CQE_F_SLOT)
			aem_prep_writeback_slot(sqe, c->id, c->slot, (unsigned)c->res);
		else
			aem_prep_sock_send(sqe, c->id, c->data, (unsigned)c->res);
		/* The slot reference beside the tag (+1: 0 means inline). */
		sqe->user_data = (uint64_t)((c->flags & AEM_CQE_F_SLOT) ? c->slot + 1ull : 0) << 32 | SEND_TAG;
		sqe->flags |= AEM_SQE_F_SILENT;	/* errors are still answered */
		return 0;
	}
	if (ev->type == AEM_SOCK_EV_EOF) {
		sqe = sqe_get(r);
		aem_prep_sock_shutdown(sqe, c->id, AEM_SOCK_CLOSE);	/* after the echoes queued before it */
		sqe->user_data = CLOSE_TAG;
		sqe->flags |= AEM_SQE_F_SILENT;
	}
	return ev->type == AEM_SOCK_EV_CLOSED;
}

/* Serve until @max connections ended (0: for ever). */
static int serve(struct aem_ring *r, unsigned max)
{
	unsigned ended = 0, cls, n, i;
	const struct aem_cqe *batch[64];
	struct aem_cqe c;

	for (;;) {
		while (aem_result_peek(r, &i)) {
			c = *aem_result_at(r, i);
			aem_result_advance(r, 1);
			handle(r, &c);
		}
		for (cls = 0; cls < r->nr_classes; cls++) {
			n = aem_peek_batch(r, cls, batch, 64);
			for (i = 0; i < n; i++)
				ended += (unsigned)handle(r, batch[i]);
			aem_cq_advance(r, cls, n);
		}
		if (max && ended >= max)
			return 0;
		aem_submit_and_wait(r, 1, 1000000000LL);	/* a timeout or a signal: look again */
	}
}

static int self_test(unsigned short port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char msg[3000], got[3000];
	size_t have = 0;
	ssize_t k;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (char)('a' + i % 26);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    send(fd, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg) || shutdown(fd, SHUT_WR) < 0)
		return 1;
	while (have < sizeof(got) && (k = recv(fd, got + have, sizeof(got) - have, 0)) > 0)
		have += (size_t)k;
	close(fd);
	return have == sizeof(msg) && !memcmp(msg, got, sizeof(msg)) ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int test = argc > 1 && !strcmp(argv[1], "--self-test");
	socklen_t al = sizeof(a);
	struct aem_params p;
	struct aem_ring r;
	struct aem_cqe c;
	struct aem_sqe *sqe;
	unsigned i;
	pid_t pid;
	int lfd, ret, st;

	a.sin_port = htons(argc > 1 && !test ? (unsigned short)atoi(argv[1]) : 0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1024) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
		perror("aem-echo: listen");
		return 1;
	}
	memset(&p, 0, sizeof(p));
	p.slot_size = 4096;
	ret = aem_setup(&p, &r);
	if (ret < 0) {
		fprintf(stderr, "aem-echo: aem_setup: %s\n", strerror(-ret));
		return 1;
	}
	sqe = sqe_get(&r);
	aem_prep_subscribe_sock(sqe, lfd, 0, LISTEN_TAG);
	aem_submit(&r);
	for (;;) {
		if (aem_result_peek(&r, &i)) {
			c = *aem_result_at(&r, i);
			aem_result_advance(&r, 1);
			break;
		}
		aem_wait(&r, 1, -1);
	}
	if (c.res < 0) {
		fprintf(stderr, "aem-echo: subscribe the listener (%s backend): %s\n",
			aem_backend_name(&r), strerror(-c.res));
		return c.res == -EOPNOTSUPP && test ? 77 : 1;
	}
	if (!test) {
		printf("aem-echo: %s backend, echoing on 127.0.0.1:%u\n", aem_backend_name(&r),
		       ntohs(a.sin_port));
		fflush(stdout);
		return serve(&r, 0);
	}
	pid = fork();
	if (pid == 0)
		_exit(self_test(ntohs(a.sin_port)));
	serve(&r, 1);
	waitpid(pid, &st, 0);
	aem_teardown(&r);
	close(lfd);
	ret = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
	printf("aem-echo: self-test %s\n", ret ? "FAILED" : "passed");
	return ret;
}
