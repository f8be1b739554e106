package goaem

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// fill puts data in sqe: inline up to 32 bytes, else in a send slot. The
// kernel side copies a send slot during the submission that follows, which
// the caller makes before releasing sqMu, so slots rotate freely. Under
// sqMu.
func (p *payloadArea) fill(sqe *abi.SQE, data []byte) error {
	n := len(data)
	sqe.Len = uint32(n)
	if n <= abi.SQEInline {
		copy(sqe.Data[:], data)
		return nil
	}
	if err := p.check(n); err != nil {
		return err
	}
	p.fillSlot(sqe, data)
	return nil
}

// check says whether a payload of n bytes can be sent: inline, or in a
// send slot.
func (p *payloadArea) check(n int) error {
	if n > abi.SQEInline && (p.sendSlots == 0 || n > int(p.slotSize)) {
		return fmt.Errorf("%w: %d bytes (inline %d, slot %d, %d send slots)", ErrTooLarge, n, abi.SQEInline, p.slotSize, p.sendSlots)
	}
	return nil
}

// fillSlot copies data (checked) into the next send slot and names it in
// sqe. Under sqMu.
func (p *payloadArea) fillSlot(sqe *abi.SQE, data []byte) {
	slot := p.nextSend % p.sendSlots
	p.nextSend++
	p.unsubmitted++
	copy(p.slot(slot, uint32(len(data))), data)
	sqe.Flags |= abi.SQEFSlot
	sqe.Slot = slot
}

// Call sends req to the Msg subscription at addr as a call event (class
// 0) and waits for its handler's writeback, which it returns in a new
// slice. The wait ends at ctx's deadline (passed to the kernel side as the
// call's timeout, at most 60s; without one the kernel side's default, 5s, applies), when
// ctx is cancelled or the ring closes. An expired or cancelled ctx gives an
// error matching context.DeadlineExceeded or context.Canceled, whichever
// side noticed first. Refusals come back as syscall.Errno: ENOENT (no such
// subscriber), ETIMEDOUT (the default timeout, or 60s for a later deadline),
// ENOSPC (this ring has its quota of calls pending, abi.DefaultCallQuota by
// default, or its user its share of the machine's), ECONNRESET (the target
// ring closed), EACCES (the target's owner did not grant this ring's user).
//
// The reply arrives on this ring's result ring, which Call reads itself:
// nobody needs to be reading the ring's events.
//
// Call allocates the reply; CallInto reuses the caller's buffer and
// allocates nothing.
func (r *Ring) Call(ctx context.Context, addr Addr, req []byte) ([]byte, error) {
	return r.CallClass(ctx, addr, req, 0)
}

// CallClass is Call with the call event delivered in class class.
func (r *Ring) CallClass(ctx context.Context, addr Addr, req []byte, class int) ([]byte, error) {
	var resp []byte
	_, err := r.call(ctx, addr, req, nil, &resp, CallOptions{Class: class})
	return resp, err
}

// CallOptions tune one call (CallWith).
type CallOptions struct {
	// Class is the class the call event is delivered in at the receiver.
	Class int
	// Spin is how long the caller busy-polls for the reply before it
	// parks: 0 takes the ring's WithCallSpin, a negative value parks at
	// once. Spinning answers in the time the handler takes, with no
	// wake-up, when the handler side polls too (Poll in a loop); it costs
	// a core while it lasts.
	Spin time.Duration
	// Block makes the call in one crossing into the kernel side, which
	// delivers the request and puts the calling thread to sleep until the
	// reply (libaem's aem_call: a futex on the embedded backend, the call
	// ioctl on the module): no netpoller wake-up, no routing through the
	// result ring, no lock or channel of goaem's. The reply is copied into
	// resp by the kernel side before the call returns, and a reply that
	// comes after its timeout finds nothing to write to. The price: the
	// goroutine holds its OS thread while it sleeps, and only ctx's
	// deadline (the call's timeout) ends the sleep early, not its
	// cancellation nor Close, which are seen once the call ends (a Close
	// waits for it). So it is an option, for callers that wait for their
	// replies one at a time with a deadline: there it answers in one
	// wake-up. Spin does not apply (the kernel side spins briefly itself
	// while the handler runs); backends without a blocking call make the
	// call as without Block.
	Block bool
}

// CallInto is Call with the reply copied into resp: it allocates nothing.
// It returns the reply's length; a reply longer than resp fills resp and
// returns an error matching io.ErrShortBuffer. A reply is at most SlotSize
// bytes (replies longer than 32 bytes arrive in one of this ring's slots).
func (r *Ring) CallInto(ctx context.Context, addr Addr, req, resp []byte) (int, error) {
	return r.call(ctx, addr, req, resp, nil, CallOptions{})
}

// CallWith is CallInto with options: the class, and busy-polling.
func (r *Ring) CallWith(ctx context.Context, addr Addr, req, resp []byte, opts CallOptions) (int, error) {
	return r.call(ctx, addr, req, resp, nil, opts)
}

// call makes one call; with alloc non-nil the reply goes to a new slice
// there instead of resp.
func (r *Ring) call(ctx context.Context, addr Addr, req, resp []byte, alloc *[]byte, opts CallOptions) (int, error) {
	class := opts.Class
	if class < 0 || class >= abi.MaxClasses {
		return 0, invalid("goaem: call: class %d outside 0..%d", class, abi.MaxClasses-1)
	}
	// The kernel side times the call out at ctx's deadline (rounded up to
	// a millisecond), so its ETIMEDOUT is that deadline passing; a deadline
	// beyond the kernel side's longest timeout (abi.MaxCallMS) gets that.
	timeoutMS, err := callTimeout(ctx)
	if err != nil {
		return 0, fmt.Errorf("goaem: call %v: %w", addr, err)
	}
	spin := opts.Spin
	if spin == 0 {
		spin = r.cfg.callSpin
	}
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	defer r.life.release()
	var res int32
	var n int
	if bc, ok := r.be.(blockingCaller); ok && opts.Block && alloc == nil {
		res, n, err = r.blockingCall(ctx, bc, addr, req, resp, uint8(class), timeoutMS)
	} else {
		res, n, err = r.asyncCall(ctx, addr, req, resp, alloc, uint8(class), timeoutMS, spin)
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("goaem: call %v: %w", addr, err)
	case res == -int32(syscall.ETIMEDOUT) && timeoutMS != 0 && timeoutMS != abi.MaxCallMS:
		return 0, fmt.Errorf("goaem: call %v: %w (%w)", addr, context.DeadlineExceeded, syscall.ETIMEDOUT)
	case res < 0:
		return 0, fmt.Errorf("goaem: call %v: %w", addr, errno(res))
	case alloc == nil && n > len(resp):
		return len(resp), fmt.Errorf("goaem: call %v: reply of %d bytes into %d: %w", addr, n, len(resp), io.ErrShortBuffer)
	}
	return n, nil
}

// asyncCall makes the call as a CALL SQE whose reply comes back on the
// result ring: the caller spins for up to spin, then sleeps in the
// netpoller, or the pump routes the reply to it. It returns the result
// and the reply's length.
func (r *Ring) asyncCall(ctx context.Context, addr Addr, req, resp []byte, alloc *[]byte, class uint8, timeoutMS uint32, spin time.Duration) (int32, int, error) {
	o := r.newOp(nil)
	o.resp, o.alloc = resp, alloc != nil
	ud, err := r.startOp(o, 0, func(sqe *abi.SQE) error {
		sqe.Opcode = abi.OpCall
		sqe.Target = uint64(addr)
		sqe.Prio = class
		sqe.Arg = timeoutMS
		return r.pay.fill(sqe, req)
	})
	if err == nil {
		err = r.awaitOp(ctx, o, ud, spin)
	}
	res, n := o.res, o.n
	if alloc != nil {
		*alloc = o.data
	}
	r.putOp(o)
	return res, n, err
}

// blockingCaller is a backend that makes a call in one crossing: it
// delivers req, sleeps until the reply (copied into resp) or timeoutMS,
// and returns the reply's length or the call's errno.
type blockingCaller interface {
	call(addr uint64, req, resp []byte, class uint8, timeoutMS uint32) (int, syscall.Errno)
}

// blockingCall makes the call through bc (CallOptions.Block). Its
// refusals read as the CALL SQE's: the kernel side refuses a blocking call
// at the quota (or its user's share) with EBUSY and when it lacks memory
// with ENOMEM, a CALL SQE with ENOSPC (so a handler's error reply of
// EBUSY or ENOMEM reads as ENOSPC here).
func (r *Ring) blockingCall(ctx context.Context, bc blockingCaller, addr Addr, req, resp []byte, class uint8, timeoutMS uint32) (int32, int, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if err := r.pay.check(len(req)); err != nil {
		return 0, 0, err
	}
	n, errno := bc.call(uint64(addr), req, resp, class, timeoutMS)
	switch errno {
	case 0:
		return 0, n, nil
	case syscall.EBUSY, syscall.ENOMEM:
		errno = syscall.ENOSPC
	case syscall.ESHUTDOWN:
		return 0, 0, ErrClosed
	}
	return -int32(errno), 0, nil
}
