/* SPDX-License-Identifier: MIT */
/*
 * The pollable fd: poll() and epoll on aem_ring_fd() wake when an event
 * arrives (a timer, or a post from another thread while we sleep), and, once
 * the rings are drained and the fd rearmed with aem_ring_fd_drain(), do not
 * report readiness with nothing to read; an edge-triggered epoll re-armed
 * with aem_ring_fd_arm() wakes for every post though the fd is never read.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include "aem_test.h"

static struct aem_ring r;

/* Consume everything, leaving the fd as it is (aem_ring_fd_arm() re-arms). */
static unsigned drain_unread(void)
{
	struct aem_cqe c;
	unsigned n = 0;

	while (t_next(&r, &c, 0)) {
		if (c.flags & AEM_CQE_F_SLOT)
			t_release(&r, c.slot);
		n++;
	}
	return n;
}

/* Consume everything and rearm the fd, following the documented order. */
static unsigned drain(void)
{
	t_ok(aem_ring_fd_drain(&r));
	return drain_unread();
}

static bool readable(int ms)
{
	struct pollfd pfd = { .fd = aem_ring_fd(&r), .events = POLLIN };
	int ret = poll(&pfd, 1, ms);

	t_assert(ret >= 0, "poll: %s", strerror(errno));
	t_assert(!(pfd.revents & (POLLERR | POLLNVAL)), "poll revents %#x", pfd.revents);
	return ret == 1 && (pfd.revents & POLLIN);
}

static void timer_in(uint64_t ms, uint64_t tag)
{
	struct aem_sqe *sqe = t_sqe(&r);

	aem_prep_subscribe_timer(sqe, ms * T_MS, 0, 1, tag);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(&r);
}

static void *post_later(void *arg)
{
	struct aem_ring *from = arg;
	struct aem_sqe *sqe;

	usleep(50000);
	sqe = t_sqe(from);
	aem_prep_post(sqe, AEM_ADDR(r.ring_id, 1), "wake", 4, 1);
	sqe->flags |= AEM_SQE_F_SILENT;
	t_submit(from);
	return NULL;
}

int main(void)
{
	struct epoll_event ev = { .events = EPOLLIN }, out;
	struct aem_ring other;
	unsigned i;
	pthread_t th;
	int ep;

	t_setup(&r, NULL);
	t_setup(&other, NULL);
	t_sub_msg(&r, 1, 1, 0x1);
	drain();
	t_assert(!readable(100), "fd readable with nothing to read");

	/* poll(): a timer in the future. */
	for (i = 0; i < 5; i++) {
		timer_in(30, 0x100 + i);
		t_assert(!readable(0), "fd readable before the timer fired");
		t_assert(readable(10000), "poll: timer event did not wake us (round %u)", i);
		t_eq(drain(), 1);
		t_assert(!readable(50), "fd still readable after draining (round %u)", i);
	}

	/* epoll, level-triggered and edge-triggered, with a post from another thread. */
	ep = epoll_create1(EPOLL_CLOEXEC);
	t_assert(ep >= 0, "epoll_create1");
	t_assert(epoll_ctl(ep, EPOLL_CTL_ADD, aem_ring_fd(&r), &ev) == 0, "epoll_ctl: %s", strerror(errno));
	for (i = 0; i < 10; i++) {
		if (i == 5) {
			ev.events = EPOLLIN | EPOLLET;
			t_assert(epoll_ctl(ep, EPOLL_CTL_MOD, aem_ring_fd(&r), &ev) == 0, "EPOLL_CTL_MOD");
		}
		t_assert(epoll_wait(ep, &out, 1, 0) == 0, "epoll ready with nothing to read (round %u)", i);
		t_assert(pthread_create(&th, NULL, post_later, &other) == 0, "pthread_create");
		int n = epoll_wait(ep, &out, 1, 10000);
		pthread_join(th, NULL);
		t_assert(n == 1 && (out.events & EPOLLIN), "epoll: post did not wake us (round %u, n %d)", i, n);
		t_eq(drain(), 1);
	}
	t_assert(epoll_wait(ep, &out, 1, 50) == 0, "epoll ready after the last drain");

	/* Edge-triggered, re-armed with aem_ring_fd_arm(): the fd is never read. */
	for (i = 0; i < 10; i++) {
		t_ok(aem_ring_fd_arm(&r));
		t_assert(epoll_wait(ep, &out, 1, 0) == 0, "arm: epoll ready with nothing to read (round %u)", i);
		t_assert(pthread_create(&th, NULL, post_later, &other) == 0, "pthread_create");
		int n = epoll_wait(ep, &out, 1, 10000);
		pthread_join(th, NULL);
		t_assert(n == 1 && (out.events & EPOLLIN), "arm: post did not wake us (round %u, n %d)", i, n);
		t_eq(drain_unread(), 1);
	}
	close(ep);

	aem_teardown(&other);
	aem_teardown(&r);
	return T_EXIT_PASS;
}
