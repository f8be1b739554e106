package goaem

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// HandlerError is an error a handler returned, with the event's
// subscription tag and mode.
type HandlerError struct {
	Tag  uint64
	Mode HandlerMode
	Err  error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("goaem: %s handler (tag %d): %v", e.Mode, e.Tag, e.Err)
}

func (e *HandlerError) Unwrap() error { return e.Err }

// errHandlerPanicked is the error reply to a call whose inline handler
// panicked: its caller gets EIO at once instead of waiting for its deadline.
var errHandlerPanicked = errors.New("goaem: handler panicked")

type runState struct {
	wg         sync.WaitGroup
	mu         sync.Mutex
	err        error
	cancel     context.CancelCauseFunc // stops Run at the first error when there is no error handler
	errHandler func(ev *Event, err error)
}

func (rs *runState) fail(err error) {
	rs.mu.Lock()
	if rs.err == nil {
		rs.err = err
		rs.cancel(err)
	}
	rs.mu.Unlock()
}

func (rs *runState) failed() error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.err
}

// Run reads events, most urgent class first, and runs each one's handler
// in its subscription's mode (the subscription's Handler, else h) until ctx
// ends, the ring closes or, without WithErrorHandler, a handler fails.
// Writebacks and releases of inline handlers go to the kernel side once per
// batch. Before returning, Run waits for the spawned handlers it started;
// events it read but had not dispatched stay in the rings for the next
// reader. Run holds the ring's reader role (see Wait) while it runs. It
// returns ctx.Err(), ErrClosed or the handler's *HandlerError.
//
// A panic in an inline handler is not recovered: it goes on to Run's
// caller, as any panic in the caller's goroutine would. The event that
// panicked counts as handled (released; a call is answered with an error
// reply), and the events of its batch not yet dispatched stay in the rings,
// so a caller that recovers and runs Run again handles each of them once.
// A panic in a spawned handler ends the program, as in any goroutine.
func (r *Ring) Run(ctx context.Context, h Handler) error {
	if !r.life.acquire() {
		return ErrClosed
	}
	defer r.life.release()
	if err := r.takeReader(ctx); err != nil {
		return err
	}
	defer r.giveReader()
	if r.cfg.boost {
		defer r.rd.boost.set(r, false)
	}
	rs := &runState{errHandler: r.cfg.errHandler}
	defer rs.wg.Wait()
	// Cancelled first on the way out, so clones still running are stopped
	// before Run waits for them.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rs.cancel = cancel
	batch := make([]Event, r.cfg.runBatch)
	// A panic in an inline handler goes on to Run's caller unchanged; on
	// its way the events dispatched so far and the one that panicked are
	// handed back, so none is delivered twice, and the rest of the batch
	// stays in the rings for the next reader.
	cur := -1 // the event being dispatched
	defer func() {
		if cur < 0 {
			return
		}
		replyOnFailure(&batch[cur], errHandlerPanicked)
		batch[cur].Release()
		r.commit(cur + 1)
		r.finishBatch(batch[:cur+1])
	}()
	for {
		if err := rs.failed(); err != nil {
			return err
		}
		n, err := r.wait(ctx, batch, 1, true)
		if r.cfg.boost && hasUrgent(batch[:n]) {
			r.rd.boost.set(r, true)
		}
		for i := 0; i < n; i++ {
			cur = i
			handled, derr := r.dispatch(ctx, rs, &batch[i], h)
			cur = -1
			if derr != nil {
				if handled {
					i++
				}
				r.commit(i) // the rest stay in the rings
				r.finishBatch(batch[:i])
				if ferr := rs.failed(); ferr != nil {
					return ferr
				}
				return derr
			}
		}
		r.commit(n)
		r.finishBatch(batch[:n])
		if r.rd.boost.on && !r.urgentReady() {
			r.rd.boost.set(r, false) // class 0 drained: the thread's own nice again
		}
		if err != nil {
			if ferr := rs.failed(); ferr != nil {
				return ferr
			}
			if errors.Is(err, ErrClosed) || r.isClosed() {
				return ErrClosed
			}
			return err
		}
	}
}

// dispatch runs one event's handler; handled says the event was taken. It
// returns an error only when Run must stop: ctx ended or the ring closed
// while waiting for room under a spawn bound (the event is not taken), or
// an inline handler failed without an error handler.
func (r *Ring) dispatch(ctx context.Context, rs *runState, ev *Event, h Handler) (handled bool, err error) {
	s := r.subs.get(ev.cqe.UserData)
	mode, handler := ModeInline, h
	var sem chan struct{}
	var clone *Cloner
	var tag uint64
	if s != nil {
		mode, tag = s.mode, s.tag
		if x := s.loadExt(); x != nil {
			clone, sem = x.clone, x.sem
			if x.handler != nil {
				handler = x.handler
			}
		}
	}
	if sem == nil {
		sem = r.spawnSem
	}
	if handler == nil && mode != ModeClone {
		ev.Release()
		return true, rs.report(ev, &HandlerError{Tag: tag, Mode: mode, Err: ErrNoHandler})
	}
	if mode == ModeInline {
		ev.state |= stDefer
		err := handler(ev)
		replyOnFailure(ev, err)
		ev.Release()
		if err != nil {
			return true, rs.report(ev, &HandlerError{Tag: tag, Mode: mode, Err: err})
		}
		return true, nil
	}

	// Back-pressure: with the bound reached, Run reads no further until a
	// handler finishes; the kernel side backlogs (and counts) meanwhile.
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-r.closedCh:
		return false, ErrClosed
	}
	own := new(Event)
	*own = *ev
	own.state &^= stDefer
	ev.state |= stMoved
	rs.wg.Add(1)
	urgent := r.cfg.boost && own.cqe.Prio == 0
	go func() {
		defer rs.wg.Done()
		defer func() { <-sem }()
		if urgent {
			var tb threadBoost
			tb.set(r, true)
			defer tb.set(r, false)
		}
		var err error
		if mode == ModeClone {
			err = clone.handle(ctx, own)
		} else {
			err = handler(own)
		}
		replyOnFailure(own, err)
		own.Release()
		if err != nil {
			if rerr := rs.report(own, &HandlerError{Tag: tag, Mode: mode, Err: err}); rerr != nil {
				rs.fail(rerr)
			}
		}
	}()
	return true, nil
}

// replyOnFailure answers a call whose handler failed without answering
// with an error reply, so its caller learns at once instead of at its
// deadline. A reply that cannot be queued leaves the caller to its
// deadline; the event is released either way.
func replyOnFailure(ev *Event, err error) {
	if err != nil && ev.IsCall() && ev.state&(stDone|stMoved) == 0 {
		_ = ev.ReplyError(err)
	}
}

// report hands a handler error to the error handler, or returns it to stop Run.
func (rs *runState) report(ev *Event, err error) error {
	if rs.errHandler != nil {
		rs.errHandler(ev, err)
		return nil
	}
	rs.fail(err)
	return err
}

// finishBatch returns the batch's slots with one store and submits its
// writebacks with one crossing.
func (r *Ring) finishBatch(evs []Event) {
	var slots [64]uint32
	k := 0
	for i := range evs {
		e := &evs[i]
		if e.state&stRelease != 0 {
			if k == len(slots) {
				r.releaseSlots(slots[:k]...)
				k = 0
			}
			slots[k] = e.cqe.Slot
			k++
		}
		e.state = stDone
	}
	if k != 0 {
		r.releaseSlots(slots[:k]...)
	}
	if r.sqDirty.Load() {
		if err := r.flush(); err != nil {
			r.async.fail(err)
		}
	}
}
