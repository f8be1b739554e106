package goaem

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/aem-dev/aem/goaem/abi"
)

// Source describes an event source and its arguments: Timer, Generator,
// Msg, Proc or FD.
type Source interface {
	prep(sqe *abi.SQE) error
}

// Timer fires once after First, then every Interval (0: one-shot). Each
// event's payload is an abi.TimerEvent (expirations, CLOCK_MONOTONIC ns);
// see TimerExpirations.
type Timer struct {
	First    time.Duration
	Interval time.Duration
}

func (t Timer) prep(sqe *abi.SQE) error {
	if t.First <= 0 || t.Interval < 0 {
		return invalid("goaem: timer first %v must be > 0 and interval %v >= 0", t.First, t.Interval)
	}
	sqe.Source = abi.SrcTimer
	a := sqe.Timer()
	a.FirstNS, a.IntervalNS = durationNS(t.First), durationNS(t.Interval)
	return nil
}

// Generator produces synthetic events: Rate per second (0: as fast as the
// rings take them), Count in all (0: unbounded), Burst per step, PayloadLen
// bytes each (an abi.GenEvent first). For load tests.
type Generator struct {
	Rate       uint64
	Count      uint64
	Burst      uint32
	PayloadLen uint32
}

func (g Generator) prep(sqe *abi.SQE) error {
	sqe.Source = abi.SrcGen
	g.fill(sqe.Gen())
	return nil
}

func (g Generator) fill(a *abi.GenArgs) {
	a.Rate, a.Count, a.Burst, a.PayloadLen = g.Rate, g.Count, max(g.Burst, 1), g.PayloadLen
}

// Msg receives the posts and calls addressed to (this ring, Channel); see
// Ring.Addr. Channels are unique per ring.
type Msg struct {
	Channel uint32
}

func (m Msg) prep(sqe *abi.SQE) error {
	sqe.Source = abi.SrcMsg
	sqe.Msg().Channel = m.Channel
	return nil
}

// Proc reports process fork, exec and exit (Events: abi.ProcFork|...; Pid
// 0 for every process, else that process and its children).
type Proc struct {
	Events uint32
	Pid    int
}

func (p Proc) prep(sqe *abi.SQE) error {
	sqe.Source = abi.SrcProc
	a := sqe.Proc()
	a.Events, a.Pid = p.Events, uint32(p.Pid)
	return nil
}

// FD reports readiness of a socket: Events is abi.FDAccept|FDReadable|FDHangup.
type FD struct {
	FD     int
	Events uint32
}

func (f FD) prep(sqe *abi.SQE) error {
	sqe.Source = abi.SrcFD
	a := sqe.FD()
	a.FD, a.Events = int32(f.FD), f.Events
	return nil
}

// HandlerMode says where Run runs a subscription's handler.
type HandlerMode uint8

const (
	// ModeInline runs the handler in Run's goroutine, between reading
	// batches: for short handlers. Writebacks and releases are batched.
	ModeInline HandlerMode = iota
	// ModeSpawn runs each event's handler in a new goroutine; at most
	// MaxInFlight at once, past which Run waits (back-pressure).
	ModeSpawn
	// ModeClone runs a new process per event (SubOptions.Clone): the
	// payload on its stdin, its stdout written back. Bounded as ModeSpawn.
	ModeClone
)

func (m HandlerMode) String() string {
	switch m {
	case ModeInline:
		return "inline"
	case ModeSpawn:
		return "spawn"
	case ModeClone:
		return "clone"
	}
	return fmt.Sprintf("HandlerMode(%d)", int(m))
}

// Handler handles one event. The event and its payload are valid until the
// handler returns (Run releases the event then, unless the handler wrote
// it back or released it). A handler that fails on a call it did not
// answer answers it with the error (see Event.ReplyError). An inline
// handler that panics ends Run with the panic; see Run for what becomes of
// its batch.
type Handler func(ev *Event) error

// SubOptions are a subscription's options.
type SubOptions struct {
	Class       int         // priority class, 0 (most urgent) .. Classes()-1
	Tag         uint64      // the caller's tag, returned by Event.Tag
	Mode        HandlerMode // how Run runs the handler
	Handler     Handler     // nil: the handler given to Run
	MaxInFlight int         // ModeSpawn/ModeClone bound; 0: the ring's (WithMaxInFlight)
	Clone       *Cloner     // ModeClone: the command to run per event
	Impl        uint32      // the source's implementation (Ring.Probe lists them); 0: the newest
}

// Subscription is one active source feeding this ring.
//
// An idle subscription costs goaem 40 bytes in a slab of them (subslab.go)
// and its slot in the ring's table, 8. It holds no pointer: its ring, and
// what few subscriptions have (a handler of their own, a clone command, a
// bound, the final counts: a subExt), are kept in its slab's head.
type Subscription struct {
	id       atomic.Uint64 // set by the answer, or by its first event if that comes first
	handle   uint64
	tag      uint64
	state    atomic.Uint32 // subEnded|overEvent|overCounts
	class    uint8
	source   uint8
	mode     HandlerMode
	endStats bool
	pos      uint16 // 1 + its index in its slab; 0 outside a slab
}

// subExt is the part of a Subscription that most do not have. Replaced
// whole (copy on write): handler, clone and sem are set before the
// subscription is published and never change.
type subExt struct {
	handler Handler
	clone   *Cloner
	sem     chan struct{}
	// final: the counts the kernel side sent as the subscription ended (it
	// forgets the subscription then): in the answer to Unsubscribe, or in
	// the end result its SUBSCRIBE asked for (endStats).
	final *Stats
}

// same reports whether x has opts's handler (the same func value) and
// clone, and no bound.
func (x *subExt) same(opts SubOptions) bool {
	return x.sem == nil && x.final == nil && x.clone == opts.Clone &&
		*(*unsafe.Pointer)(unsafe.Pointer(&x.handler)) == *(*unsafe.Pointer)(unsafe.Pointer(&opts.Handler))
}

// Subscription.state: the two ends of a subscription that ended by itself
// (its table entry goes when both are in, so the final event still finds
// it and the end result still has a place to land), and whether it ended.
const (
	overEvent  uint32 = 1 << 0 // final event released, or Unsubscribe found it over
	overCounts uint32 = 1 << 1 // final counts in
	subEnded   uint32 = 1 << 2 // Ended
)

// setEnded marks s ended; it returns whether it already was.
func (s *Subscription) setEnded() bool { return s.state.Or(subEnded)&subEnded != 0 }

// extra is s's ext, or an empty one.
func (s *Subscription) extra() subExt {
	if x := s.loadExt(); x != nil {
		return *x
	}
	return subExt{}
}

// Subscribe starts source feeding events into this ring's class
// opts.Class. It waits for the kernel side's answer (bounded by
// WithOpTimeout).
func (r *Ring) Subscribe(src Source, opts SubOptions) (*Subscription, error) {
	var prepared abi.SQE
	s := &newSubSlab(r, 1)[0]
	if err := r.newSubscription(s, src, opts, &prepared, nil); err != nil {
		return nil, err
	}
	// The table entry exists before the SQE: the first event may arrive
	// before the result that names the subscription.
	s.handle = r.subs.add(s)
	// SUBSCRIBE's user_data is the subscription's tag, which its answer
	// echoes: the op is found by it.
	res, err := r.control(s.handle, s, func(sqe *abi.SQE) error {
		*sqe = prepared
		return nil
	})
	if err == nil {
		err = errno(res)
	}
	if err != nil {
		r.subs.remove(s.handle)
		return nil, fmt.Errorf("goaem: subscribe: %w", err)
	}
	return s, nil
}

// newSubscription checks a subscribe's arguments, prepares its SQE (all
// but user_data) in sqe and fills s, which is not published yet. With
// shared, subscriptions whose handler (the same func value) and clone are
// the last one's, and have no bound of their own, share its subExt, which
// is replaced, never changed, once it is published.
func (r *Ring) newSubscription(s *Subscription, src Source, opts SubOptions, sqe *abi.SQE, shared **subExt) error {
	if src == nil {
		return errNilSource()
	}
	return r.prepSubscription(s, src.prep, opts, sqe, shared)
}

func errNilSource() error { return invalid("goaem: subscribe: nil source") }

// prepSubscription is newSubscription with the source's prep function:
// a batch of timers passes Timer.prep's method value, which, unlike the
// conversion of each Timer to a Source, allocates nothing.
func (r *Ring) prepSubscription(s *Subscription, prep func(*abi.SQE) error, opts SubOptions, sqe *abi.SQE, shared **subExt) error {
	if opts.Class < 0 || opts.Class >= r.classes {
		return invalid("goaem: subscribe: class %d outside 0..%d", opts.Class, r.classes-1)
	}
	if opts.Mode > ModeClone {
		return invalid("goaem: subscribe: unknown handler mode %d", opts.Mode)
	}
	if opts.Mode == ModeClone && opts.Clone == nil {
		return invalid("goaem: subscribe: ModeClone needs SubOptions.Clone")
	}
	if opts.MaxInFlight < 0 {
		return invalid("goaem: subscribe: MaxInFlight %d < 0", opts.MaxInFlight)
	}
	*sqe = abi.SQE{Opcode: abi.OpSubscribe, Prio: uint8(opts.Class)}
	if err := prep(sqe); err != nil {
		return fmt.Errorf("goaem: subscribe: %w", err)
	}
	sqe.Arg = opts.Impl
	s.tag, s.class, s.mode, s.source = opts.Tag, uint8(opts.Class), opts.Mode, sqe.Source
	if opts.Handler != nil || opts.Clone != nil || opts.MaxInFlight > 0 {
		if shared != nil && *shared != nil && opts.MaxInFlight == 0 && (*shared).same(opts) {
			s.extSlot().Store(*shared)
		} else {
			x := &subExt{handler: opts.Handler, clone: opts.Clone}
			if opts.MaxInFlight > 0 {
				x.sem = make(chan struct{}, opts.MaxInFlight)
			} else if shared != nil {
				*shared = x
			}
			s.extSlot().Store(x)
		}
	}
	if r.features&abi.FeatSubStats != 0 {
		sqe.Flags |= abi.SQEFEndStats
		s.endStats = true
	}
	return nil
}

// ID is the subscription id the kernel side gave it. A handler may see the
// subscription's events before Subscribe has returned; ID is set from then
// on (from Event.Subscription, which learns it from an event that is not a
// call's, or from the answer).
func (s *Subscription) ID() uint64 { return s.id.Load() }

// Tag is the tag given in SubOptions.
func (s *Subscription) Tag() uint64 { return s.tag }

// Class is the priority class its events arrive in.
func (s *Subscription) Class() int { return int(s.class) }

// Ring is the ring the subscription feeds.
func (s *Subscription) Ring() *Ring { return s.ring() }

// Ended reports whether the subscription is over: unsubscribed, or its
// source posted its final event (one-shot timer, generator count reached)
// and that event was released, or its final counts arrived (which they do
// also when that event was dropped).
func (s *Subscription) Ended() bool { return s.state.Load()&subEnded != 0 }

// Addr is the address of a Msg subscription: where Post and Call send.
func (s *Subscription) Addr(channel uint32) Addr { return s.ring().Addr(channel) }

// Unsubscribe stops the source. Events already in the completion ring
// stay there and are still delivered (Event.Subscription returns nil for
// them); backlogged ones are dropped and counted. Stats then returns the
// final counts. Unsubscribing a subscription that has ended (unsubscribed
// before, or its source ended it) does nothing and returns nil, however
// often: the kernel side answers a stale id with ENOENT, which is not an
// error here.
func (s *Subscription) Unsubscribe() error {
	if s.setEnded() {
		return nil
	}
	// The answer carries the final counts: complete stores them on s.
	res, err := s.ring().control(0, s, func(sqe *abi.SQE) error {
		sqe.Opcode = abi.OpUnsubscribe
		sqe.Target = s.id.Load()
		return nil
	})
	if err == nil && res == -int32(syscall.ENOENT) {
		// The source ended by itself: its final event and counts are on
		// their way (or here); the entry goes when the counts are in.
		s.ring().retire(s, overEvent)
		return nil
	}
	if err == nil {
		err = errno(res)
	}
	s.ring().subs.remove(s.handle)
	if err != nil {
		return fmt.Errorf("goaem: unsubscribe %#x: %w", s.ID(), err)
	}
	return nil
}

// ResetTimer re-arms a timer subscription.
func (s *Subscription) ResetTimer(first, interval time.Duration) error {
	t := Timer{First: first, Interval: interval}
	res, err := s.ring().control(0, nil, func(sqe *abi.SQE) error {
		if err := t.prep(sqe); err != nil {
			return err
		}
		sqe.Source = 0
		sqe.Opcode = abi.OpTimerSet
		sqe.Target = s.id.Load()
		return nil
	})
	if err == nil {
		err = errno(res)
	}
	if err != nil {
		return fmt.Errorf("goaem: reset timer %#x: %w", s.ID(), err)
	}
	return nil
}

// SetGenerator changes a generator subscription's rate, count, burst and
// payload size.
func (s *Subscription) SetGenerator(g Generator) error {
	res, err := s.ring().control(0, nil, func(sqe *abi.SQE) error {
		sqe.Opcode = abi.OpGenSet
		sqe.Target = s.id.Load()
		g.fill(sqe.Gen())
		return nil
	})
	if err == nil {
		err = errno(res)
	}
	if err != nil {
		return fmt.Errorf("goaem: set generator %#x: %w", s.ID(), err)
	}
	return nil
}

// Stats are a subscription's counters. Produced == Delivered + Backlog +
// Dropped whenever they are read.
type Stats struct {
	Produced  uint64 // events the source produced
	Delivered uint64 // written to a completion ring
	Backlog   uint64 // waiting in the overflow backlog
	Dropped   uint64 // dropped past the backlog bound
}

// Stats reads the subscription's counters from the kernel side while it
// lives; once it has ended (unsubscribed, or its source ended it) they are
// its final counts, which stay readable, after Close too.
func (s *Subscription) Stats() (Stats, error) {
	if f := s.extra().final; f != nil {
		return *f, nil
	}
	if !s.ring().life.acquire() {
		return Stats{}, ErrClosed
	}
	defer s.ring().life.release()
	st := abi.SubStats{ID: s.id.Load()}
	err := s.ring().be.subStats(&st)
	if errors.Is(err, syscall.ENOENT) && s.endStats {
		// It ended: the kernel side posted its counts as it forgot it, so
		// they are in the result ring (or its backlog, which draining
		// flushes) by now.
		s.ring().drainResults()
		if f := s.extra().final; f != nil {
			return *f, nil
		}
	}
	if err != nil {
		return Stats{}, fmt.Errorf("goaem: stats of %#x: %w", s.ID(), err)
	}
	return Stats{Produced: st.Produced, Delivered: st.Delivered, Backlog: st.Backlog, Dropped: st.Dropped}, nil
}

// setFinal keeps the final counts a result with abi.CQEFStats carries.
func (s *Subscription) setFinal(cqe *abi.CQE) {
	c := *(*abi.SubCounts)(unsafe.Pointer(&cqe.Data[0]))
	final := &Stats{Produced: c.Produced, Delivered: c.Delivered, Backlog: c.Backlog, Dropped: c.Dropped}
	slot := s.extSlot()
	for {
		old := slot.Load()
		x := &subExt{final: final}
		if old != nil {
			*x = *old
			x.final = final
		}
		if slot.CompareAndSwap(old, x) {
			return
		}
	}
}

// retire records one end of s (overEvent, overCounts) and takes s out of
// the table when both are in, or the event alone when no counts will come.
func (r *Ring) retire(s *Subscription, end uint32) {
	need := overEvent
	if s.endStats {
		need |= overCounts
	}
	if old := s.state.Or(end); old&end == 0 && (old|end)&need == need {
		r.subs.remove(s.handle)
	}
}

// RingStats are the ring's counters (abi.RingStats).
type RingStats = abi.RingStats

// Stats reads the ring's counters from the kernel side.
func (r *Ring) Stats() (RingStats, error) {
	if !r.life.acquire() {
		return RingStats{}, ErrClosed
	}
	defer r.life.release()
	var st abi.RingStats
	if err := r.be.ringStats(&st); err != nil {
		return st, fmt.Errorf("goaem: ring stats: %w", err)
	}
	return st, nil
}

// subTable maps the tag an event carries to its Subscription without a map
// lookup: tag = generation<<32 | index+1, a two-level table read with
// atomics, so the reader takes no lock.
const (
	subChunkShift = 10
	subChunk      = 1 << subChunkShift
)

type subSlots [subChunk]atomic.Pointer[Subscription]

type subTable struct {
	mu   sync.Mutex
	dir  atomic.Pointer[[]*subSlots]
	free []uint32
	next uint32
	gen  uint32
}

func (t *subTable) add(s *Subscription) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addLocked(s, t.gens(1))
}

// gens takes a run of n consecutive generations and returns its first:
// the subscribes of a batch get consecutive ones, so that their answers
// find their entries by generation (Batch.subGen). Under mu.
func (t *subTable) gens(n uint32) uint32 {
	if t.gen+n > subGenMask {
		t.gen = 0 // wrap to 1: a run never wraps
	}
	first := t.gen + 1
	t.gen += n
	return first
}

// subGenMask bounds generations to 30 bits: handles keep bits 62 and 63
// clear, so they are never op tags.
const subGenMask = 1<<30 - 1

// addLocked puts s in the table under generation gen and returns its
// handle. Under mu.
func (t *subTable) addLocked(s *Subscription, gen uint32) uint64 {
	var idx uint32
	if k := len(t.free); k != 0 {
		idx = t.free[k-1]
		t.free = t.free[:k-1]
	} else {
		idx = t.next
		t.next++
	}
	var dir []*subSlots
	if d := t.dir.Load(); d != nil {
		dir = *d
	}
	if c := int(idx >> subChunkShift); c >= len(dir) {
		grown := make([]*subSlots, c+1, 2*(c+1))
		copy(grown, dir)
		grown[c] = new(subSlots)
		t.dir.Store(&grown)
		dir = grown
	}
	s.handle = uint64(gen)<<32 | uint64(idx+1)
	dir[idx>>subChunkShift][idx&(subChunk-1)].Store(s)
	return s.handle
}

func (t *subTable) get(h uint64) *Subscription {
	idx := uint32(h) - 1
	d := t.dir.Load()
	if d == nil || h&(tagOp|tagSilent) != 0 || int(idx>>subChunkShift) >= len(*d) {
		return nil
	}
	s := (*d)[idx>>subChunkShift][idx&(subChunk-1)].Load()
	if s == nil || s.handle != h {
		return nil
	}
	return s
}

func (t *subTable) remove(h uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	idx := uint32(h) - 1
	d := t.dir.Load()
	if d == nil || int(idx>>subChunkShift) >= len(*d) {
		return
	}
	p := &(*d)[idx>>subChunkShift][idx&(subChunk-1)]
	if s := p.Load(); s != nil && s.handle == h {
		p.Store(nil)
		t.free = append(t.free, idx)
	}
}

func (t *subTable) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.dir.Load(); d != nil {
		for _, c := range *d {
			for i := range c {
				if s := c[i].Load(); s != nil {
					s.setEnded()
				}
				c[i].Store(nil)
			}
		}
	}
}
