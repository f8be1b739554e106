// SPDX-License-Identifier: MIT
/*
 * File-descriptor peers: a pipe (one write() per batch, one read() per
 * buffer) and a Unix datagram socket pair (one datagram per event,
 * sendmmsg()/recvmmsg() per batch).  The consumer blocks in the kernel.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bp.h"
#include "bp_stream.h"

#define BP_PIPE_SIZE	(1 << 20)
#define BP_READ_BUF	(256 << 10)
#define BP_RECV_BATCH	256
/* sendmmsg() takes at most UIO_MAXIOV (1024) messages per call */
#define BP_SEND_BATCH	1024

struct bp_fds {
	int rfd;
	_Atomic int wfd;
};

static int bp_fds_new(struct bp_stream *s, int rfd, int wfd)
{
	struct bp_fds *f = calloc(1, sizeof(*f));

	if (!f) {
		close(rfd);
		close(wfd);
		return -ENOMEM;
	}
	f->rfd = rfd;
	f->wfd = wfd;
	s->priv = f;
	return 0;
}

static void bp_fds_teardown(struct bp_stream *s)
{
	struct bp_fds *f = s->priv;

	if (!f)
		return;
	if (f->rfd >= 0)
		close(f->rfd);
	if (f->wfd >= 0)
		close(f->wfd);
	free(f);
	s->priv = NULL;
}

static int bp_write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- pipe ---- */

static int bp_pipe_setup(struct bp_stream *s)
{
	int fds[2];

	if (s->nprod > 1 && s->esize > PIPE_BUF)
		return -EOPNOTSUPP; /* fan-in writes must stay atomic */
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	/* a larger pipe lets a batch go in one write; failure is harmless */
	(void)fcntl(fds[1], F_SETPIPE_SZ, BP_PIPE_SIZE);
	return bp_fds_new(s, fds[0], fds[1]);
}

static int bp_pipe_produce(struct bp_stream *s, struct bp_prod *pr)
{
	struct bp_fds *f = s->priv;
	const struct bp_params *p = s->p;
	size_t chunk, cap = (size_t)(p->batch ? p->batch : 1) * s->esize;
	uint8_t *buf;
	uint32_t n, i;
	int ret = 0;

	/* several writers: each write no larger than PIPE_BUF, so atomic */
	chunk = s->nprod > 1 ? (PIPE_BUF / s->esize) * s->esize : cap;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	while ((n = bp_prod_next(pr))) {
		size_t len = (size_t)n * s->esize, off;

		for (i = 0; i < n; i++) {
			uint64_t k = pr->sent + i;

			bp_fill(buf + (size_t)i * s->esize, bp_seq(pr, k),
				bp_stamp(p, k), p->payload);
		}
		for (off = 0; off < len; off += chunk) {
			size_t w = len - off < chunk ? len - off : chunk;

			ret = bp_write_all(f->wfd, buf + off, w);
			if (ret)
				goto out;
		}
		pr->sent += n;
	}
out:
	free(buf);
	return ret;
}

static void bp_pipe_finish(struct bp_stream *s, struct bp_prod *pr, bool last)
{
	struct bp_fds *f = s->priv;

	(void)pr;
	/* end of file tells the consumer that the last producer is done */
	if (last)
		close(atomic_exchange(&f->wfd, -1));
}

static int bp_pipe_consume(struct bp_stream *s, struct bp_cons *c)
{
	struct bp_fds *f = s->priv;
	size_t have = 0, off;
	uint8_t *buf;
	int ret = 0;

	buf = malloc(BP_READ_BUF);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = read(f->rfd, buf + have, BP_READ_BUF - have);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		for (off = 0; off + s->esize <= have; off += s->esize)
			bp_take_event(c, buf + off);
		/* keep a partial record for the next read */
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	if (have)
		c->r->errors++;
	free(buf);
	return ret;
}

const struct bp_stream_ops bp_pipe_ops = {
	.max_producers = BP_MAX_PRODUCERS,
	.setup = bp_pipe_setup,
	.produce = bp_pipe_produce,
	.finish = bp_pipe_finish,
	.consume = bp_pipe_consume,
	.teardown = bp_fds_teardown,
};

/* ---- Unix datagram socket ---- */

static int bp_unix_setup(struct bp_stream *s)
{
	int sv[2], size = 4 << 20;

	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	/* best effort: more datagrams in flight before the sender blocks */
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
	(void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	return bp_fds_new(s, sv[1], sv[0]);
}

static int bp_unix_produce(struct bp_stream *s, struct bp_prod *pr)
{
	struct bp_fds *f = s->priv;
	const struct bp_params *p = s->p;
	uint32_t batch = p->batch ? p->batch : 1, n, i, off;
	struct mmsghdr *msgs;
	struct iovec *iov;
	uint8_t *buf;
	int ret = 0;

	if (batch > BP_SEND_BATCH)
		batch = BP_SEND_BATCH;
	msgs = calloc(batch, sizeof(*msgs));
	iov = calloc(batch, sizeof(*iov));
	buf = malloc((size_t)batch * s->esize);
	if (!msgs || !iov || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < batch; i++) {
		iov[i].iov_base = buf + (size_t)i * s->esize;
		iov[i].iov_len = s->esize;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	while ((n = bp_prod_next(pr))) {
		if (n > batch)
			n = batch;
		for (i = 0; i < n; i++) {
			uint64_t k = pr->sent + i;

			bp_fill(iov[i].iov_base, bp_seq(pr, k), bp_stamp(p, k),
				p->payload);
		}
		for (off = 0; off < n;) {
			int sent = sendmmsg(f->wfd, msgs + off, n - off, 0);

			if (sent < 0) {
				if (errno == EINTR)
					continue;
				ret = -errno;
				goto out;
			}
			off += (uint32_t)sent;
		}
		pr->sent += n;
	}
out:
	free(buf);
	free(iov);
	free(msgs);
	return ret;
}

static void bp_unix_finish(struct bp_stream *s, struct bp_prod *pr, bool last)
{
	struct bp_fds *f = s->priv;

	(void)pr;
	(void)last;
	/* an empty datagram marks the end of one producer */
	while (send(f->wfd, "", 0, 0) < 0 && errno == EINTR)
		;
}

static int bp_unix_consume(struct bp_stream *s, struct bp_cons *c)
{
	struct bp_fds *f = s->priv;
	struct mmsghdr msgs[BP_RECV_BATCH];
	struct iovec iov[BP_RECV_BATCH];
	uint32_t ends = 0;
	uint8_t *buf;
	int i, n, ret = 0;

	buf = malloc((size_t)BP_RECV_BATCH * s->esize);
	if (!buf)
		return -ENOMEM;
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BP_RECV_BATCH; i++) {
		iov[i].iov_base = buf + (size_t)i * s->esize;
		iov[i].iov_len = s->esize;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	while (ends < s->nprod) {
		n = recvmmsg(f->rfd, msgs, BP_RECV_BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		for (i = 0; i < n; i++) {
			if (msgs[i].msg_len == 0)
				ends++;
			else if (msgs[i].msg_len != s->esize)
				c->r->errors++;
			else
				bp_take_event(c, iov[i].iov_base);
		}
	}
	free(buf);
	return ret;
}

const struct bp_stream_ops bp_unix_ops = {
	.max_producers = BP_MAX_PRODUCERS,
	.setup = bp_unix_setup,
	.produce = bp_unix_produce,
	.finish = bp_unix_finish,
	.consume = bp_unix_consume,
	.teardown = bp_fds_teardown,
};
