package goaem

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// Waiting in the kernel side (WithKernelWait): the reader's goroutine
// sleeps in a cgo call on its own OS thread, and whatever ends the wait
// early (ctx's cancellation, Close) wakes it through the ring itself: a
// NOP whose result lands on the result ring, which ends any wait there.
// Nobody waits for that result: it is routed and dropped like a
// fire-and-forget SQE's.

// kernelWaiter is a backend whose reader can sleep in the kernel side.
type kernelWaiter interface {
	// wait sleeps until an event or a result is ready or timeout passes
	// (negative: no bound). A signal or the timeout end it without error.
	wait(timeout time.Duration) error
}

// spinForEvents polls the rings for up to d and reports whether an event
// or a result came; it routes the results. Lane records are not looked
// for: the reader's last look before its sleep finds them.
func (r *Ring) spinForEvents(d time.Duration) bool {
	if d <= 0 {
		return false
	}
	start := time.Now()
	for i := 1; ; i++ {
		if r.resultsReady() {
			r.drainResults()
			return true
		}
		for c := 0; c < r.classes; c++ {
			cq := &r.cq[c]
			if atomic.LoadUint32(cq.ktail) != atomic.LoadUint32(cq.khead) ||
				atomic.LoadUint32(cq.kflags)&abi.CQFOverflow != 0 {
				return true
			}
		}
		if i%64 == 0 && time.Since(start) >= d {
			return false
		}
	}
}

// kernelWaitSlice bounds one sleep in the kernel side. Close, the end of
// the reader's context and a lane's kick wake the sleeper with a NOP's
// result; another goroutine routing results (a Call, a Post's flush) may
// take that result between the reader's last look and its sleep, and the
// kernel side then sees nothing to wake it for. The reader looks again
// after at most this long.
const kernelWaitSlice = 100 * time.Millisecond

// kernelWait sleeps in the kernel side until an event or a result is
// ready, ctx ends, the ring closes or kernelWaitSlice passes; it routes
// the results it finds.
func (r *Ring) kernelWait(ctx context.Context, kw kernelWaiter) error {
	w := &r.rd
	if done := ctx.Done(); done != nil && done != w.kwWatched {
		if w.kwStop != nil {
			w.kwStop()
		}
		w.kwWatched, w.kwStop = done, context.AfterFunc(ctx, w.wakeF)
	}
	timeout := kernelWaitSlice
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return context.DeadlineExceeded
		}
		timeout = min(timeout, left)
	}
	// After the watch: a cancellation from here on submits a NOP, whose
	// result ends the sleep at once.
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.isClosed() {
		return ErrClosed
	}
	if err := kw.wait(timeout); err != nil {
		return err
	}
	r.routeReady()
	if r.isClosed() {
		return ErrClosed
	}
	return ctx.Err()
}

// unwatchKernelWait drops the reader's context watch (Close, after the
// reader has left).
func (r *Ring) unwatchKernelWait() {
	w := &r.rd
	if w.kwStop != nil {
		w.kwStop()
		w.kwWatched, w.kwStop = nil, nil
	}
}

// wakeKernelWaiter ends the kernel-side sleep of the reader, if any: a NOP
// whose result it finds. Called by the watch of the reader's context
// (r.rd.wakeF) and by Close, while the ring is mapped.
func (r *Ring) wakeKernelWaiter() {
	r.sqMu.Lock()
	if sqe, err := r.getSQE(); err == nil {
		sqe.Opcode = abi.OpNop
		sqe.UserData = tagOp | tagSilent | uint64(abi.OpNop) // answered, routed to nobody
		if err := r.submitLocked(); err != nil {
			r.async.fail(err)
		}
	} else {
		r.async.fail(err)
	}
	r.sqMu.Unlock()
}
