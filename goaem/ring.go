package goaem

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/aem-dev/aem/goaem/abi"
)

// backend is the kernel side of one ring as goaem sees it: the cgo build
// wraps libaem (either of its backends); tests also build rings over Go
// memory with a Go producer so that the race detector sees both sides.
type backend interface {
	name() string
	// pollFD is the fd that becomes readable when completions are ready.
	pollFD() int
	// arm re-arms the pollable fd before the caller re-checks the rings
	// and sleeps (embedded: drains the eventfd and announces the poller).
	arm() error
	// submit publishes SQEs up to tail and has the kernel side consume
	// them; it also flushes the overflow backlog and reclaims released
	// slots. One crossing.
	submit(tail uint32) error
	subStats(st *abi.SubStats) error
	ringStats(st *abi.RingStats) error
	// grant changes who may post and call into the ring (abi.Grant*).
	grant(uid, flags uint32) error
	close() error
}

// cqView is the Go view of one class's completion ring. k* point into the
// RINGS region.
type cqView struct {
	khead   *uint32 // we write it: store once per batch, pairs with the producer's acquire
	ktail   *uint32 // producer writes it: load once per batch, pairs with its store-release
	kflags  *uint32
	mask    uint32
	entries uint32
	cqes    []abi.CQE    // read-only mapping
	senders []abi.Sender // ABI 4 class rings: beside cqes, entry by entry (read-only)
}

type sqView struct {
	khead   *uint32 // kernel side: how far it has consumed
	ktail   *uint32
	kflags  *uint32 // abi.SQF*: the submission poller's NEED_WAKEUP
	polled  bool    // a submission poller consumes it (abi.FeatSQPoll)
	mask    uint32
	entries uint32
	sqes    []abi.SQE
	tail    uint32 // local: next SQE to fill; published by backend.submit
}

type slotView struct {
	khead   *uint32
	ktail   *uint32
	mask    uint32
	entries uint32
	array   []uint32
	tail    uint32 // local, published once per batch of releases
}

// payloadArea is the PAYLOAD region: send slots first, then delivery slots.
type payloadArea struct {
	bytes     []byte
	slotSize  uint32
	slotCount uint32
	sendSlots uint32
	nextSend  uint32 // the send slot the next post or call fills; under sqMu
	// unsubmitted counts the send slots filled since the last submission
	// (SockSendLater); under sqMu.
	unsubmitted uint32
}

// slot is slot's bytes, length n, capacity the slot size; nil when the
// kernel side named a slot or length outside the region.
func (p *payloadArea) slot(slot, n uint32) []byte {
	slot = abi.SlotIndex(slot) // a delivery slot reference's generation is the kernel side's
	if slot >= p.slotCount+p.sendSlots || n > p.slotSize {
		return nil
	}
	off := uint64(slot) * uint64(p.slotSize)
	return p.bytes[off : off+uint64(n) : off+uint64(p.slotSize)]
}

// life counts operations that touch the mapped rings, so Close unmaps only
// after the last of them has left. The closed flag is a bit of the same
// word: an operation enters only while it is clear (one CAS), so one that
// finds the ring closing never raises the count, and Close waits for the
// operations already inside and no others.
type life struct {
	refs atomic.Int64  // lifeClosed | operations inside
	idle chan struct{} // one token when the last operation leaves after close
}

const lifeClosed = int64(1) << 62

func (l *life) acquire() bool {
	for {
		v := l.refs.Load()
		if v&lifeClosed != 0 {
			return false
		}
		if l.refs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

func (l *life) release() {
	if l.refs.Add(-1) == lifeClosed {
		select {
		case l.idle <- struct{}{}:
		default:
		}
	}
}

// close marks the ring closing; no operation enters after it.
func (l *life) close() { l.refs.Add(lifeClosed) }

// wait returns when the operations that entered before close have left.
func (l *life) wait() {
	for l.refs.Load() != lifeClosed {
		<-l.idle
	}
}

func (l *life) closed() bool { return l.refs.Load()&lifeClosed != 0 }

// Ring is one AEM ring: a submission ring, a completion ring per priority
// class, the result ring and the payload slots, mapped into this process.
//
// Events are read by one goroutine at a time (Poll, Wait or Run; see
// reader.go); the answers to this ring's own requests come on the result
// ring, read by the side that waits for them (results.go). Every method is
// safe for concurrent use.
type Ring struct {
	cfg       config
	be        backend
	ringID    uint32
	classes   int
	features  uint32 // abi.Feat*: what the kernel side offers
	sockConns uint32 // setup's answer: socket connections the ring may hold

	cq    [abi.MaxClasses]cqView // events: read by the reader alone
	rd    reader
	lanes laneTable // producer lanes (lane.go), drained by the reader

	// The submission side: the SQ, the slot return ring and the send slots.
	sqMu    sync.Mutex
	sq      sqView
	slots   slotView
	sqDirty atomic.Bool   // SQEs queued but not submitted
	enters  atomic.Uint64 // submissions to the kernel side (Enters)
	pay     payloadArea

	res      results
	subs     subTable
	spawnSem chan struct{}
	async    asyncState

	life      life
	closedCh  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// newRing builds the Go views over the regions the backend mapped. p holds
// the setup answer (offsets, sizes).
func newRing(cfg config, be backend, p *abi.Params, regions [abi.NrRegions]unsafe.Pointer) (*Ring, error) {
	if cfg.boost {
		if err := checkBoost(); err != nil {
			return nil, err
		}
	}
	r := &Ring{
		cfg:       cfg,
		be:        be,
		ringID:    p.RingID,
		classes:   int(p.NrClasses),
		features:  p.Features,
		sockConns: p.SockConns,
		closedCh:  make(chan struct{}),
		spawnSem:  make(chan struct{}, cfg.maxInFlight),
	}
	r.life.idle = make(chan struct{}, 1)
	// Remote lanes share the table; a remote lane whose slot the module
	// reused before the reader detached it waits in pending.
	r.lanes.max = min(cfg.lanes+cfg.remoteLanes, abi.MaxLanes)
	if err := r.initViews(p, regions); err != nil {
		return nil, err
	}
	// Each sleeper has a dup of the ring fd of its own (see wait.go).
	var err error
	r.rd.freed = make(chan struct{}, 1)
	if r.rd.pf, err = openPollFile(be.pollFD(), r.armReader, r.lookEvents); err != nil {
		return nil, err
	}
	r.res.ops = make(map[uint64]*op)
	if cfg.sockSent != nil {
		// Room for one result ring of send results between two reports,
		// so that reporting allocates nothing in the steady state.
		r.res.sent = make([]sockSent, 0, 2*p.SQEntries)
		r.res.sentSpare = make([]sockSent, 0, 2*p.SQEntries)
	}
	r.res.pumpF = r.pump
	r.rd.wakeF = func() {
		if r.life.acquire() { // Close wakes the reader itself
			r.wakeKernelWaiter()
			r.life.release()
		}
	}
	if r.res.pf, err = openPollFile(be.pollFD(), be.arm, r.lookResults); err != nil {
		r.rd.pf.close()
		return nil, err
	}
	return r, nil
}

// initViews checks every published offset against the region sizes, so a
// bad answer from setup is an error here and never a stray access later.
func (r *Ring) initViews(p *abi.Params, regions [abi.NrRegions]unsafe.Pointer) error {
	size := p.RegionSize
	for i, base := range regions {
		if base == nil || size[i] == 0 {
			return fmt.Errorf("goaem: region %d not mapped", i)
		}
	}
	if p.NrClasses < 1 || p.NrClasses > abi.MaxClasses {
		return fmt.Errorf("goaem: setup returned %d classes", p.NrClasses)
	}
	var err error
	word := func(off uint32) *uint32 {
		if uint64(off)+4 > size[abi.RegionRings] || off%4 != 0 {
			err = fmt.Errorf("goaem: ring field offset %#x outside the RINGS region (%d bytes)", off, size[abi.RegionRings])
			return new(uint32)
		}
		return (*uint32)(unsafe.Add(regions[abi.RegionRings], off))
	}
	entries := func(what string, n uint32, elem uintptr, region int, off uint32) {
		if n == 0 || n&(n-1) != 0 {
			err = fmt.Errorf("goaem: %s has %d entries, not a power of two", what, n)
		} else if uint64(off)+uint64(n)*uint64(elem) > size[region] {
			err = fmt.Errorf("goaem: %s array (%d x %d bytes at %#x) outside its region", what, n, elem, off)
		}
	}

	entries("submission ring", p.SQEntries, unsafe.Sizeof(abi.SQE{}), abi.RegionSQEs, p.SQOff.Array)
	if err != nil {
		return err
	}
	r.sq = sqView{
		khead:   word(p.SQOff.Head),
		ktail:   word(p.SQOff.Tail),
		kflags:  word(p.SQOff.Flags),
		polled:  p.Features&abi.FeatSQPoll != 0,
		mask:    p.SQEntries - 1,
		entries: p.SQEntries,
		sqes:    unsafe.Slice((*abi.SQE)(unsafe.Add(regions[abi.RegionSQEs], p.SQOff.Array)), p.SQEntries),
	}
	r.sq.tail = atomic.LoadUint32(r.sq.ktail)

	for c := 0; c < r.classes; c++ {
		o := p.CQOff[c]
		entries(fmt.Sprintf("completion ring %d", c), p.CQEntries, unsafe.Sizeof(abi.CQE{}), abi.RegionCQEs, o.Array)
		if err != nil {
			return err
		}
		r.cq[c] = cqView{
			khead:   word(o.Head),
			ktail:   word(o.Tail),
			kflags:  word(o.Flags),
			mask:    p.CQEntries - 1,
			entries: p.CQEntries,
			cqes:    unsafe.Slice((*abi.CQE)(unsafe.Add(regions[abi.RegionCQEs], o.Array)), p.CQEntries),
		}
		if o.Senders != 0 {
			entries(fmt.Sprintf("sender array %d", c), p.CQEntries, unsafe.Sizeof(abi.Sender{}), abi.RegionCQEs, o.Senders)
			if err != nil {
				return err
			}
			r.cq[c].senders = unsafe.Slice((*abi.Sender)(unsafe.Add(regions[abi.RegionCQEs], o.Senders)), p.CQEntries)
		}
	}

	ro := p.ResOff
	rn := atomic.LoadUint32(word(ro.RingEntries))
	entries("result ring", rn, unsafe.Sizeof(abi.CQE{}), abi.RegionCQEs, ro.Array)
	if err != nil {
		return err
	}
	r.res.ring = cqView{
		khead:   word(ro.Head),
		ktail:   word(ro.Tail),
		kflags:  word(ro.Flags),
		mask:    rn - 1,
		entries: rn,
		cqes:    unsafe.Slice((*abi.CQE)(unsafe.Add(regions[abi.RegionCQEs], ro.Array)), rn),
	}

	so := p.SlotOff
	n := atomic.LoadUint32(word(so.RingEntries))
	if err != nil {
		return err
	}
	entries("slot return ring", n, 4, abi.RegionRings, so.Array)
	if err != nil {
		return err
	}
	r.slots = slotView{
		khead:   word(so.Head),
		ktail:   word(so.Tail),
		mask:    n - 1,
		entries: n,
		array:   unsafe.Slice((*uint32)(unsafe.Add(regions[abi.RegionRings], so.Array)), n),
	}
	r.slots.tail = atomic.LoadUint32(r.slots.ktail)

	if uint64(p.SlotSize)*uint64(p.SlotCount+p.SendSlots) > size[abi.RegionPayload] {
		return fmt.Errorf("goaem: %d slots of %d bytes do not fit the payload region (%d bytes)",
			p.SlotCount+p.SendSlots, p.SlotSize, size[abi.RegionPayload])
	}
	r.pay = payloadArea{
		bytes:     unsafe.Slice((*byte)(regions[abi.RegionPayload]), size[abi.RegionPayload]),
		slotSize:  p.SlotSize,
		slotCount: p.SlotCount,
		sendSlots: p.SendSlots,
	}
	return err
}

// ID is the ring's id: the ring part of the address that posts and calls
// use to reach this ring's AEM_SRC_MSG subscribers.
func (r *Ring) ID() uint32 { return r.ringID }

// Classes is the number of priority classes.
func (r *Ring) Classes() int { return r.classes }

// SlotSize is the bytes of one payload slot: the most a slot event carries
// and the most a writeback to it may return.
func (r *Ring) SlotSize() int { return int(r.pay.slotSize) }

// SockConns is the bound in force on the socket connections the ring
// holds at once (WithSockConns); 0 when the kernel side has no socket
// I/O (abi.FeatSock).
func (r *Ring) SockConns() int { return int(r.sockConns) }

// Backend names the backend serving the ring ("kernel" or "embedded").
func (r *Ring) Backend() string { return r.be.name() }

// Addr is this ring's address for channel: the target of Post and Call
// that reaches a Msg subscription of the channel.
func (r *Ring) Addr(channel uint32) Addr { return MakeAddr(r.ringID, channel) }

// Close tears the ring down. It wakes every goroutine blocked in Wait, Run
// or a call on this ring (they return ErrClosed), waits until they have
// left, then unmaps the rings: event payloads obtained before Close must not
// be used after it. A call that begins once Close has begun returns
// ErrClosed without delaying it, so Close is prompt however busy the ring
// is. Subscriptions end with the ring. Close is idempotent. With a
// submission poller (WithSQPoll), whose posts return once queued, Close
// first lets the poller consume what is queued, as long as it makes
// progress; what it leaves (a target full for a second) is Close's error.
func (r *Ring) Close() error {
	r.closeOnce.Do(func() {
		r.life.close()
		close(r.closedCh) // wakes callers and goroutines waiting for the reader role
		r.rd.pf.close()   // wakes the reader in Wait
		r.res.pf.close()  // and the result pump
		if r.cfg.kernelWait {
			r.wakeKernelWaiter() // and a reader sleeping in the kernel side
		}
		r.life.wait()
		r.rd.pf.unwatch()
		r.res.pf.unwatch()
		r.unwatchKernelWait()
		drainErr := r.drainPoller()
		r.lanes.unmapRemote() // the module keeps the ring while a lane of it is mapped
		r.closeErr = errors.Join(drainErr, r.be.close())
		r.subs.clear()
	})
	return r.closeErr
}

// pollerStall is how long Close waits for a submission poller that
// consumes nothing (its SQ head stands still) before it gives up.
const pollerStall = time.Second

// drainPoller waits until the submission poller has consumed every queued
// SQE, waking it when it sleeps. No other goroutine submits any more.
func (r *Ring) drainPoller() error {
	sq := &r.sq
	if !sq.polled {
		return nil
	}
	last, since := atomic.LoadUint32(sq.khead), time.Now()
	for wait := 0; ; wait++ {
		head := atomic.LoadUint32(sq.khead)
		switch {
		case head == sq.tail:
			return nil
		case head != last:
			last, since = head, time.Now()
		case time.Since(since) > pollerStall:
			return fmt.Errorf("goaem: close: the submission poller left %d queued SQEs unconsumed for %v (a full target): %w",
				sq.tail-head, pollerStall, ErrBusy)
		}
		if atomic.LoadUint32(sq.kflags)&abi.SQFNeedWakeup != 0 {
			if err := r.be.submit(sq.tail); err != nil {
				return fmt.Errorf("goaem: close: wake the submission poller: %w", err)
			}
		}
		postBackoff(wait)
	}
}

// isClosed reports whether Close has begun.
func (r *Ring) isClosed() bool { return r.life.closed() }

// setCleanup makes a forgotten ring release its kernel side when it becomes
// unreachable; Close is the way to do it.
func (r *Ring) setCleanup() {
	runtime.AddCleanup(r, func(be backend) { _ = be.close() }, r.be)
}
