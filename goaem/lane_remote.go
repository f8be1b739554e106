package goaem

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem/goaem/abi"
)

// Remote lanes (docs/PROTOCOL.md, "Remote lanes"): on the module, a lane's
// producer may be another process. The module maps the lane's pages into
// the producer (its lane fd) and into the consumer ring (the ring fd at
// abi.OffLane), tells the consumer with a note on its result ring, and
// sets flags when a side goes. The records go as in a lane of this
// process's memory; only opening, kicking and closing differ.

// errLaneConsumerGone is a remote lane's answer once its consumer ring is
// closed, or its subscription ended (the consumer says which only to
// itself): it matches ErrClosed and syscall.EPIPE.
var errLaneConsumerGone = fmt.Errorf("goaem: lane: the consumer ring or its subscription is gone: %w (%w)", ErrClosed, syscall.EPIPE)

// remoteLane is the module's side of a lane: its mapping, and for the
// producer the lane fd.
type remoteLane struct {
	fd   int // the producer's lane fd; -1 in the consumer
	mem  []byte
	slot uint32 // the consumer's: the lane's slot in the module (its note's), for AEM_IOC_LANE_ROOM
	// woken counts the producer's sleeps in the module that the
	// consumer's signal ended (the tests look). Under the Lane's mu.
	woken uint64
}

// laneWaitSlice bounds one sleep for room in the module, so that a
// producer sees its context end and its lane or ring close in time.
const laneWaitSlice = 50 * time.Millisecond

// waitRoom sleeps in the module until the consumer signals room
// (AEM_IOC_LANE_WAIT), at most laneWaitSlice or until ctx's deadline.
// False when the module has no such wait (the caller polls instead);
// otherwise the caller looks at the lane again whatever the answer (room,
// a timeout, a signal, or EPIPE: the consumer is gone and the lane says
// so).
func (rl *remoteLane) waitRoom(ctx context.Context) bool {
	wait := laneWaitSlice
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	ms := max(1, (wait+time.Millisecond-1)/time.Millisecond)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(rl.fd), abi.IocLaneWait, uintptr(ms))
	switch e {
	case 0:
		rl.woken++
		return true
	case unix.ETIMEDOUT, unix.EINTR, unix.EPIPE:
		return true
	}
	return false
}

// room wakes the lane's producer waiting for room (AEM_IOC_LANE_ROOM on
// the consumer's ring fd). ENOENT, the producer gone, needs nothing.
func (rl *remoteLane) room(ringFD int) {
	_, _, _ = unix.Syscall(unix.SYS_IOCTL, uintptr(ringFD), abi.IocLaneRoom, uintptr(rl.slot))
}

// kick wakes the consumer through the module (it posts a wake-up note).
func (rl *remoteLane) kick() {
	_, _, _ = unix.Syscall(unix.SYS_IOCTL, uintptr(rl.fd), abi.IocLaneKick, 0)
}

func (rl *remoteLane) unmap() {
	if rl.mem != nil {
		_ = unix.Munmap(rl.mem)
		rl.mem = nil
	}
	if rl.fd >= 0 {
		_ = unix.Close(rl.fd)
		rl.fd = -1
	}
}

// OpenLaneTo opens a producer lane to the Msg subscription at addr, which
// may belong to a ring of another process: the module maps the lane into
// both. The consumer ring must take remote lanes (WithRemoteLanes), and
// this process needs what a Post to it needs (the owner's user or a
// grant). Post, TryPost, PostBatch and Call work as for OpenLane; a
// producer waiting for room sleeps in the module until the consumer hands
// room back. Once the consumer ring is closed, or the subscription ends,
// posts return an error matching ErrClosed and syscall.EPIPE. Close the Lane to
// end it: what was posted is still delivered. Only the kernel backend has
// remote lanes: elsewhere the error matches syscall.EOPNOTSUPP.
func (r *Ring) OpenLaneTo(addr Addr, opts LaneOptions) (*Lane, error) {
	if r.features&abi.FeatLanes == 0 {
		return nil, fmt.Errorf("goaem: open lane to %#x: the %s backend has no remote lanes: %w", uint64(addr), r.Backend(), syscall.EOPNOTSUPP)
	}
	entries, recSize, err := opts.geometry()
	if err != nil {
		return nil, err
	}
	if !r.life.acquire() {
		return nil, ErrClosed
	}
	defer r.life.release()

	o := abi.LaneOpen{Addr: uint64(addr), Entries: entries, RecSize: recSize}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(r.be.pollFD()), abi.IocLaneOpen, uintptr(unsafe.Pointer(&o))); e != 0 {
		return nil, fmt.Errorf("goaem: open lane to %#x: %w", uint64(addr), e)
	}
	rl := &remoteLane{fd: int(o.FD)}
	mem, err := unix.Mmap(rl.fd, 0, int(o.MapSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		rl.unmap()
		return nil, fmt.Errorf("goaem: open lane to %#x: mmap: %w", uint64(addr), err)
	}
	rl.mem = mem
	l := newMappedLane(r, nil, mem, entries, recSize, 0, 0)
	l.remote = rl
	l.lossy = opts.Lossy
	return l, nil
}

// newMappedLane views a lane the module mapped, with the geometry the
// module reported (never what the lane's ctl says).
func newMappedLane(r *Ring, sub *Subscription, mem []byte, entries, recSize uint32, prio uint8, subID uint64) *Lane {
	ctlSize := unsafe.Sizeof(abi.LaneCtl{})
	return &Lane{
		r: r, sub: sub, slot: -1, mem: mem, ctl: (*abi.LaneCtl)(unsafe.Pointer(&mem[0])), recs: mem[ctlSize:],
		mask: entries - 1, entries: entries, stride: abi.LaneRecStride(recSize), recSize: recSize,
		prio: prio, subID: subID, id: laneIDs.Add(1), room: make(chan struct{}, 1),
	}
}

// laneNoteLocked handles a note of the module about a remote lane: an
// attach maps the lane into the lane table; a kick only woke the reader.
// Under res.mu.
func (r *Ring) laneNoteLocked(cqe *abi.CQE) {
	var n abi.LaneNote
	if cqe.Res != int32(unsafe.Sizeof(n)) {
		return
	}
	n = *(*abi.LaneNote)(unsafe.Pointer(&cqe.Data[0]))
	if n.Kind != abi.LaneNoteAttach {
		return
	}
	sub := r.subs.get(cqe.UserData)
	if sub == nil || n.Entries < 2 || n.Entries > abi.LaneMaxEntries || n.Entries&(n.Entries-1) != 0 ||
		n.RecSize == 0 || n.RecSize > abi.LaneMaxRecord {
		r.async.fail(fmt.Errorf("goaem: remote lane note for tag %#x: no such subscription or a bad geometry", cqe.UserData))
		return
	}
	size := int(unsafe.Sizeof(abi.LaneCtl{})) + int(n.Entries*abi.LaneRecStride(n.RecSize))
	size = (size + unix.Getpagesize() - 1) &^ (unix.Getpagesize() - 1)
	mem, err := unix.Mmap(r.be.pollFD(), abi.OffLane(n.Slot, n.Gen), size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		r.async.fail(fmt.Errorf("goaem: map remote lane %d/%d: %w", n.Slot, n.Gen, err))
		return
	}
	l := newMappedLane(r, sub, mem, n.Entries, n.RecSize, n.Prio, n.SubID)
	l.remote = &remoteLane{fd: -1, mem: mem, slot: n.Slot}
	r.lanes.attach(l)
}

// attach puts l in a free slot, or queues it until a slot frees (a remote
// lane's slot in the module may be reused before the reader detached the
// lane that had it).
func (t *laneTable) attach(l *Lane) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.placeLocked(l)
}

func (t *laneTable) placeLocked(l *Lane) {
	for i := 0; i < t.max; i++ {
		if t.lanes[i].Load() == nil {
			l.slot = i
			if t.sleeping {
				atomic.StoreUint32(&l.ctl.ConsFlags, abi.LaneCSleeping)
			}
			t.lanes[i].Store(l)
			if int32(i) >= t.hi.Load() {
				t.hi.Store(int32(i) + 1)
			}
			return
		}
	}
	t.pending = append(t.pending, l)
}

// unmapRemote unmaps the remote lanes, attached or waiting, once the
// reader is done: the module frees the ring only when its last mapping
// is gone.
func (t *laneTable) unmapRemote() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.lanes {
		if l := t.lanes[i].Load(); l != nil && l.remote != nil {
			t.lanes[i].Store(nil)
			l.remote.unmap()
		}
	}
	for _, l := range t.pending {
		l.remote.unmap()
	}
	t.pending = nil
}
