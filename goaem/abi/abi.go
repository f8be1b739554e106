// Package abi is the Go view of the AEM user/kernel ABI defined in
// kmod/uapi/aem.h. Every struct here has the size, field offsets and
// alignment of its C twin; every constant has the C value. The test in this
// package checks both against the C header through a cgo helper
// (layout_cgo.go), so a change to the header that is not mirrored here fails
// `go test`.
//
// Each field carries an `aem:"name"` tag naming its C member; the layout test
// uses the tags to pair fields with offsetof() values.
package abi

import "unsafe"

// Version and limits.
const (
	APIVersion = 4

	MaxClasses       = 4
	MaxSQEntries     = 1 << 16
	MaxCQEntries     = 1 << 20
	MinSlotSize      = 64
	MaxSlotSize      = 1 << 16
	MaxSlots         = 1 << 20
	MaxBacklog       = 1 << 22
	CQEInline        = 32
	SQEInline        = 32
	MaxSubs          = 1 << 24
	NrRegions        = 4
	DefaultCallMS    = 5000
	MaxCallMS        = 60000 // longest call timeout; a longer one is refused
	MaxCallQuota     = 4096
	DefaultCallQuota = 1024
	MaxSockConns     = 1 << 20 // socket connections per ring (Params.SockConns)
	DefaultSockConns = 1024
	DefaultSQIdleMS  = 1000  // the submission poller's idle time when Params.SQIdleMS is 0
	MaxSQIdleMS      = 60000 // longest Params.SQIdleMS; a longer one is refused
	CallErrnoMax     = 4095  // largest errno an error reply carries
)

// A delivery slot reference (CQE.Slot, what a release or writeback names):
// the slot's index and the generation of this issue of it.
const (
	SlotGenShift = 20
	SlotGenMax   = 0xffe
)

// SlotIndex is the index of the slot a reference names (AEM_SLOT_INDEX).
func SlotIndex(ref uint32) uint32 { return ref & (1<<SlotGenShift - 1) }

// SlotGen is the generation a reference carries (AEM_SLOT_GEN).
func SlotGen(ref uint32) uint32 { return ref >> SlotGenShift }

// DevicePath is the kernel module's device (AEM_DEVICE_PATH).
const DevicePath = "/dev/aem"

// Setup flags (Params.Flags) and features (Params.Features).
const (
	SetupBoost    = 1 << 0
	SetupEmbedded = 1 << 1
	SetupKernel   = 1 << 2
	SetupSQPoll   = 1 << 3 // a kernel-side poller consumes the SQ (Params.SQIdleMS)
	SetupFlagsAll = SetupBoost | SetupEmbedded | SetupKernel | SetupSQPoll

	FeatCQEInline    = 1 << 0
	FeatSlotRing     = 1 << 1
	FeatBlockingCall = 1 << 2
	FeatKernel       = 1 << 3
	FeatSubStats     = 1 << 4 // final counts: UNSUBSCRIBE results, SQEFEndStats
	FeatSock         = 1 << 5 // Params.SockConns, OpSend, OpShutdown
	FeatSender       = 1 << 6 // version 4: msg events carry their sender (CQEFSender)
	FeatGrant        = 1 << 8 // posts and calls need the owner's user or a grant (IocGrant)
	FeatSQPoll       = 1 << 9 // the ring has a submission poller (SetupSQPoll)
)

// Grant flags (struct aem_grant) and the bound on granted uids.
const (
	GrantAny      = 1 << 0 // every user; uid must be 0
	GrantRevoke   = 1 << 1 // take the grant back
	GrantFlagsAll = GrantAny | GrantRevoke
	MaxGrants     = 16
)

// mmap regions, indexed as Params.RegionSize, and their mmap offsets.
const (
	RegionRings   = 0
	RegionSQEs    = 1
	RegionCQEs    = 2
	RegionPayload = 3

	OffRings   = 0x00000000
	OffSQEs    = 0x10000000
	OffCQEs    = 0x20000000
	OffPayload = 0x30000000
)

// Ring flag words.
const (
	SQFRefused    = 1 << 0
	SQFNeedWakeup = 1 << 1 // SQPOLL: the poller sleeps; enter with EnterSQWakeup
	CQFOverflow   = 1 << 0
)

// Opcodes (enum aem_op).
const (
	OpNop         = 0
	OpSubscribe   = 1
	OpUnsubscribe = 2
	OpWriteback   = 3
	OpPost        = 4
	OpCall        = 5
	OpTimerSet    = 6
	OpGenSet      = 7
	OpSend        = 8 // target = socket connection id; payload; result: bytes sent
	OpShutdown    = 9 // target = socket connection id; Arg = SockShut*
	OpLast        = 10
)

// SQE flags.
const (
	SQEFSlot     = 1 << 0
	SQEFSilent   = 1 << 1
	SQEFLossy    = 1 << 2 // POST only
	SQEFEndStats = 1 << 3 // SUBSCRIBE only: its end result carries the final counts
	SQEFlagsAll  = SQEFSlot | SQEFSilent
	CQEFResult   = 1 << 0
	CQEFSlot     = 1 << 1
	CQEFCall     = 1 << 2
	CQEFFinal    = 1 << 3
	CQEFTrunc    = 1 << 4
	CQEFStats    = 1 << 5 // a result whose Data holds SubCounts
	CQEFSender   = 1 << 6 // a msg event whose Sender sits beside it (RingOffsets.Senders)
	CQEFSockCtl  = 1 << 7 // SrcSock: Data holds a SockEvent, not received bytes
	IDKindSub    = 1
	IDKindCall   = 2
	EnterGetEvts = 1 << 0
	// EnterSQWakeup wakes a ring's sleeping submission poller.
	EnterSQWakeup = 1 << 1
)

// Event sources (enum aem_source).
const (
	SrcNone  = 0
	SrcTimer = 1
	SrcMsg   = 2
	SrcGen   = 3
	SrcProc  = 4
	SrcFD    = 5
	SrcSock  = 6
	SrcLast  = 7
)

// Source event masks.
const (
	ProcFork = 1 << 0
	ProcExec = 1 << 1
	ProcExit = 1 << 2
	ProcAll  = ProcFork | ProcExec | ProcExit
	// ProcDenied marks an event of a process the subscriber may no longer
	// read (it became setuid): pid, ppid, comm and filename are zero.
	ProcDenied = 1 << 3

	FDAccept   = 1 << 0
	FDReadable = 1 << 1
	FDHangup   = 1 << 2
	FDAll      = FDAccept | FDReadable | FDHangup
)

// The socket I/O source (SrcSock): shutdown arguments and event types.
const (
	SockShutRD    = 1 << 0
	SockShutWR    = 1 << 1
	SockShutRDWR  = SockShutRD | SockShutWR
	SockClose     = 1 << 2
	SockMaxQueued = 64 // sends one connection may have queued
	SockEvConnect = 1
	SockEvEOF     = 2
	SockEvClosed  = 3
	SockEvLimit   = 4
)

// Refusal reasons (enum aem_refuse), indices into RingStats.Refused.
const (
	RefuseOpcode = 0
	RefuseField  = 1
	RefuseID     = 2
	RefuseSlot   = 3
	RefuseIndex  = 4
	RefuseNomem  = 5
	RefuseFull   = 6
	RefuseNr     = 8
)

// Addr builds AEM_ADDR(ring, channel).
func Addr(ring, channel uint32) uint64 { return uint64(ring)<<32 | uint64(channel) }

// IDKind is AEM_ID_KIND(id).
func IDKind(id uint64) uint32 { return uint32(id >> 56) }

// RingOffsets is struct aem_ring_offsets.
type RingOffsets struct {
	Head        uint32 `aem:"head"`
	Tail        uint32 `aem:"tail"`
	RingMask    uint32 `aem:"ring_mask"`
	RingEntries uint32 `aem:"ring_entries"`
	Flags       uint32 `aem:"flags"`
	Dropped     uint32 `aem:"dropped"`
	Array       uint32 `aem:"array"`
	Senders     uint32 `aem:"senders"` // class rings of version 4: []Sender beside the CQEs
}

// Params is struct aem_params.
type Params struct {
	SQEntries    uint32                  `aem:"sq_entries"`
	CQEntries    uint32                  `aem:"cq_entries"`
	NrClasses    uint32                  `aem:"nr_classes"`
	SlotSize     uint32                  `aem:"slot_size"`
	SlotCount    uint32                  `aem:"slot_count"`
	SendSlots    uint32                  `aem:"send_slots"`
	BacklogLimit uint32                  `aem:"backlog_limit"`
	Flags        uint32                  `aem:"flags"`
	Features     uint32                  `aem:"features"`
	APIVersion   uint32                  `aem:"api_version"`
	RingID       uint32                  `aem:"ring_id"`
	CallQuota    uint32                  `aem:"call_quota"`
	SockConns    uint32                  `aem:"sock_conns"`
	SQIdleMS     uint32                  `aem:"sq_idle_ms"`
	RemoteLanes  uint32                  `aem:"remote_lanes"`
	Resv         [1]uint32               `aem:"resv"`
	SQOff        RingOffsets             `aem:"sq_off"`
	CQOff        [MaxClasses]RingOffsets `aem:"cq_off"`
	SlotOff      RingOffsets             `aem:"slot_off"`
	ResOff       RingOffsets             `aem:"res_off"`
	RegionSize   [NrRegions]uint64       `aem:"region_size"`
	Resv2        [4]uint64               `aem:"resv2"`
}

// TimerArgs is struct aem_timer_args.
type TimerArgs struct {
	FirstNS    uint64    `aem:"first_ns"`
	IntervalNS uint64    `aem:"interval_ns"`
	Resv       [2]uint64 `aem:"resv"`
}

// GenArgs is struct aem_gen_args.
type GenArgs struct {
	Rate       uint64 `aem:"rate"`
	Count      uint64 `aem:"count"`
	Burst      uint32 `aem:"burst"`
	PayloadLen uint32 `aem:"payload_len"`
	Resv       uint64 `aem:"resv"`
}

// ProcArgs is struct aem_proc_args.
type ProcArgs struct {
	Events uint32    `aem:"events"`
	Pid    uint32    `aem:"pid"`
	Resv   [3]uint64 `aem:"resv"`
}

// FDArgs is struct aem_fd_args.
type FDArgs struct {
	FD     int32     `aem:"fd"`
	Events uint32    `aem:"events"`
	Resv   [3]uint64 `aem:"resv"`
}

// SockArgs is struct aem_sock_args.
type SockArgs struct {
	FD    int32     `aem:"fd"`
	Flags uint32    `aem:"flags"`
	Resv  [3]uint64 `aem:"resv"`
}

// MsgArgs is struct aem_msg_args.
type MsgArgs struct {
	Channel uint32    `aem:"channel"`
	Resv0   uint32    `aem:"resv0"`
	Resv    [3]uint64 `aem:"resv"`
}

// SQE is struct aem_sqe: 64 bytes. Data is the anonymous union; the typed
// accessors (Timer, Gen, ...) view it as one of the argument structs.
type SQE struct {
	Opcode   uint8            `aem:"opcode"`
	Flags    uint8            `aem:"flags"`
	Prio     uint8            `aem:"prio"`
	Source   uint8            `aem:"source"`
	Len      uint32           `aem:"len"`
	UserData uint64           `aem:"user_data"`
	Target   uint64           `aem:"target"`
	Slot     uint32           `aem:"slot"`
	Arg      uint32           `aem:"arg"`
	Data     [SQEInline]uint8 `aem:"data"`
}

// SQEUnionMembers names the members of aem_sqe's union; each sits at the
// offset of Data.
var SQEUnionMembers = []string{"timer", "gen", "proc", "fd", "sock", "msg"}

// Timer views the union as struct aem_timer_args.
func (s *SQE) Timer() *TimerArgs { return (*TimerArgs)(unsafe.Pointer(&s.Data)) }

// Gen views the union as struct aem_gen_args.
func (s *SQE) Gen() *GenArgs { return (*GenArgs)(unsafe.Pointer(&s.Data)) }

// Proc views the union as struct aem_proc_args.
func (s *SQE) Proc() *ProcArgs { return (*ProcArgs)(unsafe.Pointer(&s.Data)) }

// FD views the union as struct aem_fd_args.
func (s *SQE) FD() *FDArgs { return (*FDArgs)(unsafe.Pointer(&s.Data)) }

// Sock views the union as struct aem_sock_args.
func (s *SQE) Sock() *SockArgs { return (*SockArgs)(unsafe.Pointer(&s.Data)) }

// Msg views the union as struct aem_msg_args.
func (s *SQE) Msg() *MsgArgs { return (*MsgArgs)(unsafe.Pointer(&s.Data)) }

// CQE is struct aem_cqe: 64 bytes.
type CQE struct {
	UserData uint64           `aem:"user_data"`
	ID       uint64           `aem:"id"`
	Res      int32            `aem:"res"`
	Flags    uint32           `aem:"flags"`
	Slot     uint32           `aem:"slot"`
	Source   uint8            `aem:"source"`
	Prio     uint8            `aem:"prio"`
	Resv     uint16           `aem:"resv"`
	Data     [CQEInline]uint8 `aem:"data"`
}

// TimerEvent is struct aem_timer_event, the inline payload of a timer event.
type TimerEvent struct {
	Expirations uint64 `aem:"expirations"`
	NowNS       uint64 `aem:"now_ns"`
}

// GenEvent is struct aem_gen_event, the head of every generator payload.
type GenEvent struct {
	Seq   uint64 `aem:"seq"`
	NowNS uint64 `aem:"now_ns"`
}

// ProcEvent is struct aem_proc_event.
type ProcEvent struct {
	What     uint32   `aem:"what"`
	Pid      int32    `aem:"pid"`
	Ppid     int32    `aem:"ppid"`
	ExitCode int32    `aem:"exit_code"`
	Comm     [16]byte `aem:"comm"`
	Filename [64]byte `aem:"filename"`
}

// FDEvent is struct aem_fd_event.
type FDEvent struct {
	FD     int32  `aem:"fd"`
	Events uint32 `aem:"events"`
}

// SockEvent is struct aem_sock_event, the payload of a CQE with CQEFSockCtl.
type SockEvent struct {
	Type    uint8     `aem:"type"`
	Resv0   uint8     `aem:"resv0"`
	Family  uint16    `aem:"family"`
	Res     int32     `aem:"res"`
	Port    uint16    `aem:"port"`
	Resv1   uint16    `aem:"resv1"`
	ScopeID uint32    `aem:"scope_id"`
	Addr    [16]uint8 `aem:"addr"`
}

// Enter is struct aem_enter (AEM_IOC_ENTER).
type Enter struct {
	ToSubmit    uint32    `aem:"to_submit"`
	MinComplete uint32    `aem:"min_complete"`
	Flags       uint32    `aem:"flags"`
	Submitted   uint32    `aem:"submitted"`
	TimeoutNS   int64     `aem:"timeout_ns"`
	Resv        [2]uint64 `aem:"resv"`
}

// SubStats is struct aem_sub_stats (AEM_IOC_SUB_STATS).
type SubStats struct {
	ID        uint64    `aem:"id"`
	Produced  uint64    `aem:"produced"`
	Delivered uint64    `aem:"delivered"`
	Backlog   uint64    `aem:"backlog"`
	Dropped   uint64    `aem:"dropped"`
	Resv      [3]uint64 `aem:"resv"`
}

// SubCounts is struct aem_sub_counts: a subscription's final counts, in
// the Data of a result with CQEFStats.
type SubCounts struct {
	Produced  uint64 `aem:"produced"`
	Delivered uint64 `aem:"delivered"`
	Backlog   uint64 `aem:"backlog"`
	Dropped   uint64 `aem:"dropped"`
}

// Sender is struct aem_sender: who posted or called a msg event on a
// version 4 ring (CQEFSender), in the sender array beside its class ring.
type Sender struct {
	PID    int32  `aem:"pid"`     // in the receiving ring's creator's pid namespace; 0: not visible there
	UID    uint32 `aem:"uid"`     // effective uid in the receiving ring's creator's user namespace
	RingID uint32 `aem:"ring_id"` // the sending ring; 0: a blocking call through an fd without a ring
	Resv   uint32 `aem:"resv"`
}

// Producer lanes (docs/PROTOCOL.md, "Producer lanes"): struct
// aem_lane_ctl, then Entries records of LaneRecStride(RecSize) bytes.
const (
	MaxLanes       = 64
	LaneMaxEntries = 1 << 16
	LaneMaxRecord  = CQEInline // a lane event is an inline event
	LanePWaiting   = 1 << 0    // prod_flags: the producer sleeps until the head moves
	LanePClosed    = 1 << 1    // prod_flags: no record after the tail
	LaneCSleeping  = 1 << 0    // cons_flags: the consumer sleeps; a publisher kicks it
	LaneCGone      = 1 << 1    // cons_flags: nobody reads the lane (its consumer ring closed, or its subscription ended)

	// Remote lanes (FeatLanes): the module maps a lane into a producer in
	// another process and into the consumer ring.
	FeatLanes      = 1 << 10    // Params.RemoteLanes, IocLaneOpen
	CQEFLane       = 1 << 8     // with CQEFResult: a LaneNote in Data; UserData is the subscription's tag
	OffLanes       = 0x40000000 // AEM_OFF_LANES
	LaneGenMax     = 0x7fffffff
	LaneNoteAttach = 1     // LaneNote.Kind: a lane was attached, map it
	LaneNoteKick   = 2     // LaneNote.Kind: a producer woke the consumer
	LaneWaitMaxMS  = 60000 // IocLaneWait's longest timeout
)

// OffLane is AEM_OFF_LANE: the ring fd's mmap offset of a remote lane.
func OffLane(slot, gen uint32) int64 {
	return int64(OffLanes | uint64(slot)<<24 | uint64(gen)<<32)
}

// LaneOpen is struct aem_lane_open, IocLaneOpen's argument.
type LaneOpen struct {
	Addr    uint64    `aem:"addr"`
	Entries uint32    `aem:"entries"`
	RecSize uint32    `aem:"rec_size"`
	Flags   uint32    `aem:"flags"`
	FD      int32     `aem:"fd"`
	MapSize uint64    `aem:"map_size"`
	Resv    [2]uint64 `aem:"resv"`
}

// LaneNote is struct aem_lane_note, the payload of a CQEFLane result.
type LaneNote struct {
	Slot    uint32   `aem:"slot"`
	Gen     uint32   `aem:"gen"`
	Entries uint32   `aem:"entries"`
	RecSize uint32   `aem:"rec_size"`
	SubID   uint64   `aem:"sub_id"`
	Prio    uint8    `aem:"prio"`
	Kind    uint8    `aem:"kind"`
	Resv    [6]uint8 `aem:"resv"`
}

// LaneRecStride is AEM_LANE_REC_STRIDE: the bytes one record of recSize
// payload bytes takes (its header, its payload, padding to 8).
func LaneRecStride(recSize uint32) uint32 {
	return (uint32(unsafe.Sizeof(LaneRec{})) + recSize + 7) &^ 7
}

// LaneCtl is struct aem_lane_ctl: the producer's line, the consumer's line
// (with the call line), and what the attach set.
type LaneCtl struct {
	Tail      uint32     `aem:"tail"`
	ProdFlags uint32     `aem:"prod_flags"`
	Resv0     [14]uint32 `aem:"resv0"`
	Head      uint32     `aem:"head"`
	// The call line (LaneRecCall), in the consumer's line: see LaneCall.
	CallRes   int32               `aem:"call_res"`
	Call      uint64              `aem:"call"`
	Reply     [LaneMaxRecord]byte `aem:"reply"`
	Resv1     [4]uint32           `aem:"resv1"`
	ConsFlags uint32              `aem:"cons_flags"`
	Entries   uint32              `aem:"entries"`
	RecSize   uint32              `aem:"rec_size"`
	Prio      uint8               `aem:"prio"`
	Resv2     [3]uint8            `aem:"resv2"`
	SubID     uint64              `aem:"sub_id"`
	Resv3     [5]uint64           `aem:"resv3"`
}

// Calls on a lane: LaneRec.Flags LaneRecCall, and the states of
// LaneCtl.Call (LaneCall(state, position)).
const (
	LaneRecCall     = 1 << 0
	LaneCallIdle    = 0
	LaneCallWaiting = 1
	LaneCallClaimed = 2
	LaneCallDone    = 3
	LaneCallPosMask = 1<<62 - 1
)

// LaneCall is AEM_LANE_CALL: a call line word of state and position.
func LaneCall(state, pos uint64) uint64 { return state<<62 | pos&LaneCallPosMask }

// LaneRec is struct aem_lane_rec, the header of one record; its payload
// follows.
type LaneRec struct {
	Len   uint32 `aem:"len"`
	Flags uint32 `aem:"flags"`
}

// RingStats is struct aem_ring_stats (AEM_IOC_RING_STATS).
type RingStats struct {
	SQEs          uint64           `aem:"sqes"`
	Refused       [RefuseNr]uint64 `aem:"refused"`
	Produced      uint64           `aem:"produced"`
	Delivered     uint64           `aem:"delivered"`
	Backlog       uint64           `aem:"backlog"`
	Dropped       uint64           `aem:"dropped"`
	Subscriptions uint64           `aem:"subscriptions"`
	SlotsFree     uint64           `aem:"slots_free"`
	Charged       uint64           `aem:"charged"` // bytes charged to the ring's account: regions and kernel-side state
	Resv          [7]uint64        `aem:"resv"`
}

// CallArgs is struct aem_call_args (AEM_IOC_CALL).
type CallArgs struct {
	Addr      uint64    `aem:"addr"`
	Req       uint64    `aem:"req"`
	Resp      uint64    `aem:"resp"`
	ReqLen    uint32    `aem:"req_len"`
	RespCap   uint32    `aem:"resp_cap"`
	RespLen   uint32    `aem:"resp_len"`
	TimeoutMS uint32    `aem:"timeout_ms"`
	Prio      uint8     `aem:"prio"`
	Resv0     [7]uint8  `aem:"resv0"`
	Resv      [2]uint64 `aem:"resv"`
}

// Grant is struct aem_grant (AEM_IOC_GRANT).
type Grant struct {
	UID   uint32 `aem:"uid"`
	Flags uint32 `aem:"flags"`
	Resv  uint64 `aem:"resv"`
}

// ioctl numbers, built as the kernel's _IOWR/_IOR do.
const (
	iocNrBits    = 8
	iocTypeBits  = 8
	iocSizeBits  = 14
	iocNrShift   = 0
	iocTypeShift = iocNrShift + iocNrBits
	iocSizeShift = iocTypeShift + iocTypeBits
	iocDirShift  = iocSizeShift + iocSizeBits
	iocWrite     = 1
	iocRead      = 2

	IocMagic = 0xBE // AEM_IOC_MAGIC
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | IocMagic<<iocTypeShift | nr<<iocNrShift | size<<iocSizeShift
}

// ioctl request numbers on the ring fd.
var (
	IocSetup     = ioc(iocRead|iocWrite, 0x01, unsafe.Sizeof(Params{}))
	IocEnter     = ioc(iocRead|iocWrite, 0x02, unsafe.Sizeof(Enter{}))
	IocSubStats  = ioc(iocRead|iocWrite, 0x03, unsafe.Sizeof(SubStats{}))
	IocRingStats = ioc(iocRead, 0x04, unsafe.Sizeof(RingStats{}))
	IocCall      = ioc(iocRead|iocWrite, 0x05, unsafe.Sizeof(CallArgs{}))
	IocGrant     = ioc(iocWrite, 0x0e, unsafe.Sizeof(Grant{}))
	IocLaneOpen  = ioc(iocRead|iocWrite, 0x0f, unsafe.Sizeof(LaneOpen{}))
	IocLaneKick  = ioc(0, 0x10, 0) // on a lane fd
	IocLaneWait  = ioc(0, 0x11, 0) // on a lane fd; the argument: a timeout in ms
	IocLaneRoom  = ioc(0, 0x12, 0) // on the consumer's ring fd; the argument: the lane's slot
)
