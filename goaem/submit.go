package goaem

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
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
	if r.sq.polled {
		return r.handToPollerLocked()
	}
	r.pay.unsubmitted = 0 // the kernel side copies send slots as it takes them
	r.enters.Add(1)
	if err := r.be.submit(r.sq.tail); err != nil {
		return fmt.Errorf("goaem: submit: %w", err)
	}
	return nil
}

// handToPollerLocked publishes the queued SQEs to the ring's submission
// poller: a store of the tail, then a load of its flags, and an entry only
// when it sleeps (docs/PROTOCOL.md, "The submission poller"), or when
// nothing at all waits for it (an enter flushes the backlogs and reclaims
// slots, as on any ring). Go's atomics are sequentially consistent: the store, then the
// load, as the Dekker pair with the poller's flag store and tail load
// needs. Send slots are reused from the next submission on: while these
// SQEs name some, it waits until the poller has consumed them. Caller
// holds sqMu.
func (r *Ring) handToPollerLocked() error {
	sq := &r.sq
	// Nothing new and nothing pending: an enter of its own. Judged by what
	// was new, not by the head after the store: a busy poller may have
	// consumed the new SQEs already.
	idle := atomic.LoadUint32(sq.ktail) == sq.tail && atomic.LoadUint32(sq.khead) == sq.tail
	atomic.StoreUint32(sq.ktail, sq.tail)
	for wait := 0; ; wait++ {
		if idle || atomic.LoadUint32(sq.kflags)&abi.SQFNeedWakeup != 0 {
			r.enters.Add(1)
			if err := r.be.submit(sq.tail); err != nil {
				return fmt.Errorf("goaem: submit: %w", err)
			}
			idle = false
		}
		if r.pay.unsubmitted == 0 || atomic.LoadUint32(sq.khead) == sq.tail || r.isClosed() {
			break
		}
		postBackoff(wait)
	}
	r.pay.unsubmitted = 0
	return nil
}

// enter submits queued SQEs; with none it still enters the kernel side,
// which flushes the overflow backlogs and reclaims released slots.
func (r *Ring) enter() error {
	r.sqMu.Lock()
	err := r.submitLocked()
	r.sqMu.Unlock()
	return err
}

// flush is enter, then the routing of the results the submission produced.
func (r *Ring) flush() error {
	err := r.enter()
	r.routeReady()
	return err
}

// Flush hands queued writebacks and releases to the kernel side now,
// rather than with the next Poll, Wait or Run batch.
func (r *Ring) Flush() error {
	if !r.life.acquire() {
		return ErrClosed
	}
	defer r.life.release()
	r.sqMu.Lock()
	r.slots.commit()
	r.sqMu.Unlock()
	return r.flush()
}

// Enters is how many times this ring has entered the kernel side: each
// submission (a system call on the module, a call into the core on the
// embedded backend) and each sleep of Wait or Run on the ring fd. With
// Run, a batch of events whose handlers queue writebacks and sends costs
// one submission, whatever their number.
func (r *Ring) Enters() uint64 { return r.enters.Load() }

// releaseSlots returns delivery slots through the slot ring: no system
// call, one store-release for the lot.
func (r *Ring) releaseSlots(slots ...uint32) {
	r.sqMu.Lock()
	for _, s := range slots {
		r.pushSlotLocked(s)
	}
	r.slots.commit()
	r.sqMu.Unlock()
}

func (r *Ring) pushSlotLocked(slot uint32) {
	sv := &r.slots
	for try := 0; sv.tail-atomic.LoadUint32(sv.khead) >= sv.entries; try++ {
		// Only possible when releases outrun the kernel side's reclaim:
		// publish what we have and let a submit reclaim it.
		if try == 3 {
			r.async.refused(tagOp|tagSilent, -int32(syscall.ENOSPC))
			return
		}
		r.slots.commit()
		_ = r.submitLocked()
	}
	sv.array[sv.tail&sv.mask] = slot
	sv.tail++
}

// commit publishes the released slots. Under sqMu.
func (sv *slotView) commit() {
	if atomic.LoadUint32(sv.ktail) != sv.tail {
		atomic.StoreUint32(sv.ktail, sv.tail) // pairs with the kernel side's slot-ring acquire
	}
}

// refused counts a refusal the kernel side reported for a
// fire-and-forget SQE. It allocates nothing: a stream of refused posts (a
// full backlog) must not turn into garbage; AsyncErrors builds the error.
func (a *asyncState) refused(ud uint64, res int32) {
	n := a.count.Add(1)
	a.refusal.Store(n<<24 | uint64(uint8(ud))<<16 | uint64(uint16(-res)))
}

// fail counts a failure that is not a refusal (a submission that
// failed): rare, so it may allocate.
func (a *asyncState) fail(err error) {
	n := a.count.Add(1)
	a.other.Store(&asyncFailure{n: n, err: err})
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
	case abi.OpSend:
		return "send"
	case abi.OpShutdown:
		return "shutdown"
	}
	return fmt.Sprintf("op %d", op)
}

// silentLocked makes sqe fire-and-forget: no result unless refused, and a
// refusal is counted in AsyncErrors.
func silentLocked(sqe *abi.SQE) {
	sqe.Flags |= abi.SQEFSilent
	sqe.UserData = tagOp | tagSilent | uint64(sqe.Opcode)
}

// submitUnlock ends a submission begun under sqMu: with now, the queued
// SQEs go to the kernel side at once and the refusals they met are routed;
// else they go with the next batch.
func (r *Ring) submitUnlock(now bool) error {
	if !now {
		r.sqDirty.Store(true)
		r.sqMu.Unlock()
		return nil
	}
	err := r.submitLocked()
	r.sqMu.Unlock()
	r.routeReady()
	return err
}

func durationNS(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d)
}
