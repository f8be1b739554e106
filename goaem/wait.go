package goaem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Waiting goes through Go's netpoller: each blocked goroutine parks on its
// own dup of the ring's pollable fd (the eventfd of the embedded backend,
// the device fd of the module), so it holds no OS thread while idle, and a
// deadline set on its file wakes it alone (context cancellation, a routed
// result, Close). Every dup of the fd gets every readiness edge.

// pastTime as a deadline wakes a parked waiter at once.
var pastTime = time.Unix(1, 0)

type waitMode uint8

const (
	waitEvents waitMode = iota // Wait: fill batch[n:] until n >= min
	waitOp                     // an op's result
)

type waiter struct {
	r      *Ring
	f      *os.File
	rc     syscall.RawConn
	ready  func(uintptr) bool // w.check, bound once
	expire func()             // w.nudge, bound once
	mode   waitMode
	batch  []Event
	n, min int
	op     *op
	err    error
}

func (r *Ring) getWaiter() (*waiter, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.wclosed {
		return nil, ErrClosed
	}
	if k := len(r.idleW); k != 0 {
		w := r.idleW[k-1]
		r.idleW = r.idleW[:k-1]
		return w, nil
	}
	fd, err := unix.FcntlInt(uintptr(r.be.pollFD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("goaem: dup ring fd: %w", err)
	}
	// The netpoller only takes non-blocking fds. The flag is shared with
	// libaem's own fd, which it only ever reads without blocking.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("goaem: ring fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "aem-ring")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("goaem: ring fd: %w", err)
	}
	w := &waiter{r: r, f: f, rc: rc}
	w.ready = w.check
	w.expire = w.nudge
	r.waiters[w] = struct{}{}
	return w, nil
}

func (r *Ring) putWaiter(w *waiter, reusable bool) {
	w.batch, w.op, w.err = nil, nil, nil
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.wclosed || !reusable {
		delete(r.waiters, w)
		w.f.Close()
		return
	}
	r.idleW = append(r.idleW, w)
}

// closeWaiters wakes every parked goroutine: closing a file makes its
// blocked RawConn.Read return.
func (r *Ring) closeWaiters() {
	r.wmu.Lock()
	r.wclosed = true
	for w := range r.waiters {
		w.f.Close()
	}
	r.waiters, r.idleW = nil, nil
	r.wmu.Unlock()
}

func (w *waiter) nudge() { _ = w.f.SetReadDeadline(pastTime) }

// check runs on every readiness of the waiter's fd, and once before it
// first sleeps: re-arm the fd, then look at the rings (Dekker: the arm's
// full barrier orders it before the re-check, so an event published
// after the re-check wakes us).
func (w *waiter) check(uintptr) bool {
	r := w.r
	if r.isClosed() {
		w.err = ErrClosed
		return true
	}
	if err := r.be.arm(); err != nil {
		w.err = fmt.Errorf("goaem: arm ring fd: %w", err)
		return true
	}
	switch w.mode {
	case waitEvents:
		w.n += r.poll(w.batch[w.n:])
		return w.n >= w.min
	default:
		return r.progressOp(w.op)
	}
}

// park blocks until w.check reports done, ctx ends or the ring closes.
func (r *Ring) park(ctx context.Context, w *waiter) (reusable bool, err error) {
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline {
		deadline = time.Time{}
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, w.expire)
	}
	reusable = true
	for {
		if err = w.f.SetReadDeadline(deadline); err != nil {
			break
		}
		w.err = nil
		err = w.rc.Read(w.ready)
		if err == nil {
			err = w.err
			break
		}
		if r.isClosed() {
			err = ErrClosed
			break
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("goaem: wait on ring fd: %w", err)
			break
		}
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
			break
		}
		if hasDeadline && !time.Now().Before(deadline) {
			err = context.DeadlineExceeded
			break
		}
		// A nudge: a result arrived, or a stale deadline. Look again.
	}
	if stop != nil && !stop() {
		// The cancellation callback has run or is running and may still
		// set a deadline on this file: do not hand it to another waiter.
		reusable = false
	}
	if r.isClosed() {
		err = ErrClosed
	}
	return reusable, err
}

// Wait fills batch with at least min ready events (min is clamped to
// 1..len(batch)), blocking until they arrive, ctx ends or the ring closes.
// While it blocks it holds no OS thread. As with io.Reader, it may return
// n > 0 together with an error: handle batch[:n] first. A ctx deadline
// returns context.DeadlineExceeded, a cancellation context.Canceled, Close
// ErrClosed.
func (r *Ring) Wait(ctx context.Context, batch []Event, min int) (int, error) {
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	defer r.life.release()
	return r.wait(ctx, batch, min)
}

func (r *Ring) wait(ctx context.Context, batch []Event, want int) (int, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	want = min(max(1, want), len(batch))
	n := r.poll(batch)
	if n >= want {
		return n, nil
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	w, err := r.getWaiter()
	if err != nil {
		return n, err
	}
	w.mode, w.batch, w.n, w.min = waitEvents, batch, n, want
	reusable, err := r.park(ctx, w)
	n = w.n
	r.putWaiter(w, reusable)
	return n, err
}

// await blocks until o completes. Results posted during submission (the
// embedded backend answers subscribe at once) need no sleep.
func (r *Ring) await(ctx context.Context, o *op) error {
	if r.progressOp(o) {
		return nil
	}
	w, err := r.getWaiter()
	if err != nil {
		return err
	}
	w.mode, w.op = waitOp, o
	o.w.Store(w)
	reusable, err := r.park(ctx, w)
	o.w.Store(nil)
	r.putWaiter(w, reusable)
	if err == nil && !o.done.Load() {
		err = ErrClosed
	}
	return err
}

// progressOp reaps what is ready into the stash (routing results) and
// reports whether o is done.
func (r *Ring) progressOp(o *op) bool {
	if o.done.Load() {
		return true
	}
	r.cmu.Lock()
	r.reapToStash()
	r.cmu.Unlock()
	return o.done.Load()
}
