// SPDX-License-Identifier: GPL-2.0
/*
 * aem_fd.ko: socket readiness (AEM_SRC_FD) - the original AEM's
 * asynchronous accept, read and close.
 *
 * A subscription hooks a wait-queue entry onto the socket's poll wait
 * queue, as epoll does.  The socket wakes us with the readiness mask as the
 * key, in whatever context it runs (softirq for TCP); we translate it and
 * post.  A wake without a key is resolved by a work item that asks the
 * socket.
 *
 * Like epoll, a subscription holds no reference on the socket's file: a
 * file reference would let a ring keep itself alive through a cycle (the
 * ring's own fd sent with SCM_RIGHTS into the watched socket's receive
 * queue, which only the socket's release empties).  It holds the socket's
 * inode instead, which keeps the struct socket and its wait queue in
 * memory but not the socket open: closing the socket's last fd releases it
 * (and whatever sits in its queues) as if nobody watched.  The socket's
 * file and protocol are used only under the inode lock, which
 * __sock_release() holds while it releases the protocol and clears
 * sock->sk.
 *
 * A released socket wakes nobody, and a module cannot hook __fput() as
 * epoll does, so a sweep looks once a second (while there are
 * subscriptions) for subscriptions whose sock->sk is gone and ends each
 * with a final AEM_FD_HANGUP event.
 *
 * Locks: aem_fd_mu (the subscription list, and the end of a subscription
 * by either its unsubscribe or the sweep) -> inode lock -> ring cq_lock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/file.h>
#include <linux/net.h>
#include <linux/poll.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/mutex.h>
#include <linux/list.h>
#include <linux/slab.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "aem_kmod.h"

#define AEM_FD_SWEEP_PERIOD	HZ

struct aem_fd_sub {
	struct list_head	node;		/* on aem_fd_subs, under aem_fd_mu */
	struct aem_ctx		*ring;
	struct aem_sub		*sub;
	struct socket		*sock;		/* its inode held, not its file */
	wait_queue_head_t	*wqh;		/* the socket's, NULL until hooked */
	struct wait_queue_entry	wait;
	poll_table		pt;
	struct work_struct	repoll;		/* resolves wakes without a key */
	s32			fd;		/* as named by the subscriber, echoed */
	u32			events;		/* AEM_FD_* wanted */
	bool			listening;	/* EPOLLIN means accept, not read */
};

static LIST_HEAD(aem_fd_subs);
static DEFINE_MUTEX(aem_fd_mu);
static void aem_fd_sweep(struct work_struct *work);
static DECLARE_DELAYED_WORK(aem_fd_sweeper, aem_fd_sweep);

static u32 aem_fd_translate(struct aem_fd_sub *fs, __poll_t mask)
{
	u32 ev = 0;

	if (mask & (EPOLLIN | EPOLLRDNORM))
		ev |= fs->listening ? AEM_FD_ACCEPT : AEM_FD_READABLE;
	if (mask & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))
		ev |= AEM_FD_HANGUP;
	return ev & fs->events;
}

static void aem_fd_post(struct aem_fd_sub *fs, u32 events)
{
	struct aem_fd_event ev = { .fd = fs->fd, .events = events };

	aem_core_post(fs->ring, fs->sub, &ev, sizeof(ev), 0, aem_sub_id(fs->ring, fs->sub));
}

/* Called under the socket's wait-queue lock, any context. */
static int aem_fd_wake(struct wait_queue_entry *wait, unsigned int mode, int sync, void *key)
{
	struct aem_fd_sub *fs = container_of(wait, struct aem_fd_sub, wait);
	__poll_t mask = key_to_poll(key);
	u32 ev;

	if (!mask) {
		schedule_work(&fs->repoll);
		return 0;
	}
	ev = aem_fd_translate(fs, mask);
	if (ev)
		aem_fd_post(fs, ev);
	return 0;
}

/*
 * Ask the socket what is true now and post it.  The inode lock keeps the
 * socket's release out: while sock->sk is set, the file and the protocol
 * are there.  A released socket is left to the sweep.  Sleeps.
 */
static void aem_fd_poll_now(struct aem_fd_sub *fs)
{
	struct inode *inode = SOCK_INODE(fs->sock);
	struct socket *sock = fs->sock;
	const struct proto_ops *ops;
	u32 ev = 0;

	inode_lock(inode);
	ops = READ_ONCE(sock->ops);
	if (sock->sk && ops && ops->poll && sock->file)
		ev = aem_fd_translate(fs, ops->poll(sock->file, sock, NULL));
	inode_unlock(inode);
	if (ev)
		aem_fd_post(fs, ev);
}

static void aem_fd_repoll(struct work_struct *work)
{
	aem_fd_poll_now(container_of(work, struct aem_fd_sub, repoll));
}

static void aem_fd_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct aem_fd_sub *fs = container_of(pt, struct aem_fd_sub, pt);

	/* A socket has one wait queue; take the first and only. */
	if (fs->wqh)
		return;
	fs->wqh = wqh;
	add_wait_queue(wqh, &fs->wait);
}

static int aem_fd_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	const struct aem_fd_args *a = &sqe->fd;
	struct aem_fd_sub *fs;
	struct socket *sock;
	struct file *file = NULL;
	int ret;

	if (a->fd < 0 || !a->events || (a->events & ~AEM_FD_ALL) ||
	    a->resv[0] || a->resv[1] || a->resv[2])
		return -EINVAL;
	if (!aem_subscriber_is_current())
		return -EOPNOTSUPP;
	fs = kzalloc(sizeof(*fs), GFP_KERNEL_ACCOUNT);
	if (!fs)
		return -ENOMEM;
	/* Subscribe runs in the submitter's context: the fd is its. */
	ret = -EBADF;
	file = fget(a->fd);
	if (!file)
		goto err;
	ret = -ENOTSOCK;
	sock = sock_from_file(file);
	if (!sock || !sock->sk)
		goto err;
	fs->listening = READ_ONCE(sock->sk->sk_state) == TCP_LISTEN;
	fs->sock = sock;
	fs->ring = r;
	fs->sub = s;
	fs->fd = a->fd;
	fs->events = a->events;
	init_waitqueue_func_entry(&fs->wait, aem_fd_wake);
	INIT_WORK(&fs->repoll, aem_fd_repoll);
	init_poll_funcptr(&fs->pt, aem_fd_queue);
	s->priv[0] = (u64)(uintptr_t)fs;

	/* Hooks us on; what is already true is reported by start. */
	vfs_poll(file, &fs->pt);
	ret = -EINVAL;
	if (!fs->wqh)
		goto err;
	/* The socket's memory (and wait queue) outlives our hook; not the file. */
	ihold(SOCK_INODE(sock));
	fput(file);
	mutex_lock(&aem_fd_mu);
	if (list_empty(&aem_fd_subs))
		schedule_delayed_work(&aem_fd_sweeper, AEM_FD_SWEEP_PERIOD);
	list_add_tail(&fs->node, &aem_fd_subs);
	mutex_unlock(&aem_fd_mu);
	return 0;
err:
	s->priv[0] = 0;
	if (file)
		fput(file);
	kfree(fs);
	return ret;
}

/* The subscription is live and its id is out: report what is true already. */
static void aem_fd_start(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_fd_sub *fs;

	/* The sweep may have ended it already if the socket went meanwhile. */
	mutex_lock(&aem_fd_mu);
	fs = (struct aem_fd_sub *)(uintptr_t)s->priv[0];
	if (fs)
		aem_fd_poll_now(fs);
	mutex_unlock(&aem_fd_mu);
}

/* Unhook from the socket and let go of it.  The wait entry is off after this. */
static void aem_fd_free(struct aem_fd_sub *fs)
{
	/* After this no wake can start; one in progress held the queue lock. */
	remove_wait_queue(fs->wqh, &fs->wait);
	cancel_work_sync(&fs->repoll);
	iput(SOCK_INODE(fs->sock));
	kfree(fs);
}

static void aem_fd_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_fd_sub *fs;

	/* The sweep may have ended it already (priv cleared under the mutex). */
	mutex_lock(&aem_fd_mu);
	fs = (struct aem_fd_sub *)(uintptr_t)s->priv[0];
	if (fs) {
		list_del(&fs->node);
		s->priv[0] = 0;
	}
	mutex_unlock(&aem_fd_mu);
	if (fs)
		aem_fd_free(fs);
}

/*
 * End the subscriptions whose socket was released: unhook, then the final
 * hang-up (the source lets go of @s before it, as a final post requires).
 * The mutex is held across the posts, so an unsubscribe or a ring's
 * release waits for them.
 */
static void aem_fd_sweep(struct work_struct *work)
{
	static const struct aem_fd_event none;
	struct aem_fd_sub *fs, *tmp;
	struct aem_fd_event ev;

	mutex_lock(&aem_fd_mu);
	list_for_each_entry_safe(fs, tmp, &aem_fd_subs, node) {
		struct aem_ctx *r = fs->ring;
		struct aem_sub *s = fs->sub;

		if (READ_ONCE(fs->sock->sk))
			continue;
		list_del(&fs->node);
		s->priv[0] = 0;
		ev = none;
		ev.fd = fs->fd;
		ev.events = AEM_FD_HANGUP;
		aem_fd_free(fs);
		aem_core_post(r, s, &ev, sizeof(ev), AEM_CQE_F_FINAL, aem_sub_id(r, s));
	}
	if (!list_empty(&aem_fd_subs))
		schedule_delayed_work(&aem_fd_sweeper, AEM_FD_SWEEP_PERIOD);
	mutex_unlock(&aem_fd_mu);
}

/* A sweep posting to @r is done when this returns. */
static void aem_fd_ring_release(struct aem_ctx *r)
{
	mutex_lock(&aem_fd_mu);
	mutex_unlock(&aem_fd_mu);
}

/*
 * The implementation version: aem_fd_v2.ko is this file built with 2, a
 * second implementation of AEM_SRC_FD for the tests of implementations
 * side by side (each module has its own subscription list and sweep).
 */
#ifndef AEM_FD_IMPL
#define AEM_FD_IMPL	1
#endif

static const struct aem_source_ops aem_fd_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_FD,
	.impl		= AEM_FD_IMPL,
	.name		= "fd",
	.owner		= THIS_MODULE,
	.subscribe	= aem_fd_subscribe,
	.unsubscribe	= aem_fd_unsubscribe,
	.start		= aem_fd_start,
	.ring_release	= aem_fd_ring_release,
};

static int __init aem_fd_init(void)
{
	return aem_core_register_source(&aem_fd_ops);
}

static void __exit aem_fd_exit(void)
{
	/* Every subscription ends through aem_fd_unsubscribe(); the sweep then stops. */
	aem_host_unregister_source(&aem_fd_ops);
	cancel_delayed_work_sync(&aem_fd_sweeper);
}

module_init(aem_fd_init);
module_exit(aem_fd_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION(AEM_VERSION);
MODULE_DESCRIPTION("AEM event source: socket readiness (accept, readable, hang-up)");
