package goaem

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Sleeping goes through Go's netpoller on dups of the ring's pollable fd
// (the embedded backend's eventfd, the module's device fd), so a blocked
// goroutine holds no OS thread. A ring has two: the event reader's and the
// result pump's, one sleeper each (the netpoller serializes the reads of a
// file). Every wake-up reaches both: each dup has its own entry in the
// netpoller's epoll set, whose edge-triggered readiness nothing consumes
// but the wait itself (goaem never reads the eventfd's counter; see
// aem_ring_fd_arm), so neither sleeper can take the other's wake-up.

// pastTime as a read deadline wakes the sleeper at once.
var pastTime = time.Unix(1, 0)

// pollFile is one dup of the ring fd and the state of the one goroutine
// that sleeps on it.
type pollFile struct {
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
	arm    func() error // re-arms the fd before the last look and the sleep
	look   func() bool  // takes what is ready; reports whether the sleeper is done
	onRead func(uintptr) bool
	nudgeF func()

	// The sleeper's; ready runs in its goroutine.
	looks int
	done  bool
	err   error

	// The read deadline last set, and whether a nudge moved it since.
	deadline time.Time
	nudged   atomic.Bool
	// watched is the Done channel of the context whose cancellation
	// nudges the sleeper. Registering one (context.AfterFunc) allocates,
	// so it stays registered for the next wait with the same context (Run
	// and poll loops pass one context to every wait).
	watched   <-chan struct{}
	stopWatch func() bool
}

func openPollFile(fd int, arm func() error, look func() bool) (*pollFile, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("goaem: dup ring fd: %w", err)
	}
	// The netpoller only takes non-blocking fds. The flag is shared with
	// libaem's own fd, which it only ever reads without blocking.
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, fmt.Errorf("goaem: ring fd non-blocking: %w", err)
	}
	p := &pollFile{f: os.NewFile(uintptr(dup), "aem-ring"), arm: arm, look: look}
	if p.rc, err = p.f.SyscallConn(); err != nil {
		p.f.Close()
		return nil, fmt.Errorf("goaem: ring fd: %w", err)
	}
	p.onRead, p.nudgeF = p.ready, p.nudge // bound once: a wait allocates nothing
	return p, nil
}

// close wakes the sleeper (its read fails) and keeps new ones out.
func (p *pollFile) close() {
	p.closed.Store(true)
	p.f.Close()
}

// unwatch drops the context watch once no sleeper is left (after close).
func (p *pollFile) unwatch() {
	if p.stopWatch != nil {
		p.stopWatch()
		p.watched, p.stopWatch = nil, nil
	}
}

// nudge wakes the sleeper to look again. The deadline goes first, then
// the flag: watch resets the deadline whenever the flag is set, so a past
// deadline never outlives the flag. (A nudge can come late: the
// cancellation of a context an earlier wait watched runs its AfterFunc
// in a goroutine of its own.)
func (p *pollFile) nudge() {
	_ = p.f.SetReadDeadline(pastTime)
	p.nudged.Store(true)
}

// wait returns once look reports done (done true), after a wake-up
// (done false: look again), when ctx ends or the file is closed.
func (p *pollFile) wait(ctx context.Context) (done bool, err error) {
	if err := p.watch(ctx); err != nil {
		return false, err
	}
	p.looks, p.done, p.err = 0, false, nil
	rerr := p.rc.Read(p.onRead)
	done, err = p.done, p.err
	p.err = nil
	switch {
	case p.closed.Load():
		return done, ErrClosed
	case err != nil || rerr == nil:
		return done, err
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		if cerr := ctx.Err(); cerr != nil {
			return done, cerr
		}
		if deadline, ok := ctx.Deadline(); ok && !time.Now().Before(deadline) {
			return done, context.DeadlineExceeded
		}
		return done, nil // a nudge
	default:
		return done, fmt.Errorf("goaem: wait on ring fd: %w", rerr)
	}
}

// watch sets the read deadline to ctx's and has ctx's cancellation nudge
// the sleeper.
func (p *pollFile) watch(ctx context.Context) error {
	deadline, _ := ctx.Deadline()
	if p.nudged.Swap(false) || !deadline.Equal(p.deadline) {
		if err := p.f.SetReadDeadline(deadline); err != nil {
			if p.closed.Load() {
				return ErrClosed
			}
			return fmt.Errorf("goaem: ring fd deadline: %w", err)
		}
		p.deadline = deadline
	}
	if done := ctx.Done(); done != nil && done != p.watched {
		if p.stopWatch != nil {
			p.stopWatch()
		}
		p.watched, p.stopWatch = done, context.AfterFunc(ctx, p.nudgeF)
	}
	// A cancellation whose nudge came before the deadline was reset above
	// would be lost: look at ctx once more, now that a later one would
	// nudge the file.
	return ctx.Err()
}

// ready is Read's callback: it runs at first and after each readiness of
// the fd. The first look re-arms the fd before it, so a completion
// published after the look wakes us (Dekker: the arm's full barrier
// orders it before the re-check). After a readiness the sleeper returns
// whatever the look finds; its next wait arms again before its last look.
func (p *pollFile) ready(uintptr) bool {
	p.looks++
	if p.closed.Load() {
		p.err = ErrClosed
		return true
	}
	if p.looks == 1 {
		if err := p.arm(); err != nil {
			p.err = fmt.Errorf("goaem: arm ring fd: %w", err)
			return true
		}
	}
	p.done = p.look()
	return p.done || p.looks > 1
}
