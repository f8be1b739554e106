package goaem

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// Calls on a lane (docs/PROTOCOL.md, "Calls on a lane"): the busy
// caller's path. The caller writes its request as a record flagged
// abi.LaneRecCall and spins on the lane's call line; the reader hands the
// record out as a call event, and the handler's Writeback, Reply or
// ReplyError answers it in the call line. No system call, cgo call or
// kernel-side step on either side, so a call costs what a ping-pong of
// two cache lines costs. Each side counts positions itself; the reader
// answers only after its compare-and-swap on the position it read the
// record at, so an answer never lands in a later call.

// laneIDs numbers lanes for the life of the process: a call event names
// its lane by table slot and id, so that a slot reused by another lane is
// never answered by mistake.
var laneIDs atomic.Uint64

const (
	// laneCallPolls is how many times a lane caller looks at the call line
	// between checks of its context and of the lane, and yields: a few
	// microseconds of polling. An answer that lands while the caller is
	// in the scheduler waits for it, so the check must be rare (at 64, a
	// busy call in a TCG guest took 7.8 µs at the median; at 1024, 2.4 µs).
	laneCallPolls = 1024
	// laneCallSpin is how long a caller spins (yielding now and then)
	// before it polls with sleeps: a reply within it costs no sleep.
	laneCallSpin = 50 * time.Millisecond
	// laneClaimWait bounds how long a caller that gives up waits for a
	// reader that has claimed the call (it is copying at most 32 bytes).
	laneClaimWait = time.Second
)

// Call posts req as a call to the lane's subscription and waits for the
// handler's answer: its reply is copied into resp, and Call returns its
// length. A reply longer than resp fills resp and returns an error
// matching io.ErrShortBuffer; an error reply (Event.ReplyError) returns an
// error matching its syscall.Errno; a call event released without a reply
// answers syscall.ECONNRESET. Requests and replies are at most the lane's
// record size (abi.LaneMaxRecord).
//
// Call is the busy caller's path: it spins while it waits (after
// laneCallSpin, polling with short sleeps), and it holds the lane, so
// nothing else is posted on it until the call ends. When ctx ends first,
// the call is abandoned: an answer that comes later is dropped (counted in
// the reader's Ring.AsyncErrors). A lane that is lossy still carries every
// call: Call waits for room.
func (l *Lane) Call(ctx context.Context, req, resp []byte) (int, error) {
	if err := l.check(req); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usable(); err != nil {
		return 0, err
	}
	if l.free() == 0 {
		if _, err := l.waitRoom(ctx); err != nil {
			return 0, err
		}
	}
	pos := l.position()
	// Before the record: the tail's store publishes both.
	atomic.StoreUint64(&l.ctl.Call, abi.LaneCall(abi.LaneCallWaiting, pos))
	l.putFlagged(req, abi.LaneRecCall)
	l.publish()
	if err := l.awaitAnswer(ctx, pos); err != nil {
		return 0, err
	}
	return l.takeAnswer(resp)
}

// position is the 64-bit position of the record at the local tail. Under mu.
func (l *Lane) position() uint64 { return uint64(l.tailLaps)<<32 | uint64(l.tail) }

// awaitAnswer spins until the call at pos is answered; when ctx ends or
// the lane or its ring goes first, it gives the call up. Under mu.
func (l *Lane) awaitAnswer(ctx context.Context, pos uint64) error {
	done := abi.LaneCall(abi.LaneCallDone, pos)
	var start time.Time
	for polls := 0; ; polls++ {
		if atomic.LoadUint64(&l.ctl.Call) == done { // pairs with the reader's store of DONE
			return nil
		}
		if polls%laneCallPolls != laneCallPolls-1 {
			continue
		}
		err := ctx.Err()
		if err == nil {
			err = l.usable()
		}
		if err != nil {
			if l.abandon(pos) {
				return err
			}
			return nil // answered while it gave up
		}
		if start.IsZero() {
			start = time.Now()
		}
		if time.Since(start) < laneCallSpin {
			runtime.Gosched()
		} else {
			time.Sleep(20 * time.Microsecond)
		}
	}
}

// abandon gives up the call at pos: WAITING becomes IDLE unless the reader
// claimed it first, and then the reader's DONE is waited for (bounded:
// a reader that never finishes leaves the call line to the next call's
// store). It reports false when the call was answered after all. Under mu.
func (l *Lane) abandon(pos uint64) bool {
	if atomic.CompareAndSwapUint64(&l.ctl.Call, abi.LaneCall(abi.LaneCallWaiting, pos), abi.LaneCall(abi.LaneCallIdle, pos)) {
		return true
	}
	claimed := abi.LaneCall(abi.LaneCallClaimed, pos)
	deadline := time.Now().Add(laneClaimWait)
	for atomic.LoadUint64(&l.ctl.Call) == claimed && time.Now().Before(deadline) {
		if atomic.LoadUint32(&l.ctl.ConsFlags)&abi.LaneCGone != 0 {
			break
		}
		runtime.Gosched()
	}
	return atomic.LoadUint64(&l.ctl.Call) != abi.LaneCall(abi.LaneCallDone, pos)
}

// takeAnswer reads an answered call line: a result out of range is the
// reader's garbage (EIO), never a read past the reply. Under mu.
func (l *Lane) takeAnswer(resp []byte) (int, error) {
	res := atomic.LoadInt32(&l.ctl.CallRes)
	switch {
	case res < -abi.CallErrnoMax || res > abi.LaneMaxRecord:
		return 0, fmt.Errorf("goaem: lane call: answer %d out of range: %w", res, syscall.EIO)
	case res < 0:
		return 0, fmt.Errorf("goaem: lane call: %w", syscall.Errno(-res))
	}
	n := copy(resp, l.ctl.Reply[:res])
	if n < int(res) {
		return n, fmt.Errorf("goaem: lane call: reply of %d bytes into %d: %w", res, len(resp), io.ErrShortBuffer)
	}
	return n, nil
}

// answer claims the call at pos and writes its answer: data, or -errno.
// False when the caller gave up (or never waited for pos): nothing is
// written.
func (l *Lane) answer(pos uint64, data []byte, errno uint32) bool {
	if !atomic.CompareAndSwapUint64(&l.ctl.Call, abi.LaneCall(abi.LaneCallWaiting, pos), abi.LaneCall(abi.LaneCallClaimed, pos)) {
		return false
	}
	res := int32(len(data))
	if errno != 0 {
		res = -int32(errno)
	} else {
		copy(l.ctl.Reply[:], data)
	}
	atomic.StoreInt32(&l.ctl.CallRes, res)
	atomic.StoreUint64(&l.ctl.Call, abi.LaneCall(abi.LaneCallDone, pos)) // after the reply: the caller's load pairs with it
	return true
}

// markCall makes e, filled from the record at pos of l, a call event: its
// token is the position, its slot the lane's table slot, and its sender
// copy (lane events have none) the lane's id.
func (e *Event) markCall(l *Lane, pos uint64) {
	e.cqe.Flags, e.cqe.ID, e.cqe.Slot = abi.CQEFCall, pos, uint32(l.slot)
	e.sender = abi.Sender{PID: int32(uint32(l.id)), UID: uint32(l.id >> 32)}
}

// laneReply answers a lane call event (Writeback, ReplyError, or with
// released a release without a reply) and finishes the event. A reply
// whose caller gave up, or whose lane is gone, is dropped and counted in
// AsyncErrors as a writeback the kernel side would refuse (ENOENT).
func (e *Event) laneReply(data []byte, errno uint32, released bool) error {
	if len(data) > abi.LaneMaxRecord {
		return fmt.Errorf("%w: writeback of %d bytes to a lane call (at most %d)", ErrTooLarge, len(data), abi.LaneMaxRecord)
	}
	r := e.r
	id := uint64(uint32(e.sender.PID)) | uint64(e.sender.UID)<<32
	answered := false
	t := &r.lanes
	if e.cqe.Slot < uint32(len(t.lanes)) {
		if l := t.lanes[e.cqe.Slot].Load(); l != nil && l.id == id {
			if l.remote == nil {
				// Go memory, kept alive by l: no lock, even after Close.
				answered = l.answer(e.cqe.ID, data, errno)
			} else {
				t.mu.Lock() // the module's mapping is unmapped under it, and the slot emptied
				if t.lanes[e.cqe.Slot].Load() == l {
					answered = l.answer(e.cqe.ID, data, errno)
				}
				t.mu.Unlock()
			}
		}
	}
	if !answered && !released {
		r.async.refused(uint64(abi.OpWriteback), -int32(syscall.ENOENT))
	}
	e.finish()
	return nil
}
