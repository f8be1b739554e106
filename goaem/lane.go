package goaem

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/aem-dev/aem/goaem/abi"
)

// Producer lanes (docs/PROTOCOL.md, "Producer lanes"): a lane is a
// single-producer, single-consumer ring of fixed-size records laid out as
// kmod/uapi/aem.h's struct aem_lane_ctl and struct aem_lane_rec, written by
// one producer and read by the ring's reader, which hands each record out
// as an event of the Msg subscription the lane was attached to. No system
// call, no cgo call and no lock per record while both run; the kernel side
// never sees the records. This file holds both sides: the producer's Lane
// and the reader's drain, which trusts nothing in the lane's memory.

// ErrLaneFull is TryPost's answer when the lane has no room. It matches
// syscall.EAGAIN.
var ErrLaneFull error = &sentinel{"goaem: lane full", syscall.EAGAIN}

// Defaults of LaneOptions.
const (
	defaultLaneEntries = 1024
	// laneSpins is how often a full lane's producer yields before it
	// sleeps: more steals the reader's CPU (64 moved aembench's fan-in at
	// 38.6 M/s against 43.4 M/s with 4, four alternated rounds).
	laneSpins = 4
)

// LaneOptions shape a lane.
type LaneOptions struct {
	// Entries is the number of records the lane holds, rounded up to a
	// power of two of at least 2 (default 1024, at most abi.LaneMaxEntries).
	Entries uint32
	// RecordSize is the largest payload one record carries, 1..32
	// (abi.LaneMaxRecord, the default): a lane event is an inline event.
	RecordSize uint32
	// Lossy makes a post to a full lane drop what does not fit, counted in
	// Dropped, instead of waiting.
	Lossy bool
}

// Lane is a producer's lane into a ring's Msg subscription (Ring.OpenLane).
// Its posts keep their order, and each reaches the subscription's reader
// unless the lane is lossy and was full (Dropped counts those). A Lane is
// safe for concurrent use, but it is fastest with one producer goroutine:
// concurrent posts take turns on a mutex.
type Lane struct {
	r    *Ring
	sub  *Subscription
	slot int // index in the ring's lane table

	mem     []byte       // ctl then the records: Go memory, laid out as aem.h says
	ctl     *abi.LaneCtl // shared: the producer's and the consumer's lines
	recs    []byte
	mask    uint32
	entries uint32
	stride  uint32
	recSize uint32
	prio    uint8
	subID   uint64 // the events' token, never read back from the lane
	id      uint64 // unique in the process: call events name their lane by it
	lossy   bool
	remote  *remoteLane // a lane the module mapped (lane_remote.go); nil in this process's memory

	// Each side's fields on cache lines of their own: the producer and the
	// reader run on different CPUs.
	_ cpu.CacheLinePad
	// The producer's side, under mu.
	mu       sync.Mutex
	tail     uint32 // next record to fill; published to ctl.Tail
	tailLaps uint32 // how often tail wrapped: the high half of a record's position
	headSeen uint32 // the consumer's head as last read: room without a load
	room     chan struct{}
	closed   atomic.Bool
	dropped  atomic.Uint64

	_ cpu.CacheLinePad
	// The consumer's side: the reader role's alone.
	head      uint32 // never read back from the shared line (the producer can write it)
	headLaps  uint32 // how often head wrapped: the high half of a record's position
	tailSeen  uint32 // the tail as last read: records up to it are published
	taken     uint32 // records of the last reap with keep, not yet committed
	malformed atomic.Uint64
	_         cpu.CacheLinePad
}

// laneTable is a ring's lanes (WithLanes): attached and detached by
// producers, read by the reader role.
type laneTable struct {
	max   int
	mu    sync.Mutex // attach and detach
	lanes [abi.MaxLanes]atomic.Pointer[Lane]
	hi    atomic.Int32 // one past the highest slot ever attached: the reader's bound
	// kicked: a producer has kicked the sleeping reader since it armed
	// (one kick per sleep).
	kicked atomic.Bool
	// sleeping mirrors the reader's SLEEPING flags, so an attach during a
	// sleep leaves no lane unflagged. Under mu.
	sleeping bool
	// pending holds remote lanes attached while every slot was taken
	// (lane_remote.go); a detach places the first. Under mu.
	pending []*Lane
	// first is, per class, the lane the last reap began with; the next
	// begins one further, so that a busy lane never starves the others.
	// reaped is how many slots that reap looked at: commit follows the
	// same order even if a lane was attached since. The reader's.
	first, reaped [abi.MaxClasses]int
}

// OpenLane attaches a lane to sub, a Msg subscription of this ring: what
// the lane's producer posts arrives through Poll, Wait and Run as sub's
// events, in sub's class, each an inline event (Payload, Release) that
// takes no writeback, except the producer's calls (Lane.Call), which the
// handler answers with Writeback, Reply or ReplyError. The ring must have room for it (WithLanes); a ring
// without lanes, or with all of them attached, refuses with ENOSPC.
func (r *Ring) OpenLane(sub *Subscription, opts LaneOptions) (*Lane, error) {
	if sub == nil || sub.ring() != r || sub.source != abi.SrcMsg {
		return nil, invalid("goaem: open lane: not a Msg subscription of this ring")
	}
	if sub.Ended() || sub.ID() == 0 {
		return nil, invalid("goaem: open lane: the subscription has ended")
	}
	entries, recSize, err := opts.geometry()
	if err != nil {
		return nil, err
	}
	if !r.life.acquire() {
		return nil, ErrClosed
	}
	defer r.life.release()

	stride := abi.LaneRecStride(recSize)
	ctlSize := unsafe.Sizeof(abi.LaneCtl{})
	l := &Lane{
		r: r, sub: sub, mask: entries - 1, entries: entries, stride: stride, recSize: recSize,
		prio: sub.class, subID: sub.ID(), id: laneIDs.Add(1), lossy: opts.Lossy, room: make(chan struct{}, 1),
	}
	// 64-byte aligned, so the producer's and the consumer's lines are
	// cache lines of their own.
	raw := make([]byte, int(ctlSize)+int(entries*stride)+63)
	off := int(-uintptr(unsafe.Pointer(&raw[0])) & 63)
	l.mem = raw[off : off+int(ctlSize)+int(entries*stride)]
	l.ctl = (*abi.LaneCtl)(unsafe.Pointer(&l.mem[0]))
	l.recs = l.mem[ctlSize:]
	l.ctl.Entries, l.ctl.RecSize, l.ctl.Prio, l.ctl.SubID = entries, recSize, sub.class, sub.ID()

	t := &r.lanes
	t.mu.Lock()
	defer t.mu.Unlock()
	l.slot = -1
	for i := 0; i < t.max; i++ {
		if t.lanes[i].Load() == nil {
			l.slot = i
			break
		}
	}
	if l.slot < 0 {
		return nil, fmt.Errorf("goaem: open lane: all %d lanes of the ring attached (WithLanes): %w", t.max, syscall.ENOSPC)
	}
	if t.sleeping {
		l.ctl.ConsFlags = abi.LaneCSleeping
	}
	t.lanes[l.slot].Store(l)
	if int32(l.slot) >= t.hi.Load() {
		t.hi.Store(int32(l.slot) + 1)
	}
	return l, nil
}

// geometry is the lane's records and record size the options ask for,
// defaults applied and entries rounded up to a power of two (at least 2,
// as the module takes them).
func (opts LaneOptions) geometry() (entries, recSize uint32, err error) {
	entries = opts.Entries
	if entries == 0 {
		entries = defaultLaneEntries
	}
	if entries > abi.LaneMaxEntries {
		return 0, 0, invalid("goaem: open lane: %d entries (at most %d)", entries, abi.LaneMaxEntries)
	}
	recSize = opts.RecordSize
	if recSize == 0 {
		recSize = abi.LaneMaxRecord
	}
	if recSize > abi.LaneMaxRecord {
		return 0, 0, invalid("goaem: open lane: records of %d bytes (at most %d)", recSize, abi.LaneMaxRecord)
	}
	return max(roundPow2(entries), 2), recSize, nil
}

func roundPow2(n uint32) uint32 {
	p := uint32(1)
	for p < n {
		p <<= 1
	}
	return p
}

// Post writes one record, waiting while the lane is full (unless it is
// lossy) until ctx ends or the ring closes.
func (l *Lane) Post(ctx context.Context, data []byte) error {
	one := [1][]byte{data}
	_, err := l.PostBatch(ctx, one[:])
	return err
}

// TryPost writes one record if the lane has room, and returns ErrLaneFull
// otherwise (a lossy lane counts it in Dropped and returns nil).
func (l *Lane) TryPost(data []byte) error {
	if err := l.check(data); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return err
	}
	if l.free() == 0 {
		if l.lossy {
			l.dropped.Add(1)
			return nil
		}
		return ErrLaneFull
	}
	l.put(data)
	l.publish()
	return nil
}

// PostBatch writes msgs in order, publishing as many as fit at a time with
// one store, and waits for room for the rest (a lossy lane drops them,
// counted in Dropped) until ctx ends or the ring closes. It returns how
// many records it wrote; on an error, msgs[n:] were not.
func (l *Lane) PostBatch(ctx context.Context, msgs [][]byte) (n int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n < len(msgs) {
		if err := l.usable(); err != nil {
			return n, err
		}
		free := l.free()
		if free == 0 {
			if l.lossy {
				l.dropped.Add(uint64(len(msgs) - n))
				return len(msgs), nil
			}
			if free, err = l.waitRoom(ctx); err != nil {
				return n, err
			}
		}
		k := min(int(free), len(msgs)-n)
		for i, m := range msgs[n : n+k] {
			if err := l.check(m); err != nil {
				l.publish() // what came before it is posted
				return n + i, err
			}
			l.put(m)
		}
		l.publish()
		n += k
	}
	return n, nil
}

// check is small enough to inline into the posting loops.
func (l *Lane) check(data []byte) error {
	if uint32(len(data)) > l.recSize {
		return l.tooLarge(len(data))
	}
	return nil
}

func (l *Lane) tooLarge(n int) error {
	return fmt.Errorf("%w: lane record of %d bytes, the lane holds %d", ErrTooLarge, n, l.recSize)
}

// usable is nil while the lane, its ring and its reader's interest are
// there. Under mu.
func (l *Lane) usable() error {
	if l.closed.Load() || l.r.life.closed() {
		return ErrClosed
	}
	if atomic.LoadUint32(&l.ctl.ConsFlags)&abi.LaneCGone != 0 {
		if l.remote != nil {
			return errLaneConsumerGone
		}
		return errLaneSubEnded
	}
	return nil
}

// errLaneSubEnded answers posts and calls on a lane whose subscription
// has ended: nothing reads them any more.
var errLaneSubEnded = fmt.Errorf("goaem: lane: its subscription has ended: %w", syscall.EPIPE)

// free is the room the producer sees, reloading the consumer's head only
// when its last view shows none. Under mu.
func (l *Lane) free() uint32 {
	if used := l.tail - l.headSeen; used < l.entries {
		return l.entries - used
	}
	l.headSeen = atomic.LoadUint32(&l.ctl.Head) // pairs with the consumer's store of head
	used := l.tail - l.headSeen
	if used > l.entries { // a head the consumer never wrote: no room
		return 0
	}
	return l.entries - used
}

// recordWords is a whole record's payload as a struct of four words,
// which the compiler copies in registers.
type recordWords struct{ w0, w1, w2, w3 uint64 }

var _ = [1]struct{}{}[abi.LaneMaxRecord-unsafe.Sizeof(recordWords{})] // exactly a record

// put fills the record at the local tail. Under mu.
func (l *Lane) put(data []byte) { l.putFlagged(data, 0) }

// putFlagged fills the record at the local tail with flags. Under mu.
func (l *Lane) putFlagged(data []byte, flags uint32) {
	// The index is masked: the record lies inside recs.
	rec := unsafe.Add(unsafe.Pointer(unsafe.SliceData(l.recs)), uintptr(l.tail&l.mask)*uintptr(l.stride))
	h := (*abi.LaneRec)(rec)
	h.Len, h.Flags = uint32(len(data)), flags
	payload := unsafe.Add(rec, unsafe.Sizeof(abi.LaneRec{}))
	if len(data) == abi.LaneMaxRecord {
		// A whole record: four words, loaded then stored (an array copy
		// here costs a memmove call).
		*(*recordWords)(payload) = *(*recordWords)(unsafe.Pointer(unsafe.SliceData(data)))
	} else {
		copy(unsafe.Slice((*byte)(payload), len(data)), data)
	}
	if l.tail++; l.tail == 0 {
		l.tailLaps++
	}
}

// publish makes the records up to the local tail visible, then kicks the
// reader if it sleeps. The tail's store and the flag's load are ordered by
// a full barrier (Go's atomics are sequentially consistent), pairing with
// the reader's store of SLEEPING before its last look (Dekker): either the
// reader's look sees the tail, or this load sees it asleep. Under mu.
func (l *Lane) publish() {
	atomic.StoreUint32(&l.ctl.Tail, l.tail) // pairs with the reader's load of tail
	if atomic.LoadUint32(&l.ctl.ConsFlags)&abi.LaneCSleeping != 0 {
		l.kick()
	}
}

// kick wakes the sleeping reader: in this process, or through the module.
func (l *Lane) kick() {
	if l.remote != nil {
		l.remote.kick()
		return
	}
	l.r.kickLaneReader()
}

// waitRoom waits until the consumer frees room: a few yields first, then
// a sleep announced with WAITING, which the consumer's head store answers
// (Dekker again: WAITING, full barrier, head re-read). A remote lane's
// producer sleeps in the module (AEM_IOC_LANE_WAIT), which the consumer's
// AEM_IOC_LANE_ROOM wakes. Under mu.
func (l *Lane) waitRoom(ctx context.Context) (uint32, error) {
	for spins := 0; ; spins++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if err := l.usable(); err != nil {
			return 0, err
		}
		if free := l.free(); free != 0 {
			return free, nil
		}
		if spins < laneSpins {
			runtime.Gosched()
			continue
		}
		atomic.StoreUint32(&l.ctl.ProdFlags, abi.LanePWaiting)
		if l.remote != nil {
			// The consumer is another process: its hand-back wakes us
			// through the module, whose pending signal covers the window
			// between this look at head and the ioctl. A bounded sleep,
			// so that ctx, Close and the ring's close are seen (the loop).
			free := l.free()
			if free == 0 && !l.remote.waitRoom(ctx) {
				postBackoff(spins) // a module without the wait: poll
			}
			atomic.StoreUint32(&l.ctl.ProdFlags, 0)
			if free != 0 {
				return free, nil
			}
			continue
		}
		free := l.free()
		if free == 0 {
			select {
			case <-l.room:
			case <-ctx.Done():
			case <-l.r.closedCh:
			}
		}
		atomic.StoreUint32(&l.ctl.ProdFlags, 0)
		if free != 0 {
			return free, nil
		}
	}
}

// Memory is the lane itself, laid out as kmod/uapi/aem.h says (struct
// aem_lane_ctl, then the records), for a producer that writes it without
// the Lane's methods: C code in this process (libaem's aem_lane_post) or
// a test playing a hostile producer. Use it or Post, not both. The reader
// checks whatever it finds there; the memory stays valid while the Lane
// is referenced.
func (l *Lane) Memory() []byte { return l.mem }

// Dropped counts the records a lossy lane dropped because it was full,
// and those the reader found in the lane after its subscription ended
// (counted on the reader's side: for a remote lane, in the consumer's
// Lane).
func (l *Lane) Dropped() uint64 { return l.dropped.Load() }

// Malformed counts the records the reader refused: a length past the
// record size, flags other than a call's, or a tail more than a lane
// ahead.
func (l *Lane) Malformed() uint64 { return l.malformed.Load() }

// Close ends the lane: posts after it return ErrClosed; the records
// already posted are still delivered, then the reader detaches the lane
// and its slot takes a new one. Closing twice does nothing.
func (l *Lane) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	select { // a producer waiting for room stops waiting
	case l.room <- struct{}{}:
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	atomic.StoreUint32(&l.ctl.ProdFlags, abi.LanePClosed) // after the tail: the reader drains, then detaches
	if l.remote != nil {
		// Closing the lane fd kicks the consumer; the mapping goes with it.
		l.remote.unmap()
		return nil
	}
	if atomic.LoadUint32(&l.ctl.ConsFlags)&abi.LaneCSleeping != 0 {
		l.r.kickLaneReader()
	}
	return nil
}

// kickLaneReader wakes the reader sleeping in Wait or Run, once per sleep.
// In this process the kick is the netpoller's deadline nudge: no system
// call from the producer; a reader sleeping in the kernel side
// (WithKernelWait) is woken by a NOP's result instead.
func (r *Ring) kickLaneReader() {
	if r.lanes.kicked.Swap(true) {
		return
	}
	if _, ok := r.be.(kernelWaiter); ok && r.cfg.kernelWait {
		r.wakeKernelWaiter()
		return
	}
	r.rd.pf.nudge()
}

// armLanes sets or clears SLEEPING in every attached lane; the reader sets
// it after arming the ring fd and before its last look, and clears it once
// awake.
func (r *Ring) armLanes(sleeping bool) {
	t := &r.lanes
	if t.max == 0 {
		return
	}
	var flag uint32
	if sleeping {
		flag = abi.LaneCSleeping
		t.kicked.Store(false)
	}
	t.mu.Lock()
	t.sleeping = sleeping
	for i := range int(t.hi.Load()) {
		if l := t.lanes[i].Load(); l != nil {
			// GONE stays (only the reader and, at the ring's close, the
			// module write the word). A full barrier before the look's
			// tail loads.
			atomic.StoreUint32(&l.ctl.ConsFlags, flag|atomic.LoadUint32(&l.ctl.ConsFlags)&abi.LaneCGone)
		}
	}
	t.mu.Unlock()
}

// armReader re-arms the ring fd and flags the lanes before the reader's
// last look and its sleep.
func (r *Ring) armReader() error {
	if err := r.be.arm(); err != nil {
		return err
	}
	r.armLanes(true)
	return nil
}

// reapLanes reads the records of the lanes of class c into dst as events.
// Unless keep, each lane's head is handed back at once; with keep, commit
// hands it back.
func (r *Ring) reapLanes(c uint8, dst []Event, keep bool) int {
	return r.walkLanes(c, len(dst), !keep, func(l *Lane, n, avail int) uint32 {
		got := l.drain(r, c, dst[n:n+avail])
		if keep {
			l.taken = got
		}
		return got
	})
}

// walkLanes takes up to max records from the lanes of class c, handing
// each lane's run of records to take (n: how many were taken before it;
// avail: how many it may take, at least one), which says how many it took.
// Per lane: at most one load of the tail (none while records it promised
// are left), at most one lane's worth of records, and if advance one store
// of the head past what take took. Each walk begins one lane further than
// the last, so every lane gets its turn first. take skips (and counts) a
// malformed record first in line, advancing the head past it, and stops
// before one that follows good records (drain, visit), so that what it
// says it took is exactly what it handed out.
func (r *Ring) walkLanes(c uint8, max int, advance bool, take func(l *Lane, n, avail int) uint32) (n int) {
	t := &r.lanes
	hi := int(t.hi.Load())
	if hi == 0 {
		return 0
	}
	first := t.first[c] + 1
	if first >= hi {
		first = 0
	}
	t.first[c], t.reaped[c] = first, hi
	for j, i := 0, first; j < hi && n < max; j, i = j+1, i+1 {
		if i == hi { // no division per lane
			i = 0
		}
		l := t.lanes[i].Load()
		if l == nil || l.prio != c {
			continue
		}
		ended := l.sub != nil && l.sub.Ended()
		if ended {
			l.markGone()
		}
		// The tail last seen first: while records it promised are left,
		// the producer's line is not read again.
		avail := l.tailSeen - l.head
		if avail == 0 {
			l.tailSeen = atomic.LoadUint32(&l.ctl.Tail) // pairs with the producer's store of tail
			avail = l.tailSeen - l.head
		}
		if avail == 0 {
			if atomic.LoadUint32(&l.ctl.ProdFlags)&abi.LanePClosed == 0 {
				continue
			}
			// CLOSED is stored after the last tail: the tail read after
			// it is the last, and records may have come since the first.
			if l.tailSeen = atomic.LoadUint32(&l.ctl.Tail); l.tailSeen == l.head {
				r.detachLane(l)
				continue
			}
			avail = l.tailSeen - l.head
		}
		if avail > l.entries {
			// A tail no producer could have written: nothing is read
			// from the lane until it is one a producer could have.
			l.tailSeen = l.head
			l.malformed.Add(1)
			continue
		}
		if ended {
			l.discard(avail)
			continue
		}
		got := take(l, n, int(min(avail, uint32(max-n))))
		if advance {
			l.advance(got)
		}
		if advance || got == 0 {
			l.handBack()
		}
		n += int(got)
	}
	return n
}

// markGone tells the producer of a lane whose subscription has ended
// that nothing reads it any more: posts and calls then answer EPIPE. The
// store and the reader's next tail load are ordered by a full barrier, as
// the producer's tail store and its look at GONE are (Dekker): a record
// is either posted before a later walk's tail load sees it, or its post
// sees GONE; the lane keeps its slot until its producer closes it, so
// every such record is found (discard).
func (l *Lane) markGone() {
	if f := atomic.LoadUint32(&l.ctl.ConsFlags); f&abi.LaneCGone == 0 {
		atomic.StoreUint32(&l.ctl.ConsFlags, f|abi.LaneCGone)
	}
}

// discard skips the n records after the consumer's head of a lane whose
// subscription has ended, so that nothing in it is lost untold: each is
// counted in Dropped, a call among them answered EPIPE, and the head is
// handed back at once (none was handed out).
func (l *Lane) discard(n uint32) {
	for k := range n {
		if _, _, call, ok := l.record(k); ok && call {
			l.answer(l.headPos(k), nil, uint32(syscall.EPIPE))
		}
	}
	l.dropped.Add(uint64(n))
	l.advance(n) // to the tail last seen
	l.handBack()
}

// advance moves the consumer's head on by n records.
func (l *Lane) advance(n uint32) {
	if h := l.head + n; h < l.head {
		l.head, l.headLaps = h, l.headLaps+1
	} else {
		l.head = h
	}
}

// headPos is the 64-bit position of the record k after the consumer's head.
func (l *Lane) headPos(k uint32) uint64 { return (uint64(l.headLaps)<<32 | uint64(l.head)) + uint64(k) }

// record checks the record k after the consumer's head: its payload,
// length and whether it is a call, or ok false for a malformed one (a
// length past the record size, flags other than abi.LaneRecCall).
func (l *Lane) record(k uint32) (data unsafe.Pointer, size uint32, call, ok bool) {
	// The index is masked: the record lies inside recs.
	rec := unsafe.Add(unsafe.Pointer(unsafe.SliceData(l.recs)), uintptr((l.head+k)&l.mask)*uintptr(l.stride))
	h := (*abi.LaneRec)(rec)
	size, flags := h.Len, h.Flags // read once: the producer may change them
	return unsafe.Add(rec, unsafe.Sizeof(abi.LaneRec{})), size, flags == abi.LaneRecCall,
		size <= l.recSize && flags&^abi.LaneRecCall == 0
}

// drain turns the records from the consumer's head on into the events
// dst, one per record, and says how many it filled; it skips (and counts)
// malformed records first in line, advancing the head past them, and
// stops before one that follows good records.
func (l *Lane) drain(r *Ring, c uint8, dst []Event) (got uint32) {
	handle, subID := l.sub.handle, l.subID // locals: the stores into dst would make the compiler reload fields
	for range dst {
		data, size, call, ok := l.record(got)
		if !ok {
			if got != 0 {
				break // the next batch starts with it
			}
			l.malformed.Add(1)
			l.advance(1)
			continue
		}
		e := &dst[got]
		e.cqe.UserData, e.cqe.ID, e.cqe.Res, e.cqe.Flags = handle, subID, int32(size), 0
		e.cqe.Slot, e.cqe.Source, e.cqe.Prio, e.cqe.Resv = 0, abi.SrcMsg, c, 0
		if size == abi.LaneMaxRecord {
			e.cqe.Data = *(*[abi.CQEInline]byte)(data) // a whole record: one fixed-size copy
		} else {
			e.cqe.Data = [abi.CQEInline]byte{}
			copy(e.cqe.Data[:size], unsafe.Slice((*byte)(data), size))
		}
		e.state = stLane
		if call {
			e.markCall(l, l.headPos(got))
		}
		if e.r != r {
			e.r = r // a store (and its write barrier) only when the batch slice is new
		}
		got++
	}
	return got
}

// visit hands up to max records from the consumer's head on to fn in
// place, as drain does with events.
func (l *Lane) visit(max int, fn func(sub *Subscription, data []byte)) (got uint32) {
	for range max {
		data, size, call, ok := l.record(got)
		if !ok {
			if got != 0 {
				break
			}
			l.malformed.Add(1)
			l.advance(1)
			continue
		}
		fn(l.sub, unsafe.Slice((*byte)(data), size))
		if call { // read in place: no reply can follow
			l.answer(l.headPos(got), nil, uint32(syscall.ECONNRESET))
		}
		got++
	}
	return got
}

// ReadLanes hands the records waiting in this ring's producer lanes to
// visit without making events of them: data is the record's payload in the
// lane's own memory, valid only until visit returns (the lane's head, handed
// back after the lane's run of records, lets its producer write there
// again), and sub is the Msg subscription the lane is attached to. It takes
// at most max records, the lanes of the most urgent class first, under the
// same checks as Poll (lengths clamped to the record size, malformed
// records skipped and counted in Lane.Malformed), and returns how many it
// handed out. It reads no completion ring: events the kernel side
// delivers wait for Poll, Wait or Run. It never blocks; while another
// goroutine reads this ring's events it returns ErrConcurrentRead, and
// visit must not read them either.
func (r *Ring) ReadLanes(max int, visit func(sub *Subscription, data []byte)) (n int, err error) {
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	defer r.life.release()
	if !r.rd.role.CompareAndSwap(false, true) {
		return 0, ErrConcurrentRead
	}
	defer r.giveReader() // visit may panic
	if r.lanes.max == 0 {
		return 0, nil
	}
	for c := 0; c < r.classes && n < max; c++ {
		n += r.walkLanes(uint8(c), max-n, true, func(l *Lane, _, avail int) uint32 {
			return l.visit(avail, visit)
		})
	}
	return n, nil
}

// handBack publishes the consumer's head and wakes a producer that waits
// for room (its WAITING load pairs with this store: Dekker): in this
// process, or, for a remote lane, through the module (AEM_IOC_LANE_ROOM on
// the ring fd).
func (l *Lane) handBack() {
	atomic.StoreUint32(&l.ctl.Head, l.head) // pairs with the producer's load of head
	if atomic.LoadUint32(&l.ctl.ProdFlags)&abi.LanePWaiting != 0 {
		if l.remote != nil && l.remote.fd < 0 {
			l.remote.room(l.r.be.pollFD())
			return
		}
		select {
		case l.room <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// commitLanes hands back up to k events of the last reap with keep from
// the lanes of class c, in reap's order, and returns what is left of k.
func (r *Ring) commitLanes(c uint8, k int) int {
	t := &r.lanes
	hi := t.reaped[c]
	for j := 0; j < hi; j++ {
		l := t.lanes[(t.first[c]+j)%hi].Load() // in the reap's order
		if l == nil || l.prio != c || l.taken == 0 {
			continue
		}
		m := min(uint32(k), l.taken)
		l.advance(m)
		l.taken = 0
		l.handBack()
		k -= int(m)
	}
	return k
}

// detachLane frees the slot of a closed lane the reader has drained.
func (r *Ring) detachLane(l *Lane) {
	t := &r.lanes
	t.mu.Lock()
	if t.lanes[l.slot].Load() == l {
		t.lanes[l.slot].Store(nil)
		if l.remote != nil {
			l.remote.unmap()
		}
		if len(t.pending) > 0 {
			next := t.pending[0]
			t.pending = t.pending[1:]
			t.placeLocked(next)
		}
	}
	t.mu.Unlock()
}

// errLaneWriteback refuses a writeback to a lane event: the kernel side
// never saw it.
var errLaneWriteback = errors.New("goaem: writeback: a lane event takes none")
