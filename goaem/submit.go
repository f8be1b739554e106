package goaem

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// user_data of goaem's own SQEs. Subscription tags (the user_data of
// events) are table handles with bit 63 clear.
const (
	tagOp     = uint64(1) << 63 // a result some goroutine may wait for
	tagSilent = uint64(1) << 62 // with tagOp: fire and forget; low byte is the opcode
)

// getSQE hands out the next SQE, zeroed. A full ring is submitted first;
// the kernel side consumes synchronously, so one retry suffices unless it
// refuses to move. Caller holds sqMu.
func (r *Ring) getSQE() (*abi.SQE, error) {
	sq := &r.sq
	for try := 0; ; try++ {
		head := atomic.LoadUint32(sq.khead) // pairs with the kernel side's store-release of head
		if sq.tail-head < sq.entries {
			break
		}
		if try == 2 {
			return nil, ErrBusy
		}
		if err := r.submitLocked(); err != nil {
			return nil, err
		}
	}
	sqe := &sq.sqes[sq.tail&sq.mask]
	*sqe = abi.SQE{}
	sq.tail++
	return sqe, nil
}

// submitLocked publishes and submits every queued SQE. Caller holds sqMu.
func (r *Ring) submitLocked() error {
	r.sqDirty.Store(false)
	if err := r.be.submit(r.sq.tail); err != nil {
		return fmt.Errorf("goaem: submit: %w", err)
	}
	return nil
}

// flush submits queued SQEs; with none it still enters the kernel side,
// which flushes the overflow backlog and reclaims released slots.
func (r *Ring) flush() error {
	r.sqMu.Lock()
	err := r.submitLocked()
	r.sqMu.Unlock()
	return err
}

// Flush hands queued writebacks and releases to the kernel side now,
// rather than with the next Poll, Wait or Run batch.
func (r *Ring) Flush() error {
	if !r.life.acquire() {
		return ErrClosed
	}
	defer r.life.release()
	r.commitSlots()
	return r.flush()
}

// releaseSlots returns delivery slots through the slot ring: no system
// call, one store-release for the lot.
func (r *Ring) releaseSlots(slots ...uint32) {
	r.relMu.Lock()
	for _, s := range slots {
		r.pushSlotLocked(s)
	}
	r.commitSlotsLocked()
	r.relMu.Unlock()
}

func (r *Ring) pushSlotLocked(slot uint32) {
	sv := &r.slots
	for try := 0; sv.tail-atomic.LoadUint32(sv.khead) >= sv.entries; try++ {
		// Only possible when releases outrun the kernel side's reclaim:
		// publish what we have and let a submit reclaim it.
		if try == 3 {
			r.noteAsyncErr(tagOp|tagSilent, -int32(syscall.ENOSPC))
			return
		}
		r.commitSlotsLocked()
		r.relMu.Unlock()
		_ = r.flush()
		r.relMu.Lock()
	}
	sv.array[sv.tail&sv.mask] = slot
	sv.tail++
}

func (r *Ring) commitSlots() {
	r.relMu.Lock()
	r.commitSlotsLocked()
	r.relMu.Unlock()
}

func (r *Ring) commitSlotsLocked() {
	if atomic.LoadUint32(r.slots.ktail) != r.slots.tail {
		atomic.StoreUint32(r.slots.ktail, r.slots.tail) // pairs with the kernel side's slot-ring acquire
	}
}

// noteAsyncErr counts a refusal the kernel side reported for a
// fire-and-forget SQE. It allocates nothing: a stream of refused posts (a
// full backlog) must not turn into garbage; AsyncErrors builds the error.
func (r *Ring) noteAsyncErr(ud uint64, res int32) {
	n := r.async.count.Add(1)
	r.async.refusal.Store(n<<24 | uint64(uint8(ud))<<16 | uint64(uint16(-res)))
}

// setAsyncErr counts a failure that is not a refusal (a submission that
// failed): rare, so it may allocate.
func (r *Ring) setAsyncErr(err error) {
	n := r.async.count.Add(1)
	r.async.other.Store(&asyncFailure{n: n, err: err})
}

// asyncState holds the count and the last failure of fire-and-forget
// submissions.
type asyncState struct {
	count   atomic.Uint64
	refusal atomic.Uint64 // the last refusal: n<<24 | opcode<<16 | errno
	other   atomic.Pointer[asyncFailure]
}

type asyncFailure struct {
	n   uint64 // count when it happened: the later of refusal and other is the last
	err error
}

// AsyncErrors reports how many fire-and-forget submissions (writebacks,
// posts, releases, batched submits) failed or were refused by the kernel
// side, and the last such error.
func (r *Ring) AsyncErrors() (uint64, error) {
	count := r.async.count.Load()
	ref := r.async.refusal.Load()
	var err error
	if ref != 0 {
		err = fmt.Errorf("goaem: asynchronous %s: %w", opName(uint8(ref>>16)), syscall.Errno(uint16(ref)))
	}
	if o := r.async.other.Load(); o != nil && o.n > ref>>24 {
		err = o.err
	}
	return count, err
}

func opName(op uint8) string {
	switch op {
	case abi.OpNop:
		return "nop"
	case abi.OpSubscribe:
		return "subscribe"
	case abi.OpUnsubscribe:
		return "unsubscribe"
	case abi.OpWriteback:
		return "writeback"
	case abi.OpPost:
		return "post"
	case abi.OpCall:
		return "call"
	case abi.OpTimerSet:
		return "timer set"
	case abi.OpGenSet:
		return "generator set"
	}
	return fmt.Sprintf("op %d", op)
}

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
	// ch gets one token per completion, sent after done is set: a follower
	// waiting for the result selects on it, and whoever recycles the op
	// takes the token first.
	ch  chan struct{}
	r   *Ring
	sub *Subscription // SUBSCRIBE: gets its id as the answer is routed, before any of its events
}

// maxFreeOps bounds the recycled ops a ring keeps.
const maxFreeOps = 64

// newOp takes a recycled op or makes one.
func (r *Ring) newOp(sub *Subscription) *op {
	r.opMu.Lock()
	var o *op
	if k := len(r.opFree); k != 0 {
		o = r.opFree[k-1]
		r.opFree = r.opFree[:k-1]
	}
	r.opMu.Unlock()
	if o == nil {
		o = &op{ch: make(chan struct{}, 1), r: r}
	}
	o.sub = sub
	return o
}

// putOp recycles a completed op whose token was taken, or one that was
// never registered.
func (r *Ring) putOp(o *op) {
	o.done.Store(false)
	o.res, o.id, o.resp, o.n, o.alloc, o.data, o.sub = 0, 0, nil, 0, false, nil, nil
	r.opMu.Lock()
	if len(r.opFree) < maxFreeOps {
		r.opFree = append(r.opFree, o)
	}
	r.opMu.Unlock()
}

func (o *op) complete(e *Event) {
	o.res, o.id = e.cqe.Res, e.cqe.ID
	if o.sub != nil && o.res >= 0 {
		o.sub.id.Store(o.id)
	}
	if e.cqe.Res > 0 {
		p := e.Payload()
		o.n = len(p)
		if o.alloc {
			o.data = append([]byte(nil), p...)
		} else {
			copy(o.resp, p)
		}
	}
	if e.cqe.Flags&abi.CQEFSlot != 0 {
		e.r.releaseSlots(e.cqe.Slot)
	}
	o.finish()
}

// finish publishes the result. The waiter may recycle o as soon as it has
// the token, so o is not touched after sending it.
func (o *op) finish() {
	r := o.r
	o.done.Store(true)
	o.ch <- struct{}{} // never blocks: one token per completion
	r.nudge()          // the waiter may be the one leading on the fd
}

// failOps completes every pending op with ErrClosed (Close, after the
// waiters left).
func (r *Ring) failOps() {
	r.opMu.Lock()
	for k, o := range r.ops {
		delete(r.ops, k)
		o.res = -int32(syscall.ECONNRESET)
		o.finish()
	}
	r.opMu.Unlock()
}

// startOp fills an SQE with prep, registers o under its user_data and
// submits it; it returns the user_data, 0 when nothing was registered.
// prep does not escape: a closure passed here stays on the caller's stack.
func (r *Ring) startOp(o *op, prep func(*abi.SQE) error) (uint64, error) {
	var ud uint64
	r.sqMu.Lock()
	sqe, err := r.getSQE()
	if err == nil {
		err = prep(sqe)
		// SUBSCRIBE's user_data is the subscription's tag, which its result
		// echoes: prep sets it, and the op is found by it.
		if ud = sqe.UserData; ud == 0 {
			ud = tagOp | r.opSeq.Add(1)&(tagSilent-1)
			sqe.UserData = ud
		}
		// Registered before the submission, which may answer at once.
		r.opMu.Lock()
		r.ops[ud] = o
		r.opMu.Unlock()
		if err != nil {
			// The entry is taken: make it a no-op nobody hears about.
			*sqe = abi.SQE{Opcode: abi.OpNop, Flags: abi.SQEFSilent}
		}
		if serr := r.submitLocked(); err == nil {
			err = serr
		}
	}
	r.sqMu.Unlock()
	if err != nil && ud != 0 && !r.abandonOp(o, ud) {
		return ud, nil // answered already: the error came after
	}
	return ud, err
}

// abandonOp unregisters o after its waiter gave up. It reports false when
// the answer is being routed at that moment: then it waits for it, and o
// is complete after all.
func (r *Ring) abandonOp(o *op, ud uint64) bool {
	r.opMu.Lock()
	pending := r.ops[ud] == o
	if pending {
		delete(r.ops, ud)
	}
	r.opMu.Unlock()
	if !pending {
		for !o.done.Load() {
			runtime.Gosched() // complete is running: a few instructions more
		}
	}
	return pending
}

// doOp fills an SQE with prep, submits it and waits for its result.
func (r *Ring) doOp(ctx context.Context, sub *Subscription, prep func(*abi.SQE) error) (int32, error) {
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	defer r.life.release()
	o := r.newOp(sub)
	ud, err := r.startOp(o, prep)
	if err == nil {
		err = r.awaitOp(ctx, o, ud, 0)
	}
	res := o.res
	r.putOp(o)
	return res, err
}

// control runs a control op (subscribe, unsubscribe, timer and generator
// set) bounded by the ring's op timeout.
func (r *Ring) control(sub *Subscription, prep func(*abi.SQE) error) (int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.opTimeout)
	defer cancel()
	res, err := r.doOp(ctx, sub, prep)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("goaem: no answer from the kernel side within %v: %w", r.cfg.opTimeout, err)
	}
	return res, err
}

// silentLocked makes sqe fire-and-forget (no result unless refused; a
// refusal is counted in AsyncErrors) and, with now, submits it at once;
// else it goes with the next batch. Caller holds sqMu.
func (r *Ring) silentLocked(sqe *abi.SQE, now bool) error {
	sqe.Flags |= abi.SQEFSilent
	sqe.UserData = tagOp | tagSilent | uint64(sqe.Opcode)
	if now {
		return r.submitLocked()
	}
	r.sqDirty.Store(true)
	return nil
}

func durationNS(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d)
}
