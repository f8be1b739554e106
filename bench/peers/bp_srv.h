/* SPDX-License-Identifier: MIT */
/*
 * bp_srv.h - the C servers of the server scenarios (tcp_echo, http).
 *
 * A server listens on 127.0.0.1 (an ephemeral port) and serves from one
 * thread of its own until bp_srv_stop(): an echo server sends back every
 * byte it receives; an HTTP server answers every request (a header block
 * ending in an empty line; request bodies are not expected) with the same
 * canned response, keep-alive, in order, pipelining-safe.
 *
 * Loops: epoll (bp_epoll.c: level-triggered, one thread, non-blocking
 * read/write) and io_uring (bp_uring_srv.c: multishot accept, multishot
 * receive into a provided buffer ring, one send in flight per connection).
 * Functions return 0 or -errno.
 */
#ifndef BP_SRV_H
#define BP_SRV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Loops */
enum {
	BP_SRV_EPOLL = 1,
	BP_SRV_URING,
};

/* What a server answers */
enum {
	BP_SRV_ECHO = 1,
	BP_SRV_HTTP,
};

/* Bytes a connection may hold unsent, and received but not yet answered. */
#define BP_SRV_OUT_MAX	(256u << 10)
#define BP_SRV_IN_MAX	(64u << 10)

struct bp_conn {
	int fd;
	uint32_t in_len;	/* HTTP: bytes of an incomplete request */
	uint32_t out_off;	/* first unsent byte */
	uint32_t out_len;	/* end of the bytes to send */
	uint32_t inflight;	/* io_uring: bytes of the send in flight */
	uint8_t recv_armed;	/* io_uring: a multishot receive is armed */
	uint8_t closing;
	uint8_t *in;		/* BP_SRV_IN_MAX, HTTP only */
	uint8_t *out;		/* BP_SRV_OUT_MAX */
	struct bp_conn *prev, *next;	/* the server's open connections */
};

struct bp_srv {
	int loop;		/* BP_SRV_EPOLL, BP_SRV_URING */
	int mode;		/* BP_SRV_ECHO, BP_SRV_HTTP */
	int lfd;		/* listening socket */
	int stopfd;		/* eventfd: written by bp_srv_stop() */
	uint32_t max_conns;
	const uint8_t *resp;	/* HTTP: the whole response */
	uint32_t resp_len;
	pthread_t thread;
	int err;		/* the loop's failure, -errno */
	uint64_t requests;	/* HTTP requests answered */
	uint64_t conns;		/* connections accepted */
	uint32_t open;		/* connections open */
	struct bp_conn *head;
};

/* Start a server; *port is where it listens. */
int bp_srv_start(int loop, int mode, const void *resp, uint32_t resp_len,
		 uint32_t max_conns, struct bp_srv **out, int *port);
/* Stop it, close every connection, free it; returns the loop's failure. */
int bp_srv_stop(struct bp_srv *s);

/* ---- shared by the loops ---- */

/* A connection for fd, on the server's list; NULL without memory. */
struct bp_conn *bp_conn_new(struct bp_srv *s, int fd);
/* Close its fd, take it off the list, free it. */
void bp_conn_close(struct bp_srv *s, struct bp_conn *c);
/*
 * Take n received bytes: echo appends them to the output; HTTP appends
 * them to the input, and a response to the output for each request it
 * completes.  -EMSGSIZE when a bound would be passed (the connection is
 * then closed).
 */
int bp_conn_take(struct bp_srv *s, struct bp_conn *c, const uint8_t *data,
		 uint32_t n);

int bp_uring_srv_run(struct bp_srv *s);

#endif
