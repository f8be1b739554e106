// SPDX-License-Identifier: GPL-2.0
/*
 * aem_fd.ko: socket readiness (AEM_SRC_FD) - the original AEM's
 * asynchronous accept, read and close.
 *
 * A subscription takes a reference on the socket's file and hooks a
 * wait-queue entry onto the socket's poll wait queue, as epoll does.  The
 * socket wakes us with the readiness mask as the key, in whatever context it
 * runs (softirq for TCP); we translate it and post.  A wake without a key
 * is resolved by a work item that asks the socket with vfs_poll().
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/file.h>
#include <linux/net.h>
#include <linux/poll.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/slab.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "aem_kmod.h"

struct aem_fd_sub {
	struct aem_ctx		*ring;
	struct aem_sub		*sub;
	struct file		*file;
	wait_queue_head_t	*wqh;		/* the socket's, NULL until hooked */
	struct wait_queue_entry	wait;
	poll_table		pt;
	struct work_struct	repoll;		/* resolves wakes without a key */
	s32			fd;		/* as named by the subscriber, echoed */
	u32			events;		/* AEM_FD_* wanted */
	bool			listening;	/* EPOLLIN means accept, not read */
};

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

static void aem_fd_repoll(struct work_struct *work)
{
	struct aem_fd_sub *fs = container_of(work, struct aem_fd_sub, repoll);
	u32 ev = aem_fd_translate(fs, vfs_poll(fs->file, NULL));

	if (ev)
		aem_fd_post(fs, ev);
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
	int ret;

	if (a->fd < 0 || !a->events || (a->events & ~AEM_FD_ALL) ||
	    a->resv[0] || a->resv[1] || a->resv[2])
		return -EINVAL;
	fs = kzalloc(sizeof(*fs), GFP_KERNEL_ACCOUNT);
	if (!fs)
		return -ENOMEM;
	/* Subscribe runs in the submitter's context: the fd is its. */
	ret = -EBADF;
	fs->file = fget(a->fd);
	if (!fs->file)
		goto err;
	ret = -ENOTSOCK;
	sock = sock_from_file(fs->file);
	if (!sock || !sock->sk)
		goto err;
	fs->listening = READ_ONCE(sock->sk->sk_state) == TCP_LISTEN;
	fs->ring = r;
	fs->sub = s;
	fs->fd = a->fd;
	fs->events = a->events;
	init_waitqueue_func_entry(&fs->wait, aem_fd_wake);
	INIT_WORK(&fs->repoll, aem_fd_repoll);
	init_poll_funcptr(&fs->pt, aem_fd_queue);
	s->priv[0] = (u64)(uintptr_t)fs;

	/* Hooks us on; what is already true is reported by start. */
	vfs_poll(fs->file, &fs->pt);
	ret = -EINVAL;
	if (!fs->wqh)
		goto err;
	return 0;
err:
	s->priv[0] = 0;
	if (fs->file)
		fput(fs->file);
	kfree(fs);
	return ret;
}

/* The subscription is live and its id is out: report what is true already. */
static void aem_fd_start(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_fd_sub *fs = (struct aem_fd_sub *)(uintptr_t)s->priv[0];
	u32 ev = aem_fd_translate(fs, vfs_poll(fs->file, NULL));

	if (ev)
		aem_fd_post(fs, ev);
}

static void aem_fd_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_fd_sub *fs = (struct aem_fd_sub *)(uintptr_t)s->priv[0];

	if (!fs)
		return;
	/* After this no wake can start; one in progress held the queue lock. */
	remove_wait_queue(fs->wqh, &fs->wait);
	cancel_work_sync(&fs->repoll);
	s->priv[0] = 0;
	fput(fs->file);
	kfree(fs);
}

static const struct aem_source_ops aem_fd_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_FD,
	.name		= "fd",
	.owner		= THIS_MODULE,
	.subscribe	= aem_fd_subscribe,
	.unsubscribe	= aem_fd_unsubscribe,
	.start		= aem_fd_start,
};

static int __init aem_fd_init(void)
{
	return aem_core_register_source(&aem_fd_ops);
}

static void __exit aem_fd_exit(void)
{
	aem_host_unregister_source(&aem_fd_ops);
}

module_init(aem_fd_init);
module_exit(aem_fd_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION(AEM_VERSION);
MODULE_DESCRIPTION("AEM event source: socket readiness (accept, readable, hang-up)");
