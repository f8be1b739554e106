package goaem

import (
	"fmt"
	"unsafe"

	"github.com/aem-dev/aem/goaem/abi"
)

// Sock carries a listening stream socket's connections through the ring
// (docs/PROTOCOL.md section 10): the kernel side accepts, receives and
// sends; the application reads events and answers with writebacks. FD is a
// listening TCP (IPv4/IPv6) or Unix stream socket. Every connection's
// events come to this subscription: Event.Conn names the connection,
// Event.SockEvent tells a control event (connect, end-of-stream, closed,
// limit) from received bytes (Payload). Writeback of a data event sends
// the bytes on its connection; Ring.SockSend sends others; Ring.SockShutdown
// half-closes or closes. A connection's CLOSED event ends the connection,
// not the subscription.
type Sock struct {
	FD int
}

func (s Sock) prep(sqe *abi.SQE) error {
	if s.FD < 0 {
		return invalid("goaem: sock: fd %d", s.FD)
	}
	sqe.Source = abi.SrcSock
	sqe.Sock().FD = int32(s.FD)
	return nil
}

// Conn is the connection an event of a Sock subscription belongs to (its
// id, the target of SockSend and SockShutdown).
func (e *Event) Conn() uint64 { return e.cqe.ID }

// SockEvent is the control event a Sock subscription's event carries; ok
// is false for an event of received bytes (see Payload).
func (e *Event) SockEvent() (ev abi.SockEvent, ok bool) {
	if e.cqe.Source != abi.SrcSock || e.cqe.Flags&abi.CQEFSockCtl == 0 ||
		e.cqe.Res < int32(unsafe.Sizeof(ev)) {
		return ev, false
	}
	return *(*abi.SockEvent)(unsafe.Pointer(&e.cqe.Data[0])), true
}

// SockSend sends data on connection conn: up to 32 bytes in the entry,
// more through a send slot (WithSendSlots), at most SlotSize. It does not
// wait: the kernel side sends it after what the connection has queued, and
// a refusal or failure is counted in AsyncErrors.
func (r *Ring) SockSend(conn uint64, data []byte) error {
	return r.sockOp(conn, abi.OpSend, 0, data, true)
}

// SockSendLater is SockSend without the crossing: the send is queued in
// the submission ring and goes to the kernel side with the next
// submission (the end of Run's batch, the next Poll or Wait, Flush, or any
// submitting call), so that a handler's replies to a batch of requests
// cost one crossing. Its bytes are in a send slot until then: once as
// many sends as there are send slots wait, the next one submits them
// first. Sends on one connection still go out in the order they were
// queued, after its writebacks queued before them.
func (r *Ring) SockSendLater(conn uint64, data []byte) error {
	return r.sockOp(conn, abi.OpSend, 0, data, false)
}

// SockShutdown ends a side of connection conn once the sends queued before
// it went out: how is abi.SockShutRD, SockShutWR, SockShutRDWR, or
// abi.SockClose (the connection then ends with a CLOSED event).
func (r *Ring) SockShutdown(conn uint64, how uint32) error {
	return r.sockOp(conn, abi.OpShutdown, how, nil, true)
}

// SockShutdownLater is SockShutdown queued like SockSendLater: it goes to
// the kernel side with the next submission, after the sends queued before
// it.
func (r *Ring) SockShutdownLater(conn uint64, how uint32) error {
	return r.sockOp(conn, abi.OpShutdown, how, nil, false)
}

func (r *Ring) sockOp(conn uint64, opcode uint8, arg uint32, data []byte, now bool) error {
	if !r.life.acquire() {
		return ErrClosed
	}
	defer r.life.release()
	r.sqMu.Lock()
	if !now && len(data) > abi.SQEInline && r.pay.sendSlots != 0 && r.pay.unsubmitted >= r.pay.sendSlots {
		// Every send slot holds a queued send: the next would overwrite one.
		if err := r.submitLocked(); err != nil {
			r.sqMu.Unlock()
			return fmt.Errorf("goaem: %s: %w", opName(opcode), err)
		}
	}
	sqe, err := r.getSQE()
	if err != nil {
		r.sqMu.Unlock()
		return fmt.Errorf("goaem: %s: %w", opName(opcode), err)
	}
	*sqe = abi.SQE{Opcode: opcode, Target: conn, Arg: arg}
	if err = r.pay.fill(sqe, data); err != nil {
		*sqe = abi.SQE{Opcode: abi.OpNop} // the entry is taken: make it harmless
		silentLocked(sqe)
		_ = r.submitUnlock(true)
		return fmt.Errorf("goaem: %s: %w", opName(opcode), err)
	}
	silentLocked(sqe)
	if err = r.submitUnlock(now); err != nil {
		return fmt.Errorf("goaem: %s: %w", opName(opcode), err)
	}
	return nil
}
