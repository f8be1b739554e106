package goaem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem/goaem/abi"
)

// Waiting goes through Go's netpoller on one dup of the ring's pollable fd
// (the embedded backend's eventfd, the module's device fd), so a blocked
// goroutine holds no OS thread.
//
// Exactly one blocked goroutine, the leader, waits on the fd; the others
// wait on a channel the leader closes whenever it wakes. One waiter per fd
// is not a detail: re-arming drains the eventfd, and epoll re-polls a
// file before reporting it, so a second waiter on another dup of the same
// eventfd could have its readiness drained away by the first and sleep
// through the event.

// pastTime as a deadline wakes the leader at once.
var pastTime = time.Unix(1, 0)

type hub struct {
	mu      sync.Mutex
	f       *os.File
	rc      syscall.RawConn
	leading atomic.Bool
	gen     chan struct{} // closed when the leader wakes: followers look again
	epoch   atomic.Uint64 // bumped with every wake-up of the followers
	closed  bool

	// The read deadline last set on f, and whether a nudge moved it since:
	// a leader whose ctx has the same deadline need not set it again.
	deadline time.Time
	nudged   bool
	// watched is the Done channel of the context whose cancellation
	// nudges the leader; registering one (context.AfterFunc) allocates,
	// so it stays registered for the next wait with the same context (Run
	// and poll loops pass one context to every wait).
	watched   <-chan struct{}
	stopWatch func() bool
}

// leadFile returns the fd the leader waits on (made on first use) with
// its read deadline set to ctx's and ctx's cancellation watched.
func (r *Ring) leadFile(ctx context.Context) (syscall.RawConn, error) {
	h := &r.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.f == nil {
		if err := r.openHubFileLocked(); err != nil {
			return nil, err
		}
	}
	deadline, _ := ctx.Deadline()
	if h.nudged || !deadline.Equal(h.deadline) {
		if err := h.f.SetReadDeadline(deadline); err != nil {
			return nil, r.closedOr(err)
		}
		h.deadline, h.nudged = deadline, false
	}
	if done := ctx.Done(); done != nil && done != h.watched {
		if h.stopWatch != nil {
			h.stopWatch()
		}
		h.watched, h.stopWatch = done, context.AfterFunc(ctx, r.nudgeFn)
	}
	// A cancellation whose nudge came before the deadline was reset above
	// would be lost: look at ctx once more, now that a later one would
	// nudge the file.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return h.rc, nil
}

func (r *Ring) openHubFileLocked() error {
	h := &r.hub
	fd, err := unix.FcntlInt(uintptr(r.be.pollFD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("goaem: dup ring fd: %w", err)
	}
	// The netpoller only takes non-blocking fds. The flag is shared with
	// libaem's own fd, which it only ever reads without blocking.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("goaem: ring fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "aem-ring")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return fmt.Errorf("goaem: ring fd: %w", err)
	}
	h.f, h.rc = f, rc
	return nil
}

// closeHub wakes the leader (closing its file ends its wait) and keeps new
// waiters out; followers see closedCh. The file is closed after hub.mu is
// released: Close waits for the leader's read to return, and the leader's
// look may be routing a result, which nudges, which takes hub.mu.
func (r *Ring) closeHub() {
	h := &r.hub
	h.mu.Lock()
	h.closed = true
	f := h.f
	h.f = nil // nudges leave it alone from now on
	if h.stopWatch != nil {
		h.stopWatch()
		h.watched, h.stopWatch = nil, nil
	}
	h.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// wakeAll makes every blocked goroutine look again: events were stashed or
// put back by a goroutine that is not reading them, and those waiting for
// events will not get a readiness edge for them (it may have been taken
// already). The followers' channel is closed and the leader nudged.
func (r *Ring) wakeAll() {
	h := &r.hub
	h.mu.Lock()
	h.wakeFollowersLocked()
	h.mu.Unlock()
	r.nudge()
}

func (h *hub) wakeFollowersLocked() {
	h.epoch.Add(1)
	if h.gen != nil {
		close(h.gen)
		h.gen = nil
	}
}

// nudge wakes the leader to look again: a result was routed, or events
// were stashed or put back by someone else.
func (r *Ring) nudge() {
	if r.hub.leading.Load() {
		r.hub.mu.Lock()
		if f := r.hub.f; f != nil && !r.hub.closed {
			_ = f.SetReadDeadline(pastTime)
			r.hub.nudged = true
		}
		r.hub.mu.Unlock()
	}
}

// looker is what a blocked goroutine waits for: look reports whether it
// is there, after taking what is ready.
type looker interface {
	look() bool
}

// block returns once c.look reports done, ctx ends or the ring closes; a
// token on extra makes it look again at once, and took says it was taken.
// It allocates nothing but a follower's wake-up channel.
func (r *Ring) block(ctx context.Context, c looker, extra <-chan struct{}) (took bool, err error) {
	h := &r.hub
	for {
		// A wake-up between the look and the sleep below must not be
		// lost: it bumps the epoch, and a changed epoch means look again.
		epoch := h.epoch.Load()
		if c.look() {
			return took, nil
		}
		if err := ctx.Err(); err != nil {
			return took, err
		}
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return took, ErrClosed
		}
		if h.epoch.Load() != epoch {
			h.mu.Unlock()
			continue
		}
		if !h.leading.Load() {
			h.leading.Store(true)
			h.mu.Unlock()
			done, err := r.lead(ctx, c)
			h.mu.Lock()
			h.leading.Store(false)
			h.wakeFollowersLocked()
			h.mu.Unlock()
			if err != nil || done {
				return took, err
			}
			continue
		}
		if h.gen == nil {
			h.gen = make(chan struct{})
		}
		gen := h.gen
		h.mu.Unlock()
		select {
		case <-gen:
		case <-extra:
			took, extra = true, nil // one token: never wait for another
		case <-ctx.Done():
			return took, ctx.Err()
		case <-r.closedCh:
			return took, ErrClosed
		}
	}
}

// leader is the state of the goroutine leading on the fd; only the leader
// touches it (hub.leading hands it over under hub.mu).
type leader struct {
	c       looker
	looks   int
	done    bool
	err     error
	readyFn func(uintptr) bool // leader.ready, bound once
}

// ready runs for each look of the leader: at first, and after each
// readiness of the fd. The first look re-arms the fd before it, so an
// event published after the look wakes us (Dekker: the arm's full barrier
// orders it before the re-check).
func (r *Ring) ready(uintptr) bool {
	l := &r.leader
	l.looks++
	if r.isClosed() {
		l.err = ErrClosed
		return true
	}
	// After a readiness the leader returns whatever the look finds, and
	// the next sleep arms again before its last look: no arm needed here.
	if l.looks == 1 {
		if err := r.be.arm(); err != nil {
			l.err = fmt.Errorf("goaem: arm ring fd: %w", err)
			return true
		}
	}
	l.done = l.c.look()
	return l.done || l.looks > 1
}

// lead waits on the ring fd until the look reports done or the fd becomes
// readable (then the caller wakes the followers and looks again).
func (r *Ring) lead(ctx context.Context, c looker) (done bool, err error) {
	rc, err := r.leadFile(ctx)
	if err != nil {
		return false, err
	}
	l := &r.leader
	l.c, l.looks, l.done, l.err = c, 0, false, nil
	rerr := rc.Read(l.readyFn)
	done, err = l.done, l.err
	l.c, l.err = nil, nil
	switch {
	case r.isClosed():
		return done, ErrClosed
	case err != nil:
		return done, err
	case rerr == nil:
		return done, nil
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		if cerr := ctx.Err(); cerr != nil {
			return done, cerr
		}
		if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
			return done, context.DeadlineExceeded
		}
		return done, nil // a nudge
	default:
		return done, r.closedOr(fmt.Errorf("goaem: wait on ring fd: %w", rerr))
	}
}

func (r *Ring) closedOr(err error) error {
	if r.isClosed() {
		return ErrClosed
	}
	return err
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
	ew := r.ewFree.Swap(nil)
	if ew == nil {
		ew = new(eventsWait) // another Wait blocks already
	}
	ew.r, ew.batch, ew.n, ew.want = r, batch, n, want
	_, err := r.block(ctx, ew, nil)
	n = ew.n
	ew.r, ew.batch = nil, nil
	r.ewFree.Store(ew)
	return n, err
}

// eventsWait is a Wait that blocks: fill batch[n:] until n >= want.
type eventsWait struct {
	r       *Ring
	batch   []Event
	n, want int
}

func (w *eventsWait) look() bool {
	w.n += w.r.poll(w.batch[w.n:])
	return w.n >= w.want
}

// awaitOp waits for o's result, busy-polling for up to spin first. When
// it returns, o is complete and its token taken, or o was unregistered
// unanswered (and the error says why): either way it can be recycled.
func (r *Ring) awaitOp(ctx context.Context, o *op, ud uint64, spin time.Duration) error {
	if spin > 0 {
		r.spinOp(o, spin)
	}
	took, err := false, error(nil)
	if !o.done.Load() {
		took, err = r.block(ctx, o, o.ch)
	}
	if err != nil && r.abandonOp(o, ud) {
		return err
	}
	if !took {
		<-o.ch // sent right after done: at most a moment away
	}
	return nil
}

// spinOp busy-polls for o's result for up to d, reading this ring's
// completions (routing results, keeping events for the reader) whenever
// there are any.
func (r *Ring) spinOp(o *op, d time.Duration) {
	start := time.Now()
	for i := 1; !o.done.Load(); i++ {
		if r.cqPending() {
			r.progressOp(o)
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

// cqPending reports whether a completion ring (an event ring or the result
// ring) has entries or a backlog to flush: cheap enough for a spin loop.
func (r *Ring) cqPending() bool {
	pending := func(cq *cqView) bool {
		return atomic.LoadUint32(cq.ktail) != atomic.LoadUint32(cq.khead) ||
			atomic.LoadUint32(cq.kflags)&abi.CQFOverflow != 0
	}
	for c := 0; c < r.classes; c++ {
		if pending(&r.cq[c]) {
			return true
		}
	}
	return pending(&r.res)
}

func (o *op) look() bool { return o.r.progressOp(o) }

// progressOp reaps what is ready into the stash (routing results) and
// reports whether o is done.
func (r *Ring) progressOp(o *op) bool {
	if o.done.Load() {
		return true
	}
	r.cmu.Lock()
	stashed := r.stashed
	r.reapToStash()
	more := r.stashed > stashed
	r.cmu.Unlock()
	if more {
		r.wakeAll() // readers waiting for events must see what we kept for them
	}
	return o.done.Load()
}
