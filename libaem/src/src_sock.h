/* SPDX-License-Identifier: MIT */
/*
 * The embedded socket source's private state, shared by src_sock.c (the
 * objects, their epoll interest, the thread and the source ops) and
 * src_sock_io.c (what a connection does: control events, sends, receives,
 * accepts).  See src_sock.c for the design.  The shared names are
 * prefixed in the library's symbol table (below), so a program linking
 * libaem.a statically cannot clash with them.
 */
#ifndef LIBAEM_SRC_SOCK_H
#define LIBAEM_SRC_SOCK_H

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "emb_sources.h"

#define sk_tab               __aem_sk_tab
#define sk_len               __aem_sk_len
#define sk_paused            __aem_sk_paused
#define sk_npaused           __aem_sk_npaused
#define sk_nretry            __aem_sk_nretry
#define sk_epfd              __aem_sk_epfd
#define sk_arm               __aem_sk_arm
#define sk_pause             __aem_sk_pause
#define sk_unpause           __aem_sk_unpause
#define sk_release           __aem_sk_release
#define sk_new               __aem_sk_new
#define sk_ring              __aem_sk_ring
#define sk_idx               __aem_sk_idx
#define sk_dispatch          __aem_sk_dispatch
#define sk_resume_all        __aem_sk_resume_all
#define sk_retry_listeners   __aem_sk_retry_listeners
#define sk_drop_queue        __aem_sk_drop_queue
#define sk_below_limit       __aem_sk_below_limit
#define sk_send              __aem_sk_send
#define sk_shutdown          __aem_sk_shutdown


#ifndef SO_PASSRIGHTS
#define SO_PASSRIGHTS	83	/* Linux 6.16 */
#endif

#define SK_NIL		UINT32_MAX
#define SK_STOP_KEY	UINT64_MAX		/* the eventfd that stops the thread */
#define SK_ROOM_KEY	(UINT64_MAX - 1)	/* the eventfd the .room hook writes */
#define SK_BATCH	64			/* epoll events per wait */
#define SK_TAB_MIN	64
#define SK_READS	4			/* receives per connection per wake: fairness */
#define SK_ACCEPTS	32			/* accepts per listener per wake */
#define SK_RETRY_MS	100			/* accept failed for want of resources */

enum { SK_FREE, SK_LISTEN, SK_CONN };

struct sk_send {
	struct sk_send		*next;
	struct aem_pending	p;
	u32			len, off;	/* bytes queued, bytes of them sent */
	u32			total;		/* the answer: the send's whole length */
	u32			how;		/* 0: data; else AEM_SOCK_SHUT_* or AEM_SOCK_CLOSE */
	u8			data[];
};

struct sk_obj {
	struct aem_ctx	*r;
	struct aem_sub	*s;
	u64		id;
	int		fd;
	u32		serial;		/* bumped at free: stale keys and priv miss */
	u32		next_free;
	u32		pnext, pprev;	/* the paused list, by index */
	u8		kind;		/* SK_* */
	bool		armed;		/* registered with epoll */
	u32		mask;		/* its epoll mask when armed */
	bool		paused;		/* on the paused list: waits for room */
	bool		started;	/* listener: the SUBSCRIBE result is out */
	bool		at_limit;	/* listener: sock_conns reached */
	bool		limit_posted;	/* listener: and a connection waits: LIMIT posted */
	bool		retry;		/* listener: accept failed for resources */
	bool		need_connect;	/* conn: CONNECT not yet posted */
	bool		need_eof;	/* conn: EOF not yet posted */
	bool		rd_done;	/* conn: no more receiving (EOF, SHUT_RD, failed) */
	bool		wr_done;	/* conn: no more sends (SHUT_WR, CLOSE accepted, failed) */
	bool		closing;	/* conn: CLOSE accepted: every later op is -EPIPE */
	bool		dead;		/* socket closed; CLOSED (final) to post */
	s32		err;		/* conn: CLOSED's res */
	u32		nq;		/* sends queued */
	struct sk_send	*qhead, *qtail;
	struct aem_sock_event ev;	/* CONNECT's payload until posted */
};

struct sk_ring {
	u32	conns;		/* open connection sockets */
	u32	limited;	/* listeners waiting at the limit */
};


/* src_sock.c: the table, epoll interest and the paused list; all under sk_mu. */
extern struct sk_obj *sk_tab;
extern u32 sk_len, sk_paused;
extern int sk_epfd;
extern int sk_npaused;
extern u32 sk_nretry;

u32 sk_idx(const struct sk_obj *o);
struct sk_ring *sk_ring(struct aem_ctx *r);
void sk_arm(struct sk_obj *o);
void sk_unpause(struct sk_obj *o);
bool sk_pause(struct sk_obj *o, u32 len);
struct sk_obj *sk_new(struct aem_ctx *r, struct aem_sub *s, u8 kind, int fd);
void sk_release(struct sk_obj *o);

/* src_sock_io.c: a connection's and a listener's work; all under sk_mu. */
void sk_drop_queue(struct sk_obj *o, s32 res, bool answer);
void sk_below_limit(struct aem_ctx *r);
int sk_send(struct sk_obj *o, const struct aem_sqe *sqe, const u8 *data, u32 len);
int sk_shutdown(struct sk_obj *o, const struct aem_sqe *sqe);
void sk_dispatch(u64 key, u32 events);
void sk_resume_all(void);
void sk_retry_listeners(void);

#endif /* LIBAEM_SRC_SOCK_H */
