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
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/file.h>
#include <linux/net.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/poll.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/mutex.h>
#include <linux/list.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/memcontrol.h>
#include <linux/sched/mm.h>
#include <linux/rcupdate.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "aem_kmod.h"

static const struct aem_source_ops aem_sock_ops;	/* at the end: its hooks are below */

#define AEM_SOCK_RX_BUDGET	16		/* receives per run, then requeue: busy peers share the pool */
#define AEM_SOCK_ACCEPT_BUDGET	64		/* accepts per run */
#define AEM_SOCK_RETRY		(HZ / 10)	/* an accept error: try again after 100 ms */
#define AEM_SOCK_SWEEP_PERIOD	HZ		/* looking for listeners whose socket was closed */

/* s->priv[1]: what a subscription of this source is. */
#define AEM_SOCK_KIND_LSN	1
#define AEM_SOCK_KIND_CONN	2

struct aem_sock_ring;

/* A send (or a shutdown) queued on a connection until its socket takes it. */
struct aem_sock_tx {
	struct list_head	node;
	struct aem_pending	pend;		/* its SQE, for the result */
	u32			shut;		/* 0: data; else the SHUTDOWN's arg */
	u32			total;		/* the result: the SEND's whole length */
	u32			len, off;	/* data[] holds what the first try left; off of it went */
	u8			data[];
};

struct aem_sock_conn {
	struct list_head	node;		/* rs->conns, under rs->mu */
	struct list_head	pnode;		/* rs->paused while RX_PAUSED, under rs->lock */
	struct aem_sock_ring	*rs;
	struct aem_sub		*sub;		/* valid while claimed is false, or during rx_work */
	struct socket		*sock;		/* ours: accepted here, in no fd table */
	u64			id;
	void			(*saved_data_ready)(struct sock *sk);
	void			(*saved_write_space)(struct sock *sk);
	void			(*saved_state_change)(struct sock *sk);
	struct work_struct	rx_work;
	struct work_struct	tx_work;
	struct work_struct	end_work;
	struct mutex		tx_mu;		/* txq, nr_tx, the send side of sock */
	struct list_head	txq;
	u32			nr_tx;
	int			end_err;	/* the final event's res, once ENDING */
	bool			claimed;	/* under rs->mu: a final post or .unsubscribe owns the end */
	bool			wr_closed;	/* under rs->mu: SHUT_WR or CLOSE accepted: sends are -ESHUTDOWN */
	bool			close_req;	/* under rs->mu: CLOSE accepted: shutdowns are -ESHUTDOWN too */
	unsigned long		flags;
};

/* conn->flags */
#define AEM_SOCK_CONNECT	0	/* the CONNECT event is still to be posted */
#define AEM_SOCK_EOF		1	/* the EOF event is still to be posted */
#define AEM_SOCK_RX_DONE	2	/* no more receiving: end of stream, SHUT_RD */
#define AEM_SOCK_RX_PAUSED	3	/* waits for room (on rs->paused) */
#define AEM_SOCK_ENDING		4	/* end with CLOSED(end_err) as soon as it can be posted */
#define AEM_SOCK_DEAD		5	/* being destroyed: work items do nothing */

struct aem_sock_lsn {
	struct list_head	node;		/* aem_sock_lsns, under aem_sock_mu */
	struct list_head	rnode;		/* rs->lsns, under rs->mu */
	struct list_head	pnode;		/* rs->lsn_paused, under rs->lock */
	struct aem_sock_ring	*rs;
	struct aem_sub		*sub;
	struct socket		*sock;		/* the listener: its inode held, not its file */
	wait_queue_head_t	*wqh;
	struct wait_queue_entry	wait;
	poll_table		pt;
	struct work_struct	accept_work;
	struct delayed_work	retry;
	bool			closing;	/* under rs->mu: no more accepts */
	bool			limited;	/* under rs->mu: the LIMIT event of this pause was posted */
	bool			paused;		/* under rs->lock: on rs->lsn_paused */
	bool			stopped;	/* under rs->lock: never paused again */
	bool			gone;		/* accept failed for good: the sweep ends it */
};

/* Per ring (its src_priv): what the ring holds of this source. */
struct aem_sock_ring {
	struct aem_ctx		*ring;
	struct mutex		mu;		/* conns, lsns, claims; .io against ends */
	struct list_head	conns;
	struct list_head	lsns;
	u32			nr_conns;
	spinlock_t		lock;		/* paused lists */
	struct list_head	paused;
	struct list_head	lsn_paused;
	struct work_struct	room_work;
	struct mem_cgroup	*memcg;		/* the subscriber's: per-connection state is charged there */
};

static struct workqueue_struct *aem_sock_wq;
static LIST_HEAD(aem_sock_lsns);
static DEFINE_MUTEX(aem_sock_mu);
static bool aem_sock_unloading;
static void aem_sock_sweep(struct work_struct *work);
static DECLARE_DELAYED_WORK(aem_sock_sweeper, aem_sock_sweep);

static void aem_sock_ctl(struct aem_sock_event *ev, u8 type, s32 res)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->res = res;
}

/* ---------------------------------------------------------------------- */
/* Pausing for room                                                       */

static void aem_sock_unpause(struct aem_sock_conn *c)
{
	spin_lock_bh(&c->rs->lock);
	if (test_and_clear_bit(AEM_SOCK_RX_PAUSED, &c->flags))
		list_del_init(&c->pnode);
	spin_unlock_bh(&c->rs->lock);
}

/*
 * No room for @c's next event: park it, then announce (the core looks
 * again after its barrier).  True: there is room after all, go on.
 */
static bool aem_sock_pause(struct aem_sock_conn *c, u32 len)
{
	spin_lock_bh(&c->rs->lock);
	if (test_bit(AEM_SOCK_DEAD, &c->flags)) {
		/* Being destroyed, which takes it off the list after setting DEAD. */
		spin_unlock_bh(&c->rs->lock);
		return false;
	}
	if (!test_and_set_bit(AEM_SOCK_RX_PAUSED, &c->flags))
		list_add_tail(&c->pnode, &c->rs->paused);
	spin_unlock_bh(&c->rs->lock);
	if (!aem_core_want_room(c->rs->ring, c->sub, len))
		return false;
	aem_sock_unpause(c);
	return true;
}

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

/* The consumer made room: every paused connection and listener tries again. */
static void aem_sock_room_work(struct work_struct *work)
{
	struct aem_sock_ring *rs = container_of(work, struct aem_sock_ring, room_work);
	struct aem_sock_conn *c, *ct;
	struct aem_sock_lsn *l, *lt;

	spin_lock_bh(&rs->lock);
	list_for_each_entry_safe(c, ct, &rs->paused, pnode) {
		clear_bit(AEM_SOCK_RX_PAUSED, &c->flags);
		list_del_init(&c->pnode);
		queue_work(aem_sock_wq, &c->rx_work);
	}
	list_for_each_entry_safe(l, lt, &rs->lsn_paused, pnode) {
		l->paused = false;
		list_del_init(&l->pnode);
		queue_work(aem_sock_wq, &l->accept_work);
	}
	spin_unlock_bh(&rs->lock);
}

/* The core's hook: any context, under its source-registry spinlock. */
static void aem_sock_room(struct aem_ctx *r)
{
	struct aem_sock_ring *rs;

	rcu_read_lock();
	rs = rcu_dereference(*(struct aem_sock_ring __rcu **)aem_ctx_src_priv(r, &aem_sock_ops));
	if (rs)
		queue_work(aem_sock_wq, &rs->room_work);
	rcu_read_unlock();
}

/* ---------------------------------------------------------------------- */
/* Socket callbacks: any context; they only queue work.                    */

static void aem_sock_data_ready(struct sock *sk)
{
	struct aem_sock_conn *c;

	read_lock_bh(&sk->sk_callback_lock);
	c = sk->sk_user_data;
	if (c && !test_bit(AEM_SOCK_RX_PAUSED, &c->flags))
		queue_work(aem_sock_wq, &c->rx_work);
	read_unlock_bh(&sk->sk_callback_lock);
}

static void aem_sock_write_space(struct sock *sk)
{
	void (*chain)(struct sock *sk) = NULL;
	struct aem_sock_conn *c;

	read_lock_bh(&sk->sk_callback_lock);
	c = sk->sk_user_data;
	if (c) {
		queue_work(aem_sock_wq, &c->tx_work);
		chain = c->saved_write_space;
	}
	read_unlock_bh(&sk->sk_callback_lock);
	/* The protocol's own clears SOCK_NOSPACE once writable. */
	if (chain)
		chain(sk);
}

static void aem_sock_state_change(struct sock *sk)
{
	struct aem_sock_conn *c;

	read_lock_bh(&sk->sk_callback_lock);
	c = sk->sk_user_data;
	if (c) {
		queue_work(aem_sock_wq, &c->rx_work);
		queue_work(aem_sock_wq, &c->tx_work);
	}
	read_unlock_bh(&sk->sk_callback_lock);
}

static void aem_sock_hook(struct aem_sock_conn *c)
{
	struct sock *sk = c->sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	c->saved_data_ready = sk->sk_data_ready;
	c->saved_write_space = sk->sk_write_space;
	c->saved_state_change = sk->sk_state_change;
	sk->sk_user_data = c;
	sk->sk_data_ready = aem_sock_data_ready;
	sk->sk_write_space = aem_sock_write_space;
	sk->sk_state_change = aem_sock_state_change;
	write_unlock_bh(&sk->sk_callback_lock);
}

/* After this no callback of ours runs or starts on @c's socket. */
static void aem_sock_unhook(struct aem_sock_conn *c)
{
	struct sock *sk = c->sock->sk;

	write_lock_bh(&sk->sk_callback_lock);
	sk->sk_user_data = NULL;
	sk->sk_data_ready = c->saved_data_ready;
	sk->sk_write_space = c->saved_write_space;
	sk->sk_state_change = c->saved_state_change;
	write_unlock_bh(&sk->sk_callback_lock);
}

/* ---------------------------------------------------------------------- */
/* Connection ends                                                        */

/* Answer every queued send and shutdown with @res.  Under tx_mu. */
static void aem_sock_tx_fail(struct aem_sock_conn *c, struct aem_ctx *r, int res, bool post)
{
	struct aem_sock_tx *tx, *tmp;

	list_for_each_entry_safe(tx, tmp, &c->txq, node) {
		list_del(&tx->node);
		if (post)
			aem_core_complete(r, &tx->pend, res);
		kfree(tx);
	}
	c->nr_tx = 0;
}

/*
 * The last of a connection that nobody can reach any more (claimed, off
 * the paused list).  Touches neither its ring nor its subscription: after
 * a final post the ring may go before this runs.
 */
static void aem_sock_conn_free(struct aem_sock_conn *c)
{
	set_bit(AEM_SOCK_DEAD, &c->flags);
	aem_sock_unhook(c);
	cancel_work_sync(&c->rx_work);
	cancel_work_sync(&c->tx_work);
	sock_release(c->sock);
	kfree(c);
}

/* A connection ended by its final event: free it from a work item of its own. */
static void aem_sock_end_work(struct work_struct *work)
{
	struct aem_sock_conn *c = container_of(work, struct aem_sock_conn, end_work);

	mutex_lock(&c->tx_mu);
	aem_sock_tx_fail(c, NULL, 0, false);	/* answered before the final event */
	mutex_unlock(&c->tx_mu);
	aem_sock_conn_free(c);
}

/* A connection left the ring: accepting may resume.  Under rs->mu. */
static void aem_sock_conn_gone(struct aem_sock_ring *rs)
{
	struct aem_sock_lsn *l;

	rs->nr_conns--;
	list_for_each_entry(l, &rs->lsns, rnode) {
		if (l->limited && !l->closing) {
			l->limited = false;
			queue_work(aem_sock_wq, &l->accept_work);
		}
	}
}

/* Whoever ends @c (its final post, .unsubscribe, ring release) takes it off the ring.  Under rs->mu. */
static void aem_sock_claim(struct aem_sock_conn *c)
{
	struct aem_sock_ring *rs = c->rs;

	c->claimed = true;
	c->sub = NULL;
	list_del(&c->node);
	spin_lock_bh(&rs->lock);
	if (test_and_clear_bit(AEM_SOCK_RX_PAUSED, &c->flags))
		list_del_init(&c->pnode);
	spin_unlock_bh(&rs->lock);
	aem_sock_conn_gone(rs);
}

/*
 * In rx_work: answer what is queued with end_err, then the final CLOSED.
 * Returns false when there was no room (paused: the room hook requeues).
 */
static bool aem_sock_end(struct aem_sock_conn *c)
{
	struct aem_sock_ring *rs = c->rs;
	struct aem_ctx *r = rs->ring;
	struct aem_sock_event ev;
	struct aem_sub *s = c->sub;
	int ret;

	mutex_lock(&rs->mu);
	if (c->claimed) {
		mutex_unlock(&rs->mu);
		return true;
	}
	mutex_lock(&c->tx_mu);
	aem_sock_tx_fail(c, r, c->end_err, true);
	mutex_unlock(&c->tx_mu);
	aem_sock_ctl(&ev, AEM_SOCK_EV_CLOSED, c->end_err);
	/* Cleared first: after a delivered final post @s may be another subscription. */
	s->priv[0] = 0;
	ret = aem_core_post_fit(r, s, &ev, sizeof(ev), AEM_CQE_F_SOCK_CTL | AEM_CQE_F_FINAL, c->id);
	if (ret) {
		s->priv[0] = (u64)(uintptr_t)c;
		mutex_unlock(&rs->mu);
		return false;
	}
	aem_sock_claim(c);
	mutex_unlock(&rs->mu);
	queue_work(aem_sock_wq, &c->end_work);
	return true;
}

/*
 * A network error as an outcome (a send's result, CLOSED's res): never one
 * of the errnos that mean "refused" (PROTOCOL.md section 10), which would
 * tell the application a writeback's slot is still its own.
 */
static int aem_sock_outcome(int err)
{
	switch (err) {
	case -ENOENT: case -EINVAL: case -EOPNOTSUPP: case -ENOTCONN: case -ESHUTDOWN: case -ENOBUFS:
		return -EPIPE;
	}
	return err;
}

/* Ask for the end: from any work item of @c.  The first error wins. */
static void aem_sock_fail(struct aem_sock_conn *c, int err)
{
	if (!test_and_set_bit(AEM_SOCK_ENDING, &c->flags))
		WRITE_ONCE(c->end_err, aem_sock_outcome(err));
	queue_work(aem_sock_wq, &c->rx_work);
}

/* ---------------------------------------------------------------------- */
/* Receive                                                                */

static void aem_sock_peer(struct aem_sock_conn *c, struct aem_sock_event *ev)
{
	struct sockaddr_storage ss;
	int len;

	memset(&ss, 0, sizeof(ss));
	len = kernel_getpeername(c->sock, (struct sockaddr *)&ss);
	ev->family = c->sock->sk->sk_family;
	if (len < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		ev->port = ntohs(in->sin_port);
		memcpy(ev->addr, &in->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		ev->port = ntohs(in6->sin6_port);
		ev->scope_id = in6->sin6_scope_id;
		memcpy(ev->addr, &in6->sin6_addr, 16);
	}
}

static bool aem_sock_post_connect(struct aem_sock_conn *c)
{
	struct aem_sock_event ev;

	aem_sock_ctl(&ev, AEM_SOCK_EV_CONNECT, 0);
	aem_sock_peer(c, &ev);
	return !aem_core_post_fit(c->rs->ring, c->sub, &ev, sizeof(ev), AEM_CQE_F_SOCK_CTL, c->id);
}

/* Post the control event @type of @c; false: no room (paused). */
static bool aem_sock_post_ctl(struct aem_sock_conn *c, u8 type)
{
	struct aem_sock_event ev;

	aem_sock_ctl(&ev, type, 0);
	if (type == AEM_SOCK_EV_CONNECT)
		aem_sock_peer(c, &ev);
	for (;;) {
		if (!aem_core_post_fit(c->rs->ring, c->sub, &ev, sizeof(ev), AEM_CQE_F_SOCK_CTL, c->id))
			return true;
		if (!aem_sock_pause(c, sizeof(ev)))
			return false;
	}
}

/* One receive into a slot.  >0 posted, 0 nothing now (or paused), <0 stop: done. */
static int aem_sock_recv_one(struct aem_sock_conn *c)
{
	struct aem_ctx *r = c->rs->ring;
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	u32 size = aem_ctx_slot_size(r), ref;
	struct sock *sk = c->sock->sk;
	struct kvec vec;
	void *buf;
	int n;

	/*
	 * The peer's end with nothing left to read: said without taking a slot
	 * (the FIN is processed after every byte before it is queued).
	 */
	if (skb_queue_empty_lockless(&sk->sk_receive_queue) &&
	    (READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) && !READ_ONCE(sk->sk_err)) {
		set_bit(AEM_SOCK_RX_DONE, &c->flags);
		set_bit(AEM_SOCK_EOF, &c->flags);
		return 0;
	}
	/* Room first: what is received is posted, never backlogged past its slot. */
	if (!aem_core_has_room(r, c->sub, size) && !aem_sock_pause(c, size))
		return 0;
	if (aem_core_slot_take(r, &ref, &buf)) {
		if (!aem_sock_pause(c, size))
			return 0;
		if (aem_core_slot_take(r, &ref, &buf))
			return 0;
	}
	vec.iov_base = buf;
	vec.iov_len = size;
	n = kernel_recvmsg(c->sock, &msg, &vec, 1, size, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n <= 0) {
		aem_core_slot_put(r, ref);
		if (n == -EAGAIN)
			return -EAGAIN;
		if (n == 0) {
			set_bit(AEM_SOCK_RX_DONE, &c->flags);
			set_bit(AEM_SOCK_EOF, &c->flags);
			return 0;
		}
		aem_sock_fail(c, n);
		return n;
	}
	if (aem_core_post_slot(r, c->sub, ref, n, 0, c->id)) {
		/* No memory for a backlog entry: the bytes are lost with the connection. */
		aem_core_slot_put(r, ref);
		aem_sock_fail(c, -ENOMEM);
		return -ENOMEM;
	}
	return n;
}

static void aem_sock_rx_work(struct work_struct *work)
{
	struct aem_sock_conn *c = container_of(work, struct aem_sock_conn, rx_work);
	int i, n;

	if (test_bit(AEM_SOCK_DEAD, &c->flags) || test_bit(AEM_SOCK_RX_PAUSED, &c->flags))
		return;
	/* Unclaimed: the subscription lives as long as this work may run. */
	if (READ_ONCE(c->claimed))
		return;
	if (test_bit(AEM_SOCK_CONNECT, &c->flags)) {
		if (!aem_sock_post_ctl(c, AEM_SOCK_EV_CONNECT))
			return;
		clear_bit(AEM_SOCK_CONNECT, &c->flags);
	}
	for (i = 0; i < AEM_SOCK_RX_BUDGET; i++) {
		if (test_bit(AEM_SOCK_ENDING, &c->flags)) {
			/* The final CLOSED needs room like any event. */
			while (!aem_sock_end(c))
				if (!aem_sock_pause(c, sizeof(struct aem_sock_event)))
					return;
			return;
		}
		if (test_bit(AEM_SOCK_EOF, &c->flags)) {
			if (!aem_sock_post_ctl(c, AEM_SOCK_EV_EOF))
				return;
			clear_bit(AEM_SOCK_EOF, &c->flags);
		}
		if (test_bit(AEM_SOCK_RX_DONE, &c->flags)) {
			/* Not reading: a reset still ends the connection. */
			n = sock_error(c->sock->sk);
			if (n)
				aem_sock_fail(c, n);
			return;
		}
		n = aem_sock_recv_one(c);
		if (n == -EAGAIN || (n == 0 && test_bit(AEM_SOCK_RX_PAUSED, &c->flags)))
			return;
	}
	queue_work(aem_sock_wq, &c->rx_work);
}

/* ---------------------------------------------------------------------- */
/* Send                                                                   */

static int aem_sock_send_now(struct aem_sock_conn *c, const void *data, u32 len)
{
	struct msghdr msg = { .msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL };
	struct kvec vec = { .iov_base = (void *)data, .iov_len = len };

	return kernel_sendmsg(c->sock, &msg, &vec, 1, len);
}

static int aem_sock_shut(struct aem_sock_conn *c, u32 how)
{
	if (how == AEM_SOCK_CLOSE)
		return 0;	/* the end (end_work) releases the socket */
	if (how & AEM_SOCK_SHUT_RD)
		set_bit(AEM_SOCK_RX_DONE, &c->flags);
	how = how == AEM_SOCK_SHUT_RDWR ? SHUT_RDWR : how == AEM_SOCK_SHUT_WR ? SHUT_WR : SHUT_RD;
	kernel_sock_shutdown(c->sock, how);
	return 0;
}

/*
 * Take what the queue holds, in order, while the socket does.  Under
 * tx_mu.  Returns 0, or the error that ends the connection.
 */
static int aem_sock_tx_run(struct aem_sock_conn *c)
{
	struct aem_ctx *r = c->rs->ring;
	struct aem_sock_tx *tx;
	int n;

	while ((tx = list_first_entry_or_null(&c->txq, struct aem_sock_tx, node))) {
		if (tx->shut) {
			aem_sock_shut(c, tx->shut);
			list_del(&tx->node);
			c->nr_tx--;
			aem_core_complete(r, &tx->pend, 0);
			if (tx->shut == AEM_SOCK_CLOSE)
				aem_sock_fail(c, 0);
			kfree(tx);
			continue;
		}
		if (tx->off < tx->len) {
			n = aem_sock_send_now(c, tx->data + tx->off, tx->len - tx->off);
			if (n == -EAGAIN)
				return 0;	/* write_space requeues */
			if (n < 0)
				return n;
			tx->off += n;
			if (tx->off < tx->len)
				continue;
		}
		list_del(&tx->node);
		c->nr_tx--;
		aem_core_complete(r, &tx->pend, (s32)tx->total);
		kfree(tx);
	}
	return 0;
}

static void aem_sock_tx_work(struct work_struct *work)
{
	struct aem_sock_conn *c = container_of(work, struct aem_sock_conn, tx_work);
	int err;

	if (test_bit(AEM_SOCK_DEAD, &c->flags) || READ_ONCE(c->claimed))
		return;
	mutex_lock(&c->tx_mu);
	err = test_bit(AEM_SOCK_ENDING, &c->flags) ? 0 : aem_sock_tx_run(c);
	mutex_unlock(&c->tx_mu);
	if (err)
		aem_sock_fail(c, err);
}

/* Queue @len bytes (@sent of them already taken) or a shutdown.  Under tx_mu. */
static int aem_sock_tx_queue(struct aem_sock_conn *c, const struct aem_sqe *sqe,
			     const void *data, u32 len, u32 sent, u32 shut)
{
	struct aem_sock_tx *tx;

	tx = kmalloc(struct_size(tx, data, len - sent), GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	if (!tx)
		return -ENOMEM;
	aem_core_pending_init(&tx->pend, sqe);
	tx->shut = shut;
	tx->total = len;
	tx->len = len - sent;
	tx->off = 0;
	memcpy(tx->data, (const u8 *)data + sent, len - sent);
	list_add_tail(&tx->node, &c->txq);
	c->nr_tx++;
	return AEM_CORE_PENDING;
}

static int aem_sock_send(struct aem_sock_conn *c, const struct aem_sqe *sqe,
			 const void *data, u32 len)
{
	int n = 0, ret;

	mutex_lock(&c->tx_mu);
	ret = -ENOBUFS;
	if (c->nr_tx >= AEM_SOCK_MAX_QUEUED)
		goto out;
	if (!c->nr_tx && !test_bit(AEM_SOCK_ENDING, &c->flags)) {
		n = len ? aem_sock_send_now(c, data, len) : 0;
		ret = len;
		if (n == (int)len)
			goto out;
		if (n == -EAGAIN)
			n = 0;
		if (n < 0) {
			/* The connection failed: this send is answered with it, then the end. */
			struct aem_pending p;

			aem_core_pending_init(&p, sqe);
			aem_core_complete(c->rs->ring, &p, aem_sock_outcome(n));
			aem_sock_fail(c, n);
			ret = AEM_CORE_PENDING;
			goto out;
		}
	}
	/* Partly taken, or behind others: the rest waits for write space. */
	ret = aem_sock_tx_queue(c, sqe, data, len, n, 0);
	if (ret == AEM_CORE_PENDING && c->nr_tx == 1)
		queue_work(aem_sock_wq, &c->tx_work);
out:
	mutex_unlock(&c->tx_mu);
	return ret;
}

static int aem_sock_shutdown(struct aem_sock_conn *c, const struct aem_sqe *sqe)
{
	u32 how = sqe->arg;
	int ret;

	if (how != AEM_SOCK_CLOSE && (!how || (how & ~AEM_SOCK_SHUT_RDWR)))
		return -EINVAL;
	if (c->close_req)
		return -ESHUTDOWN;
	mutex_lock(&c->tx_mu);
	ret = -ENOBUFS;
	if (c->nr_tx >= AEM_SOCK_MAX_QUEUED)
		goto out;
	if (how == AEM_SOCK_CLOSE || (how & AEM_SOCK_SHUT_WR))
		c->wr_closed = true;
	c->close_req = how == AEM_SOCK_CLOSE;
	if (!c->nr_tx && how != AEM_SOCK_CLOSE) {
		ret = aem_sock_shut(c, how);
		if (how & AEM_SOCK_SHUT_RD)
			queue_work(aem_sock_wq, &c->rx_work);
		goto out;
	}
	/* After the queued sends; a CLOSE always here, so its result precedes CLOSED. */
	ret = aem_sock_tx_queue(c, sqe, NULL, 0, 0, how);
	if (ret == AEM_CORE_PENDING)
		queue_work(aem_sock_wq, &c->tx_work);
out:
	mutex_unlock(&c->tx_mu);
	return ret;
}

static struct aem_sock_ring *aem_sock_rs(struct aem_ctx *r)
{
	return rcu_dereference_protected(*(struct aem_sock_ring __rcu **)aem_ctx_src_priv(r, &aem_sock_ops), 1);
}

/* SEND, SHUTDOWN, WRITEBACK: submission context, under the ring's submit lock. */
static int aem_sock_io(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
		       const void *data, u32 len)
{
	struct aem_sock_ring *rs = aem_sock_rs(r);
	struct aem_sock_conn *c;
	int ret;

	if (s->priv[1] == AEM_SOCK_KIND_LSN)
		return -ENOTCONN;
	if (!rs)
		return -ENOENT;
	/* The mutex keeps the connection's end (its final post) out while we use it. */
	mutex_lock(&rs->mu);
	c = (struct aem_sock_conn *)(uintptr_t)s->priv[0];
	ret = -ENOENT;
	if (!c || c->claimed)
		goto out;
	/* Failed: its CLOSED is on the way (a CLOSE asked for says -ESHUTDOWN below). */
	ret = -ENOTCONN;
	if (test_bit(AEM_SOCK_ENDING, &c->flags) && READ_ONCE(c->end_err) && !c->close_req)
		goto out;
	if (sqe->opcode == AEM_OP_SHUTDOWN) {
		ret = aem_sock_shutdown(c, sqe);
		goto out;
	}
	ret = -ESHUTDOWN;
	if (c->wr_closed)
		goto out;
	ret = aem_sock_send(c, sqe, data, len);
out:
	mutex_unlock(&rs->mu);
	return ret;
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

/* @c claimed by .unsubscribe or the ring's release: the ring still lives. */
static void aem_sock_conn_destroy(struct aem_sock_conn *c, struct aem_sock_ring *rs, int res)
{
	/* DEAD first: a pause after this adds nothing, so the room work cannot queue it once off. */
	set_bit(AEM_SOCK_DEAD, &c->flags);
	spin_lock_bh(&rs->lock);
	if (test_and_clear_bit(AEM_SOCK_RX_PAUSED, &c->flags))
		list_del_init(&c->pnode);
	spin_unlock_bh(&rs->lock);
	aem_sock_unhook(c);
	cancel_work_sync(&c->rx_work);
	cancel_work_sync(&c->tx_work);
	cancel_work_sync(&c->end_work);
	mutex_lock(&c->tx_mu);
	aem_sock_tx_fail(c, rs->ring, res, res != 0);
	mutex_unlock(&c->tx_mu);
	aem_sock_conn_free(c);
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

static const struct aem_source_ops aem_sock_ops = {
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
