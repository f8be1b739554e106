/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * AEM — asynchronous event mechanism: the user/kernel ABI.
 *
 * This header is the only definition of the shared-memory and ioctl ABI.
 * The kernel module, libaem (both backends) and goaem's Go view all derive
 * from it; docs/PROTOCOL.md says who writes each field and which barrier
 * pairs with which.
 *
 * Rules that make growth safe:
 *  - every struct has a fixed size, explicit padding and reserved fields;
 *  - setup rejects unknown flags and non-zero reserved fields (-EINVAL);
 *  - ring field offsets are published in struct aem_params, never assumed.
 */
#ifndef _UAPI_LINUX_AEM_H
#define _UAPI_LINUX_AEM_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <linux/types.h>
#include <sys/ioctl.h>
#endif

#define AEM_API_VERSION		4	/* newest ABI version this header speaks */
#define AEM_API_VERSION_MIN	2	/* oldest one setup still serves */
#define AEM_DEVICE_PATH		"/dev/aem"

/* ---------------------------------------------------------------------- */
/* Limits                                                                 */

#define AEM_MAX_CLASSES		4	/* priority classes; 0 is the most urgent */
#define AEM_MAX_SQ_ENTRIES	(1U << 16)
#define AEM_MAX_CQ_ENTRIES	(1U << 20)	/* per class */
#define AEM_MIN_SLOT_SIZE	64
#define AEM_MAX_SLOT_SIZE	(1U << 16)
#define AEM_MAX_SLOTS		(1U << 20)	/* delivery + send slots */
#define AEM_MAX_BACKLOG		(1U << 22)	/* overflow backlog entries */
#define AEM_CQE_INLINE		32	/* payload bytes carried in a CQE */
#define AEM_SQE_INLINE		32	/* payload bytes carried in an SQE */
#define AEM_MAX_SUBS		(1U << 24)	/* subscriptions per ring */
#define AEM_MAX_CALL_QUOTA	4096	/* pending calls one ring may have (aem_params.call_quota) */
#define AEM_CALL_MAX_TIMEOUT_MS	60000	/* a call's timeout; a longer one is refused with -EINVAL */
#define AEM_MAX_SOCK_CONNS	(1U << 20)	/* socket connections per ring (aem_params.sock_conns) */

/* What setup takes for a zero field of struct aem_params. */
#define AEM_DEFAULT_SQ_ENTRIES	1024
#define AEM_DEFAULT_CQ_ENTRIES	4096
#define AEM_DEFAULT_CLASSES	2
#define AEM_DEFAULT_SLOT_SIZE	256
#define AEM_DEFAULT_SLOTS	1024
#define AEM_DEFAULT_CALL_QUOTA	1024
#define AEM_DEFAULT_SOCK_CONNS	1024
#define AEM_DEFAULT_SQ_IDLE_MS	1000
#define AEM_MAX_SQ_IDLE_MS	60000	/* aem_params.sq_idle_ms; a longer one is refused with -EINVAL */

/* ---------------------------------------------------------------------- */
/* Setup                                                                  */

/* aem_params.flags */
#define AEM_SETUP_BOOST		(1U << 0)	/* boost the waiter while urgent events are pending (CAP_SYS_NICE) */
#define AEM_SETUP_EMBEDDED	(1U << 1)	/* libaem: force the embedded backend */
#define AEM_SETUP_KERNEL	(1U << 2)	/* libaem: force /dev/aem; fail if absent */
#define AEM_SETUP_SQPOLL	(1U << 3)	/* a kernel-side poller consumes the SQ (AEM_FEAT_SQPOLL; aem_params.sq_idle_ms) */
#define AEM_SETUP_FLAGS_ALL	(AEM_SETUP_BOOST | AEM_SETUP_EMBEDDED | AEM_SETUP_KERNEL | AEM_SETUP_SQPOLL)

/* aem_params.features (out) */
#define AEM_FEAT_CQE_INLINE	(1U << 0)	/* payloads up to AEM_CQE_INLINE bytes sit in the CQE */
#define AEM_FEAT_SLOT_RING	(1U << 1)	/* payload slots return through the slot ring */
#define AEM_FEAT_BLOCKING_CALL	(1U << 2)	/* AEM_IOC_CALL */
#define AEM_FEAT_KERNEL		(1U << 3)	/* backed by the kernel module */
#define AEM_FEAT_SUB_STATS	(1U << 4)	/* final counts: UNSUBSCRIBE results, AEM_SQE_F_END_STATS (AEM_CQE_F_STATS) */
#define AEM_FEAT_SOCK		(1U << 5)	/* aem_params.sock_conns, AEM_OP_SEND, AEM_OP_SHUTDOWN (the source itself: see the probe) */
#define AEM_FEAT_SENDER		(1U << 6)	/* version 4: posts and calls carry their sender (AEM_CQE_F_SENDER) */
#define AEM_FEAT_GRANT		(1U << 8)	/* posts and calls need the owner's user or a grant (AEM_IOC_GRANT) */
#define AEM_FEAT_SQPOLL		(1U << 9)	/* this ring has a submission poller (AEM_SETUP_SQPOLL was asked and is served) */
#define AEM_FEAT_LANES		(1U << 10)	/* producer lanes from other processes: aem_params.remote_lanes, AEM_IOC_LANE_OPEN, _KICK, _WAIT, _ROOM */

/*
 * Offsets of one ring's fields, in bytes from the start of the region
 * named in the comment of each member.  All indices are free-running
 * __u32 counters; the entry index is (counter & ring_mask).
 */
struct aem_ring_offsets {
	__u32	head;		/* RINGS region: consumer index */
	__u32	tail;		/* RINGS region: producer index */
	__u32	ring_mask;	/* RINGS region: entries - 1 (read-only value) */
	__u32	ring_entries;	/* RINGS region: entries (read-only value) */
	__u32	flags;		/* RINGS region: AEM_SQ_F_* / AEM_CQ_F_* */
	__u32	dropped;	/* RINGS region: SQ: SQEs refused; CQ: events dropped */
	__u32	array;		/* SQ: SQEs in SQES; CQ: CQEs in CQES; slot ring: __u32s in RINGS */
	__u32	senders;	/* class rings of version 4: struct aem_sender[ring_entries] in CQES; else 0 */
};

struct aem_params {
	__u32	sq_entries;	/* in: SQEs (power of two after rounding up); out: actual */
	__u32	cq_entries;	/* in: CQEs per class; out: actual */
	__u32	nr_classes;	/* in: 1..AEM_MAX_CLASSES */
	__u32	slot_size;	/* in: bytes per payload slot, power of two; out: actual */
	__u32	slot_count;	/* in: delivery slots (kernel -> user); out: actual */
	__u32	send_slots;	/* in: send slots (user-owned, user -> kernel) */
	__u32	backlog_limit;	/* in: overflow backlog bound in events; 0 = default; out: actual */
	__u32	flags;		/* in: AEM_SETUP_* */
	__u32	features;	/* out: AEM_FEAT_* */
	__u32	api_version;	/* in: the version the caller speaks, 0 = 2; out: the one served */
	__u32	ring_id;	/* out: this ring's id, the address used by post and call */
	__u32	call_quota;	/* in: calls this ring may have pending, <= AEM_MAX_CALL_QUOTA; 0 = default; out: actual */
	__u32	sock_conns;	/* in: AEM_SRC_SOCK connections the ring may hold, <= AEM_MAX_SOCK_CONNS; 0 = default; out: actual */
	__u32	sq_idle_ms;	/* in: AEM_SETUP_SQPOLL: the poller's idle time before it sleeps, <= AEM_MAX_SQ_IDLE_MS; 0 = default; out: actual */
	__u32	remote_lanes;	/* in: lanes other processes may attach (AEM_IOC_LANE_OPEN), <= AEM_MAX_LANES; 0 = none (AEM_FEAT_LANES) */
	__u32	resv[1];	/* must be zero */
	struct aem_ring_offsets sq_off;			/* out */
	struct aem_ring_offsets cq_off[AEM_MAX_CLASSES];	/* out; unused classes zeroed */
	struct aem_ring_offsets slot_off;		/* out: slot return ring */
	struct aem_ring_offsets res_off;		/* out: result ring (2 * sq_entries CQEs) */
	__u64	region_size[4];	/* out: bytes of each region, indexed by AEM_REGION_* */
	__u64	resv2[4];	/* must be zero */
};

/* mmap regions: offset passed to mmap() is AEM_OFF_<REGION> */
#define AEM_REGION_RINGS	0	/* indices and flags; slot return ring; read-write */
#define AEM_REGION_SQES		1	/* struct aem_sqe[sq_entries]; read-write */
#define AEM_REGION_CQES		2	/* struct aem_cqe[cq_entries] per class, then the result ring's; READ-ONLY */
#define AEM_REGION_PAYLOAD	3	/* slots: send slots first, then delivery slots; read-write */
#define AEM_NR_REGIONS		4

#define AEM_OFF_RINGS		0x00000000ULL
#define AEM_OFF_SQES		0x10000000ULL
#define AEM_OFF_CQES		0x20000000ULL
#define AEM_OFF_PAYLOAD		0x30000000ULL
/*
 * A remote lane attached to this ring (AEM_CQE_F_LANE names its slot and
 * generation): mmap the ring fd at AEM_OFF_LANE(slot, gen), read-write,
 * AEM_LANE_MAP_SIZE bytes.  A slot reused by another lane has a new
 * generation, so a stale (slot, gen) is refused with -ENOENT.
 */
#define AEM_OFF_LANES		0x40000000ULL
#define AEM_OFF_LANE(slot, gen)	(AEM_OFF_LANES | ((__u64)(slot) << 24) | ((__u64)(gen) << 32))
#define AEM_LANE_GEN_MAX	0x7fffffffU	/* generations are 1..AEM_LANE_GEN_MAX (off_t stays positive) */

/* SQ ring flags (kernel-written) */
#define AEM_SQ_F_REFUSED	(1U << 0)	/* at least one SQE was refused since setup */
#define AEM_SQ_F_NEED_WAKEUP	(1U << 1)	/* SQPOLL: the poller sleeps; enter with AEM_ENTER_SQ_WAKEUP */

/* CQ ring flags (kernel-written; class rings and the result ring) */
#define AEM_CQ_F_OVERFLOW	(1U << 0)	/* entries wait in the backlog; enter flushes */

/* ---------------------------------------------------------------------- */
/* Submission queue entry: 64 bytes, one cache line                        */

enum aem_op {
	AEM_OP_NOP		= 0,	/* result CQE with res 0 */
	AEM_OP_SUBSCRIBE	= 1,	/* source, prio, user_data (tag), args, arg (v4: implementation, 0 = newest); result id = subscription id */
	AEM_OP_UNSUBSCRIBE	= 2,	/* target = subscription id */
	AEM_OP_WRITEBACK	= 3,	/* target = event token; payload inline or in the event's slot; arg: see AEM_CALL_ERRNO_MAX */
	AEM_OP_POST		= 4,	/* target = address; payload inline or in a send slot */
	AEM_OP_CALL		= 5,	/* target = address; payload; reply arrives as this SQE's result */
	AEM_OP_TIMER_SET	= 6,	/* target = timer subscription; timer args: re-arm */
	AEM_OP_GEN_SET		= 7,	/* target = generator subscription; gen args: new rate/burst/count */
	AEM_OP_SEND		= 8,	/* target = socket connection id; payload inline or in a send slot; result: bytes sent */
	AEM_OP_SHUTDOWN		= 9,	/* target = socket connection id; arg = AEM_SOCK_SHUT_* */
	AEM_OP_LAST
};

/*
 * A writeback to a call token with arg = errno (1..AEM_CALL_ERRNO_MAX) and
 * len 0 is an error reply: the caller gets -errno.  Other targets: arg 0.
 */
#define AEM_CALL_ERRNO_MAX	4095

/* aem_sqe.flags */
#define AEM_SQE_F_SLOT		(1U << 0)	/* payload is in slot aem_sqe.slot, not inline */
#define AEM_SQE_F_SILENT	(1U << 1)	/* no result CQE on success (errors are still reported) */
#define AEM_SQE_FLAGS_ALL	(AEM_SQE_F_SLOT | AEM_SQE_F_SILENT)	/* taken by every opcode */
/* POST only: past the target's backlog bound drop and count, rather than stop the SQ */
#define AEM_SQE_F_LOSSY		(1U << 2)
/* SUBSCRIBE only: when the subscription ends by itself, a second result of this SQE carries its final counts */
#define AEM_SQE_F_END_STATS	(1U << 3)

/* Event sources (aem_sqe.source for AEM_OP_SUBSCRIBE) */
enum aem_source {
	AEM_SRC_NONE		= 0,
	AEM_SRC_TIMER		= 1,	/* one-shot or periodic timer */
	AEM_SRC_MSG		= 2,	/* posts and calls addressed to (ring_id, channel) */
	AEM_SRC_GEN		= 3,	/* synthetic generator */
	AEM_SRC_PROC		= 4,	/* process fork/exec/exit */
	AEM_SRC_FD		= 5,	/* socket readiness: accept, readable, hang-up */
	AEM_SRC_SOCK		= 6,	/* socket I/O: accept, receive, send, close on the kernel side */
	AEM_SRC_LAST
};

/* Address of a message endpoint: ring id and channel. */
#define AEM_ADDR(ring_id, channel)	(((__u64)(ring_id) << 32) | (__u32)(channel))
#define AEM_ADDR_RING(addr)		((__u32)((addr) >> 32))
#define AEM_ADDR_CHANNEL(addr)		((__u32)(addr))

struct aem_timer_args {
	__u64	first_ns;	/* relative delay of the first expiry, > 0 */
	__u64	interval_ns;	/* 0: one-shot; else period */
	__u64	resv[2];
};

struct aem_gen_args {
	__u64	rate;		/* events per second; 0 = as fast as the ring takes them */
	__u64	count;		/* total events; 0 = unbounded */
	__u32	burst;		/* events produced per step, >= 1 */
	__u32	payload_len;	/* bytes per event, <= slot_size */
	__u64	resv;
};

/* AEM_SRC_PROC event mask */
#define AEM_PROC_FORK		(1U << 0)
#define AEM_PROC_EXEC		(1U << 1)
#define AEM_PROC_EXIT		(1U << 2)
#define AEM_PROC_ALL		(AEM_PROC_FORK | AEM_PROC_EXEC | AEM_PROC_EXIT)
/*
 * Not subscribable, always delivered: an event (the AEM_PROC_* bit beside
 * it) of a process in the watched tree that the subscriber may no longer
 * observe (it became setuid, or otherwise fails the kernel's ptrace read
 * rule); pid, ppid, comm and filename are withheld (zero).
 */
#define AEM_PROC_DENIED		(1U << 3)

struct aem_proc_args {
	__u32	events;		/* AEM_PROC_* */
	__u32	pid;		/* 0: every process; else only this pid and its children */
	__u64	resv[3];
};

/* AEM_SRC_FD event mask */
#define AEM_FD_ACCEPT		(1U << 0)	/* listening socket has a connection */
#define AEM_FD_READABLE		(1U << 1)
#define AEM_FD_HANGUP		(1U << 2)
#define AEM_FD_ALL		(AEM_FD_ACCEPT | AEM_FD_READABLE | AEM_FD_HANGUP)

struct aem_fd_args {
	__s32	fd;
	__u32	events;		/* AEM_FD_* */
	__u64	resv[3];
};

/*
 * AEM_SRC_SOCK: subscribe a listening stream socket (TCP over IPv4/IPv6,
 * Unix stream).  The kernel side accepts its connections itself; each
 * connection is a subscription of its own (docs/PROTOCOL.md, "Socket I/O").
 */
struct aem_sock_args {
	__s32	fd;		/* the listening socket, in the subscriber's fd table */
	__u32	flags;		/* must be zero */
	__u64	resv[3];	/* must be zero */
};

/* AEM_OP_SHUTDOWN arg: once the connection's queued sends have gone out */
#define AEM_SOCK_SHUT_RD	(1U << 0)	/* stop receiving: no more data events, unread bytes discarded */
#define AEM_SOCK_SHUT_WR	(1U << 1)	/* send FIN: the peer sees end-of-stream */
#define AEM_SOCK_SHUT_RDWR	(AEM_SOCK_SHUT_RD | AEM_SOCK_SHUT_WR)
#define AEM_SOCK_CLOSE		(1U << 2)	/* alone: close; the connection ends with AEM_SOCK_EV_CLOSED (res 0) */

/* Most sends one connection may have queued (not yet taken by the socket); past it: -ENOBUFS */
#define AEM_SOCK_MAX_QUEUED	64

struct aem_msg_args {
	__u32	channel;	/* unique per ring */
	__u32	resv0;
	__u64	resv[3];
};

struct aem_sqe {
	__u8	opcode;		/* enum aem_op */
	__u8	flags;		/* AEM_SQE_F_* */
	__u8	prio;		/* priority class: subscribe, post, call */
	__u8	source;		/* enum aem_source: subscribe */
	__u32	len;		/* payload bytes (inline or in slot) */
	__u64	user_data;	/* echoed in the result CQE; tag of a new subscription */
	__u64	target;		/* subscription id, event token or address, per opcode */
	__u32	slot;		/* AEM_SQE_F_SLOT: a send slot's index (post, call), the event's slot reference (writeback) */
	__u32	arg;		/* call: timeout in ms, <= AEM_CALL_MAX_TIMEOUT_MS (0 = AEM_CALL_DEFAULT_TIMEOUT_MS); writeback to a call: errno or 0; else 0 */
	union {
		__u8			data[AEM_SQE_INLINE];	/* inline payload */
		struct aem_timer_args	timer;
		struct aem_gen_args	gen;
		struct aem_proc_args	proc;
		struct aem_fd_args	fd;
		struct aem_sock_args	sock;
		struct aem_msg_args	msg;
	};
};

#define AEM_CALL_DEFAULT_TIMEOUT_MS	5000

/* ---------------------------------------------------------------------- */
/* Completion queue entry: 64 bytes, one cache line                       */

/*
 * Events arrive in the completion ring of their class; results (the answer
 * to an SQE: subscribe, unsubscribe, set, refusal, post, call reply) arrive
 * in the result ring alone, so a reader of results never has to skip events.
 */

/* aem_cqe.flags */
#define AEM_CQE_F_RESULT	(1U << 0)	/* answers an SQE: user_data is the SQE's; only in the result ring */
#define AEM_CQE_F_SLOT		(1U << 1)	/* payload in slot aem_cqe.slot (res bytes); release or write back */
#define AEM_CQE_F_CALL		(1U << 2)	/* a call: the caller waits for a writeback to id */
#define AEM_CQE_F_FINAL		(1U << 3)	/* last event of its subscription; the id is dead */
#define AEM_CQE_F_TRUNC		(1U << 4)	/* payload was cut to fit */
#define AEM_CQE_F_STATS		(1U << 5)	/* result: data holds struct aem_sub_counts, the subscription id's final counts */
#define AEM_CQE_F_SENDER	(1U << 6)	/* version 4, msg event: its sender is in the senders array beside the ring */
#define AEM_CQE_F_SOCK_CTL	(1U << 7)	/* AEM_SRC_SOCK: payload is a struct aem_sock_event, not received bytes */
#define AEM_CQE_F_LANE		(1U << 8)	/* with RESULT: a remote lane's note (struct aem_lane_note in data); user_data: its subscription's tag */

/*
 * A delivery slot reference (version 3): aem_cqe.slot is the slot's index
 * and the generation of this issue of it (1..AEM_SLOT_GEN_MAX, new each
 * time the slot carries an event); a release and a writeback name the
 * whole reference, so a stale or another event's reference is refused.
 * The payload is at index * slot_size.  Version 2 rings: generation 0.
 */
#define AEM_SLOT_GEN_SHIFT	20	/* AEM_MAX_SLOTS == 1 << AEM_SLOT_GEN_SHIFT */
#define AEM_SLOT_GEN_MAX	0xffeU	/* 0xfff is left out: no reference is ever 0xffffffff */
#define AEM_SLOT_INDEX(ref)	((__u32)(ref) & ((1U << AEM_SLOT_GEN_SHIFT) - 1))
#define AEM_SLOT_GEN(ref)	((__u32)(ref) >> AEM_SLOT_GEN_SHIFT)

struct aem_cqe {
	__u64	user_data;	/* event: the subscription's tag; result: the SQE's user_data */
	__u64	id;		/* event: token for writeback; result of SUBSCRIBE: subscription id */
	__s32	res;		/* >= 0: payload bytes; < 0: -errno for a refused SQE */
	__u32	flags;		/* AEM_CQE_F_* */
	__u32	slot;		/* payload slot reference when AEM_CQE_F_SLOT: AEM_SLOT_INDEX, AEM_SLOT_GEN */
	__u8	source;		/* enum aem_source of the event */
	__u8	prio;		/* event: class it was delivered in; result: the SQE's class */
	__u16	resv;
	__u8	data[AEM_CQE_INLINE];	/* inline payload when !AEM_CQE_F_SLOT */
};

/*
 * Who posted or called (version 4 rings, AEM_SRC_MSG events, with
 * AEM_CQE_F_SENDER).  Each class ring of a version 4 ring has an array of
 * these beside it in the read-only CQES region (cq_off[c].senders): entry
 * i names the sender of the CQE in entry i, written with it, before the
 * tail that publishes both; read it before releasing the CQE (head).  The
 * CQE itself is unchanged: payloads up to AEM_CQE_INLINE stay inline.
 */

struct aem_sender {
	__s32	pid;		/* sender's process (tgid) in the receiving ring's creator's pid namespace; 0: not visible there */
	__u32	uid;		/* sender's effective uid in the receiving ring's creator's user namespace; overflow uid if unmapped */
	__u32	ring_id;	/* the sending ring; 0: a blocking call through an fd without a ring */
	__u32	resv;		/* zero */
};

/*
 * Tokens and ids: bits 0..31 index, 32..55 generation, 56..63 kind.
 * Zero is never a valid id.
 */
#define AEM_ID_KIND_SUB		1	/* a subscription */
#define AEM_ID_KIND_CALL	2	/* a pending call */
#define AEM_ID_KIND(id)		((__u32)((id) >> 56))

/* ---------------------------------------------------------------------- */
/* Event payloads written by sources                                      */

/* AEM_SRC_TIMER: 16 bytes inline */
struct aem_timer_event {
	__u64	expirations;	/* periods elapsed since the last delivery (>= 1) */
	__u64	now_ns;		/* CLOCK_MONOTONIC at expiry */
};

/* AEM_SRC_GEN: first 16 bytes of every payload; the rest is filler */
struct aem_gen_event {
	__u64	seq;		/* 0, 1, 2, ... per subscription */
	__u64	now_ns;		/* CLOCK_MONOTONIC when produced */
};

/* AEM_SRC_PROC: in a slot (or inline when slot_size allows) */
struct aem_proc_event {
	__u32	what;		/* one AEM_PROC_* bit, with AEM_PROC_DENIED if withheld */
	__s32	pid;
	__s32	ppid;
	__s32	exit_code;	/* exit: wait status */
	char	comm[16];
	char	filename[64];	/* exec: the file executed, NUL terminated */
};

/* AEM_SRC_FD: 8 bytes inline */
struct aem_fd_event {
	__s32	fd;
	__u32	events;		/* AEM_FD_* that became true */
};

/*
 * AEM_SRC_SOCK: an event without AEM_CQE_F_SOCK_CTL carries bytes received
 * on connection cqe.id (res bytes, inline or in a slot).  One with it
 * carries this, 32 bytes inline.
 */
#define AEM_SOCK_EV_CONNECT	1	/* a new connection (its first event): cqe.id is its id; the peer's address */
#define AEM_SOCK_EV_EOF		2	/* the peer ended its sending; the connection stays open for sends */
#define AEM_SOCK_EV_CLOSED	3	/* AEM_CQE_F_FINAL: the connection (or listener) is gone; res 0 or -errno */
#define AEM_SOCK_EV_LIMIT	4	/* listener: accepting paused at a limit; res -EMFILE (sock_conns) or accept's -errno */

struct aem_sock_event {
	__u8	type;		/* AEM_SOCK_EV_* */
	__u8	resv0;
	__u16	family;		/* CONNECT: AF_INET, AF_INET6 or AF_UNIX; else 0 */
	__s32	res;		/* CLOSED, LIMIT: 0 or -errno; else 0 */
	__u16	port;		/* CONNECT, AF_INET/AF_INET6: the peer's port, host byte order */
	__u16	resv1;
	__u32	scope_id;	/* CONNECT, AF_INET6: the peer's scope id */
	__u8	addr[16];	/* CONNECT: the peer's address, network byte order (AF_INET: the first 4 bytes) */
};

/* ---------------------------------------------------------------------- */
/* ioctls on the ring fd                                                  */

/* AEM_IOC_ENTER flags */
#define AEM_ENTER_GETEVENTS	(1U << 0)	/* wait for min_complete CQEs (results count; any result or class-0 event ends the wait) */
#define AEM_ENTER_SQ_WAKEUP	(1U << 1)	/* SQPOLL: wake the poller (a no-op on other rings) */
#define AEM_ENTER_FLAGS_ALL	(AEM_ENTER_GETEVENTS | AEM_ENTER_SQ_WAKEUP)

struct aem_enter {
	__u32	to_submit;	/* SQEs to consume */
	__u32	min_complete;	/* with GETEVENTS: CQEs (all classes and results) to wait for */
	__u32	flags;		/* AEM_ENTER_* */
	__u32	submitted;	/* out: SQEs consumed (refused ones included) */
	__s64	timeout_ns;	/* < 0: no timeout; 0: do not sleep */
	__u64	resv[2];	/* must be zero */
};

struct aem_sub_stats {
	__u64	id;		/* in: subscription id */
	__u64	produced;	/* out: events the source produced */
	__u64	delivered;	/* out: events written to a CQ ring */
	__u64	backlog;	/* out: events waiting in the overflow backlog */
	__u64	dropped;	/* out: events dropped past the backlog bound */
	__u64	resv[3];
};

/*
 * A subscription's final counts, in the data of a result with
 * AEM_CQE_F_STATS (the answer to UNSUBSCRIBE, or the end result that
 * AEM_SQE_F_END_STATS asked for); the CQE's id names the subscription.
 */
struct aem_sub_counts {
	__u64	produced;	/* events the source produced */
	__u64	delivered;	/* events written to a CQ ring */
	__u64	backlog;	/* events still in the overflow backlog (0 but for a source's unload) */
	__u64	dropped;	/* events dropped past the backlog bound or discarded */
};

/* Refusals, counted per reason; indexed by AEM_REFUSE_* */
enum aem_refuse {
	AEM_REFUSE_OPCODE	= 0,	/* unknown opcode */
	AEM_REFUSE_FIELD	= 1,	/* bad flags, reserved field or argument */
	AEM_REFUSE_ID		= 2,	/* unknown, expired or foreign id */
	AEM_REFUSE_SLOT		= 3,	/* slot out of range or not owned by user space */
	AEM_REFUSE_INDEX	= 4,	/* a ring index moved backwards or beyond the ring */
	AEM_REFUSE_NOMEM	= 5,	/* out of subscriptions, slots or memory */
	AEM_REFUSE_FULL		= 6,	/* a POST's target full: left in the SQ, not consumed */
	AEM_REFUSE_NR		= 8
};

struct aem_ring_stats {
	__u64	sqes;			/* SQEs consumed */
	__u64	refused[AEM_REFUSE_NR];	/* SQEs and slot releases refused, by reason */
	__u64	produced;		/* all events */
	__u64	delivered;
	__u64	backlog;
	__u64	dropped;
	__u64	subscriptions;		/* active */
	__u64	slots_free;		/* delivery slots the kernel holds */
	__u64	charged;		/* bytes charged to the ring's account: its regions and kernel-side state */
	__u64	resv[7];
};

struct aem_call_args {
	__u64	addr;		/* AEM_ADDR(ring, channel) */
	__u64	req;		/* pointer to request bytes */
	__u64	resp;		/* pointer to reply buffer */
	__u32	req_len;
	__u32	resp_cap;
	__u32	resp_len;	/* out: reply bytes (may exceed resp_cap: truncated) */
	__u32	timeout_ms;	/* <= AEM_CALL_MAX_TIMEOUT_MS; 0 = AEM_CALL_DEFAULT_TIMEOUT_MS */
	__u8	prio;
	__u8	resv0[7];
	__u64	resv[2];	/* must be zero */
};

/*
 * AEM_IOC_GRANT: who besides its owner may post and call into a ring.  By
 * default only rings of the owner's user (same euid, same user namespace)
 * and ring-less callers of that user may; a grant lets one more uid in, or
 * everyone (docs/PROTOCOL.md, "Who may post and call").
 */
#define AEM_GRANT_ANY		(1U << 0)	/* every user; uid must be 0 */
#define AEM_GRANT_REVOKE	(1U << 1)	/* take the grant back */
#define AEM_GRANT_FLAGS_ALL	(AEM_GRANT_ANY | AEM_GRANT_REVOKE)
#define AEM_MAX_GRANTS		16	/* uids one ring lets in besides its owner's */

struct aem_grant {
	__u32	uid;	/* the user let in, as the caller's user namespace names it */
	__u32	flags;	/* AEM_GRANT_* */
	__u64	resv;	/* must be zero */
};

/*
 * Producer lanes (docs/PROTOCOL.md, "Producer lanes"): a single-producer,
 * single-consumer ring of fixed-size records in memory shared by one
 * producer and a consumer ring's reader, which hands each record out as an
 * event of the Msg subscription the lane was attached to.  No system call
 * and no lock per record; the kernel side never reads a lane.  A lane is
 * one struct aem_lane_ctl followed by entries records of
 * AEM_LANE_REC_STRIDE(rec_size) bytes each; record i sits at
 * (i & (entries - 1)).  The consumer trusts nothing the producer writes:
 * it keeps its own head, reads the tail once per batch, takes at most
 * entries records, and skips (and counts) records whose len exceeds
 * rec_size or whose flags are neither zero nor AEM_LANE_REC_CALL.
 *
 * Calls on a lane (docs/PROTOCOL.md, "Calls on a lane"): a record with
 * AEM_LANE_REC_CALL is a call; its producer waits for the reply in the
 * ctl's call line (call, call_res, reply: in the consumer's cache line,
 * which the answer writes), one call at a time per lane.  A record's position is
 * its index counted from 0 over the lane's life (64 bits; the 32-bit tail
 * and head are its low half).  Before publishing the record the producer
 * stores call = AEM_LANE_CALL(AEM_LANE_CALL_WAITING, position); the
 * consumer answers by moving it WAITING -> CLAIMED with a compare-and-swap,
 * writing call_res and reply, then storing DONE with release.  A producer
 * that gives up moves it WAITING -> IDLE (a CLAIMED call is waited out).
 * The consumer writes the call line only after its own compare-and-swap
 * succeeded on the position it read the record at: a reply never lands in
 * a later call.
 */
#define AEM_MAX_LANES		64	/* lanes one consumer ring may have */
#define AEM_LANE_MAX_ENTRIES	(1U << 16)	/* records per lane (a power of two) */
#define AEM_LANE_MAX_RECORD	AEM_CQE_INLINE	/* record payload bytes: a lane event is an inline event */
#define AEM_LANE_REC_STRIDE(rec_size)	((sizeof(struct aem_lane_rec) + (rec_size) + 7) & ~7UL)

/* aem_lane_ctl.prod_flags (the producer writes them) */
#define AEM_LANE_P_WAITING	(1U << 0)	/* the producer sleeps until the head moves (a full lane) */
#define AEM_LANE_P_CLOSED	(1U << 1)	/* no record after the tail: the lane ends once drained */

/* aem_lane_ctl.cons_flags (the consumer writes them) */
#define AEM_LANE_C_SLEEPING	(1U << 0)	/* the consumer sleeps: a producer that publishes kicks it */
#define AEM_LANE_C_GONE		(1U << 1)	/* nobody reads the lane: its consumer ring closed (the kernel sets it) or its subscription ended (the consumer sets it); posts answer -EPIPE */

/* aem_lane_rec.flags */
#define AEM_LANE_REC_CALL	(1U << 0)	/* a call: the producer waits for the reply in the ctl's call line */

/* aem_lane_ctl.call: a state in the top two bits, a record's position below */
#define AEM_LANE_CALL_IDLE	0ULL	/* no call waits (or the producer gave up) */
#define AEM_LANE_CALL_WAITING	1ULL	/* the producer waits: the consumer may claim it */
#define AEM_LANE_CALL_CLAIMED	2ULL	/* the consumer writes the reply */
#define AEM_LANE_CALL_DONE	3ULL	/* call_res and reply hold the answer */
#define AEM_LANE_CALL_POS_MASK	((1ULL << 62) - 1)
#define AEM_LANE_CALL(state, pos)	((__u64)(state) << 62 | ((pos) & AEM_LANE_CALL_POS_MASK))
#define AEM_LANE_CALL_STATE(word)	((word) >> 62)

struct aem_lane_ctl {
	/* The producer's cache line. */
	__u32	tail;		/* next record to fill; store-release after the records, pairs with the consumer's load-acquire */
	__u32	prod_flags;	/* AEM_LANE_P_*; WAITING stored with a full barrier before the producer re-reads head */
	__u32	resv0[14];
	/* The consumer's cache line, with the call line (AEM_LANE_REC_CALL), which the consumer answers in. */
	__u32	head;		/* next record to read; store-release after reading, pairs with the producer's load-acquire */
	__s32	call_res;	/* the reply's bytes (<= AEM_LANE_MAX_RECORD), or -errno; written while CLAIMED */
	__u64	call;		/* AEM_LANE_CALL(state, position): compare-and-swap on both sides, DONE stored with release */
	__u8	reply[AEM_LANE_MAX_RECORD];	/* written while CLAIMED */
	__u32	resv1[4];
	/* Read on every publish, written only around the consumer's sleeps and at attach. */
	__u32	cons_flags;	/* AEM_LANE_C_*, the consumer's; SLEEPING stored with a full barrier before it re-reads tail */
	__u32	entries;	/* records (a power of two, <= AEM_LANE_MAX_ENTRIES) */
	__u32	rec_size;	/* payload bytes a record holds (<= AEM_LANE_MAX_RECORD) */
	__u8	prio;		/* the class its events are delivered in */
	__u8	resv2[3];
	__u64	sub_id;		/* the Msg subscription its events belong to */
	__u64	resv3[5];
};

struct aem_lane_rec {
	__u32	len;		/* payload bytes, <= rec_size */
	__u32	flags;		/* zero, or AEM_LANE_REC_CALL */
	/* __u8 data[rec_size], then padding to 8 bytes */
};

/*
 * Remote lanes (AEM_FEAT_LANES): a producer in another process opens a
 * lane to a consumer ring's Msg subscription with AEM_IOC_LANE_OPEN on any
 * /dev/aem fd.  It needs what a POST to that ring needs (the owner's user
 * or a grant), and the consumer must have asked for remote lanes at setup
 * (aem_params.remote_lanes).  The kernel allocates the lane zeroed, writes
 * entries, rec_size, prio and sub_id into its ctl, and tells the consumer
 * with a note (AEM_LANE_NOTE_ATTACH); the producer mmaps the returned lane
 * fd at offset 0, map_size bytes.  AEM_IOC_LANE_KICK on the lane fd wakes a
 * consumer that set AEM_LANE_C_SLEEPING (a AEM_LANE_NOTE_KICK note, posted
 * only while the result ring is less than half full and the lane's last
 * kick note has been read: a busier ring, or an unread note, wakes it
 * anyway).
 * A producer whose lane is full stores AEM_LANE_P_WAITING, a full barrier,
 * re-reads head, and only if still full sleeps in AEM_IOC_LANE_WAIT on its
 * lane fd (argument: a timeout in ms, 1..AEM_LANE_WAIT_MAX_MS): 0 once the
 * consumer has signalled room since the last wait returned 0 (at once if
 * it did before the call), -ETIMEDOUT, -EPIPE (the consumer ring is gone),
 * -EINTR.  The consumer stores head, a full barrier, loads prod_flags, and
 * if WAITING is set calls AEM_IOC_LANE_ROOM on its ring fd with the lane's
 * slot (aem_lane_note.slot): 0, -ENOENT (no lane in that slot), -EINVAL
 * (slot >= AEM_MAX_LANES), -EBADFD (no ring).
 * Closing the lane fd (or dying) sets AEM_LANE_P_CLOSED and kicks; the
 * consumer drains and unmaps.  Closing the consumer ring sets
 * AEM_LANE_C_GONE.  The kernel never reads what the producer writes.
 */
struct aem_lane_open {
	__u64	addr;		/* in: AEM_ADDR(consumer ring_id, channel) of a live AEM_SRC_MSG subscription */
	__u32	entries;	/* in: records, a power of two, 2..AEM_LANE_MAX_ENTRIES */
	__u32	rec_size;	/* in: payload bytes a record holds, 1..AEM_LANE_MAX_RECORD */
	__u32	flags;		/* in: must be zero */
	__s32	fd;		/* out: the lane fd (O_CLOEXEC) */
	__u64	map_size;	/* out: bytes to mmap from the lane fd (and the consumer's AEM_OFF_LANE) */
	__u64	resv[2];	/* must be zero */
};

#define AEM_LANE_WAIT_MAX_MS	60000	/* AEM_IOC_LANE_WAIT's longest timeout */

/* aem_lane_note.kind */
#define AEM_LANE_NOTE_ATTACH	1	/* a lane was attached: map it, read it */
#define AEM_LANE_NOTE_KICK	2	/* a producer published while the consumer slept (or closed its lane) */

/* The payload of an AEM_CQE_F_LANE result (res = its size). */
struct aem_lane_note {
	__u32	slot;		/* the lane's place, < remote_lanes */
	__u32	gen;		/* its generation: AEM_OFF_LANE(slot, gen) */
	__u32	entries;	/* as the producer asked (ATTACH) */
	__u32	rec_size;
	__u64	sub_id;		/* the Msg subscription its records belong to */
	__u8	prio;		/* that subscription's class */
	__u8	kind;		/* AEM_LANE_NOTE_* */
	__u8	resv[6];
};

/*
 * AEM_IOC_PROBE: what this backend serves, in the manner of io_uring's
 * IORING_REGISTER_PROBE.  Works on /dev/aem with or without a ring.
 */
#define AEM_PROBE_SOURCES	16	/* room in aem_probe.sources; > AEM_SRC_LAST */

/* aem_probe_source.flags */
#define AEM_PROBE_SRC_CLOSING	(1U << 0)	/* being unloaded: takes no new subscriptions */

struct aem_probe_source {
	__u8	source;		/* enum aem_source */
	__u8	resv0[3];
	__u32	version;	/* the source API version it implements */
	__u32	ops;		/* (1 << AEM_OP_*) it answers for its subscriptions */
	__u32	flags;		/* AEM_PROBE_SRC_* */
	char	name[16];	/* NUL terminated */
	__u32	impl;		/* implementation version: SUBSCRIBE's arg names it (version 4) */
	__u32	api_versions;	/* ABI versions it serves: bit (1 << v) for version v */
};

struct aem_probe {
	__u32	api_version;	/* newest ABI version setup serves */
	__u32	api_min;	/* oldest ABI version setup serves */
	__u32	features;	/* AEM_FEAT_* a ring of this backend has */
	__u32	ops;		/* (1 << AEM_OP_*) the core knows */
	__u32	sqe_flags;	/* AEM_SQE_F_* the core knows */
	__u32	setup_flags;	/* AEM_SETUP_* this backend takes */
	__u32	nr_sources;	/* entries filled in sources[], ascending by source, then implementation */
	__u32	resv0;
	__u64	resv[4];
	struct aem_probe_source sources[AEM_PROBE_SOURCES];
};

/*
 * 0xBE: free in the kernel's list of ioctl numbers
 * (Documentation/userspace-api/ioctl/ioctl-number.rst); 0xAE is KVM's.
 */
#define AEM_IOC_MAGIC		0xBE
#define AEM_IOC_SETUP		_IOWR(AEM_IOC_MAGIC, 0x01, struct aem_params)
#define AEM_IOC_ENTER		_IOWR(AEM_IOC_MAGIC, 0x02, struct aem_enter)
#define AEM_IOC_SUB_STATS	_IOWR(AEM_IOC_MAGIC, 0x03, struct aem_sub_stats)
#define AEM_IOC_RING_STATS	_IOR(AEM_IOC_MAGIC, 0x04, struct aem_ring_stats)
#define AEM_IOC_CALL		_IOWR(AEM_IOC_MAGIC, 0x05, struct aem_call_args)
#define AEM_IOC_PROBE		_IOR(AEM_IOC_MAGIC, 0x06, struct aem_probe)
#define AEM_IOC_GRANT		_IOW(AEM_IOC_MAGIC, 0x0e, struct aem_grant)
#define AEM_IOC_LANE_OPEN	_IOWR(AEM_IOC_MAGIC, 0x0f, struct aem_lane_open)
#define AEM_IOC_LANE_KICK	_IO(AEM_IOC_MAGIC, 0x10)	/* on a lane fd */
#define AEM_IOC_LANE_WAIT	_IO(AEM_IOC_MAGIC, 0x11)	/* on a lane fd; arg: timeout in ms */
#define AEM_IOC_LANE_ROOM	_IO(AEM_IOC_MAGIC, 0x12)	/* on the consumer's ring fd; arg: the lane's slot */

#endif /* _UAPI_LINUX_AEM_H */
