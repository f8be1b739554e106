//go:build cgo

package abi

/*
#cgo CFLAGS: -I${SRCDIR}/../../kmod/uapi
#include <stddef.h>
#include "aem.h"

struct goaem_fact {
	const char		*name;
	unsigned long long	value;
};

// One row per struct (its sizeof and _Alignof), per member (offsetof) and per
// constant, so the Go test can compare the whole ABI in one crossing.
#define S(s)		{ #s, sizeof(struct s) }, { #s "#align", _Alignof(struct s) }
#define F(s, f)		{ #s "." #f, offsetof(struct s, f) }
#define K(c)		{ #c, (unsigned long long)(c) }

static const struct goaem_fact goaem_facts[] = {
	S(aem_ring_offsets), F(aem_ring_offsets, head), F(aem_ring_offsets, tail),
	F(aem_ring_offsets, ring_mask), F(aem_ring_offsets, ring_entries),
	F(aem_ring_offsets, flags), F(aem_ring_offsets, dropped),
	F(aem_ring_offsets, array), F(aem_ring_offsets, senders),

	S(aem_params), F(aem_params, sq_entries), F(aem_params, cq_entries),
	F(aem_params, nr_classes), F(aem_params, slot_size), F(aem_params, slot_count),
	F(aem_params, send_slots), F(aem_params, backlog_limit), F(aem_params, flags),
	F(aem_params, features), F(aem_params, api_version), F(aem_params, ring_id),
	F(aem_params, call_quota), F(aem_params, sock_conns), F(aem_params, sq_idle_ms),
	F(aem_params, remote_lanes), F(aem_params, resv), F(aem_params, sq_off), F(aem_params, cq_off),
	F(aem_params, slot_off), F(aem_params, res_off), F(aem_params, region_size),
	F(aem_params, resv2),

	S(aem_timer_args), F(aem_timer_args, first_ns), F(aem_timer_args, interval_ns),
	F(aem_timer_args, resv),

	S(aem_gen_args), F(aem_gen_args, rate), F(aem_gen_args, count),
	F(aem_gen_args, burst), F(aem_gen_args, payload_len), F(aem_gen_args, resv),

	S(aem_proc_args), F(aem_proc_args, events), F(aem_proc_args, pid),
	F(aem_proc_args, resv),

	S(aem_fd_args), F(aem_fd_args, fd), F(aem_fd_args, events), F(aem_fd_args, resv),

	S(aem_sock_args), F(aem_sock_args, fd), F(aem_sock_args, flags), F(aem_sock_args, resv),

	S(aem_msg_args), F(aem_msg_args, channel), F(aem_msg_args, resv0),
	F(aem_msg_args, resv),

	S(aem_sqe), F(aem_sqe, opcode), F(aem_sqe, flags), F(aem_sqe, prio),
	F(aem_sqe, source), F(aem_sqe, len), F(aem_sqe, user_data), F(aem_sqe, target),
	F(aem_sqe, slot), F(aem_sqe, arg), F(aem_sqe, data), F(aem_sqe, timer),
	F(aem_sqe, gen), F(aem_sqe, proc), F(aem_sqe, fd), F(aem_sqe, sock),
	F(aem_sqe, msg),

	S(aem_cqe), F(aem_cqe, user_data), F(aem_cqe, id), F(aem_cqe, res),
	F(aem_cqe, flags), F(aem_cqe, slot), F(aem_cqe, source), F(aem_cqe, prio),
	F(aem_cqe, resv), F(aem_cqe, data),

	S(aem_timer_event), F(aem_timer_event, expirations), F(aem_timer_event, now_ns),
	S(aem_gen_event), F(aem_gen_event, seq), F(aem_gen_event, now_ns),

	S(aem_proc_event), F(aem_proc_event, what), F(aem_proc_event, pid),
	F(aem_proc_event, ppid), F(aem_proc_event, exit_code), F(aem_proc_event, comm),
	F(aem_proc_event, filename),

	S(aem_fd_event), F(aem_fd_event, fd), F(aem_fd_event, events),

	S(aem_sock_event), F(aem_sock_event, type), F(aem_sock_event, resv0),
	F(aem_sock_event, family), F(aem_sock_event, res), F(aem_sock_event, port),
	F(aem_sock_event, resv1), F(aem_sock_event, scope_id), F(aem_sock_event, addr),

	S(aem_enter), F(aem_enter, to_submit), F(aem_enter, min_complete),
	F(aem_enter, flags), F(aem_enter, submitted), F(aem_enter, timeout_ns),
	F(aem_enter, resv),

	S(aem_sub_stats), F(aem_sub_stats, id), F(aem_sub_stats, produced),
	F(aem_sub_stats, delivered), F(aem_sub_stats, backlog), F(aem_sub_stats, dropped),
	F(aem_sub_stats, resv),

	S(aem_sub_counts), F(aem_sub_counts, produced), F(aem_sub_counts, delivered),
	F(aem_sub_counts, backlog), F(aem_sub_counts, dropped),

	S(aem_sender), F(aem_sender, pid), F(aem_sender, uid), F(aem_sender, ring_id),
	F(aem_sender, resv),

	S(aem_ring_stats), F(aem_ring_stats, sqes), F(aem_ring_stats, refused),
	F(aem_ring_stats, produced), F(aem_ring_stats, delivered),
	F(aem_ring_stats, backlog), F(aem_ring_stats, dropped),
	F(aem_ring_stats, subscriptions), F(aem_ring_stats, slots_free), F(aem_ring_stats, charged),
	F(aem_ring_stats, resv),

	S(aem_call_args), F(aem_call_args, addr), F(aem_call_args, req),
	F(aem_call_args, resp), F(aem_call_args, req_len), F(aem_call_args, resp_cap),
	F(aem_call_args, resp_len), F(aem_call_args, timeout_ms), F(aem_call_args, prio),
	F(aem_call_args, resv0), F(aem_call_args, resv),

	S(aem_grant), F(aem_grant, uid), F(aem_grant, flags), F(aem_grant, resv),

	S(aem_lane_ctl), F(aem_lane_ctl, tail), F(aem_lane_ctl, prod_flags), F(aem_lane_ctl, resv0),
	F(aem_lane_ctl, head), F(aem_lane_ctl, resv1), F(aem_lane_ctl, cons_flags),
	F(aem_lane_ctl, entries), F(aem_lane_ctl, rec_size), F(aem_lane_ctl, prio),
	F(aem_lane_ctl, resv2), F(aem_lane_ctl, sub_id), F(aem_lane_ctl, resv3),
	F(aem_lane_ctl, call), F(aem_lane_ctl, call_res), F(aem_lane_ctl, reply),
	S(aem_lane_rec), F(aem_lane_rec, len), F(aem_lane_rec, flags),
	S(aem_lane_open), F(aem_lane_open, addr), F(aem_lane_open, entries),
	F(aem_lane_open, rec_size), F(aem_lane_open, flags), F(aem_lane_open, fd),
	F(aem_lane_open, map_size), F(aem_lane_open, resv),
	S(aem_lane_note), F(aem_lane_note, slot), F(aem_lane_note, gen),
	F(aem_lane_note, entries), F(aem_lane_note, rec_size), F(aem_lane_note, sub_id),
	F(aem_lane_note, prio), F(aem_lane_note, kind), F(aem_lane_note, resv),

	K(AEM_API_VERSION), K(AEM_MAX_CLASSES), K(AEM_MAX_SQ_ENTRIES),
	K(AEM_MAX_CQ_ENTRIES), K(AEM_MIN_SLOT_SIZE), K(AEM_MAX_SLOT_SIZE),
	K(AEM_MAX_SLOTS), K(AEM_MAX_BACKLOG), K(AEM_CQE_INLINE), K(AEM_SQE_INLINE),
	K(AEM_MAX_SUBS), K(AEM_NR_REGIONS), K(AEM_CALL_DEFAULT_TIMEOUT_MS), K(AEM_CALL_ERRNO_MAX),
	K(AEM_CALL_MAX_TIMEOUT_MS), K(AEM_MAX_CALL_QUOTA), K(AEM_DEFAULT_CALL_QUOTA),
	K(AEM_MAX_SOCK_CONNS), K(AEM_DEFAULT_SOCK_CONNS),
	K(AEM_SLOT_GEN_SHIFT), K(AEM_SLOT_GEN_MAX),
	K(AEM_SETUP_BOOST), K(AEM_SETUP_EMBEDDED), K(AEM_SETUP_KERNEL), K(AEM_SETUP_FLAGS_ALL),
	K(AEM_FEAT_CQE_INLINE), K(AEM_FEAT_SLOT_RING), K(AEM_FEAT_BLOCKING_CALL), K(AEM_FEAT_KERNEL),
	K(AEM_FEAT_SUB_STATS), K(AEM_FEAT_SENDER), K(AEM_CQE_F_SENDER),
	K(AEM_FEAT_GRANT),
	K(AEM_SETUP_SQPOLL), K(AEM_FEAT_SQPOLL), K(AEM_SQ_F_NEED_WAKEUP), K(AEM_ENTER_SQ_WAKEUP),
	K(AEM_DEFAULT_SQ_IDLE_MS), K(AEM_MAX_SQ_IDLE_MS),
	K(AEM_GRANT_ANY), K(AEM_GRANT_REVOKE), K(AEM_GRANT_FLAGS_ALL), K(AEM_MAX_GRANTS),
	K(AEM_FEAT_SOCK),
	K(AEM_MAX_LANES), K(AEM_LANE_MAX_ENTRIES), K(AEM_LANE_MAX_RECORD),
	K(AEM_LANE_P_WAITING), K(AEM_LANE_P_CLOSED), K(AEM_LANE_C_SLEEPING),
	K(AEM_LANE_C_GONE), K(AEM_FEAT_LANES), K(AEM_CQE_F_LANE), K(AEM_OFF_LANES),
	K(AEM_LANE_GEN_MAX), K(AEM_LANE_NOTE_ATTACH), K(AEM_LANE_NOTE_KICK),
	K(AEM_IOC_LANE_OPEN), K(AEM_IOC_LANE_KICK), K(AEM_IOC_LANE_WAIT), K(AEM_IOC_LANE_ROOM),
	K(AEM_LANE_WAIT_MAX_MS), { "AEM_OFF_LANE(5, 9)", AEM_OFF_LANE(5, 9) },
	{ "AEM_LANE_REC_STRIDE(13)", AEM_LANE_REC_STRIDE(13) },
	K(AEM_LANE_REC_CALL), K(AEM_LANE_CALL_IDLE), K(AEM_LANE_CALL_WAITING),
	K(AEM_LANE_CALL_CLAIMED), K(AEM_LANE_CALL_DONE), K(AEM_LANE_CALL_POS_MASK),
	{ "AEM_LANE_CALL(3, 5)", AEM_LANE_CALL(3, 5) },
	K(AEM_REGION_RINGS), K(AEM_REGION_SQES), K(AEM_REGION_CQES), K(AEM_REGION_PAYLOAD),
	K(AEM_OFF_RINGS), K(AEM_OFF_SQES), K(AEM_OFF_CQES), K(AEM_OFF_PAYLOAD),
	K(AEM_SQ_F_REFUSED), K(AEM_CQ_F_OVERFLOW),
	K(AEM_OP_NOP), K(AEM_OP_SUBSCRIBE), K(AEM_OP_UNSUBSCRIBE), K(AEM_OP_WRITEBACK),
	K(AEM_OP_POST), K(AEM_OP_CALL), K(AEM_OP_TIMER_SET), K(AEM_OP_GEN_SET), K(AEM_OP_SEND),
	K(AEM_OP_SHUTDOWN), K(AEM_OP_LAST),
	K(AEM_SQE_F_SLOT), K(AEM_SQE_F_SILENT), K(AEM_SQE_F_LOSSY), K(AEM_SQE_F_END_STATS),
	K(AEM_SQE_FLAGS_ALL),
	K(AEM_SRC_NONE), K(AEM_SRC_TIMER), K(AEM_SRC_MSG), K(AEM_SRC_GEN), K(AEM_SRC_PROC),
	K(AEM_SRC_FD), K(AEM_SRC_SOCK), K(AEM_SRC_LAST),
	K(AEM_PROC_FORK), K(AEM_PROC_EXEC), K(AEM_PROC_EXIT), K(AEM_PROC_ALL), K(AEM_PROC_DENIED),
	K(AEM_FD_ACCEPT), K(AEM_FD_READABLE), K(AEM_FD_HANGUP), K(AEM_FD_ALL),
	K(AEM_SOCK_SHUT_RD), K(AEM_SOCK_SHUT_WR), K(AEM_SOCK_SHUT_RDWR), K(AEM_SOCK_CLOSE),
	K(AEM_SOCK_MAX_QUEUED), K(AEM_SOCK_EV_CONNECT), K(AEM_SOCK_EV_EOF),
	K(AEM_SOCK_EV_CLOSED), K(AEM_SOCK_EV_LIMIT),
	K(AEM_CQE_F_RESULT), K(AEM_CQE_F_SLOT), K(AEM_CQE_F_CALL), K(AEM_CQE_F_FINAL),
	K(AEM_CQE_F_TRUNC), K(AEM_CQE_F_STATS), K(AEM_CQE_F_SOCK_CTL), K(AEM_ID_KIND_SUB), K(AEM_ID_KIND_CALL),
	K(AEM_ENTER_GETEVENTS),
	K(AEM_REFUSE_OPCODE), K(AEM_REFUSE_FIELD), K(AEM_REFUSE_ID), K(AEM_REFUSE_SLOT),
	K(AEM_REFUSE_INDEX), K(AEM_REFUSE_NOMEM), K(AEM_REFUSE_FULL), K(AEM_REFUSE_NR),
	K(AEM_IOC_MAGIC), K(AEM_IOC_SETUP), K(AEM_IOC_ENTER), K(AEM_IOC_SUB_STATS),
	K(AEM_IOC_RING_STATS), K(AEM_IOC_CALL), K(AEM_IOC_GRANT),
	{ "AEM_ADDR(0x12345678,0x9abcdef0)", AEM_ADDR(0x12345678, 0x9abcdef0) },
};

static const char *goaem_device_path(void) { return AEM_DEVICE_PATH; }
static unsigned goaem_nfacts(void) { return sizeof(goaem_facts) / sizeof(goaem_facts[0]); }
static struct goaem_fact goaem_fact(unsigned i) { return goaem_facts[i]; }
*/
import "C"

// CFacts returns the C header's view of the ABI: "struct" and "struct#align"
// give sizeof and _Alignof, "struct.member" gives offsetof, an upper-case
// name gives a constant's value. Only tests need it.
func CFacts() map[string]uint64 {
	n := int(C.goaem_nfacts())
	m := make(map[string]uint64, n)
	for i := 0; i < n; i++ {
		f := C.goaem_fact(C.unsigned(i))
		m[C.GoString(f.name)] = uint64(f.value)
	}
	return m
}

// CDevicePath is the header's AEM_DEVICE_PATH. Only tests need it.
func CDevicePath() string { return C.GoString(C.goaem_device_path()) }
