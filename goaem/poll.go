package goaem

import (
	"sync/atomic"

	"github.com/aem-dev/aem/goaem/abi"
)

// Poll fills batch with ready events, most urgent class first, and returns
// how many; it never blocks. Submissions queued since the last call
// (writebacks, releases of deferred events) are handed to the kernel side in
// the same batch: at most one cgo call per Poll, none when nothing is
// queued and the rings are read directly (HotPathAtomic).
//
// Every event must be released (Release, or Writeback, which hands its slot
// back): a slot event holds one of the ring's delivery slots until then.
func (r *Ring) Poll(batch []Event) (int, error) {
	if !r.life.acquire() {
		return 0, ErrClosed
	}
	n := r.poll(batch)
	r.life.release()
	return n, nil
}

func (r *Ring) poll(batch []Event) int {
	if len(batch) == 0 {
		return 0
	}
	r.cmu.Lock()
	n := r.pollLocked(batch)
	r.cmu.Unlock()
	return n
}

// pollLocked reads one batch of events, then routes the results of goaem's
// own SQEs (subscribe, call, refused writebacks) from the result ring to
// their waiters before the caller sees the batch.
func (r *Ring) pollLocked(batch []Event) int {
	n, overflow := r.reapGo(batch)
	overflow |= r.reapResults()
	if overflow&abi.CQFOverflow != 0 || r.sqDirty.Load() {
		// The backlog flushes into the rings on submit; queued writebacks
		// ride along. Still one crossing for the batch.
		if err := r.flush(); err != nil {
			r.setAsyncErr(err)
		}
	}
	return n
}

// reapGo reads the mapped rings through sync/atomic: per class, one acquire load of the
// producer index and one release store of the consumer index for the whole
// batch. Stashed events of a class come before that class's ring entries.
func (r *Ring) reapGo(dst []Event) (n int, overflow uint32) {
	for c := 0; c < r.classes && n < len(dst); c++ {
		if r.stashed != 0 && len(r.stash[c]) != 0 {
			n += r.unstash(c, dst[n:])
			if n == len(dst) {
				break
			}
		}
		cq := &r.cq[c]
		head := atomic.LoadUint32(cq.khead)
		avail := atomic.LoadUint32(cq.ktail) - head // pairs with the producer's store-release
		overflow |= atomic.LoadUint32(cq.kflags)
		if avail == 0 {
			continue
		}
		if avail > cq.entries {
			avail = cq.entries // never read beyond one ring's worth
		}
		if room := uint32(len(dst) - n); avail > room {
			avail = room
		}
		out := dst[n : n+int(avail)]
		for i := range out {
			e := &out[i]
			e.cqe = cq.cqes[(head+uint32(i))&cq.mask]
			e.state = 0
			if e.r != r {
				e.r = r
			}
		}
		atomic.StoreUint32(cq.khead, head+avail) // frees the entries: pairs with the producer's head acquire
		n += int(avail)
	}
	return n, overflow
}

func (r *Ring) unstash(c int, dst []Event) int {
	s := r.stash[c]
	k := min(len(s), len(dst))
	for i := 0; i < k; i++ {
		dst[i] = Event{cqe: s[i], r: r}
	}
	if k == len(s) {
		r.stash[c] = s[:0]
	} else {
		r.stash[c] = append(s[:0], s[k:]...)
	}
	r.stashed -= k
	return k
}

// reapResults routes every ready result to its waiter: one acquire load of
// the result ring's producer index, one release store of its consumer
// index. It returns the ring's flags (overflow: results wait in the
// backlog). Under cmu.
func (r *Ring) reapResults() uint32 {
	rq := &r.res
	head := atomic.LoadUint32(rq.khead)
	avail := min(atomic.LoadUint32(rq.ktail)-head, rq.entries) // pairs with the producer's store-release
	e := &r.scratch[0]
	for i := uint32(0); i < avail; i++ {
		e.cqe = rq.cqes[(head+i)&rq.mask]
		e.state, e.r = 0, r
		r.route(e)
	}
	if avail != 0 {
		atomic.StoreUint32(rq.khead, head+avail) // frees the entries: pairs with the producer's head acquire
	}
	return atomic.LoadUint32(rq.kflags)
}

// reapToStash routes the ready results and empties the event rings into
// the stash: a goroutine waiting for its result makes progress even when
// nobody polls. The stash holds at most one ring's worth per class.
func (r *Ring) reapToStash() {
	if r.reapResults()&abi.CQFOverflow != 0 {
		r.flush()
	}
	for c := 0; c < r.classes; c++ {
		cq := &r.cq[c]
		for {
			room := int(cq.entries) - len(r.stash[c])
			if room <= 0 {
				break
			}
			head := atomic.LoadUint32(cq.khead)
			avail := atomic.LoadUint32(cq.ktail) - head
			if avail == 0 {
				break
			}
			k := min(int(min(avail, cq.entries)), room, len(r.scratch))
			for i := 0; i < k; i++ {
				e := &r.scratch[i]
				e.cqe = cq.cqes[(head+uint32(i))&cq.mask]
				e.state, e.r = 0, r
			}
			atomic.StoreUint32(cq.khead, head+uint32(k))
			for i := 0; i < k; i++ {
				r.stash[c] = append(r.stash[c], r.scratch[i].cqe)
				r.stashed++
			}
		}
		if atomic.LoadUint32(cq.kflags)&abi.CQFOverflow != 0 {
			r.flush()
		}
	}
}

// unread puts events that were read but not handled (Run stopped in the
// middle of a batch) back in front of the stash, so the next reader gets
// them: stopping Run loses nothing.
func (r *Ring) unread(evs []Event) {
	if len(evs) == 0 {
		return
	}
	r.cmu.Lock()
	for c := 0; c < r.classes; c++ {
		var front []abi.CQE
		for i := range evs {
			e := &evs[i]
			if int(e.cqe.Prio) == c || (c == r.classes-1 && int(e.cqe.Prio) >= r.classes) {
				if e.state&(stDone|stMoved) == 0 {
					front = append(front, e.cqe)
					e.state |= stMoved
				}
			}
		}
		if len(front) != 0 {
			r.stash[c] = append(front, r.stash[c]...)
			r.stashed += len(front)
		}
	}
	r.cmu.Unlock()
	r.wakeAll()
}

// route completes the goaem operation a result CQE answers.
func (r *Ring) route(e *Event) {
	ud := e.cqe.UserData
	if ud&(tagOp|tagSilent) != tagOp|tagSilent {
		r.opMu.Lock()
		o := r.ops[ud]
		delete(r.ops, ud)
		r.opMu.Unlock()
		if o != nil {
			o.complete(e)
			return
		}
	}
	if e.cqe.Res < 0 {
		r.noteAsyncErr(ud, e.cqe.Res)
	}
	// Nobody waits (a call whose caller gave up): hand a reply slot back.
	if e.cqe.Flags&abi.CQEFSlot != 0 {
		r.releaseSlots(e.cqe.Slot)
	}
}
