package goaem

import (
	"context"
	"sync/atomic"

	"github.com/aem-dev/aem/goaem/abi"
)

// reader is the event side of a Ring. One goroutine at a time holds the
// role (Poll, Wait, Run): it reads the class rings, and in Wait sleeps on
// its own dup of the ring fd.
type reader struct {
	role    atomic.Bool   // held by the goroutine that reads
	waiters atomic.Int32  // goroutines waiting for the role
	freed   chan struct{} // a token when the role is given back to waiters
	pf      *pollFile
	// taken counts, per class, the entries the last reap read and has not
	// handed back yet (commit): Run hands back only what it dispatched, so
	// the rest stay in the rings for the next reader.
	taken [abi.MaxClasses]uint32

	// boost: the reader's thread while it runs urgent handlers (Run, WithBoost).
	boost threadBoost

	// WithKernelWait: the Done channel of the context whose end wakes the
	// reader's sleep in the kernel side, and the stop of that watch.
	kwWatched <-chan struct{}
	kwStop    func() bool
	wakeF     func() // wakes the reader unless the ring closes; bound once

	// A Wait that sleeps: pf's look fills batch[n:] until n >= want.
	batch   []Event
	n, want int
	keep    bool
}

// takeReader waits for the reader role until ctx ends or the ring closes.
func (r *Ring) takeReader(ctx context.Context) error {
	rd := &r.rd
	if rd.role.CompareAndSwap(false, true) {
		return nil
	}
	rd.waiters.Add(1)
	defer rd.waiters.Add(-1)
	// Announced, then tried again: a giver that did not see us has given
	// the role back before this try (Dekker, as with the rings).
	for !rd.role.CompareAndSwap(false, true) {
		select {
		case <-rd.freed:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.closedCh:
			return ErrClosed
		}
	}
	return nil
}

func (r *Ring) giveReader() {
	r.rd.role.Store(false)
	if r.rd.waiters.Load() != 0 {
		select {
		case r.rd.freed <- struct{}{}:
		default: // a token is there already
		}
	}
}

// Poll fills batch with ready events, most urgent class first, and returns
// how many; it never blocks. Submissions queued since the last call
// (writebacks, releases of deferred events) are handed to the kernel side in
// the same batch: no cgo call when nothing is queued, one otherwise. While
// another goroutine reads this ring's events (Wait, Run) Poll returns
// ErrConcurrentRead.
//
// Every event must be released (Release, or Writeback, which hands its slot
// back): a slot event holds one of the ring's delivery slots until then.
func (r *Ring) Poll(batch []Event) (int, error) {
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	if !r.rd.role.CompareAndSwap(false, true) {
		r.life.release()
		return 0, ErrConcurrentRead
	}
	n := r.read(batch, false)
	r.giveReader()
	r.life.release()
	return n, nil
}

// Wait fills batch with at least min ready events (min is clamped to
// 1..len(batch)), blocking until they arrive, ctx ends or the ring closes.
// While it blocks it holds no OS thread (with WithKernelWait it sleeps
// in the kernel side on its thread instead). As with io.Reader, it may return
// n > 0 together with an error: handle batch[:n] first. A ctx deadline
// returns context.DeadlineExceeded, a cancellation context.Canceled, Close
// ErrClosed. While another goroutine reads this ring's events, Wait waits
// for it to finish.
func (r *Ring) Wait(ctx context.Context, batch []Event, min int) (int, error) {
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	defer r.life.release()
	if err := r.takeReader(ctx); err != nil {
		return 0, err
	}
	defer r.giveReader()
	return r.wait(ctx, batch, min, false)
}

// wait is Wait for the holder of the reader role. With keep (Run), the
// entries of the batch are not handed back: it returns after the first
// read that finds events, and the caller commits what it dispatched.
func (r *Ring) wait(ctx context.Context, batch []Event, want int, keep bool) (int, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	w := &r.rd
	w.batch, w.n, w.want, w.keep = batch, 0, min(max(1, want), len(batch)), keep
	if keep {
		w.want = 1
	}
	var err error
	for !r.lookEvents() {
		if err = ctx.Err(); err != nil {
			break
		}
		var done bool
		if kw, ok := r.be.(kernelWaiter); ok && r.cfg.kernelWait {
			if r.spinForEvents(r.cfg.kernelSpin) {
				continue
			}
			// The kernel side does not see the lanes: flag them
			// before the last look, so that a record after it kicks
			// (kickLaneReader, a NOP that ends this sleep).
			r.armLanes(true)
			if r.lookEvents() {
				r.armLanes(false)
				break
			}
			r.enters.Add(1)
			err = r.kernelWait(ctx, kw)
		} else {
			r.enters.Add(1)
			done, err = w.pf.wait(ctx)
		}
		r.armLanes(false) // awake: producers stop kicking
		if done || err != nil {
			break
		}
	}
	n := w.n
	w.batch = nil
	return n, err
}

// lookEvents is the reader's look: it reads what is ready into the waiting
// batch and reports whether the wait is over.
func (r *Ring) lookEvents() bool {
	w := &r.rd
	w.n += r.read(w.batch[w.n:], w.keep)
	return w.n >= w.want
}

// read takes one batch of ready events and, unless keep, hands their
// entries back at once. Queued submissions go to the kernel side, which
// also flushes its backlog into the rings: one crossing, only when needed.
func (r *Ring) read(batch []Event, keep bool) int {
	n, overflow := r.reap(batch, keep)
	if overflow&abi.CQFOverflow != 0 || r.sqDirty.Load() {
		if err := r.flush(); err != nil {
			r.async.fail(err)
		}
	} else if r.cfg.sockSent != nil || r.cfg.remoteLanes != 0 {
		// A send continued by the kernel side is answered later, with
		// nobody submitting, and a remote lane's attach comes unasked:
		// the reader routes them (results wake it too).
		r.routeReady()
	}
	return n
}

// reap copies ready events into dst, class 0 first: per class one acquire
// load of the producer index for the whole batch and, unless keep, one
// release store of the consumer index; then the class's producer lanes
// (lane.go).
func (r *Ring) reap(dst []Event, keep bool) (n int, overflow uint32) {
	for c := 0; c < r.classes && n < len(dst); c++ {
		cq := &r.cq[c]
		head := atomic.LoadUint32(cq.khead)
		avail := atomic.LoadUint32(cq.ktail) - head // pairs with the producer's store-release
		overflow |= atomic.LoadUint32(cq.kflags)
		if avail == 0 {
			if r.lanes.max != 0 {
				n += r.reapLanes(uint8(c), dst[n:], keep)
			}
			continue
		}
		// Never more than one ring's worth, whatever the tail says.
		avail = min(avail, cq.entries, uint32(len(dst)-n))
		out := dst[n : n+int(avail)]
		for i := range out {
			e := &out[i]
			e.cqe = cq.cqes[(head+uint32(i))&cq.mask]
			if e.cqe.Flags&abi.CQEFSender != 0 && cq.senders != nil {
				e.sender = cq.senders[(head+uint32(i))&cq.mask] // before the head frees it
			}
			e.state = 0
			if e.r != r {
				e.r = r // a store only when the batch slice is new
			}
		}
		if keep {
			r.rd.taken[c] = avail
		} else {
			atomic.StoreUint32(cq.khead, head+avail) // frees the entries: pairs with the producer's head acquire
		}
		n += int(avail)
		if r.lanes.max != 0 && n < len(dst) {
			n += r.reapLanes(uint8(c), dst[n:], keep)
		}
	}
	return n, overflow
}

// commit hands the first k events of the last reap with keep back to the
// kernel side, one release store per class; the rest stay for the next
// read.
func (r *Ring) commit(k int) {
	for c := 0; c < r.classes; c++ {
		if t := r.rd.taken[c]; t != 0 {
			if m := min(uint32(k), t); m != 0 {
				cq := &r.cq[c]
				atomic.StoreUint32(cq.khead, atomic.LoadUint32(cq.khead)+m) // frees the entries: pairs with the producer's head acquire
				k -= int(m)
			}
			r.rd.taken[c] = 0
		}
		if r.lanes.max != 0 {
			k = r.commitLanes(uint8(c), k) // read after the class's ring, handed back in that order
		}
	}
}
