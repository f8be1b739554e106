// SPDX-License-Identifier: GPL-2.0
/*
 * aem_sock.ko: socket I/O (AEM_SRC_SOCK, docs/PROTOCOL.md section 10) - the
 * original AEM's aem-ip.  The kernel accepts a listener's connections,
 * receives their bytes straight into delivery slots, sends what the
 * application writes back or sends, and closes them.
 *
 * Objects.  A listener subscription holds the listening socket's inode (as
 * aem_fd does, never its file) and a wait-queue entry on it; a wake queues
 * its accept work.  Each accepted connection is a subscription of its own
 * (aem_core_sub_spawn) that owns a socket with no file: kernel_accept()
 * made it, sock_release() ends it.  Its sk callbacks (saved and chained
 * under sk_callback_lock, as in-kernel socket users do) only queue work:
 * rx_work receives and posts the connection's events, tx_work continues
 * partial sends.  One workqueue serves every connection, each with its own
 * work items, so a slow peer holds only its own.
 *
 * Back-pressure.  rx_work takes a delivery slot and asks the core for room
 * before each receive; without either it pauses the connection (it does
 * not read: the bytes stay in the socket, TCP closes the window) and
 * announces aem_core_want_room().  The core's .room hook queues the ring's
 * room work, which requeues every paused connection and listener.  Events
 * go in with aem_core_post_fit / aem_core_post_slot: nothing is dropped.
 *
 * SCM_RIGHTS.  A Unix listener gets SO_PASSRIGHTS off (its connections
 * inherit it), so no file can sit in a connection's receive queue and hold
 * the ring (issue 16, finding 1); kernels without SO_PASSRIGHTS refuse
 * Unix listeners.  TCP carries no files.
 *
 * Ends.  A connection ends by its own final event (error, reset, CLOSE),
 * or by .unsubscribe (an UNSUBSCRIBE, the ring's teardown, this module's
 * unload).  Whichever comes first claims it under the ring's mutex: the
 * final post clears the subscription's pointer to it before posting, and
 * .unsubscribe finds either the connection (and destroys it) or nothing
 * (the final post did, and end_work destroys it).  .io holds the mutex
 * while it uses a connection, so the connection cannot go meanwhile.
 *
 * Locks, outer to inner: ring submit lock (core) -> aem_sock_ring.mu ->
 * conn tx_mu -> aem_sock_ring.lock (spinlock: lists) -> ring cq_lock
 * (core).  No lock is held while waiting for a work item except the
 * core's submit lock, which no work item takes (spawning takes the table's
 * growth lock instead).
 *
 * Files.  This one: listeners (accept, pausing the accept for room), the
 * subscriptions, the sweep and the module; aem_sock_conn.c: a connection's
 * receive, send and end; aem_sock.h: the objects shared by the two.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "aem_sock.h"

struct workqueue_struct *aem_sock_wq;
static LIST_HEAD(aem_sock_lsns);
static DEFINE_MUTEX(aem_sock_mu);
static bool aem_sock_unloading;
static void aem_sock_sweep(struct work_struct *work);
static DECLARE_DELAYED_WORK(aem_sock_sweeper, aem_sock_sweep);

/* No room for @l's CONNECT event: park it (as aem_sock_pause() a connection). */
static bool aem_sock_lsn_pause(struct aem_sock_lsn *l)
{
	spin_lock_bh(&l->rs->lock);
	if (l->stopped) {
		spin_unlock_bh(&l->rs->lock);
		return false;
	}
	if (!l->paused) {
		l->paused = true;
		list_add_tail(&l->pnode, &l->rs->lsn_paused);
	}
	spin_unlock_bh(&l->rs->lock);
	if (!aem_core_want_room(l->rs->ring, l->sub, sizeof(struct aem_sock_event)))
		return false;
	spin_lock_bh(&l->rs->lock);
	if (l->paused) {
		l->paused = false;
		list_del_init(&l->pnode);
	}
	spin_unlock_bh(&l->rs->lock);
	return true;
}

/* ---------------------------------------------------------------------- */
/* Accept                                                                 */

/* Post the listener's LIMIT event once per pause.  Under rs->mu. */
static void aem_sock_limit(struct aem_sock_lsn *l, int err)
{
	struct aem_sock_event ev;

	if (l->limited)
		return;
	aem_sock_ctl(&ev, AEM_SOCK_EV_LIMIT, err);
	if (!aem_core_post_fit(l->rs->ring, l->sub, &ev, sizeof(ev), AEM_CQE_F_SOCK_CTL, 0))
		l->limited = true;
}

/* A connection for @ns (accepted from @l), or -errno with @ns released. */
static int aem_sock_conn_new(struct aem_sock_lsn *l, struct socket *ns)
{
	struct aem_sock_ring *rs = l->rs;
	struct aem_ctx *r = rs->ring;
	struct mem_cgroup *old;
	struct aem_sock_conn *c;
	struct aem_sub *s;

	if (ns->sk->sk_family == AF_UNIX) {
		/* Inherited from the listener; said again for connections queued before the subscribe. */
		lock_sock(ns->sk);
		(void)aem_ksk_refuse_rights(ns->sk);
		release_sock(ns->sk);
	}
	old = set_active_memcg(rs->memcg);
	c = kzalloc(sizeof(*c), GFP_KERNEL_ACCOUNT);
	set_active_memcg(old);
	if (!c)
		goto err;
	s = aem_core_sub_spawn(r, l->sub);
	if (!s)
		goto err;
	c->rs = rs;
	c->sub = s;
	c->sock = ns;
	c->id = aem_sub_id(r, s);
	INIT_LIST_HEAD(&c->pnode);
	INIT_LIST_HEAD(&c->txq);
	INIT_WORK(&c->rx_work, aem_sock_rx_work);
	INIT_WORK(&c->tx_work, aem_sock_tx_work);
	INIT_WORK(&c->end_work, aem_sock_end_work);
	mutex_init(&c->tx_mu);
	set_bit(AEM_SOCK_CONNECT, &c->flags);
	s->priv[1] = AEM_SOCK_KIND_CONN;
	mutex_lock(&rs->mu);
	/* Its id is not out yet, but a guess may have unsubscribed it already. */
	if (!aem_sub_active(r, s)) {
		mutex_unlock(&rs->mu);
		goto err;
	}
	s->priv[0] = (u64)(uintptr_t)c;
	list_add_tail(&c->node, &rs->conns);	/* counted by the accept's reservation */
	/*
	 * CONNECT now, in accept order, while no receive can run yet (not
	 * hooked, rx_work not queued); without room rx_work posts it first.
	 */
	if (aem_sock_post_connect(c))
		clear_bit(AEM_SOCK_CONNECT, &c->flags);
	aem_sock_hook(c);
	mutex_unlock(&rs->mu);
	queue_work(aem_sock_wq, &c->rx_work);
	return 0;
err:
	kfree(c);
	sock_release(ns);
	return -ENOMEM;
}

/* Whether a connection waits in @l's accept queue. */
static bool aem_sock_lsn_waits(struct aem_sock_lsn *l)
{
	struct inode *inode = SOCK_INODE(l->sock);
	bool waits;

	inode_lock(inode);
	waits = l->sock->sk && READ_ONCE(l->sock->sk->sk_ack_backlog);
	inode_unlock(inode);
	return waits;
}

static void aem_sock_accept_work(struct work_struct *work)
{
	struct aem_sock_lsn *l = container_of(work, struct aem_sock_lsn, accept_work);
	struct inode *inode = SOCK_INODE(l->sock);
	struct aem_sock_ring *rs = l->rs;
	struct socket *ns;
	bool waits;
	int i, err;

	for (i = 0; i < AEM_SOCK_ACCEPT_BUDGET; i++) {
		mutex_lock(&rs->mu);
		if (l->closing) {
			mutex_unlock(&rs->mu);
			return;
		}
		if (rs->nr_conns >= aem_ctx_sock_conns(rs->ring)) {
			mutex_unlock(&rs->mu);
			waits = aem_sock_lsn_waits(l);
			mutex_lock(&rs->mu);
			if (rs->nr_conns < aem_ctx_sock_conns(rs->ring)) {
				/* One went meanwhile (its conn_gone found us not limited). */
				mutex_unlock(&rs->mu);
				continue;
			}
			/*
			 * Said when a connection waits (else the next one's arrival
			 * wakes us to say it); accepting resumes when a connection
			 * goes (aem_sock_conn_gone).
			 */
			if (waits)
				aem_sock_limit(l, -EMFILE);
			mutex_unlock(&rs->mu);
			if (waits && !l->limited && aem_sock_lsn_pause(l))
				continue;
			return;
		}
		mutex_unlock(&rs->mu);
		/* Room for the CONNECT event before taking a connection in. */
		if (!aem_core_has_room(rs->ring, l->sub, sizeof(struct aem_sock_event)) &&
		    !aem_sock_lsn_pause(l))
			return;
		mutex_lock(&rs->mu);
		rs->nr_conns++;		/* reserved: listeners of one ring accept in parallel */
		mutex_unlock(&rs->mu);
		/* The inode lock keeps the listener's release out (see aem_fd.c). */
		inode_lock(inode);
		err = -EAGAIN;
		if (l->sock->sk) {
			/* The new socket is the subscriber's memory, not the worker's. */
			struct mem_cgroup *old = set_active_memcg(rs->memcg);

			err = kernel_accept(l->sock, &ns, O_NONBLOCK);
			set_active_memcg(old);
		}
		inode_unlock(inode);
		if (!err)
			err = aem_sock_conn_new(l, ns);
		mutex_lock(&rs->mu);
		if (err)
			aem_sock_conn_gone(rs);	/* the reservation */
		else
			l->limited = false;
		if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM)
			aem_sock_limit(l, err);
		mutex_unlock(&rs->mu);
		if (err == -EAGAIN)
			return;
		if (err == -ECONNABORTED || err == -EPROTO || err == -EINTR)
			continue;	/* that connection went before we took it */
		if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM) {
			/* Resources: said once (LIMIT), tried again shortly. */
			queue_delayed_work(aem_sock_wq, &l->retry, AEM_SOCK_RETRY);
			return;
		}
		if (err) {
			/* Shut down under us, or failed: no accept will work; the sweep ends it now. */
			WRITE_ONCE(l->gone, true);
			mod_delayed_work(aem_sock_wq, &aem_sock_sweeper, 0);
			return;
		}
	}
	queue_work(aem_sock_wq, &l->accept_work);
}

static void aem_sock_retry(struct work_struct *work)
{
	struct aem_sock_lsn *l = container_of(to_delayed_work(work), struct aem_sock_lsn, retry);

	mutex_lock(&l->rs->mu);
	l->limited = false;
	mutex_unlock(&l->rs->mu);
	queue_work(aem_sock_wq, &l->accept_work);
}

/* The listener's wait queue: a connection came (or anything else): look. */
static int aem_sock_lsn_wake(struct wait_queue_entry *wait, unsigned int mode, int sync, void *key)
{
	struct aem_sock_lsn *l = container_of(wait, struct aem_sock_lsn, wait);
	__poll_t mask = key_to_poll(key);

	if (!mask || (mask & (EPOLLIN | EPOLLRDNORM)))
		queue_work(aem_sock_wq, &l->accept_work);
	return 0;
}

static void aem_sock_lsn_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct aem_sock_lsn *l = container_of(pt, struct aem_sock_lsn, pt);

	if (l->wqh)
		return;
	l->wqh = wqh;
	add_wait_queue(wqh, &l->wait);
}

/* ---------------------------------------------------------------------- */
/* Subscriptions                                                          */

static struct aem_sock_ring *aem_sock_ring_get(struct aem_ctx *r)
{
	void **priv = aem_ctx_src_priv(r, &aem_sock_ops);
	struct aem_sock_ring *rs = aem_sock_rs(r);

	/* Subscribe and .ring_release run under the ring's submit lock: no race here. */
	if (rs)
		return rs;
	rs = kzalloc(sizeof(*rs), GFP_KERNEL_ACCOUNT);
	if (!rs)
		return NULL;
	rs->ring = r;
	mutex_init(&rs->mu);
	spin_lock_init(&rs->lock);
	INIT_LIST_HEAD(&rs->conns);
	INIT_LIST_HEAD(&rs->lsns);
	INIT_LIST_HEAD(&rs->paused);
	INIT_LIST_HEAD(&rs->lsn_paused);
	INIT_WORK(&rs->room_work, aem_sock_room_work);
	rs->memcg = get_mem_cgroup_from_mm(current->mm);
	rcu_assign_pointer(*(struct aem_sock_ring __rcu **)priv, rs);
	return rs;
}

static int aem_sock_subscribe(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe)
{
	const struct aem_sock_args *a = &sqe->sock;
	struct aem_sock_ring *rs;
	struct aem_sock_lsn *l;
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;
	int ret;

	if (a->fd < 0 || a->flags || a->resv[0] || a->resv[1] || a->resv[2])
		return -EINVAL;
	if (!aem_subscriber_is_current())
		return -EOPNOTSUPP;
	rs = aem_sock_ring_get(r);
	if (!rs)
		return -ENOMEM;
	l = kzalloc(sizeof(*l), GFP_KERNEL_ACCOUNT);
	if (!l)
		return -ENOMEM;
	/* Submission context: the fd is the submitter's. */
	ret = -EBADF;
	file = fget(a->fd);
	if (!file)
		goto err;
	ret = -ENOTSOCK;
	sock = sock_from_file(file);
	if (!sock || !sock->sk)
		goto err;
	sk = sock->sk;
	ret = -EOPNOTSUPP;
	if (sk->sk_type != SOCK_STREAM)
		goto err;
	if ((sk->sk_family == AF_INET || sk->sk_family == AF_INET6) && sk->sk_protocol != IPPROTO_TCP)
		goto err;
	if (sk->sk_family != AF_INET && sk->sk_family != AF_INET6 && sk->sk_family != AF_UNIX)
		goto err;
	lock_sock(sk);
	ret = READ_ONCE(sk->sk_state) == TCP_LISTEN ? 0 : -EINVAL;
	/* No file may sit in a connection's queue (see the top of this file). */
	if (!ret && sk->sk_family == AF_UNIX && !aem_ksk_refuse_rights(sk))
		ret = -EOPNOTSUPP;
	release_sock(sk);
	if (ret)
		goto err;

	l->rs = rs;
	l->sub = s;
	l->sock = sock;
	INIT_LIST_HEAD(&l->pnode);
	INIT_WORK(&l->accept_work, aem_sock_accept_work);
	INIT_DELAYED_WORK(&l->retry, aem_sock_retry);
	init_waitqueue_func_entry(&l->wait, aem_sock_lsn_wake);
	init_poll_funcptr(&l->pt, aem_sock_lsn_queue);
	vfs_poll(file, &l->pt);
	ret = -EINVAL;
	if (!l->wqh)
		goto err;
	ihold(SOCK_INODE(sock));
	fput(file);
	s->priv[1] = AEM_SOCK_KIND_LSN;
	mutex_lock(&aem_sock_mu);
	if (list_empty(&aem_sock_lsns))
		queue_delayed_work(aem_sock_wq, &aem_sock_sweeper, AEM_SOCK_SWEEP_PERIOD);
	list_add_tail(&l->node, &aem_sock_lsns);
	mutex_lock(&rs->mu);
	s->priv[0] = (u64)(uintptr_t)l;
	list_add_tail(&l->rnode, &rs->lsns);
	mutex_unlock(&rs->mu);
	mutex_unlock(&aem_sock_mu);
	return 0;
err:
	if (file)
		fput(file);
	kfree(l);
	return ret;
}

/* The listener's id is out: take the connections already waiting. */
static void aem_sock_start(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_sock_lsn *l;

	mutex_lock(&aem_sock_mu);
	l = (struct aem_sock_lsn *)(uintptr_t)s->priv[0];
	if (l && s->priv[1] == AEM_SOCK_KIND_LSN)
		queue_work(aem_sock_wq, &l->accept_work);
	mutex_unlock(&aem_sock_mu);
}

/*
 * Stop @l's accepting for good (l->closing is set: conn_gone no longer
 * queues it).  Off the paused list first, so the room work cannot queue it;
 * then no wakes; then no work: accept and retry queue each other, so
 * accept is cancelled on both sides of retry.  No rs->mu held.
 */
static void aem_sock_lsn_stop(struct aem_sock_lsn *l)
{
	spin_lock_bh(&l->rs->lock);
	if (l->stopped) {
		/* A sweep stopped it and found no room for its CLOSED: once is enough. */
		spin_unlock_bh(&l->rs->lock);
		return;
	}
	l->stopped = true;
	if (l->paused) {
		l->paused = false;
		list_del_init(&l->pnode);
	}
	spin_unlock_bh(&l->rs->lock);
	remove_wait_queue(l->wqh, &l->wait);
	cancel_work_sync(&l->accept_work);
	cancel_delayed_work_sync(&l->retry);
	cancel_work_sync(&l->accept_work);
}

static void aem_sock_lsn_free(struct aem_sock_lsn *l)
{
	iput(SOCK_INODE(l->sock));
	kfree(l);
}

static void aem_sock_unsubscribe(struct aem_ctx *r, struct aem_sub *s)
{
	struct aem_sock_ring *rs = aem_sock_rs(r);
	struct aem_sock_conn *c = NULL;
	struct aem_sock_lsn *l = NULL;

	if (!rs)
		return;
	mutex_lock(&aem_sock_mu);
	mutex_lock(&rs->mu);
	if (s->priv[1] == AEM_SOCK_KIND_LSN) {
		l = (struct aem_sock_lsn *)(uintptr_t)s->priv[0];
		if (l) {
			l->closing = true;
			list_del(&l->node);
			list_del(&l->rnode);
		}
	} else {
		c = (struct aem_sock_conn *)(uintptr_t)s->priv[0];
		if (c && !c->claimed)
			aem_sock_claim(c);
		else
			c = NULL;	/* its final post ended it: end_work frees it */
	}
	s->priv[0] = 0;
	mutex_unlock(&rs->mu);
	mutex_unlock(&aem_sock_mu);
	if (l) {
		aem_sock_lsn_stop(l);
		aem_sock_lsn_free(l);
	}
	if (c)
		aem_sock_conn_destroy(c, rs, READ_ONCE(aem_sock_unloading) ? -ECONNABORTED : -ECANCELED);
}

/*
 * Every subscription of this source in @r has been unsubscribed, or ended
 * by its final post.  A connection spawned while the ring's teardown had
 * already passed its table index is still here: close it.
 */
static void aem_sock_ring_release(struct aem_ctx *r)
{
	void **priv = aem_ctx_src_priv(r, &aem_sock_ops);
	struct aem_sock_ring *rs = aem_sock_rs(r);
	struct aem_sock_conn *c;

	if (!rs)
		return;
	mutex_lock(&rs->mu);
	while ((c = list_first_entry_or_null(&rs->conns, struct aem_sock_conn, node))) {
		struct aem_sub *s = c->sub;

		aem_sock_claim(c);
		s->priv[0] = 0;
		mutex_unlock(&rs->mu);
		aem_sock_conn_destroy(c, rs, 0);
		mutex_lock(&rs->mu);
	}
	mutex_unlock(&rs->mu);
	/* The room hook runs under RCU: after this it finds nothing. */
	rcu_assign_pointer(*(struct aem_sock_ring __rcu **)priv, NULL);
	synchronize_rcu();
	cancel_work_sync(&rs->room_work);
	mem_cgroup_put(rs->memcg);
	mutex_destroy(&rs->mu);
	kfree(rs);
}

/*
 * End the listeners whose socket was closed, or can no longer accept (shut
 * down, failed): stop accepting, then the final CLOSED (-ECONNABORTED)
 * once there is room for it (else at the next sweep).  Their connections
 * go on.
 */
static void aem_sock_sweep(struct work_struct *work)
{
	struct aem_sock_lsn *l, *tmp;
	struct aem_sock_event ev;

	mutex_lock(&aem_sock_mu);
	list_for_each_entry_safe(l, tmp, &aem_sock_lsns, node) {
		struct aem_sock_ring *rs = l->rs;
		struct aem_sub *s = l->sub;

		if (READ_ONCE(l->sock->sk) && !READ_ONCE(l->gone))
			continue;
		mutex_lock(&rs->mu);
		l->closing = true;
		mutex_unlock(&rs->mu);
		aem_sock_lsn_stop(l);
		aem_sock_ctl(&ev, AEM_SOCK_EV_CLOSED, -ECONNABORTED);
		mutex_lock(&rs->mu);
		s->priv[0] = 0;
		if (aem_core_post_fit(rs->ring, s, &ev, sizeof(ev), AEM_CQE_F_SOCK_CTL | AEM_CQE_F_FINAL, 0)) {
			s->priv[0] = (u64)(uintptr_t)l;
			mutex_unlock(&rs->mu);
			continue;
		}
		list_del(&l->rnode);
		list_del(&l->node);
		mutex_unlock(&rs->mu);
		aem_sock_lsn_free(l);
	}
	if (!list_empty(&aem_sock_lsns))
		queue_delayed_work(aem_sock_wq, &aem_sock_sweeper, AEM_SOCK_SWEEP_PERIOD);
	mutex_unlock(&aem_sock_mu);
}

const struct aem_source_ops aem_sock_ops = {
	.api_version	= AEM_SOURCE_API_VERSION,
	.source		= AEM_SRC_SOCK,
	.name		= "sock",
	.owner		= THIS_MODULE,
	.subscribe	= aem_sock_subscribe,
	.unsubscribe	= aem_sock_unsubscribe,
	.start		= aem_sock_start,
	.ring_release	= aem_sock_ring_release,
	.io		= aem_sock_io,
	.room		= aem_sock_room,
};

static int __init aem_sock_init(void)
{
	int ret;

	aem_sock_wq = alloc_workqueue("aem_sock", WQ_UNBOUND, 0);
	if (!aem_sock_wq)
		return -ENOMEM;
	ret = aem_core_register_source(&aem_sock_ops);
	if (ret)
		destroy_workqueue(aem_sock_wq);
	return ret;
}

static void __exit aem_sock_exit(void)
{
	WRITE_ONCE(aem_sock_unloading, true);
	/* Every subscription ends through aem_sock_unsubscribe(), every ring's state through .ring_release. */
	aem_host_unregister_source(&aem_sock_ops);
	cancel_delayed_work_sync(&aem_sock_sweeper);
	/* Connections that ended by their final event are freed by end_work: wait for it. */
	destroy_workqueue(aem_sock_wq);
}

module_init(aem_sock_init);
module_exit(aem_sock_exit);
MODULE_LICENSE("GPL");
MODULE_VERSION(AEM_VERSION);
MODULE_DESCRIPTION("AEM event source: socket I/O (accept, receive, send, close in the kernel)");
