// SPDX-License-Identifier: MIT
/*
 * The server scenarios' C servers: their start and stop, what a connection
 * does with the bytes it receives (echo, HTTP), and the epoll loop.
 *
 * epoll: one thread, level-triggered.  A readable connection is read once
 * per wake-up (at most what its output has room for), its answer written
 * at once; what the socket does not take waits in its output, and the
 * connection then waits for EPOLLOUT instead of EPOLLIN, so a slow reader
 * holds only its own buffer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bp_srv.h"

#define BP_EPOLL_EVENTS	256
#define BP_READ_CHUNK	(16u << 10)

static void bp_conn_free(struct bp_conn *c)
{
	if (!c)
		return;
	free(c->in);
	free(c->out);
	free(c);
}

struct bp_conn *bp_conn_new(struct bp_srv *s, int fd)
{
	struct bp_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = fd;
	/* large and mostly untouched: the pages come when written */
	c->out = malloc(BP_SRV_OUT_MAX);
	if (s->mode == BP_SRV_HTTP)
		c->in = malloc(BP_SRV_IN_MAX);
	if (!c->out || (s->mode == BP_SRV_HTTP && !c->in)) {
		bp_conn_free(c);
		return NULL;
	}
	c->next = s->head;
	if (s->head)
		s->head->prev = c;
	s->head = c;
	s->open++;
	s->conns++;
	return c;
}

void bp_conn_close(struct bp_srv *s, struct bp_conn *c)
{
	close(c->fd);	/* for epoll: leaves the set with its last reference */
	if (c->prev)
		c->prev->next = c->next;
	else
		s->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->open--;
	bp_conn_free(c);
}

/* Make room at the output's end: move the unsent bytes to the front. */
static int bp_out_room(struct bp_conn *c, uint32_t n)
{
	if (c->out_len + n <= BP_SRV_OUT_MAX)
		return 0;
	if (c->inflight || c->out_len - c->out_off + n > BP_SRV_OUT_MAX)
		return -EMSGSIZE;
	memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
	c->out_len -= c->out_off;
	c->out_off = 0;
	return 0;
}

/* The end of the request head that starts at p, or NULL. */
static const uint8_t *bp_http_end(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *q = memmem(p, end - p, "\r\n\r\n", 4);

	return q ? q + 4 : NULL;
}

int bp_conn_take(struct bp_srv *s, struct bp_conn *c, const uint8_t *data,
		 uint32_t n)
{
	const uint8_t *p, *end, *next;
	uint32_t left;

	if (s->mode == BP_SRV_ECHO) {
		if (bp_out_room(c, n))
			return -EMSGSIZE;
		memcpy(c->out + c->out_len, data, n);
		c->out_len += n;
		return 0;
	}
	if (c->in_len + n > BP_SRV_IN_MAX)
		return -EMSGSIZE;
	memcpy(c->in + c->in_len, data, n);
	c->in_len += n;
	p = c->in;
	end = c->in + c->in_len;
	/* a request head ending in the new bytes starts at most 3 bytes before */
	while ((next = bp_http_end(p, end))) {
		if (bp_out_room(c, s->resp_len))
			return -EMSGSIZE;
		memcpy(c->out + c->out_len, s->resp, s->resp_len);
		c->out_len += s->resp_len;
		s->requests++;
		p = next;
	}
	left = (uint32_t)(end - p);
	if (left && p != c->in)
		memmove(c->in, p, left);
	c->in_len = left;
	return 0;
}

/* ---- epoll ---- */

struct bp_ep {
	struct bp_srv *s;
	int ep;
	uint8_t buf[BP_READ_CHUNK];
};

/* Write what the output holds; 1: all of it, 0: some is left, -1: failed. */
static int bp_ep_flush(struct bp_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off,
				  c->out_len - c->out_off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		c->out_off += (uint32_t)n;
	}
	c->out_off = c->out_len = 0;
	return 1;
}

static void bp_ep_accept(struct bp_ep *e)
{
	struct bp_srv *s = e->s;

	while (s->open < s->max_conns) {
		struct epoll_event ev = { .events = EPOLLIN };
		struct bp_conn *c;
		int fd = accept4(s->lfd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;	/* EAGAIN, or a limit: the next wake-up retries */
		c = bp_conn_new(s, fd);
		if (!c) {
			close(fd);
			continue;
		}
		ev.data.ptr = c;
		if (epoll_ctl(e->ep, EPOLL_CTL_ADD, fd, &ev))
			bp_conn_close(s, c);
	}
}

static void bp_ep_io(struct bp_ep *e, struct bp_conn *c, uint32_t events)
{
	struct epoll_event ev = { .data.ptr = c };
	int ret;

	if (events & EPOLLOUT) {
		ret = bp_ep_flush(c);
		if (ret < 0)
			goto close;
		if (ret == 0)
			return;
		ev.events = EPOLLIN;	/* drained: read again */
		if (epoll_ctl(e->ep, EPOLL_CTL_MOD, c->fd, &ev))
			goto close;
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		ssize_t n = read(c->fd, e->buf, sizeof(e->buf));

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
			goto close;
		if (bp_conn_take(e->s, c, e->buf, (uint32_t)n))
			goto close;
		ret = bp_ep_flush(c);
		if (ret < 0)
			goto close;
		if (ret == 0) {
			ev.events = EPOLLOUT;	/* stop reading until it drains */
			if (epoll_ctl(e->ep, EPOLL_CTL_MOD, c->fd, &ev))
				goto close;
		}
	}
	return;
close:
	bp_conn_close(e->s, c);
}

static int bp_ep_run(struct bp_srv *s)
{
	struct epoll_event evs[BP_EPOLL_EVENTS];
	struct epoll_event ev = { .events = EPOLLIN };
	struct bp_ep *e = calloc(1, sizeof(*e));
	int ret = 0, i, n;

	if (!e)
		return -ENOMEM;
	e->s = s;
	e->ep = epoll_create1(EPOLL_CLOEXEC);
	if (e->ep < 0) {
		ret = -errno;
		goto out;
	}
	ev.data.ptr = &s->lfd;
	if (epoll_ctl(e->ep, EPOLL_CTL_ADD, s->lfd, &ev)) {
		ret = -errno;
		goto out;
	}
	ev.data.ptr = &s->stopfd;
	if (epoll_ctl(e->ep, EPOLL_CTL_ADD, s->stopfd, &ev)) {
		ret = -errno;
		goto out;
	}
	for (;;) {
		n = epoll_wait(e->ep, evs, BP_EPOLL_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		for (i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &s->stopfd)
				goto out;
			if (p == &s->lfd)
				bp_ep_accept(e);
			else
				bp_ep_io(e, p, evs[i].events);
		}
	}
out:
	if (e->ep >= 0)
		close(e->ep);
	free(e);
	return ret;
}

/* ---- start and stop ---- */

static void *bp_srv_thread(void *arg)
{
	struct bp_srv *s = arg;

	s->err = s->loop == BP_SRV_URING ? bp_uring_srv_run(s) : bp_ep_run(s);
	while (s->head)
		bp_conn_close(s, s->head);
	return NULL;
}

#ifndef BP_HAVE_URING
int bp_uring_srv_run(struct bp_srv *s)
{
	(void)s;
	return -EOPNOTSUPP;
}
#endif

int bp_srv_start(int loop, int mode, const void *resp, uint32_t resp_len,
		 uint32_t max_conns, struct bp_srv **out, int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct bp_srv *s;
	int one = 1, ret;

	if ((loop != BP_SRV_EPOLL && loop != BP_SRV_URING) ||
	    (mode != BP_SRV_ECHO && mode != BP_SRV_HTTP) || !max_conns ||
	    resp_len > BP_SRV_OUT_MAX)
		return -EINVAL;
#ifndef BP_HAVE_URING
	if (loop == BP_SRV_URING)
		return -EOPNOTSUPP;
#endif
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->mode = mode;
	s->max_conns = max_conns;
	s->stopfd = -1;
	if (mode == BP_SRV_HTTP) {
		uint8_t *r = malloc(resp_len ? resp_len : 1);

		if (!r) {
			ret = -ENOMEM;
			goto err_free;
		}
		memcpy(r, resp, resp_len);
		s->resp = r;
		s->resp_len = resp_len;
	}
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC |
			(loop == BP_SRV_EPOLL ? SOCK_NONBLOCK : 0), 0);
	if (s->lfd < 0) {
		ret = -errno;
		goto err_free;
	}
	/* accepted sockets inherit it: answers go out at once */
	if (setsockopt(s->lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(s->lfd, 4096) ||
	    getsockname(s->lfd, (struct sockaddr *)&sa, &len)) {
		ret = -errno;
		goto err_close;
	}
	s->stopfd = eventfd(0, EFD_CLOEXEC);
	if (s->stopfd < 0) {
		ret = -errno;
		goto err_close;
	}
	ret = -pthread_create(&s->thread, NULL, bp_srv_thread, s);
	if (ret)
		goto err_close;
	*port = ntohs(sa.sin_port);
	*out = s;
	return 0;
err_close:
	if (s->stopfd >= 0)
		close(s->stopfd);
	close(s->lfd);
err_free:
	free((void *)s->resp);
	free(s);
	return ret;
}

int bp_srv_stop(struct bp_srv *s)
{
	uint64_t one = 1;
	int ret;

	if (write(s->stopfd, &one, sizeof(one)) != sizeof(one))
		return -errno;
	pthread_join(s->thread, NULL);
	ret = s->err;
	close(s->stopfd);
	close(s->lfd);
	free((void *)s->resp);
	free(s);
	return ret;
}
