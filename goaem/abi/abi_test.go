//go:build cgo

package abi_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// Every Go struct of the ABI, with the C struct it mirrors.
var structs = []struct {
	c   string
	gov any
}{
	{"aem_ring_offsets", abi.RingOffsets{}},
	{"aem_params", abi.Params{}},
	{"aem_timer_args", abi.TimerArgs{}},
	{"aem_gen_args", abi.GenArgs{}},
	{"aem_proc_args", abi.ProcArgs{}},
	{"aem_fd_args", abi.FDArgs{}},
	{"aem_sock_args", abi.SockArgs{}},
	{"aem_msg_args", abi.MsgArgs{}},
	{"aem_sqe", abi.SQE{}},
	{"aem_cqe", abi.CQE{}},
	{"aem_timer_event", abi.TimerEvent{}},
	{"aem_gen_event", abi.GenEvent{}},
	{"aem_proc_event", abi.ProcEvent{}},
	{"aem_fd_event", abi.FDEvent{}},
	{"aem_sock_event", abi.SockEvent{}},
	{"aem_enter", abi.Enter{}},
	{"aem_sub_stats", abi.SubStats{}},
	{"aem_sub_counts", abi.SubCounts{}},
	{"aem_sender", abi.Sender{}},
	{"aem_ring_stats", abi.RingStats{}},
	{"aem_call_args", abi.CallArgs{}},
	{"aem_grant", abi.Grant{}},
	{"aem_lane_ctl", abi.LaneCtl{}},
	{"aem_lane_rec", abi.LaneRec{}},
	{"aem_lane_open", abi.LaneOpen{}},
	{"aem_lane_note", abi.LaneNote{}},
}

func TestLayoutMatchesHeader(t *testing.T) {
	c := abi.CFacts()
	seen := map[string]bool{}
	for _, s := range structs {
		t.Run(s.c, func(t *testing.T) {
			typ := reflect.TypeOf(s.gov)
			size, ok := c[s.c]
			require.True(t, ok, "C fact table lacks struct %s", s.c)
			seen[s.c], seen[s.c+"#align"] = true, true
			assert.Equal(t, size, uint64(typ.Size()), "sizeof(struct %s)", s.c)
			assert.Equal(t, c[s.c+"#align"], uint64(typ.Align()), "_Alignof(struct %s)", s.c)
			for i := 0; i < typ.NumField(); i++ {
				f := typ.Field(i)
				name := s.c + "." + f.Tag.Get("aem")
				off, ok := c[name]
				if assert.True(t, ok, "Go field %s.%s (%s) has no C member", typ.Name(), f.Name, name) {
					assert.Equal(t, off, uint64(f.Offset), "offsetof(%s)", name)
					seen[name] = true
				}
			}
		})
	}
	// The union members of aem_sqe all sit where Data does, and each argument
	// struct fits in it.
	data, _ := reflect.TypeOf(abi.SQE{}).FieldByName("Data")
	for _, m := range abi.SQEUnionMembers {
		name := "aem_sqe." + m
		assert.Equal(t, uint64(data.Offset), c[name], "offsetof(%s)", name)
		seen[name] = true
	}
	for _, a := range []any{abi.TimerArgs{}, abi.GenArgs{}, abi.ProcArgs{}, abi.FDArgs{}, abi.SockArgs{}, abi.MsgArgs{}} {
		assert.LessOrEqual(t, reflect.TypeOf(a).Size(), data.Type.Size(), "%T must fit the SQE union", a)
	}
	// Every struct row of the C table was compared: a member added to the
	// header but not to the Go view fails here.
	for name := range c {
		if isStructFact(name) {
			assert.True(t, seen[name], "C fact %s has no Go counterpart", name)
		}
	}
}

func isStructFact(name string) bool { return len(name) > 4 && name[:4] == "aem_" }

func TestConstantsMatchHeader(t *testing.T) {
	assert.Equal(t, abi.CDevicePath(), abi.DevicePath, "AEM_DEVICE_PATH")
	c := abi.CFacts()
	consts := map[string]uint64{
		"AEM_API_VERSION": abi.APIVersion, "AEM_MAX_CLASSES": abi.MaxClasses,
		"AEM_MAX_SQ_ENTRIES": abi.MaxSQEntries, "AEM_MAX_CQ_ENTRIES": abi.MaxCQEntries,
		"AEM_MIN_SLOT_SIZE": abi.MinSlotSize, "AEM_MAX_SLOT_SIZE": abi.MaxSlotSize,
		"AEM_MAX_SLOTS": abi.MaxSlots, "AEM_MAX_BACKLOG": abi.MaxBacklog,
		"AEM_CQE_INLINE": abi.CQEInline, "AEM_SQE_INLINE": abi.SQEInline,
		"AEM_MAX_SUBS": abi.MaxSubs, "AEM_NR_REGIONS": abi.NrRegions,
		"AEM_CALL_DEFAULT_TIMEOUT_MS": abi.DefaultCallMS,
		"AEM_CALL_MAX_TIMEOUT_MS":     abi.MaxCallMS, "AEM_MAX_CALL_QUOTA": abi.MaxCallQuota,
		"AEM_DEFAULT_CALL_QUOTA": abi.DefaultCallQuota,
		"AEM_MAX_SOCK_CONNS":     abi.MaxSockConns, "AEM_DEFAULT_SOCK_CONNS": abi.DefaultSockConns,
		"AEM_FEAT_SOCK": abi.FeatSock, "AEM_OP_SEND": abi.OpSend, "AEM_OP_SHUTDOWN": abi.OpShutdown,
		"AEM_SRC_SOCK": abi.SrcSock, "AEM_CQE_F_SOCK_CTL": abi.CQEFSockCtl,
		"AEM_SOCK_SHUT_RD": abi.SockShutRD, "AEM_SOCK_SHUT_WR": abi.SockShutWR,
		"AEM_SOCK_SHUT_RDWR": abi.SockShutRDWR, "AEM_SOCK_CLOSE": abi.SockClose,
		"AEM_SOCK_MAX_QUEUED": abi.SockMaxQueued, "AEM_SOCK_EV_CONNECT": abi.SockEvConnect,
		"AEM_SOCK_EV_EOF": abi.SockEvEOF, "AEM_SOCK_EV_CLOSED": abi.SockEvClosed,
		"AEM_SOCK_EV_LIMIT":  abi.SockEvLimit,
		"AEM_SLOT_GEN_SHIFT": abi.SlotGenShift, "AEM_SLOT_GEN_MAX": abi.SlotGenMax,
		"AEM_CALL_ERRNO_MAX": abi.CallErrnoMax,
		"AEM_SETUP_BOOST":    abi.SetupBoost, "AEM_SETUP_EMBEDDED": abi.SetupEmbedded,
		"AEM_SETUP_KERNEL": abi.SetupKernel, "AEM_SETUP_FLAGS_ALL": abi.SetupFlagsAll,
		"AEM_FEAT_CQE_INLINE": abi.FeatCQEInline, "AEM_FEAT_SLOT_RING": abi.FeatSlotRing,
		"AEM_FEAT_BLOCKING_CALL": abi.FeatBlockingCall, "AEM_FEAT_KERNEL": abi.FeatKernel,
		"AEM_FEAT_SUB_STATS": abi.FeatSubStats, "AEM_FEAT_SENDER": abi.FeatSender,
		"AEM_CQE_F_SENDER": abi.CQEFSender,
		"AEM_FEAT_GRANT":   abi.FeatGrant,
		"AEM_MAX_LANES":    abi.MaxLanes, "AEM_LANE_MAX_ENTRIES": abi.LaneMaxEntries,
		"AEM_LANE_MAX_RECORD": abi.LaneMaxRecord, "AEM_LANE_P_WAITING": abi.LanePWaiting,
		"AEM_LANE_P_CLOSED": abi.LanePClosed, "AEM_LANE_C_SLEEPING": abi.LaneCSleeping,
		"AEM_LANE_REC_STRIDE(13)": uint64(abi.LaneRecStride(13)),
		"AEM_LANE_REC_CALL":       abi.LaneRecCall, "AEM_LANE_CALL_IDLE": abi.LaneCallIdle,
		"AEM_LANE_CALL_WAITING": abi.LaneCallWaiting, "AEM_LANE_CALL_CLAIMED": abi.LaneCallClaimed,
		"AEM_LANE_CALL_DONE": abi.LaneCallDone, "AEM_LANE_CALL_POS_MASK": abi.LaneCallPosMask,
		"AEM_LANE_CALL(3, 5)": abi.LaneCall(3, 5),
		"AEM_LANE_C_GONE":     abi.LaneCGone, "AEM_FEAT_LANES": abi.FeatLanes,
		"AEM_CQE_F_LANE": abi.CQEFLane, "AEM_OFF_LANES": abi.OffLanes,
		"AEM_LANE_GEN_MAX": abi.LaneGenMax, "AEM_LANE_NOTE_ATTACH": abi.LaneNoteAttach,
		"AEM_LANE_NOTE_KICK": abi.LaneNoteKick, "AEM_IOC_LANE_OPEN": uint64(abi.IocLaneOpen),
		"AEM_IOC_LANE_KICK": uint64(abi.IocLaneKick), "AEM_OFF_LANE(5, 9)": uint64(abi.OffLane(5, 9)),
		"AEM_IOC_LANE_WAIT": uint64(abi.IocLaneWait), "AEM_IOC_LANE_ROOM": uint64(abi.IocLaneRoom),
		"AEM_LANE_WAIT_MAX_MS": abi.LaneWaitMaxMS,
		"AEM_SETUP_SQPOLL":     abi.SetupSQPoll, "AEM_FEAT_SQPOLL": abi.FeatSQPoll,
		"AEM_SQ_F_NEED_WAKEUP": abi.SQFNeedWakeup, "AEM_ENTER_SQ_WAKEUP": abi.EnterSQWakeup,
		"AEM_DEFAULT_SQ_IDLE_MS": abi.DefaultSQIdleMS, "AEM_MAX_SQ_IDLE_MS": abi.MaxSQIdleMS,
		"AEM_GRANT_ANY": abi.GrantAny, "AEM_GRANT_REVOKE": abi.GrantRevoke,
		"AEM_GRANT_FLAGS_ALL": abi.GrantFlagsAll, "AEM_MAX_GRANTS": abi.MaxGrants,
		"AEM_IOC_GRANT":    uint64(abi.IocGrant),
		"AEM_REGION_RINGS": abi.RegionRings, "AEM_REGION_SQES": abi.RegionSQEs,
		"AEM_REGION_CQES": abi.RegionCQEs, "AEM_REGION_PAYLOAD": abi.RegionPayload,
		"AEM_OFF_RINGS": abi.OffRings, "AEM_OFF_SQES": abi.OffSQEs,
		"AEM_OFF_CQES": abi.OffCQEs, "AEM_OFF_PAYLOAD": abi.OffPayload,
		"AEM_SQ_F_REFUSED": abi.SQFRefused, "AEM_CQ_F_OVERFLOW": abi.CQFOverflow,
		"AEM_OP_NOP": abi.OpNop, "AEM_OP_SUBSCRIBE": abi.OpSubscribe,
		"AEM_OP_UNSUBSCRIBE": abi.OpUnsubscribe, "AEM_OP_WRITEBACK": abi.OpWriteback,
		"AEM_OP_POST": abi.OpPost, "AEM_OP_CALL": abi.OpCall, "AEM_OP_TIMER_SET": abi.OpTimerSet,
		"AEM_OP_GEN_SET": abi.OpGenSet, "AEM_OP_LAST": abi.OpLast,
		"AEM_SQE_F_SLOT": abi.SQEFSlot, "AEM_SQE_F_SILENT": abi.SQEFSilent, "AEM_SQE_F_LOSSY": abi.SQEFLossy,
		"AEM_SQE_FLAGS_ALL": abi.SQEFlagsAll, "AEM_SQE_F_END_STATS": abi.SQEFEndStats,
		"AEM_SRC_NONE": abi.SrcNone, "AEM_SRC_TIMER": abi.SrcTimer, "AEM_SRC_MSG": abi.SrcMsg,
		"AEM_SRC_GEN": abi.SrcGen, "AEM_SRC_PROC": abi.SrcProc, "AEM_SRC_FD": abi.SrcFD,
		"AEM_SRC_LAST":  abi.SrcLast,
		"AEM_PROC_FORK": abi.ProcFork, "AEM_PROC_EXEC": abi.ProcExec, "AEM_PROC_EXIT": abi.ProcExit,
		"AEM_PROC_ALL": abi.ProcAll, "AEM_PROC_DENIED": abi.ProcDenied,
		"AEM_FD_ACCEPT": abi.FDAccept, "AEM_FD_READABLE": abi.FDReadable, "AEM_FD_HANGUP": abi.FDHangup,
		"AEM_FD_ALL":       abi.FDAll,
		"AEM_CQE_F_RESULT": abi.CQEFResult, "AEM_CQE_F_SLOT": abi.CQEFSlot, "AEM_CQE_F_CALL": abi.CQEFCall,
		"AEM_CQE_F_FINAL": abi.CQEFFinal, "AEM_CQE_F_TRUNC": abi.CQEFTrunc, "AEM_CQE_F_STATS": abi.CQEFStats,
		"AEM_ID_KIND_SUB": abi.IDKindSub, "AEM_ID_KIND_CALL": abi.IDKindCall,
		"AEM_ENTER_GETEVENTS": abi.EnterGetEvts,
		"AEM_REFUSE_OPCODE":   abi.RefuseOpcode, "AEM_REFUSE_FIELD": abi.RefuseField,
		"AEM_REFUSE_ID": abi.RefuseID, "AEM_REFUSE_SLOT": abi.RefuseSlot,
		"AEM_REFUSE_INDEX": abi.RefuseIndex, "AEM_REFUSE_NOMEM": abi.RefuseNomem, "AEM_REFUSE_FULL": abi.RefuseFull,
		"AEM_REFUSE_NR": abi.RefuseNr,
		"AEM_IOC_MAGIC": abi.IocMagic,
		"AEM_IOC_SETUP": uint64(abi.IocSetup), "AEM_IOC_ENTER": uint64(abi.IocEnter),
		"AEM_IOC_SUB_STATS": uint64(abi.IocSubStats), "AEM_IOC_RING_STATS": uint64(abi.IocRingStats),
		"AEM_IOC_CALL":                    uint64(abi.IocCall),
		"AEM_ADDR(0x12345678,0x9abcdef0)": abi.Addr(0x12345678, 0x9abcdef0),
	}
	for name, want := range consts {
		got, ok := c[name]
		if assert.True(t, ok, "C fact table lacks %s", name) {
			assert.Equal(t, got, want, "%s: C value vs Go constant", name)
		}
	}
	for name := range c {
		if !isStructFact(name) {
			_, ok := consts[name]
			assert.True(t, ok, "C constant %s is not checked against Go", name)
		}
	}
	assert.Equal(t, uint32(2), abi.IDKind(uint64(2)<<56|42))
}
