// SPDX-License-Identifier: MIT
/*
 * Round trips: a caller on the calling thread sends a request, a server
 * thread changes its payload in place and sends it back, the caller checks
 * the reply.  This is the shape of AEM's call -> handler -> writeback.
 *
 * futex: the two threads hand a turn word over with FUTEX_WAKE/FUTEX_WAIT,
 * the OS's wake-up floor.  spin: the same word, spun on: the floor of any
 * busy-polling exchange.  The others carry the request through their usual
 * channel in each direction.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bp.h"

#ifdef BP_HAVE_URING
#include <liburing.h>
#endif

#define BP_STOP		UINT64_MAX
/* callers look at the clock once per this many round trips */
#define BP_CALL_CHECK	64

struct bp_call;

struct bp_call_ops {
	int (*setup)(struct bp_call *k);
	/* caller: send the request in k->req, wait, reply lands in k->rep */
	int (*call)(struct bp_call *k);
	/* server: wait for a request into k->sreq; 1: got one */
	int (*serve_recv)(struct bp_call *k);
	int (*serve_send)(struct bp_call *k);
	void (*teardown)(struct bp_call *k);
};

struct bp_call {
	const struct bp_call_ops *ops;
	const struct bp_params *p;
	uint32_t esize;
	uint8_t *req, *rep, *sreq;	/* caller's request and reply, server's */
	/* shared slot for futex, spin and eventfd */
	_Alignas(BP_CACHELINE) _Atomic uint32_t turn;
	_Alignas(BP_CACHELINE) uint8_t *slot;
	int fds[4];
#ifdef BP_HAVE_URING
	struct io_uring a, b;		/* caller's and server's rings */
	bool a_ok, b_ok;
#endif
	struct bp_ring ring_req, ring_rep;
	uint64_t req_head, rep_head;	/* private to server / caller */
	uint64_t req_tail, rep_tail;
	int server_err;
};

static long bp_futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
	return syscall(SYS_futex, addr, op | FUTEX_PRIVATE_FLAG, val, NULL,
		       NULL, 0);
}

static int bp_full_io(int fd, void *buf, size_t len, bool wr)
{
	uint8_t *b = buf;

	while (len) {
		ssize_t n = wr ? write(fd, b, len) : read(fd, b, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- futex and spin: one slot, one turn word ---- */

static int bp_slot_setup(struct bp_call *k)
{
	k->slot = calloc(1, k->esize);
	return k->slot ? 0 : -ENOMEM;
}

static int bp_futex_call(struct bp_call *k)
{
	memcpy(k->slot, k->req, k->esize);
	/* pairs with the server's acquire load of turn */
	atomic_store_explicit(&k->turn, 1, memory_order_release);
	bp_futex(&k->turn, FUTEX_WAKE, 1);
	while (atomic_load_explicit(&k->turn, memory_order_acquire) == 1)
		bp_futex(&k->turn, FUTEX_WAIT, 1);
	memcpy(k->rep, k->slot, k->esize);
	return 0;
}

static int bp_futex_recv(struct bp_call *k)
{
	while (atomic_load_explicit(&k->turn, memory_order_acquire) == 0)
		bp_futex(&k->turn, FUTEX_WAIT, 0);
	memcpy(k->sreq, k->slot, k->esize);
	return 1;
}

static int bp_futex_send(struct bp_call *k)
{
	memcpy(k->slot, k->sreq, k->esize);
	atomic_store_explicit(&k->turn, 0, memory_order_release);
	bp_futex(&k->turn, FUTEX_WAKE, 1);
	return 0;
}

static int bp_spin_call(struct bp_call *k)
{
	uint32_t spins = 0;

	memcpy(k->slot, k->req, k->esize);
	atomic_store_explicit(&k->turn, 1, memory_order_release);
	while (atomic_load_explicit(&k->turn, memory_order_acquire) == 1)
		bp_spin(&spins);
	memcpy(k->rep, k->slot, k->esize);
	return 0;
}

static int bp_spin_recv(struct bp_call *k)
{
	uint32_t spins = 0;

	while (atomic_load_explicit(&k->turn, memory_order_acquire) == 0)
		bp_spin(&spins);
	memcpy(k->sreq, k->slot, k->esize);
	return 1;
}

static int bp_spin_send(struct bp_call *k)
{
	memcpy(k->slot, k->sreq, k->esize);
	atomic_store_explicit(&k->turn, 0, memory_order_release);
	return 0;
}

static void bp_slot_teardown(struct bp_call *k)
{
	free(k->slot);
}

/* ---- eventfd: the slot, and one eventfd per direction ---- */

static int bp_efd_setup(struct bp_call *k)
{
	int ret = bp_slot_setup(k);

	if (ret)
		return ret;
	k->fds[0] = eventfd(0, EFD_CLOEXEC);
	k->fds[1] = eventfd(0, EFD_CLOEXEC);
	if (k->fds[0] < 0 || k->fds[1] < 0)
		return -errno;
	return 0;
}

static int bp_efd_call(struct bp_call *k)
{
	uint64_t v = 1;
	int ret;

	memcpy(k->slot, k->req, k->esize);
	/* the eventfd write and read order the slot accesses */
	ret = bp_full_io(k->fds[0], &v, sizeof(v), true);
	if (!ret)
		ret = bp_full_io(k->fds[1], &v, sizeof(v), false);
	memcpy(k->rep, k->slot, k->esize);
	return ret;
}

static int bp_efd_recv(struct bp_call *k)
{
	uint64_t v;
	int ret = bp_full_io(k->fds[0], &v, sizeof(v), false);

	if (ret)
		return ret;
	memcpy(k->sreq, k->slot, k->esize);
	return 1;
}

static int bp_efd_send(struct bp_call *k)
{
	uint64_t v = 1;

	memcpy(k->slot, k->sreq, k->esize);
	return bp_full_io(k->fds[1], &v, sizeof(v), true);
}

static void bp_fds_close(struct bp_call *k)
{
	int i;

	for (i = 0; i < 4; i++)
		if (k->fds[i] >= 0)
			close(k->fds[i]);
	bp_slot_teardown(k);
}

/* ---- pipe: fds[0..1] request pipe, fds[2..3] reply pipe ---- */

static int bp_pipe_call_setup(struct bp_call *k)
{
	if (pipe2(k->fds, O_CLOEXEC) < 0 || pipe2(k->fds + 2, O_CLOEXEC) < 0)
		return -errno;
	return 0;
}

static int bp_pipe_call(struct bp_call *k)
{
	int ret = bp_full_io(k->fds[1], k->req, k->esize, true);

	return ret ? ret : bp_full_io(k->fds[2], k->rep, k->esize, false);
}

static int bp_pipe_recv(struct bp_call *k)
{
	int ret = bp_full_io(k->fds[0], k->sreq, k->esize, false);

	return ret ? ret : 1;
}

static int bp_pipe_send(struct bp_call *k)
{
	return bp_full_io(k->fds[3], k->sreq, k->esize, true);
}

/* ---- Unix datagram: fds[0] caller's end, fds[1] server's ---- */

static int bp_unix_call_setup(struct bp_call *k)
{
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, k->fds) < 0)
		return -errno;
	return 0;
}

static int bp_dgram(int fd, void *buf, size_t len, bool wr)
{
	for (;;) {
		ssize_t n = wr ? send(fd, buf, len, 0) : recv(fd, buf, len, 0);

		if (n >= 0)
			return (size_t)n == len ? 0 : -EPROTO;
		if (errno != EINTR)
			return -errno;
	}
}

static int bp_unix_call(struct bp_call *k)
{
	int ret = bp_dgram(k->fds[0], k->req, k->esize, true);

	return ret ? ret : bp_dgram(k->fds[0], k->rep, k->esize, false);
}

static int bp_unix_recv(struct bp_call *k)
{
	int ret = bp_dgram(k->fds[1], k->sreq, k->esize, false);

	return ret ? ret : 1;
}

static int bp_unix_send(struct bp_call *k)
{
	return bp_dgram(k->fds[1], k->sreq, k->esize, true);
}

#ifdef BP_HAVE_URING
/*
 * ---- io_uring: each side owns a ring and MSG_RINGs the other ----
 * A CQE carries the sequence (user_data) and a 32-bit value (res) that the
 * server increments: the 12 bytes stand for the request and its writeback.
 */

static int bp_uring_call_setup(struct bp_call *k)
{
	int ret = io_uring_queue_init(8, &k->a, 0);

	if (ret)
		return ret;
	k->a_ok = true;
	ret = io_uring_queue_init(8, &k->b, 0);
	if (ret)
		return ret;
	k->b_ok = true;
	return 0;
}

static int bp_uring_send(struct io_uring *from, int to_fd, uint64_t seq,
			 uint32_t val)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(from);
	int ret;

	if (!sqe)
		return -EBUSY;
	io_uring_prep_msg_ring(sqe, to_fd, val, seq, 0);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	do {
		ret = io_uring_submit(from);
	} while (ret == -EINTR);
	return ret < 0 ? ret : 0;
}

/* Wait for one CQE on ring; skipped sends leave only messages there. */
static int bp_uring_recv(struct io_uring *ring, bool busy, uint64_t *seq,
			 uint32_t *val)
{
	struct io_uring_cqe *cqe;
	uint32_t spins = 0;
	int ret;

	for (;;) {
		if (busy)
			ret = io_uring_peek_cqe(ring, &cqe);
		else
			ret = io_uring_wait_cqe(ring, &cqe);
		if (!ret)
			break;
		if (ret == -EAGAIN && busy) {
			bp_spin(&spins);
			continue;
		}
		if (ret != -EINTR)
			return ret;
	}
	ret = cqe->res < 0 ? cqe->res : 0;
	*seq = cqe->user_data;
	*val = (uint32_t)cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return ret;
}

static int bp_uring_call(struct bp_call *k)
{
	uint64_t seq;
	uint32_t val;
	int ret;

	memcpy(&seq, k->req, 8);
	ret = bp_uring_send(&k->a, k->b.ring_fd, seq, k->req[BP_HDR]);
	if (ret)
		return ret;
	ret = bp_uring_recv(&k->a, k->p->busy, &seq, &val);
	memcpy(k->rep, k->req, k->esize);
	memcpy(k->rep, &seq, 8);
	k->rep[BP_HDR] = (uint8_t)val;
	return ret;
}

static int bp_uring_serve_recv(struct bp_call *k)
{
	uint64_t seq;
	uint32_t val;
	int ret = bp_uring_recv(&k->b, k->p->busy, &seq, &val);

	if (ret)
		return ret;
	memcpy(k->sreq, &seq, 8);
	k->sreq[BP_HDR] = (uint8_t)val;
	return 1;
}

static int bp_uring_serve_send(struct bp_call *k)
{
	uint64_t seq;

	memcpy(&seq, k->sreq, 8);
	return bp_uring_send(&k->b, k->a.ring_fd, seq, k->sreq[BP_HDR]);
}

static void bp_uring_call_teardown(struct bp_call *k)
{
	if (k->a_ok)
		io_uring_queue_exit(&k->a);
	if (k->b_ok)
		io_uring_queue_exit(&k->b);
}

#endif /* BP_HAVE_URING */

/* ---- spsc: a request ring and a reply ring, both spun on ---- */

static int bp_spsc_call_setup(struct bp_call *k)
{
	int ret = bp_ring_init(&k->ring_req, 64, k->esize);

	return ret ? ret : bp_ring_init(&k->ring_rep, 64, k->esize);
}

static void bp_ring_put(struct bp_ring *ring, uint64_t *tail, const uint8_t *ev)
{
	/* one message in flight per direction: never full */
	memcpy(bp_ring_slot(ring, *tail), ev, ring->esize);
	(*tail)++;
	atomic_store_explicit(&ring->tail, *tail, memory_order_release);
}

static void bp_ring_get(struct bp_ring *ring, uint64_t *head, uint8_t *ev)
{
	uint32_t spins = 0;

	while (atomic_load_explicit(&ring->tail, memory_order_acquire) == *head)
		bp_spin(&spins);
	memcpy(ev, bp_ring_slot(ring, *head), ring->esize);
	(*head)++;
	atomic_store_explicit(&ring->head, *head, memory_order_release);
}

static int bp_spsc_call(struct bp_call *k)
{
	bp_ring_put(&k->ring_req, &k->req_tail, k->req);
	bp_ring_get(&k->ring_rep, &k->rep_head, k->rep);
	return 0;
}

static int bp_spsc_recv(struct bp_call *k)
{
	bp_ring_get(&k->ring_req, &k->req_head, k->sreq);
	return 1;
}

static int bp_spsc_send(struct bp_call *k)
{
	bp_ring_put(&k->ring_rep, &k->rep_tail, k->sreq);
	return 0;
}

static void bp_spsc_call_teardown(struct bp_call *k)
{
	bp_ring_free(&k->ring_req);
	bp_ring_free(&k->ring_rep);
}

static const struct bp_call_ops bp_call_kinds[] = {
	[BP_CALL_FUTEX] = { bp_slot_setup, bp_futex_call, bp_futex_recv,
			    bp_futex_send, bp_slot_teardown },
	[BP_CALL_SPIN] = { bp_slot_setup, bp_spin_call, bp_spin_recv,
			   bp_spin_send, bp_slot_teardown },
	[BP_CALL_PIPE] = { bp_pipe_call_setup, bp_pipe_call, bp_pipe_recv,
			   bp_pipe_send, bp_fds_close },
	[BP_CALL_EVENTFD] = { bp_efd_setup, bp_efd_call, bp_efd_recv,
			      bp_efd_send, bp_fds_close },
	[BP_CALL_UNIX] = { bp_unix_call_setup, bp_unix_call, bp_unix_recv,
			   bp_unix_send, bp_fds_close },
#ifdef BP_HAVE_URING
	[BP_CALL_URING] = { bp_uring_call_setup, bp_uring_call,
			    bp_uring_serve_recv, bp_uring_serve_send,
			    bp_uring_call_teardown },
#endif
	[BP_CALL_SPSC] = { bp_spsc_call_setup, bp_spsc_call, bp_spsc_recv,
			   bp_spsc_send, bp_spsc_call_teardown },
};

static void *bp_server_main(void *arg)
{
	struct bp_call *k = arg;
	uint64_t seq;
	uint32_t i;

	for (;;) {
		int ret = k->ops->serve_recv(k);

		if (ret < 0) {
			k->server_err = ret;
			return NULL;
		}
		memcpy(&seq, k->sreq, 8);
		if (seq == BP_STOP)
			return NULL;
		/* the handler: change the payload in place, hand it back */
		for (i = BP_HDR; i < k->esize; i++)
			k->sreq[i]++;
		ret = k->ops->serve_send(k);
		if (ret < 0) {
			k->server_err = ret;
			return NULL;
		}
	}
}

int bp_call_run(int kind, const struct bp_params *params, struct bp_result *r)
{
	struct bp_params lp = *params, *p = &lp;
	struct bp_call *k;
	pthread_t server;
	uint64_t n = 0, start, now, t0 = 0, seq;
	int ret, i;

	memset(r, 0, sizeof(*r));
	if (kind <= 0 || kind > BP_CALL_SPSC || !p->duration_ns)
		return -EINVAL;
	if (p->sample_every && (!p->samples || !p->max_samples))
		return -EINVAL;
	if (!bp_call_kinds[kind].setup)
		return -ENOSYS;	/* left out of this build (no liburing) */
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->ops = &bp_call_kinds[kind];
	k->p = p;
	k->esize = bp_event_size(p->payload);
	for (i = 0; i < 4; i++)
		k->fds[i] = -1;
	k->req = calloc(3, k->esize);
	if (!k->req) {
		ret = -ENOMEM;
		goto err_free;
	}
	k->rep = k->req + k->esize;
	k->sreq = k->rep + k->esize;
	ret = k->ops->setup(k);
	if (ret)
		goto err_teardown;
	ret = -pthread_create(&server, NULL, bp_server_main, k);
	if (ret)
		goto err_teardown;

	start = bp_now();
	lp.deadline_ns = start + p->duration_ns;
	while (!p->max_events || n < p->max_events) {
		bool sampled = p->sample_every && n % p->sample_every == 0;

		if (n % BP_CALL_CHECK == 0 && bp_now() >= p->deadline_ns)
			break;
		bp_fill(k->req, n, 0, p->payload);
		if (sampled)
			t0 = bp_now();
		ret = k->ops->call(k);
		if (ret)
			break;
		if (sampled && r->nsamples < p->max_samples) {
			now = bp_now();
			p->samples[r->nsamples++] = now - t0;
		}
		memcpy(&seq, k->rep, 8);
		if (seq != n || (p->payload &&
				 k->rep[BP_HDR] != (uint8_t)(n + 1)))
			r->errors++;
		r->checksum += seq;
		n++;
	}
	r->elapsed_ns = bp_now() - start;
	r->events = n;
	r->produced = n;

	/* stop the server with a request it does not answer */
	seq = BP_STOP;
	memset(k->req, 0, k->esize);
	memcpy(k->req, &seq, 8);
	if (kind == BP_CALL_FUTEX || kind == BP_CALL_SPIN) {
		memcpy(k->slot, k->req, k->esize);
		atomic_store_explicit(&k->turn, 1, memory_order_release);
		if (kind == BP_CALL_FUTEX)
			bp_futex(&k->turn, FUTEX_WAKE, 1);
	} else if (kind == BP_CALL_EVENTFD) {
		uint64_t v = 1;

		memcpy(k->slot, k->req, k->esize);
		(void)bp_full_io(k->fds[0], &v, sizeof(v), true);
	} else if (kind == BP_CALL_PIPE) {
		(void)bp_full_io(k->fds[1], k->req, k->esize, true);
	} else if (kind == BP_CALL_UNIX) {
		(void)bp_dgram(k->fds[0], k->req, k->esize, true);
#ifdef BP_HAVE_URING
	} else if (kind == BP_CALL_URING) {
		(void)bp_uring_send(&k->a, k->b.ring_fd, BP_STOP, 0);
#endif
	} else {
		bp_ring_put(&k->ring_req, &k->req_tail, k->req);
	}
	pthread_join(server, NULL);
	if (!ret)
		ret = k->server_err;
err_teardown:
	k->ops->teardown(k);
	free(k->req);
err_free:
	free(k);
	return ret;
}
