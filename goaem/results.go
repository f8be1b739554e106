package goaem

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// results is the answer side of a Ring. The kernel side answers this
// ring's SQEs (subscribe, unsubscribe, set, call replies, refusals of
// fire-and-forget ones) on the result ring, apart from the events, so
// whoever waits for an answer reads that ring alone and never the events:
// the submitter right after its submit (a control op's answer is there by
// then), a busy-polling caller while it spins, and, while a call waits for
// a reply that comes later, the one goroutine that holds the pump role and
// sleeps on pf, a dup of the ring fd of its own: the first caller to wait,
// for as long as its own reply takes (no hand-off on the way), then the
// pump goroutine while other ops wait. Each routes what it reads to the
// ops waiting for it.
type results struct {
	mu   sync.Mutex // the result ring's consumer side, ops and free
	ring cqView
	ops  map[uint64]*op // by the user_data of their SQE
	free []*op          // recycled: a call allocates nothing
	seq  atomic.Uint64

	pf      *pollFile
	pumping atomic.Bool // the pump role: one goroutine sleeps on pf
	sleeper *op         // with the role, a caller waiting for its own answer
	pumpF   func()      // r.pump, bound once: starting it allocates nothing

	// Batches being submitted (batch.go): by id, and those with
	// subscribes, whose answers carry the subscription's handle.
	batches    map[uint32]*Batch
	subBatches []*Batch
	batchSeq   uint32

	// Results of sends for WithSockSent (sock.go): routed into sent under
	// mu, reported after mu is released by whoever holds sentMu.
	sent      []sockSent
	sentMu    sync.Mutex
	sentSpare []sockSent // sentMu's: the reported batch, recycled
}

// user_data of goaem's own SQEs. Subscription tags (the user_data of
// events) are table handles with bit 63 clear.
const (
	tagOp     = uint64(1) << 63 // a result some goroutine may wait for
	tagSilent = uint64(1) << 62 // with tagOp: fire and forget; low byte is the opcode
)

// op is one SQE whose result a goroutine waits for. Ops are recycled
// through the ring's free list, so a call allocates nothing.
type op struct {
	done  atomic.Bool
	res   int32
	id    uint64
	resp  []byte // a call's buffer: the reply is copied into it
	n     int    // a call's reply bytes (may exceed len(resp))
	alloc bool   // Call: the reply goes to a new slice, data, instead
	data  []byte
	// ch gets one token per completion: the waiter selects on it.
	ch chan struct{}
	// sleeping: the waiter sleeps on the result fd itself. Whoever routes
	// its answer nudges it: the module's fd reports readiness only while
	// an entry waits, and the answer may have been read by then.
	sleeping atomic.Bool
	sub      *Subscription // SUBSCRIBE: gets its id as the answer is routed
}

// maxFreeOps bounds the recycled ops a ring keeps.
const maxFreeOps = 64

// newOp takes a recycled op or makes one.
func (r *Ring) newOp(sub *Subscription) *op {
	q := &r.res
	q.mu.Lock()
	var o *op
	if k := len(q.free); k != 0 {
		o = q.free[k-1]
		q.free = q.free[:k-1]
	}
	q.mu.Unlock()
	if o == nil {
		o = &op{ch: make(chan struct{}, 1)}
	}
	o.sub = sub
	return o
}

// putOp recycles an op that is complete with its token taken, or was
// abandoned unanswered.
func (r *Ring) putOp(o *op) {
	o.done.Store(false)
	o.res, o.id, o.resp, o.n, o.alloc, o.data, o.sub = 0, 0, nil, 0, false, nil, nil
	q := &r.res
	q.mu.Lock()
	if len(q.free) < maxFreeOps {
		q.free = append(q.free, o)
	}
	q.mu.Unlock()
}

// abandonOp unregisters o after its waiter gave up; false when o was
// answered first (its token is then on its way, or there).
func (r *Ring) abandonOp(o *op, ud uint64) bool {
	q := &r.res
	q.mu.Lock()
	pending := q.ops[ud] == o
	if pending {
		delete(q.ops, ud)
		if len(q.ops) == 0 {
			q.pf.nudge() // the pump may sleep for nobody now: let it end
		}
	}
	q.mu.Unlock()
	return pending
}

// awaitOp waits for o's answer: it reads the result ring itself first,
// busy-polls it for up to spin, then sleeps on the ring fd when nobody
// does, else until the pump routes the answer, ctx ends or the ring closes.
// When it returns nil, o is complete and its token taken; otherwise o was
// unregistered unanswered.
func (r *Ring) awaitOp(ctx context.Context, o *op, ud uint64, spin time.Duration) error {
	r.drainResults()
	if spin > 0 && !o.done.Load() {
		r.spinOp(o, spin)
	}
	var err error
	if !o.done.Load() && r.res.pumping.CompareAndSwap(false, true) {
		r.res.sleeper = o
		o.sleeping.Store(true) // then the look: Dekker with complete
		for err == nil && !o.done.Load() {
			_, err = r.res.pf.wait(ctx)
		}
		o.sleeping.Store(false)
		r.res.sleeper = nil
		abandoned := err != nil && r.abandonOp(o, ud)
		if r.releasePump() {
			go r.res.pumpF() // others still wait
		}
		if abandoned {
			return err
		}
		<-o.ch
		return nil
	}
	select {
	case <-o.ch:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-r.closedCh:
		err = ErrClosed
	}
	if r.abandonOp(o, ud) {
		return err
	}
	<-o.ch // answered just before we gave up
	return nil
}

// spinOp busy-polls the result ring for o's answer for up to d.
func (r *Ring) spinOp(o *op, d time.Duration) {
	start := time.Now()
	for i := 1; !o.done.Load(); i++ {
		if r.resultsReady() {
			r.drainResults()
			continue
		}
		if i%64 == 0 {
			if time.Since(start) >= d {
				return
			}
			if i%256 == 0 {
				runtime.Gosched() // let the goroutines of this P run, as the C peers yield
			}
		}
	}
}

// resultsReady reports whether the result ring has entries or a backlog
// to flush: cheap enough for a spin loop and for every submit.
func (r *Ring) resultsReady() bool {
	q := &r.res.ring
	return atomic.LoadUint32(q.ktail) != atomic.LoadUint32(q.khead) ||
		atomic.LoadUint32(q.kflags)&abi.CQFOverflow != 0
}

// routeReady routes the results a submission produced, if any.
func (r *Ring) routeReady() {
	if r.resultsReady() {
		r.drainResults()
	}
}

// drainResults routes every ready result and reports how many ops still
// wait for theirs. Results that found the ring full wait in the kernel
// side's backlog, which a submit flushes into the ring.
func (r *Ring) drainResults() int {
	pending := r.routeResults()
	if r.cfg.sockSent != nil {
		r.reportSent() // after res.mu: the callback may submit
	}
	return pending
}

// routeResults is drainResults but for the report of send results.
func (r *Ring) routeResults() int {
	q := &r.res
	pending := 0
	for try := 0; ; try++ {
		q.mu.Lock()
		head := atomic.LoadUint32(q.ring.khead)
		avail := min(atomic.LoadUint32(q.ring.ktail)-head, q.ring.entries) // pairs with the producer's store-release
		for i := uint32(0); i < avail; i++ {
			cqe := q.ring.cqes[(head+i)&q.ring.mask]
			r.routeLocked(&cqe)
		}
		if avail != 0 {
			atomic.StoreUint32(q.ring.khead, head+avail) // frees the entries: pairs with the producer's head acquire
		}
		pending = len(q.ops)
		q.mu.Unlock()
		if try == 3 || atomic.LoadUint32(q.ring.kflags)&abi.CQFOverflow == 0 {
			return pending
		}
		if err := r.enter(); err != nil {
			r.async.fail(err)
			return pending
		}
	}
}

// routeLocked completes the op a result answers; a refusal of a
// fire-and-forget SQE is counted. Under res.mu.
func (r *Ring) routeLocked(cqe *abi.CQE) {
	ud := cqe.UserData
	if cqe.Flags&abi.CQEFLane != 0 {
		r.laneNoteLocked(cqe) // the module's, about a remote lane
		return
	}
	if cqe.Flags&abi.CQEFStats != 0 && ud&tagOp == 0 {
		// A subscription's end result: its SUBSCRIBE asked for its final counts.
		if s := r.subs.get(ud); s != nil {
			s.setFinal(cqe)
			s.setEnded()
			r.retire(s, overCounts)
		}
		return
	}
	if (ud&tagOp == 0 || ud&tagBatch != 0) && r.routeBatchLocked(cqe) {
		return
	}
	if ud&tagSockSentMask == sockSentTag {
		r.routeSentLocked(cqe)
		return
	}
	if ud&(tagOp|tagSilent) != tagOp|tagSilent {
		if o := r.res.ops[ud]; o != nil {
			delete(r.res.ops, ud)
			r.complete(o, cqe)
			return
		}
	}
	if cqe.Res < 0 {
		r.async.refused(ud, cqe.Res)
	}
	// Nobody waits (a call whose caller gave up): hand a reply slot back.
	if cqe.Flags&abi.CQEFSlot != 0 {
		r.releaseSlots(cqe.Slot)
	}
}

// complete hands o its answer and its waiter the token. Under res.mu.
func (r *Ring) complete(o *op, cqe *abi.CQE) {
	o.res, o.id = cqe.Res, cqe.ID
	if o.sub != nil && o.res >= 0 {
		if cqe.Flags&abi.CQEFStats != 0 {
			o.sub.setFinal(cqe) // UNSUBSCRIBE's answer
		} else if o.id != 0 {
			o.sub.id.Store(o.id) // SUBSCRIBE's
		}
	}
	if p := payloadOf(cqe, &r.pay); len(p) != 0 {
		o.n = len(p)
		if o.alloc {
			o.data = append([]byte(nil), p...)
		} else {
			copy(o.resp, p)
		}
	}
	if cqe.Flags&abi.CQEFSlot != 0 {
		r.releaseSlots(cqe.Slot)
	}
	r.signal(o)
}

// signal marks o complete and hands its waiter the token. Under res.mu.
func (r *Ring) signal(o *op) {
	o.done.Store(true)
	if o.sleeping.Load() {
		r.res.pf.nudge()
	}
	o.ch <- struct{}{} // never blocks: one token per completion
}

// releasePump gives the pump role back and reports whether it took it
// again because ops still wait (one may have begun to wait after the last
// look, seen the role held and not taken it).
func (r *Ring) releasePump() bool {
	r.res.pumping.Store(false)
	r.res.mu.Lock()
	pending := len(r.res.ops)
	r.res.mu.Unlock()
	return pending != 0 && !r.isClosed() && r.res.pumping.CompareAndSwap(false, true)
}

// pump routes results while ops wait for them, holding the pump role: it
// sleeps on the ring fd and drains the result ring at each wake-up. It
// ends when no op waits, so that it keeps no forgotten ring alive.
func (r *Ring) pump() {
	for {
		if r.life.acquire() {
			for {
				done, err := r.res.pf.wait(context.Background())
				if err != nil {
					if !r.isClosed() {
						r.async.fail(err)
					}
					break
				}
				if done {
					break
				}
			}
			r.life.release()
		}
		if !r.releasePump() {
			return
		}
	}
}

// lookResults is the look of the pump role's holder: done when its own
// answer came (a caller) or no op waits any more (the pump).
func (r *Ring) lookResults() bool {
	pending := r.drainResults()
	if o := r.res.sleeper; o != nil {
		return o.done.Load()
	}
	return pending == 0
}

// doOp fills an SQE with prep, submits it under ud (0: a fresh op tag)
// and waits for its answer; it returns the result. prep does not escape:
// a closure passed here stays on the caller's stack.
func (r *Ring) doOp(ctx context.Context, ud uint64, sub *Subscription, prep func(*abi.SQE) error) (int32, error) {
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	defer r.life.release()
	o := r.newOp(sub)
	ud, err := r.startOp(o, ud, prep)
	if err == nil {
		err = r.awaitOp(ctx, o, ud, 0)
	}
	res := o.res
	r.putOp(o)
	return res, err
}

// startOp registers o under ud (0: a fresh op tag), fills an SQE with prep
// and submits it; it returns the user_data. On an error o is unregistered,
// unless it was answered already: then the error came too late to matter.
func (r *Ring) startOp(o *op, ud uint64, prep func(*abi.SQE) error) (uint64, error) {
	if ud == 0 {
		ud = tagOp | r.res.seq.Add(1)&(tagBatch-1)
	}
	// Registered before the submission, which may answer at once.
	r.res.mu.Lock()
	r.res.ops[ud] = o
	r.res.mu.Unlock()
	r.sqMu.Lock()
	sqe, err := r.getSQE()
	if err == nil {
		if err = prep(sqe); err != nil {
			// The entry is taken: make it a no-op nobody hears about.
			*sqe = abi.SQE{Opcode: abi.OpNop, Flags: abi.SQEFSilent}
		} else {
			sqe.UserData = ud
		}
		if serr := r.submitLocked(); err == nil {
			err = serr
		}
	}
	r.sqMu.Unlock()
	if err != nil && !r.abandonOp(o, ud) {
		return ud, nil
	}
	return ud, err
}

// control runs a control op (subscribe, unsubscribe, timer and generator
// set) bounded by the ring's op timeout.
func (r *Ring) control(ud uint64, sub *Subscription, prep func(*abi.SQE) error) (int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.opTimeout)
	defer cancel()
	res, err := r.doOp(ctx, ud, sub, prep)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("goaem: no answer from the kernel side within %v: %w", r.cfg.opTimeout, err)
	}
	return res, err
}
