package goaem

import (
	"context"
	"fmt"
	"net"
	"syscall"
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
//
// The module takes plain TCP only: an MPTCP listener, which Go's
// net.Listen makes where the kernel has MPTCP, is refused with EOPNOTSUPP
// there. Listen makes listeners both backends take.
type Sock struct {
	FD int
}

// Listen is net.Listen for a Sock subscription: "tcp", "tcp4" and "tcp6"
// listeners without MPTCP (see Sock), and "unix" as net.Listen makes them.
// Subscribe the fd of the listener's File.
func Listen(network, address string) (net.Listener, error) {
	return ListenConfig(net.ListenConfig{}).Listen(context.Background(), network, address)
}

// ListenConfig returns lc set up for Sock subscriptions (MPTCP off), for
// listeners that need its other settings (a Control function, KeepAlive).
func ListenConfig(lc net.ListenConfig) *net.ListenConfig {
	lc.SetMultipathTCP(false)
	return &lc
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
// a refusal or failure is counted in AsyncErrors. With WithSockSent, the
// send's result (bytes sent or the error) is reported there as well.
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
	if opcode == abi.OpSend && r.cfg.sockSent != nil {
		sockSentLocked(sqe, conn)
	} else {
		silentLocked(sqe)
	}
	if err = r.submitUnlock(now); err != nil {
		return fmt.Errorf("goaem: %s: %w", opName(opcode), err)
	}
	return nil
}

// Results of sends for WithSockSent. A SEND or a connection's WRITEBACK
// is answered on the result ring once the socket has taken its last byte
// (res = bytes), or with -errno (docs/PROTOCOL.md section 10,
// "Completion"); goaem asks for that answer, SILENT off, under a user_data
// that names the connection: tagOp | tagSilent (no op waits for it) |
// tagSockSent | [tagSockWB] | the id's low 56 bits (its index and
// generation; the kind, the top byte, is always abi.IDKindSub).
const (
	tagSockSent     = uint64(1) << 60
	tagSockWB       = uint64(1) << 59 // a writeback, not a SEND: for AsyncErrors' opcode
	tagSockSentMask = tagOp | tagSilent | tagBatch | tagSockSent
	sockSentTag     = tagOp | tagSilent | tagSockSent // under tagSockSentMask
	sockIDBits      = uint64(1)<<56 - 1
)

// sockSent is one send's result on its way to the WithSockSent callback.
type sockSent struct {
	conn uint64
	res  int32
}

// sockSentLocked asks for the result of a send on conn (a SEND, or with
// the opcode OpWriteback, a writeback). Under sqMu.
func sockSentLocked(sqe *abi.SQE, conn uint64) {
	sqe.Flags &^= abi.SQEFSilent
	sqe.UserData = sockSentTag | conn&sockIDBits
	if sqe.Opcode == abi.OpWriteback {
		sqe.UserData |= tagSockWB
	}
}

// isSockData reports whether e carries bytes received on a connection, so
// that its writeback is a send.
func (e *Event) isSockData() bool {
	return e.cqe.Source == abi.SrcSock && e.cqe.Flags&(abi.CQEFSockCtl|abi.CQEFResult) == 0
}

// routeSentLocked queues a send's result for reportSent; a failure is
// counted in AsyncErrors too, as for every fire-and-forget SQE. Under res.mu.
func (r *Ring) routeSentLocked(cqe *abi.CQE) {
	ud := cqe.UserData
	if cqe.Res < 0 {
		opcode := uint64(abi.OpSend)
		if ud&tagSockWB != 0 {
			opcode = abi.OpWriteback
		}
		r.async.refused(tagOp|tagSilent|opcode, cqe.Res)
	}
	r.res.sent = append(r.res.sent, sockSent{conn: ud&sockIDBits | uint64(abi.IDKindSub)<<56, res: cqe.Res})
}

// reportSent hands the queued send results to the WithSockSent callback,
// in the order they were routed: one goroutine at a time holds sentMu and
// reports until none is left. A goroutine that finds sentMu held leaves
// its results to the holder, which looks again after letting go (the
// callback itself may send, and so route and come here).
func (r *Ring) reportSent() {
	q := &r.res
	for {
		q.mu.Lock()
		more := len(q.sent) != 0
		q.mu.Unlock()
		if !more || !q.sentMu.TryLock() {
			return
		}
		r.reportSentLocked()
	}
}

// reportSentLocked reports one batch of results. Under sentMu, which it
// releases even when the callback panics.
func (r *Ring) reportSentLocked() {
	q := &r.res
	defer q.sentMu.Unlock()
	q.mu.Lock()
	batch := q.sent
	q.sent = q.sentSpare[:0]
	q.mu.Unlock()
	q.sentSpare = nil // q.sent's now: a panic below must not leave them shared
	for i := range batch {
		s := &batch[i]
		if s.res >= 0 {
			r.cfg.sockSent(s.conn, int(s.res), nil)
		} else {
			r.cfg.sockSent(s.conn, 0, syscall.Errno(-s.res))
		}
	}
	q.sentSpare = batch[:0]
}
