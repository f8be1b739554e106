// SPDX-License-Identifier: GPL-2.0
/*
 * aem_sock.ko, a connection's side: pausing for room, the socket
 * callbacks, receiving into slots, sending and shutting down from the
 * per-connection queue, and the connection's end.  The design, the
 * objects' lifetimes and the lock order are at the top of aem_sock_lsn.c.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "aem_sock.h"

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

/* The consumer made room: every paused connection and listener tries again. */
void aem_sock_room_work(struct work_struct *work)
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
void aem_sock_room(struct aem_ctx *r)
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

static bool aem_sock_rx_softirq(struct aem_sock_conn *c, struct sock *sk);

static void aem_sock_data_ready(struct sock *sk)
{
	struct aem_sock_conn *c;

	read_lock_bh(&sk->sk_callback_lock);
	c = sk->sk_user_data;
	if (c && !test_bit(AEM_SOCK_RX_PAUSED, &c->flags) && !aem_sock_rx_softirq(c, sk))
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

void aem_sock_hook(struct aem_sock_conn *c)
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
void aem_sock_end_work(struct work_struct *work)
{
	struct aem_sock_conn *c = container_of(work, struct aem_sock_conn, end_work);

	mutex_lock(&c->tx_mu);
	aem_sock_tx_fail(c, NULL, 0, false);	/* answered before the final event */
	mutex_unlock(&c->tx_mu);
	aem_sock_conn_free(c);
}

/* A connection left the ring: accepting may resume.  Under rs->mu. */
void aem_sock_conn_gone(struct aem_sock_ring *rs)
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
void aem_sock_claim(struct aem_sock_conn *c)
{
	struct aem_sock_ring *rs = c->rs;

	/*
	 * c->sub stays: a receiver already past its claimed check uses it
	 * until .unsubscribe's destroy has unhooked and cancelled it, and
	 * the subscription lives that long.
	 */
	c->claimed = true;
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

bool aem_sock_post_connect(struct aem_sock_conn *c)
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
	 * The peer's end with nothing left to read: said without taking a slot.
	 * Every byte sent before the end is queued before RCV_SHUTDOWN is set
	 * (TCP processes the FIN after them; a Unix peer queues its bytes
	 * before its shutdown), so the end is read first and the queue after
	 * it: read the other way round, bytes and the end that both came
	 * between the two reads were taken for an end with nothing left, and
	 * the bytes were lost (the application closed with them unread, which
	 * resets a Unix peer).
	 */
	if ((READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) && !READ_ONCE(sk->sk_err)) {
		smp_rmb();	/* the end, then the queue: pairs with the sender's queue lock */
		if (skb_queue_empty_lockless(&sk->sk_receive_queue)) {
			set_bit(AEM_SOCK_RX_DONE, &c->flags);
			set_bit(AEM_SOCK_EOF, &c->flags);
			return 0;
		}
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

/* rx_work's turn, under RX_BUSY.  True: its budget is spent, queue it again. */
static bool aem_sock_rx_run(struct aem_sock_conn *c)
{
	int i, n;

	if (test_bit(AEM_SOCK_DEAD, &c->flags) || test_bit(AEM_SOCK_RX_PAUSED, &c->flags))
		return false;
	/* Unclaimed: the subscription lives as long as this work may run. */
	if (READ_ONCE(c->claimed))
		return false;
	if (test_bit(AEM_SOCK_CONNECT, &c->flags)) {
		if (!aem_sock_post_ctl(c, AEM_SOCK_EV_CONNECT))
			return false;
		clear_bit(AEM_SOCK_CONNECT, &c->flags);
	}
	for (i = 0; i < AEM_SOCK_RX_BUDGET; i++) {
		if (test_bit(AEM_SOCK_ENDING, &c->flags)) {
			/* The final CLOSED needs room like any event. */
			while (!aem_sock_end(c))
				if (!aem_sock_pause(c, sizeof(struct aem_sock_event)))
					return false;
			return false;
		}
		if (test_bit(AEM_SOCK_EOF, &c->flags)) {
			if (!aem_sock_post_ctl(c, AEM_SOCK_EV_EOF))
				return false;
			clear_bit(AEM_SOCK_EOF, &c->flags);
		}
		if (test_bit(AEM_SOCK_RX_DONE, &c->flags)) {
			/* Not reading: a reset still ends the connection. */
			n = sock_error(c->sock->sk);
			if (n)
				aem_sock_fail(c, n);
			return false;
		}
		n = aem_sock_recv_one(c);
		if (n == -EAGAIN || (n == 0 && test_bit(AEM_SOCK_RX_PAUSED, &c->flags)))
			return false;
	}
	return true;
}

void aem_sock_rx_work(struct work_struct *work)
{
	struct aem_sock_conn *c = container_of(work, struct aem_sock_conn, rx_work);
	bool again;

	/* The softirq receiver is at it (for microseconds): look again after it. */
	if (test_and_set_bit_lock(AEM_SOCK_RX_BUSY, &c->flags)) {
		queue_work(aem_sock_wq, &c->rx_work);
		return;
	}
	again = aem_sock_rx_run(c);
	clear_bit_unlock(AEM_SOCK_RX_BUSY, &c->flags);
	if (again)
		queue_work(aem_sock_wq, &c->rx_work);
}

/*
 * Receiving in the softirq that queued the bytes: TCP only, when no task
 * holds the socket (its spinlock is held then, as tcp_read_sock() needs,
 * the way in-kernel stream parsers read), and only on the plain path: a
 * connection with nothing else to say.  It saves the hop to rx_work and
 * its wake-up.  Running out of room, slots or budget, an error or the
 * stream's end stops it and leaves the rest to rx_work, which pauses,
 * ends or goes on as always; RX_BUSY keeps the two from interleaving, so
 * bytes are posted in the order they were read.
 */
struct aem_sock_rx {
	struct aem_sock_conn	*c;
	void			*buf;		/* the slot being filled, or NULL */
	u32			ref, fill, taken;
	bool			stopped;	/* rx_work's turn */
};

static void aem_sock_rx_post(struct aem_sock_rx *rx)
{
	struct aem_sock_conn *c = rx->c;
	struct aem_ctx *r = c->rs->ring;

	rx->buf = NULL;
	if (!rx->fill) {
		aem_core_slot_put(r, rx->ref);
		return;
	}
	if (aem_core_post_slot(r, c->sub, rx->ref, rx->fill, 0, c->id)) {
		/* No memory for a backlog entry: as in aem_sock_recv_one(). */
		aem_core_slot_put(r, rx->ref);
		aem_sock_fail(c, -ENOMEM);
		rx->stopped = true;
	}
}

static int aem_sock_rx_actor(read_descriptor_t *desc, struct sk_buff *skb,
			     unsigned int off, size_t len)
{
	struct aem_sock_rx *rx = desc->arg.data;
	struct aem_sock_conn *c = rx->c;
	struct aem_ctx *r = c->rs->ring;
	u32 size = aem_ctx_slot_size(r);
	size_t done = 0, n;

	while (done < len && !rx->stopped) {
		if (!rx->buf) {
			/* Room first, as aem_sock_recv_one(): what is read is posted. */
			if (rx->taken == AEM_SOCK_RX_BUDGET || !aem_core_has_room(r, c->sub, size) ||
			    aem_core_slot_take(r, &rx->ref, &rx->buf)) {
				rx->buf = NULL;
				rx->stopped = true;
				break;
			}
			rx->taken++;
			rx->fill = 0;
		}
		n = min_t(size_t, len - done, size - rx->fill);
		if (skb_copy_bits(skb, off + done, (u8 *)rx->buf + rx->fill, n)) {
			rx->stopped = true;
			break;
		}
		rx->fill += n;
		done += n;
		if (rx->fill == size)
			aem_sock_rx_post(rx);
	}
	if (rx->stopped)
		desc->count = 0;
	return done;
}

/* True: done here, nothing left for rx_work.  In data_ready, under sk_callback_lock. */
static bool aem_sock_rx_softirq(struct aem_sock_conn *c, struct sock *sk)
{
	const unsigned long other = BIT(AEM_SOCK_CONNECT) | BIT(AEM_SOCK_EOF) |
		BIT(AEM_SOCK_RX_DONE) | BIT(AEM_SOCK_ENDING) | BIT(AEM_SOCK_DEAD);
	struct aem_sock_rx rx = { .c = c };
	read_descriptor_t desc = { .arg.data = &rx, .count = 1 };

	if (sk->sk_protocol != IPPROTO_TCP || (READ_ONCE(c->flags) & other) ||
	    sock_owned_by_user_nocheck(sk))
		return false;
	if (test_and_set_bit_lock(AEM_SOCK_RX_BUSY, &c->flags))
		return false;	/* rx_work receives: queued again, it looks once more */
	/* Claimed by .unsubscribe: it unhooks (waiting for us) before the subscription goes. */
	if (READ_ONCE(c->claimed)) {
		clear_bit_unlock(AEM_SOCK_RX_BUSY, &c->flags);
		return true;
	}
	tcp_read_sock(sk, &desc, aem_sock_rx_actor);
	if (rx.buf)
		aem_sock_rx_post(&rx);
	clear_bit_unlock(AEM_SOCK_RX_BUSY, &c->flags);
	return !rx.stopped && !READ_ONCE(sk->sk_err) &&
	       !(READ_ONCE(sk->sk_shutdown) & RCV_SHUTDOWN) &&
	       skb_queue_empty_lockless(&sk->sk_receive_queue);
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

void aem_sock_tx_work(struct work_struct *work)
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

/* SEND, SHUTDOWN, WRITEBACK: submission context, under the ring's submit lock. */
int aem_sock_io(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
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

/* @c claimed by .unsubscribe or the ring's release: the ring still lives. */
void aem_sock_conn_destroy(struct aem_sock_conn *c, struct aem_sock_ring *rs, int res)
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
