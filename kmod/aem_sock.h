/* SPDX-License-Identifier: GPL-2.0 */
/*
 * aem_sock.ko's shared state (see aem_sock_lsn.c for the design): the
 * objects, their flags, and the calls between the listener side
 * (aem_sock_lsn.c: accept, subscriptions, the sweep, the module) and the
 * connection side (aem_sock_conn.c: pausing, receive, send, ends).
 */
#ifndef AEM_SOCK_H
#define AEM_SOCK_H

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
#include <net/tcp.h>
#include <net/tcp_states.h>

#include "aem_kmod.h"

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
	struct aem_sub		*sub;		/* valid until claimed by a final post, or destroyed */
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
#define AEM_SOCK_RX_BUSY	6	/* a receiver runs (rx_work or the softirq one): bytes post in order */

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


extern const struct aem_source_ops aem_sock_ops;
extern struct workqueue_struct *aem_sock_wq;

static inline void aem_sock_ctl(struct aem_sock_event *ev, u8 type, s32 res)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->res = res;
}

/* The ring's state of this source; NULL before its first subscription. */
static inline struct aem_sock_ring *aem_sock_rs(struct aem_ctx *r)
{
	return rcu_dereference_protected(*(struct aem_sock_ring __rcu **)aem_ctx_src_priv(r, &aem_sock_ops), 1);
}

/* aem_sock_conn.c */
void aem_sock_room_work(struct work_struct *work);
void aem_sock_room(struct aem_ctx *r);
void aem_sock_rx_work(struct work_struct *work);
void aem_sock_tx_work(struct work_struct *work);
void aem_sock_end_work(struct work_struct *work);
void aem_sock_hook(struct aem_sock_conn *c);
bool aem_sock_post_connect(struct aem_sock_conn *c);
void aem_sock_claim(struct aem_sock_conn *c);
void aem_sock_conn_gone(struct aem_sock_ring *rs);
void aem_sock_conn_destroy(struct aem_sock_conn *c, struct aem_sock_ring *rs, int res);
int aem_sock_io(struct aem_ctx *r, struct aem_sub *s, const struct aem_sqe *sqe,
		const void *data, u32 len);

#endif /* AEM_SOCK_H */
