package goaem

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// Batch queues posts, subscribes, unsubscribes and calls for one ring and
// submits them together: Submit copies the queued entries into the
// submission ring under its lock once and enters the kernel side once (one
// cgo call, one system call on the module) for as many entries as the ring
// holds, where Post, Subscribe, Unsubscribe and Call take the lock and
// enter once each. A full submission ring is submitted and the rest
// follows; every entry gets its own result (Err, Subscription, Reply).
//
// A Batch belongs to one goroutine. Producers each fill a Batch of their
// own without a lock and flush it with Submit: on one shared ring they
// meet on its submission lock once per batch, not once per event; on a
// ring of their own (OpenProducer, goaem's fan-in path) not at all.
// Queueing and submitting allocate nothing in steady state (Reset keeps
// the memory), except the Subscriptions that queued subscribes make: a
// Batch takes them from slabs it allocates whole, up to subSlabMax at a
// time, so a slab stays in memory while any of its Subscriptions is
// referenced.
type Batch struct {
	r     *Ring
	ents  []batchEntry
	from  int            // the first entry the next Submit hands over
	id    uint32         // while Submit runs: the id its entries' user_data carry
	slab  []Subscription // the rest of the slab the next subscribes take from
	slabN int            // the size of the last slab
	ext   *subExt        // the last handler's: shared by the subscribes that have the same
	// While Submit runs: the subscribes it hands over have consecutive
	// table generations from subGen on (their answers carry the handle,
	// so the generation finds the entry); subIdx[j] is the entry of the
	// one with generation subGen+j.
	subGen uint32
	subIdx []uint32
	// taken: the entries before it were taken by the kernel side (or are
	// skipped). The submitter's alone.
	taken      int
	answers    int  // entries of this Submit that get an answer
	registered bool // under id in the ring's batches
	// waiting counts the entries whose answer has not come (subscribes,
	// unsubscribes, calls); o completes when it reaches 0. Under r.res.mu.
	waiting int
	o       op
}

type batchKind uint8

const (
	batchPost batchKind = iota + 1
	batchSubscribe
	batchUnsubscribe
	batchCall
)

// Entry states. An entry is answered once (under r.res.mu); whether it
// was taken is its index against Batch.taken.
const (
	entQueued   uint8 = iota // no answer yet
	entAnswered              // its answer (or refusal) routed, or a post taken
	entDone                  // settled without the kernel side (an ended subscription)
)

type batchEntry struct {
	sqe   abi.SQE // prepared when queued; user_data and slot set by Submit
	kind  batchKind
	state uint8
	skip  bool // not handed over (failed on the Go side, or done): set by begin, then fixed
	res   int32
	n     int    // a call's reply bytes (may exceed len(resp))
	data  []byte // a payload beyond the SQE: copied into a send slot by Submit
	resp  []byte // a call's reply buffer
	sub   *Subscription
	err   error // a failure on the Go side (validation, ctx, Close)
}

// maxBatch bounds a batch: an entry's index fits 24 bits of its user_data.
const maxBatch = 1<<24 - 1

// user_data of a batch's entries (a subscribe's is its subscription's
// handle, which its events carry): tagOp | tagBatch | id<<32 | index<<8 |
// opcode, so that a refusal nobody waits for still names its opcode.
const tagBatch = uint64(1) << 61

func batchUD(id uint32, idx int, opcode uint8) uint64 {
	return tagOp | tagBatch | uint64(id)<<32 | uint64(idx)<<8 | uint64(opcode)
}

// batchKey is the key the batch's wait is registered under in the ring's
// ops: no entry's user_data (index maxBatch is never used).
func batchKey(id uint32) uint64 { return batchUD(id, maxBatch, 0xff) }

// NewBatch returns an empty batch for this ring.
func (r *Ring) NewBatch() *Batch {
	b := &Batch{r: r}
	b.o.ch = make(chan struct{}, 1)
	return b
}

// Len is the number of queued entries.
func (b *Batch) Len() int { return len(b.ents) }

// Reset empties the batch, keeping its memory, for the next round of
// entries. Results of the last Submit are gone after it.
func (b *Batch) Reset() {
	clear(b.ents) // drop references to payloads, buffers and subscriptions
	b.ents = b.ents[:0]
	b.from = 0
}

func (b *Batch) add(kind batchKind) (*batchEntry, int) {
	i := len(b.ents)
	b.ents = append(b.ents, batchEntry{kind: kind})
	e := &b.ents[i]
	if i >= maxBatch {
		e.err = invalid("goaem: batch: more than %d entries", maxBatch)
	}
	return e, i
}

// Post queues a post of data to the Msg subscription at addr, in class
// class, and returns the entry's index. Data up to 32 bytes is copied now;
// a longer payload is copied into a send slot by Submit, so it must stay
// unchanged until Submit returns. Submit waits, as Post does, while the
// target cannot take the event.
func (b *Batch) Post(addr Addr, data []byte, class int) int {
	return b.post(addr, data, class, 0)
}

// PostLossy queues a post that the target may drop past its backlog bound
// (see Ring.PostLossy); the drop is the entry's error (ENOSPC).
func (b *Batch) PostLossy(addr Addr, data []byte, class int) int {
	return b.post(addr, data, class, abi.SQEFLossy)
}

func (b *Batch) post(addr Addr, data []byte, class int, flags uint8) int {
	e, i := b.add(batchPost)
	switch {
	case class < 0 || class >= abi.MaxClasses:
		e.err = invalid("goaem: post: class %d outside 0..%d", class, abi.MaxClasses-1)
	default:
		e.err = b.r.pay.check(len(data))
	}
	e.sqe = abi.SQE{Opcode: abi.OpPost, Target: uint64(addr), Prio: uint8(class),
		Flags: flags | abi.SQEFSilent, Len: uint32(len(data))}
	b.setData(e, data)
	return i
}

// setData puts data in the entry's SQE now, or keeps it for a send slot.
func (b *Batch) setData(e *batchEntry, data []byte) {
	if e.err != nil {
		return
	}
	if len(data) <= abi.SQEInline {
		copy(e.sqe.Data[:], data)
	} else {
		e.data = data
	}
}

// Subscribe queues a subscription of src (see Ring.Subscribe) and returns
// the entry's index; Subscription(i) is the subscription once Submit has
// returned. Its events may arrive before Submit returns.
func (b *Batch) Subscribe(src Source, opts SubOptions) int {
	if src == nil {
		e, i := b.add(batchSubscribe)
		e.err = errNilSource()
		return i
	}
	return b.subscribe(src.prep, opts)
}

// SubscribeTimer is Subscribe(t, opts) without converting t to a Source,
// which allocates: for the many timers of a batch, nothing per subscribe
// is allocated beyond the Subscription's share of its slab.
func (b *Batch) SubscribeTimer(t Timer, opts SubOptions) int {
	return b.subscribe(t.prep, opts)
}

func (b *Batch) subscribe(prep func(*abi.SQE) error, opts SubOptions) int {
	e, i := b.add(batchSubscribe)
	if e.err == nil {
		e.sub = b.newSub()
		if e.err = b.r.prepSubscription(e.sub, prep, opts, &e.sqe, &b.ext); e.err != nil {
			e.sub = nil // its slab entry stays unused
		}
	}
	return i
}

// subSlabMax bounds the Subscriptions a Batch allocates at once: a slab
// is one object, kept whole while any of them is referenced. 1023 and the
// slab's head fill five 8 KiB pages (an object that large takes whole
// pages; 1024 would take six).
const subSlabMax = 1023

// newSub takes a zero Subscription from the batch's slab, allocating the
// next slab (twice the last, up to subSlabMax) when it is used up.
func (b *Batch) newSub() *Subscription {
	if len(b.slab) == 0 {
		b.slabN = min(max(2*b.slabN, 16), subSlabMax)
		b.slab = newSubSlab(b.r, b.slabN)
	}
	s := &b.slab[0]
	b.slab = b.slab[1:]
	return s
}

// Unsubscribe queues the end of s (see Subscription.Unsubscribe) and
// returns the entry's index. s must be a subscription of this ring that
// Submit has already started: one queued in the same batch has no id yet.
func (b *Batch) Unsubscribe(s *Subscription) int {
	e, i := b.add(batchUnsubscribe)
	switch {
	case s == nil:
		e.err = invalid("goaem: unsubscribe: nil subscription")
	case s.ring() != b.r:
		e.err = invalid("goaem: unsubscribe %#x: a subscription of another ring", s.ID())
	}
	e.sub = s
	e.sqe = abi.SQE{Opcode: abi.OpUnsubscribe}
	return i
}

// Call queues a call of the Msg subscription at addr with req (see
// Ring.CallWith; opts.Spin is not used) and returns the entry's index. The
// reply is copied into resp; Reply(i) gives its length. Submit waits for
// every reply, bounded by its ctx, whose deadline is each call's timeout.
// req stays unchanged until Submit returns.
func (b *Batch) Call(addr Addr, req, resp []byte, opts CallOptions) int {
	e, i := b.add(batchCall)
	switch {
	case opts.Class < 0 || opts.Class >= abi.MaxClasses:
		e.err = invalid("goaem: call: class %d outside 0..%d", opts.Class, abi.MaxClasses-1)
	default:
		e.err = b.r.pay.check(len(req))
	}
	e.sqe = abi.SQE{Opcode: abi.OpCall, Target: uint64(addr), Prio: uint8(opts.Class), Len: uint32(len(req))}
	e.resp = resp
	b.setData(e, req)
	return i
}

// Err is entry i's outcome after Submit: nil when the kernel side took it
// (a post delivered or queued in the target's backlog, a subscribe or
// unsubscribe done, a call answered), else why not, matching
// syscall.Errno for the kernel side's refusals, ErrWouldBlock never (Submit
// waits), the ctx's error for entries its end left unsubmitted or
// unanswered, ErrClosed.
func (b *Batch) Err(i int) error {
	e := &b.ents[i]
	if e.err != nil {
		return e.err
	}
	if e.state == entQueued {
		return errors.New("goaem: batch entry not submitted")
	}
	if e.res >= 0 {
		if e.kind == batchCall && e.n > len(e.resp) {
			return fmt.Errorf("goaem: call %v: reply of %d bytes into %d: %w", Addr(e.sqe.Target), e.n, len(e.resp), io.ErrShortBuffer)
		}
		return nil
	}
	switch e.kind {
	case batchPost:
		return fmt.Errorf("goaem: post to %v: %w", Addr(e.sqe.Target), errno(e.res))
	case batchSubscribe:
		return fmt.Errorf("goaem: subscribe: %w", errno(e.res))
	case batchUnsubscribe:
		return fmt.Errorf("goaem: unsubscribe %#x: %w", e.sub.ID(), errno(e.res))
	}
	return fmt.Errorf("goaem: call %v: %w", Addr(e.sqe.Target), errno(e.res))
}

// Subscription is the subscription entry i (a Subscribe) started, nil
// when it failed (Err says why).
func (b *Batch) Subscription(i int) *Subscription {
	e := &b.ents[i]
	if e.kind != batchSubscribe || b.Err(i) != nil {
		return nil
	}
	return e.sub
}

// Reply is the length of the reply to entry i (a Call), with Err(i).
func (b *Batch) Reply(i int) (int, error) {
	e := &b.ents[i]
	if err := b.Err(i); err != nil {
		return min(e.n, len(e.resp)), err
	}
	return e.n, nil
}

// Submit hands the entries queued since the last Submit to the kernel side
// in order, with one entry into it per submission ring's worth, and waits
// for the answers of the subscribes, unsubscribes and calls among them. A
// post the target cannot take now is waited for as Post waits (the entries
// after it follow once it is taken), bounded by ctx; so are the answers,
// and with a ctx without a deadline subscribes and unsubscribes wait at
// most WithOpTimeout. Submit returns nil when each of those entries
// succeeded, else an error that says how many failed and wraps the first
// failure; Err(i) has each entry's outcome until Reset.
func (b *Batch) Submit(ctx context.Context) error {
	r := b.r
	ents := b.ents[b.from:]
	b.from = len(b.ents)
	if len(ents) == 0 {
		return nil
	}
	if !r.life.acquire() {
		for i := range ents {
			ents[i].fail(ErrClosed)
		}
		return b.outcome(ents)
	}
	defer r.life.release()
	if _, ok := ctx.Deadline(); !ok && hasControl(ents) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.opTimeout)
		defer cancel()
	}
	timeoutMS, err := callTimeout(ctx)
	base := len(b.ents) - len(ents)
	b.begin(ents)
	if err == nil {
		err = b.submitAll(ctx, base, timeoutMS)
	}
	r.routeReady() // the refusals of posts came with the submissions that consumed them
	tokenTaken := false
	if err == nil && b.answers != 0 && b.waitingNow() {
		if err = r.awaitOp(ctx, &b.o, batchKey(b.id), 0); err == nil {
			tokenTaken = true
		} else if errors.Is(err, context.DeadlineExceeded) && hasControl(ents) {
			err = fmt.Errorf("goaem: no answer from the kernel side within the deadline: %w", err)
		}
	}
	b.end(ents, err, tokenTaken)
	return b.outcome(ents)
}

func (e *batchEntry) fail(err error) {
	if e.err == nil && e.state != entDone {
		e.err = err
	}
}

func hasPost(ents []batchEntry) bool {
	for i := range ents {
		if ents[i].kind == batchPost && !ents[i].skip {
			return true
		}
	}
	return false
}

func hasControl(ents []batchEntry) bool {
	for i := range ents {
		if k := ents[i].kind; k == batchSubscribe || k == batchUnsubscribe {
			return true
		}
	}
	return false
}

// callTimeout is the kernel side's timeout for calls ending at ctx's
// deadline (rounded up to a millisecond; 0: its default).
func callTimeout(ctx context.Context) (uint32, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	ms := math.Ceil(float64(time.Until(d)) / float64(time.Millisecond))
	if ms < 1 {
		return 0, context.DeadlineExceeded
	}
	return uint32(min(ms, abi.MaxCallMS)), nil
}

// begin registers the batch for the routing of its answers: a fresh id,
// the subscriptions in the table (their first events may come before their
// answers), the count of answers to wait for.
func (b *Batch) begin(ents []batchEntry) {
	r := b.r
	q := &r.res
	base := len(b.ents) - len(ents)
	b.taken, b.answers = base, 0
	b.subIdx = b.subIdx[:0]
	for i := range ents {
		e := &ents[i]
		switch {
		case e.err != nil:
		case e.kind == batchSubscribe:
			b.subIdx = append(b.subIdx, uint32(base+i))
		case e.kind == batchUnsubscribe && e.sub.setEnded():
			e.state = entDone // ended already: nothing to do, as Unsubscribe
		}
		e.skip = e.err != nil || e.state == entDone
		if !e.skip && e.kind != batchPost {
			b.answers++
		}
	}
	if len(b.subIdx) != 0 {
		// One lock round for the batch's subscriptions, with a run of
		// generations that routes their answers.
		t := &r.subs
		t.mu.Lock()
		b.subGen = t.gens(uint32(len(b.subIdx)))
		for j, i := range b.subIdx {
			t.addLocked(b.ents[i].sub, b.subGen+uint32(j))
		}
		t.mu.Unlock()
	}
	if b.registered = b.answers != 0 || hasPost(ents); !b.registered {
		return // nothing goes to the kernel side
	}
	q.mu.Lock()
	b.id = q.nextBatch()
	q.batches[b.id] = b
	b.waiting = b.answers
	if len(b.subIdx) != 0 {
		q.subBatches = append(q.subBatches, b)
	}
	if b.waiting != 0 {
		b.o.done.Store(false)
		q.ops[batchKey(b.id)] = &b.o
	}
	q.mu.Unlock()
}

// nextBatch is a batch id not in use: 29 bits, never 0. Under mu.
func (q *results) nextBatch() uint32 {
	if q.batches == nil {
		q.batches = make(map[uint32]*Batch)
	}
	for {
		q.batchSeq = (q.batchSeq + 1) & (1<<29 - 1)
		if _, used := q.batches[q.batchSeq]; q.batchSeq != 0 && !used {
			return q.batchSeq
		}
	}
}

// waitingNow reports whether answers are still to come.
func (b *Batch) waitingNow() bool {
	b.r.res.mu.Lock()
	defer b.r.res.mu.Unlock()
	return b.waiting != 0
}

// submitAll submits the entries in order, a submission ring's worth at a
// time, waiting while a post's target is full. On an error the entries
// from the first one not taken keep err.
func (b *Batch) submitAll(ctx context.Context, i int, timeoutMS uint32) error {
	r := b.r
	for wait := 0; ; {
		for i < len(b.ents) && b.ents[i].skip {
			i++
		}
		if i == len(b.ents) {
			return nil
		}
		next, full, err := b.submitSome(i, timeoutMS)
		if err != nil {
			return fmt.Errorf("goaem: batch: %w", err)
		}
		if next > i || !full {
			i, wait = next, 0
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.isClosed() {
			return ErrClosed
		}
		postBackoff(wait)
		wait++
	}
}

// submitSome copies entries from i on into the submission ring, as many
// as it holds (and the send slots, for payloads beyond the SQE), enters the
// kernel side once and marks what it took. It returns the first entry not
// taken; full says the kernel side stopped at a post it could not take
// (docs/PROTOCOL.md, "Back-pressure"): the entries it left are taken back
// out of the ring, so the SQ holds none of them once sqMu is released.
func (b *Batch) submitSome(i int, timeoutMS uint32) (next int, full bool, err error) {
	r := b.r
	sq := &r.sq
	r.sqMu.Lock()
	// A full ring, or send slots filled by queued sends (SockSendLater),
	// which this submission's payloads would overwrite: submit first.
	if sq.tail-atomic.LoadUint32(sq.khead) >= sq.entries || r.pay.unsubmitted != 0 {
		if err = r.submitLocked(); err != nil {
			r.sqMu.Unlock()
			return i, false, err
		}
	}
	start := sq.tail
	room := sq.entries - (sq.tail - atomic.LoadUint32(sq.khead))
	slots := uint32(0)
	end := i
	for ; end < len(b.ents) && room != 0; end++ {
		e := &b.ents[end]
		if e.skip {
			continue
		}
		if e.data != nil {
			// Send slots rotate: no more in one submission than there are.
			if slots == r.pay.sendSlots {
				break
			}
			slots++
		}
		sqe := &sq.sqes[sq.tail&sq.mask]
		*sqe = e.sqe
		switch e.kind {
		case batchSubscribe:
			sqe.UserData = e.sub.handle
		case batchUnsubscribe:
			sqe.Target = e.sub.id.Load()
			sqe.UserData = batchUD(b.id, end, sqe.Opcode)
		case batchCall:
			sqe.Arg = timeoutMS
			sqe.UserData = batchUD(b.id, end, sqe.Opcode)
		default:
			sqe.UserData = batchUD(b.id, end, sqe.Opcode)
		}
		if e.data != nil {
			r.pay.fillSlot(sqe, e.data)
		}
		sq.tail++
		room--
	}
	queued := sq.tail - start
	if queued == 0 {
		// The ring stays full: the kernel side consumes nothing now (its
		// backlog at twice its bound). Wait as for a full target.
		r.sqMu.Unlock()
		r.routeReady()
		return i, true, nil
	}
	err = r.submitLocked()
	taken := atomic.LoadUint32(sq.khead) - start
	if int32(taken) < 0 {
		taken = 0 // the kernel side stopped before our entries
	}
	if sq.polled && err == nil {
		taken = queued // the poller takes them in order, waiting at a full target
	}
	if taken < queued {
		full = err == nil
		sq.tail = start + taken
		// Republish the shortened tail: nothing consumes SQEs between
		// enters, which sqMu serialises.
		if rerr := r.submitLocked(); err == nil {
			err = rerr
		}
	}
	r.sqMu.Unlock()
	// What was taken: the first taken entries of [i, end) not skipped.
	// Their answers may be routed by any goroutine from the submit on,
	// which needs no mark: an answer proves its entry taken.
	next = i
	for k := uint32(0); next < end; next++ {
		if b.ents[next].skip {
			continue
		}
		if k == taken {
			break
		}
		k++
	}
	b.taken = next
	r.routeReady()
	return next, full, err
}

// end unregisters the batch: answers that come later find nobody (a
// call's reply slot goes back). Entries without an answer get err; the
// subscriptions that failed leave the table.
func (b *Batch) end(ents []batchEntry, err error, tokenTaken bool) {
	r := b.r
	q := &r.res
	if err == nil {
		err = errNoAnswer
	}
	q.mu.Lock()
	if b.registered {
		delete(q.batches, b.id)
		if q.ops[batchKey(b.id)] == &b.o {
			delete(q.ops, batchKey(b.id))
		}
		if len(b.subIdx) != 0 {
			q.subBatches = slices.DeleteFunc(q.subBatches, func(o *Batch) bool { return o == b })
		}
		b.registered = false
	}
	b.subIdx = b.subIdx[:0]
	base := len(b.ents) - len(ents)
	for i := range ents {
		e := &ents[i]
		switch {
		case e.skip || e.state == entAnswered:
		case base+i < b.taken && e.kind == batchPost:
			e.state = entAnswered // taken, no refusal: delivered or in the target's backlog
		default:
			e.err = err
		}
	}
	q.mu.Unlock()
	if !tokenTaken && b.o.done.Load() {
		<-b.o.ch // completed without a wait: its token, for the next Submit
	}
	b.o.done.Store(false)
	for i := range ents {
		e := &ents[i]
		if e.skip {
			continue // never handed over (a subscription of another ring, say): not ours to touch
		}
		switch {
		case e.kind == batchSubscribe && (e.err != nil || e.res < 0):
			r.subs.remove(e.sub.handle)
		case e.kind == batchUnsubscribe && e.err == nil && e.state == entAnswered:
			if e.res == -int32(syscall.ENOENT) {
				// Ended by itself: as Unsubscribe, not an error.
				e.res = 0
				r.retire(e.sub, overEvent)
			} else {
				r.subs.remove(e.sub.handle)
			}
		case e.kind == batchUnsubscribe && e.err != nil:
			r.subs.remove(e.sub.handle)
		}
	}
}

// outcome is Submit's answer from the entries' errors.
func (b *Batch) outcome(ents []batchEntry) error {
	var first error
	failed, at := 0, 0
	base := len(b.ents) - len(ents)
	for i := range ents {
		if err := b.Err(base + i); err != nil {
			if first == nil {
				first, at = err, i
			}
			failed++
		}
	}
	if first == nil {
		return nil
	}
	return fmt.Errorf("goaem: batch: %d of %d entries failed; entry %d: %w", failed, len(ents), base+at, first)
}

var errNoAnswer = errors.New("goaem: batch: no answer")

// routeBatchLocked hands a result to the batch entry it answers and
// reports whether one took it. Under res.mu.
func (r *Ring) routeBatchLocked(cqe *abi.CQE) bool {
	q := &r.res
	ud := cqe.UserData
	var b *Batch
	var idx uint32
	if ud&tagOp == 0 {
		// A subscribe's answer: its handle's generation names the entry.
		if b, idx = q.subscribeEntry(ud); b == nil {
			return false
		}
	} else {
		if b = q.batches[uint32(ud>>32)&(1<<29-1)]; b == nil {
			return false
		}
		idx = uint32(ud>>8) & maxBatch
	}
	if int(idx) >= len(b.ents) {
		return false
	}
	if e := &b.ents[idx]; e.skip || e.state != entQueued {
		return false
	}
	e := &b.ents[idx]
	e.state, e.res = entAnswered, cqe.Res
	if e.kind == batchPost {
		return true // a post's refusal: nobody waits for posts
	}
	switch {
	case e.res < 0:
	case e.kind == batchSubscribe:
		if cqe.ID != 0 {
			e.sub.id.Store(cqe.ID)
		}
	case e.kind == batchUnsubscribe:
		if cqe.Flags&abi.CQEFStats != 0 {
			e.sub.setFinal(cqe)
		}
	case e.kind == batchCall:
		if p := payloadOf(cqe, &r.pay); len(p) != 0 {
			e.n = len(p)
			copy(e.resp, p)
		}
	}
	if cqe.Flags&abi.CQEFSlot != 0 {
		r.releaseSlots(cqe.Slot)
	}
	if b.waiting--; b.waiting == 0 {
		delete(q.ops, batchKey(b.id))
		r.signal(&b.o)
	}
	return true
}

// subscribeEntry finds the batch entry of the subscribe whose handle h an
// answer carries: in the batches being submitted (a few at most), by the
// generation run each took. Under mu.
func (q *results) subscribeEntry(h uint64) (*Batch, uint32) {
	gen := uint32(h >> 32)
	for _, b := range q.subBatches {
		if j := gen - b.subGen; j < uint32(len(b.subIdx)) {
			idx := b.subIdx[j]
			if e := &b.ents[idx]; e.sub != nil && e.sub.handle == h {
				return b, idx
			}
		}
	}
	return nil, 0
}

// OpenProducer opens a ring for one producer goroutine posting (or
// calling) into this ring: on the same backend, with one class, a small
// completion ring (it carries the producer's own results) and this ring's
// slot size; opts add to or override these. Producers that each post
// through a ring of their own share no submission lock, neither goaem's
// nor the kernel side's: they meet only on the target's completion lock,
// for the moment of each event's posting. This is goaem's fan-in path (a
// producer in another process does the same with a ring of its own);
// Close it when done.
func (r *Ring) OpenProducer(opts ...Option) (*Ring, error) {
	b := BackendEmbedded
	if r.Backend() == BackendKernel.String() {
		b = BackendKernel
	}
	base := []Option{WithBackend(b), WithClasses(1), WithCQEntries(64), WithSlotSize(r.pay.slotSize)}
	return Open(append(base, opts...)...)
}
