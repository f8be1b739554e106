// SPDX-License-Identifier: MIT
/*
 * The io_uring server loop of the server scenarios (see bp_srv.h).
 *
 * One ring, one thread: a multishot accept on the listener; per
 * connection a multishot receive that picks its buffers from a provided
 * buffer ring (each buffer goes back to the ring as soon as its bytes are
 * taken), and at most one send in flight, of everything its output holds,
 * so that a connection's bytes go out in order.  A read of the stop
 * eventfd ends the loop.  Every submission is io_uring_submit_and_wait().
 */
/* built only with liburing: see uring.go */
#ifdef BP_HAVE_URING
#define _GNU_SOURCE
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bp_srv.h"

#define BP_US_SQ	1024
#define BP_US_CQ	16384
#define BP_US_BUFS	4096		/* provided buffers, a power of two */
#define BP_US_BUF_SIZE	4096
#define BP_US_BGID	0

/* user_data: a connection's address with the operation in the low bits */
#define BP_US_ACCEPT	1
#define BP_US_STOP	2
#define BP_US_RECV	0
#define BP_US_SEND	1
#define BP_US_OP_MASK	UINT64_C(7)

struct bp_us {
	struct bp_srv *s;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	uint64_t stopval;
	int stopping;
};

static struct io_uring_sqe *bp_us_sqe(struct bp_us *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static int bp_us_accept(struct bp_us *u)
{
	struct io_uring_sqe *sqe = bp_us_sqe(u);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_multishot_accept(sqe, u->s->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, BP_US_ACCEPT);
	return 0;
}

static int bp_us_recv(struct bp_us *u, struct bp_conn *c)
{
	struct io_uring_sqe *sqe = bp_us_sqe(u);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BP_US_BGID;
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | BP_US_RECV);
	c->recv_armed = 1;
	return 0;
}

static int bp_us_send(struct bp_us *u, struct bp_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->inflight || c->out_off == c->out_len)
		return 0;
	sqe = bp_us_sqe(u);
	if (!sqe)
		return -EBUSY;
	c->inflight = c->out_len - c->out_off;
	io_uring_prep_send(sqe, c->fd, c->out + c->out_off, c->inflight,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | BP_US_SEND);
	return 0;
}

/* End a connection: shut it so its receive ends, free it when nothing of
 * it is in flight. */
static void bp_us_end(struct bp_us *u, struct bp_conn *c)
{
	if (!c->closing) {
		c->closing = 1;
		if (c->recv_armed)
			shutdown(c->fd, SHUT_RDWR);
	}
	if (!c->recv_armed && !c->inflight)
		bp_conn_close(u->s, c);
}

static void bp_us_buf_return(struct bp_us *u, uint16_t bid)
{
	io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BP_US_BUF_SIZE,
			      BP_US_BUF_SIZE, bid,
			      io_uring_buf_ring_mask(BP_US_BUFS), 0);
	io_uring_buf_ring_advance(u->br, 1);
}

static void bp_us_on_recv(struct bp_us *u, struct bp_conn *c,
			  struct io_uring_cqe *cqe)
{
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_armed = 0;
	if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
		uint16_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		int ret = c->closing ? -ECONNRESET :
			bp_conn_take(u->s, c, u->bufs + (size_t)bid * BP_US_BUF_SIZE,
				     (uint32_t)res);

		bp_us_buf_return(u, bid);
		if (ret || bp_us_send(u, c))
			goto end;
		if (!c->recv_armed && bp_us_recv(u, c))
			goto end;
		return;
	}
	/* out of buffers: they come back as their bytes are taken */
	if (res == -ENOBUFS && !c->closing) {
		if (!c->recv_armed && bp_us_recv(u, c))
			goto end;
		return;
	}
end:
	bp_us_end(u, c);
}

static void bp_us_on_send(struct bp_us *u, struct bp_conn *c, int res)
{
	if (res <= 0) {
		c->inflight = 0;
		bp_us_end(u, c);
		return;
	}
	c->out_off += (uint32_t)res;
	c->inflight = 0;
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->closing)
		bp_us_end(u, c);
	else if (bp_us_send(u, c))
		bp_us_end(u, c);
}

static void bp_us_on_accept(struct bp_us *u, struct io_uring_cqe *cqe)
{
	struct bp_srv *s = u->s;
	struct bp_conn *c;

	if (!(cqe->flags & IORING_CQE_F_MORE) && !u->stopping)
		bp_us_accept(u);
	if (cqe->res < 0)
		return;
	if (s->open >= s->max_conns) {
		close(cqe->res);
		return;
	}
	c = bp_conn_new(s, cqe->res);
	if (!c) {
		close(cqe->res);
		return;
	}
	if (bp_us_recv(u, c))
		bp_conn_close(s, c);
}

static int bp_us_setup(struct bp_us *u)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE |
					      IORING_SETUP_SINGLE_ISSUER |
					      IORING_SETUP_COOP_TASKRUN,
				     .cq_entries = BP_US_CQ };
	struct io_uring_buf_reg reg = { .ring_entries = BP_US_BUFS,
					.bgid = BP_US_BGID };
	size_t brsize = BP_US_BUFS * sizeof(struct io_uring_buf);
	int ret, i;

	ret = io_uring_queue_init_params(BP_US_SQ, &u->ring, &p);
	if (ret == -EINVAL) {	/* an older kernel: without the hints */
		p = (struct io_uring_params){ .flags = IORING_SETUP_CQSIZE,
					      .cq_entries = BP_US_CQ };
		ret = io_uring_queue_init_params(BP_US_SQ, &u->ring, &p);
	}
	if (ret)
		return ret;
	u->br = mmap(NULL, brsize, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->br == MAP_FAILED) {
		u->br = NULL;
		return -ENOMEM;
	}
	u->bufs = malloc((size_t)BP_US_BUFS * BP_US_BUF_SIZE);
	if (!u->bufs)
		return -ENOMEM;
	reg.ring_addr = (uint64_t)(uintptr_t)u->br;
	ret = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (ret)
		return ret;
	io_uring_buf_ring_init(u->br);
	for (i = 0; i < BP_US_BUFS; i++)
		io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * BP_US_BUF_SIZE,
				      BP_US_BUF_SIZE, i,
				      io_uring_buf_ring_mask(BP_US_BUFS), i);
	io_uring_buf_ring_advance(u->br, BP_US_BUFS);
	return 0;
}

int bp_uring_srv_run(struct bp_srv *s)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct bp_us *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	u->s = s;
	u->ring.ring_fd = -1;
	ret = bp_us_setup(u);
	if (ret)
		goto out;
	ret = bp_us_accept(u);
	sqe = bp_us_sqe(u);
	if (ret || !sqe) {
		ret = ret ? ret : -EBUSY;
		goto out;
	}
	io_uring_prep_read(sqe, s->stopfd, &u->stopval, sizeof(u->stopval), 0);
	io_uring_sqe_set_data64(sqe, BP_US_STOP);
	while (!u->stopping) {
		unsigned int head, seen = 0;

		ret = io_uring_submit_and_wait(&u->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EBUSY)
			goto out;
		ret = 0;
		io_uring_for_each_cqe(&u->ring, head, cqe) {
			uint64_t ud = io_uring_cqe_get_data64(cqe);

			seen++;
			if (ud == BP_US_STOP) {
				u->stopping = 1;
			} else if (ud == BP_US_ACCEPT) {
				bp_us_on_accept(u, cqe);
			} else {
				struct bp_conn *c = (struct bp_conn *)(uintptr_t)
					(ud & ~BP_US_OP_MASK);

				if ((ud & BP_US_OP_MASK) == BP_US_SEND)
					bp_us_on_send(u, c, cqe->res);
				else
					bp_us_on_recv(u, c, cqe);
			}
		}
		io_uring_cq_advance(&u->ring, seen);
	}
out:
	/* the ring's exit cancels what is in flight before the buffers go */
	if (u->ring.ring_fd >= 0)
		io_uring_queue_exit(&u->ring);
	if (u->br)
		munmap(u->br, BP_US_BUFS * sizeof(struct io_uring_buf));
	free(u->bufs);
	free(u);
	return ret;
}
#endif
