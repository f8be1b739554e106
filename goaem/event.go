package goaem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/aem-dev/aem/goaem/abi"
)

// Addr is a message endpoint: a ring id and a channel (AEM_ADDR).
type Addr uint64

// MakeAddr builds the address of channel on ring.
func MakeAddr(ring, channel uint32) Addr { return Addr(abi.Addr(ring, channel)) }

// Ring is the ring part of the address.
func (a Addr) Ring() uint32 { return uint32(a >> 32) }

// Channel is the channel part of the address.
func (a Addr) Channel() uint32 { return uint32(a) }

func (a Addr) String() string { return fmt.Sprintf("%d:%d", a.Ring(), a.Channel()) }

// Event state bits.
const (
	stDone    uint32 = 1 << 0 // released or written back
	stDefer   uint32 = 1 << 1 // Run inline: submission waits for the batch's end
	stMoved   uint32 = 1 << 2 // handed to a spawned goroutine: this copy is inert
	stRelease uint32 = 1 << 3 // released while deferred: Run returns the slot with the batch
	stLane    uint32 = 1 << 4 // read from a producer lane: the kernel side never saw it
)

// Event is one completion: a copy of its CQE plus the ring it came from.
// Poll, Wait and Run fill caller-owned []Event batches, so reading events
// allocates nothing. A slot payload stays in the ring's shared memory until
// the event is released.
type Event struct {
	cqe    abi.CQE
	sender abi.Sender // ABI 4 msg events (abi.CQEFSender): copied beside the CQE
	state  uint32
	r      *Ring
}

// Tag is the tag of the event's subscription (SubOptions.Tag), 0 when the
// subscription has ended.
func (e *Event) Tag() uint64 {
	if s := e.Subscription(); s != nil {
		return s.tag
	}
	return 0
}

// Subscription is the subscription that produced the event, nil when it
// has ended.
func (e *Event) Subscription() *Subscription {
	if e.r == nil {
		return nil
	}
	s := e.r.subs.get(e.cqe.UserData)
	// The answer naming the subscription travels on the result ring and may
	// come after its first events; an event's token is its id, except a
	// call's.
	// A socket listener's events are mostly its connections' (their own ids).
	if s != nil && e.cqe.Flags&abi.CQEFCall == 0 && e.cqe.Source != abi.SrcSock && s.id.Load() == 0 {
		s.id.CompareAndSwap(0, e.cqe.ID)
	}
	return s
}

// Source is the event's source (abi.SrcTimer, ...).
func (e *Event) Source() uint8 { return e.cqe.Source }

// Class is the priority class the event was delivered in.
func (e *Event) Class() int { return int(e.cqe.Prio) }

// Token is the id a writeback names: the subscription id, or a pending
// call's token.
func (e *Event) Token() uint64 { return e.cqe.ID }

// IsCall reports whether a caller waits for this event's writeback.
func (e *Event) IsCall() bool { return e.cqe.Flags&abi.CQEFCall != 0 }

// Final reports whether this is its subscription's last event.
func (e *Event) Final() bool { return e.cqe.Flags&abi.CQEFFinal != 0 }

// Truncated reports whether the payload was cut to fit.
func (e *Event) Truncated() bool { return e.cqe.Flags&abi.CQEFTrunc != 0 }

// Sender is who posted or called (a message event, abi.SrcMsg): the
// process and effective uid as the ring's creator sees them (PID 0: not in
// its pid namespace) and the sending ring's id (0: a blocking call through
// an fd without a ring). ok is false for events of other sources. It reads
// the event's CQE copy: no allocation.
func (e *Event) Sender() (s abi.Sender, ok bool) {
	if e.cqe.Flags&abi.CQEFSender == 0 || e.cqe.Flags&abi.CQEFResult != 0 {
		return s, false
	}
	return e.sender, true
}

// CQE is a copy of the completion entry.
func (e *Event) CQE() abi.CQE { return e.cqe }

// Payload is the event's data, without a copy: the inline bytes of the CQE
// copy, or the event's slot in shared memory. A slot payload may be changed
// in place (its capacity is the slot size) and written back. It is valid
// until the event is released or written back, and never after Close.
func (e *Event) Payload() []byte {
	if e.r == nil {
		return payloadOf(&e.cqe, nil)
	}
	return payloadOf(&e.cqe, &e.r.pay)
}

// payloadOf is a CQE's data: its inline bytes, or its slot in pay.
func payloadOf(c *abi.CQE, pay *payloadArea) []byte {
	if c.Res <= 0 { // an error result carries no payload
		return nil
	}
	if c.Flags&abi.CQEFSlot == 0 {
		return c.Data[:min(uint32(c.Res), abi.CQEInline)]
	}
	if pay == nil {
		return nil
	}
	return pay.slot(c.Slot, uint32(c.Res))
}

// TimerExpirations decodes a timer event: the periods elapsed since the
// last delivery, and CLOCK_MONOTONIC at expiry in ns.
func (e *Event) TimerExpirations() (expirations, nowNS uint64) {
	p := e.Payload()
	if len(p) < 16 {
		return 0, 0
	}
	return binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[8:])
}

// GenSeq decodes a generator event: its sequence number and when it was
// produced (CLOCK_MONOTONIC ns).
func (e *Event) GenSeq() (seq, nowNS uint64) { return e.TimerExpirations() }

// Writeback hands data back to the event's source: for a call, the reply
// the caller receives; for a timer, a new interval; otherwise as the
// source defines. It releases the event. A slot event takes up to
// Ring.SlotSize bytes (data may be its own Payload, modified in place); an
// inline event takes up to 32 (calls always arrive in a slot). Refusals by
// the kernel side are counted in Ring.AsyncErrors. The writeback of a Sock
// data event sends on its connection; WithSockSent reports its result.
func (e *Event) Writeback(data []byte) error { return e.writeback(data, 0) }

// writeback hands data back, or for a call with errno != 0 the error reply.
func (e *Event) writeback(data []byte, errno uint32) error {
	r := e.r
	if r == nil {
		return invalid("goaem: writeback: zero Event")
	}
	if e.state&(stDone|stMoved) != 0 {
		return ErrReleased
	}
	if e.state&stLane != 0 {
		if e.cqe.Flags&abi.CQEFCall == 0 {
			return errLaneWriteback
		}
		return e.laneReply(data, errno, false)
	}
	if !r.life.acquire() {
		return ErrClosed
	}
	defer r.life.release()
	n := len(data)
	slot := e.cqe.Flags&abi.CQEFSlot != 0
	if slot {
		buf := r.pay.slot(e.cqe.Slot, 0)
		if buf == nil {
			return invalid("goaem: writeback: event names slot %d outside the ring", e.cqe.Slot)
		}
		if n > cap(buf) {
			return fmt.Errorf("%w: writeback of %d bytes, slot holds %d", ErrTooLarge, n, cap(buf))
		}
		if buf = buf[:n]; n > 0 && &buf[0] != &data[0] {
			copy(buf, data)
		}
	} else if n > abi.SQEInline {
		// The kernel side takes a writeback only from the event's own
		// slot, and an inline event has none.
		return fmt.Errorf("%w: writeback of %d bytes to an inline event (at most %d)", ErrTooLarge, n, abi.SQEInline)
	}
	r.sqMu.Lock()
	sqe, err := r.getSQE()
	if err == nil {
		sqe.Opcode = abi.OpWriteback
		sqe.Target = e.cqe.ID
		sqe.Len = uint32(n)
		sqe.Arg = errno
		if slot {
			sqe.Flags = abi.SQEFSlot
			sqe.Slot = e.cqe.Slot
		} else {
			copy(sqe.Data[:], data)
		}
		if r.cfg.sockSent != nil && e.isSockData() {
			sockSentLocked(sqe, e.cqe.ID)
		} else {
			silentLocked(sqe)
		}
		err = r.submitUnlock(e.state&stDefer == 0)
	} else {
		r.sqMu.Unlock()
	}
	if errors.Is(err, ErrBusy) {
		return errWritebackBusy
	}
	if err != nil {
		return fmt.Errorf("goaem: writeback: %w", err)
	}
	e.finish()
	return nil
}

// errWritebackBusy is Writeback's answer to a submission ring that stays
// full: a writer that waits and retries allocates nothing.
var errWritebackBusy = fmt.Errorf("goaem: writeback: %w", ErrBusy)

// ReplyError answers a call with an error instead of data: the caller's
// Call returns an error matching err's syscall.Errno (errors.As), or EIO
// when err carries none. It releases the event.
func (e *Event) ReplyError(err error) error {
	if !e.IsCall() {
		return invalid("goaem: error reply to an event that is not a call")
	}
	return e.writeback(nil, replyErrno(err))
}

// replyErrno is the errno an error reply carries for err.
func replyErrno(err error) uint32 {
	var errno syscall.Errno
	if errors.As(err, &errno) && errno > 0 && errno <= abi.CallErrnoMax {
		return uint32(errno)
	}
	return uint32(syscall.EIO)
}

// Reply is Writeback, named for calls.
func (e *Event) Reply(data []byte) error { return e.Writeback(data) }

// Release hands the event's slot back to the ring (no system call; slots
// return in batches) and ends its subscription's bookkeeping if it was the
// final event. Releasing twice, or after Writeback, does nothing.
func (e *Event) Release() {
	// Small enough to inline: an inline event that is not its
	// subscription's last, nor a lane's call, has nothing to give back.
	if e.cqe.Flags&(abi.CQEFSlot|abi.CQEFFinal|abi.CQEFCall) == 0 {
		e.state |= stDone
		return
	}
	e.release()
}

func (e *Event) release() {
	r := e.r
	if r == nil || e.state&(stDone|stMoved) != 0 {
		return
	}
	if e.state&stLane != 0 && e.cqe.Flags&abi.CQEFCall != 0 {
		_ = e.laneReply(nil, uint32(syscall.ECONNRESET), true) // no reply can follow
		return
	}
	if e.cqe.Flags&abi.CQEFSlot != 0 {
		if e.state&stDefer != 0 {
			e.state |= stRelease
		} else if r.life.acquire() {
			r.releaseSlots(e.cqe.Slot)
			r.life.release()
		}
	}
	e.finish()
}

func (e *Event) finish() {
	e.state |= stDone
	if e.cqe.Flags&abi.CQEFFinal != 0 {
		// A connection's last event ends the connection, not its listener's subscription.
		if s := e.r.subs.get(e.cqe.UserData); s != nil && (s.source != abi.SrcSock || e.cqe.ID == s.id.Load()) {
			s.setEnded()
			e.r.retire(s, overEvent)
		}
	}
}
