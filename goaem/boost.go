package goaem

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/aem-dev/aem/goaem/abi"

	"golang.org/x/sys/unix"
)

// The boost (WithBoost) is goaem's own, on both backends: the module's
// AEM_SETUP_BOOST raises a task that sleeps in its enter ioctl, where goaem
// never sleeps (it waits in the netpoller), and the embedded backend has
// nothing that would apply it and refuses it. So goaem raises the threads
// that run urgent handlers itself: Run's goroutine is locked to its OS
// thread, and that thread's nice value lowered to BoostNice, from the read
// that finds class 0 events until the first read that finds class 0 empty
// (or Run's return), when the thread gets its nice value back and the lock
// goes; a ModeSpawn or ModeClone handler of a class 0 event runs on a
// thread boosted the same way for as long as it runs. A thread is only
// lowered, never raised: one already at BoostNice or below stays as it is.
// Threads the runtime starts meanwhile come from its template thread, not
// from the locked one, so they never inherit the boost.

// BoostNice is the nice value of a thread running urgent handlers with
// WithBoost: the module's default boost_nice.
const BoostNice = -10

// setThreadNice and threadNice act on one OS thread (setpriority and
// getpriority with PRIO_PROCESS and a thread id act on that thread alone
// on Linux). A variable so that tests can refuse as an unprivileged
// process would be refused.
var setThreadNice = func(tid, nice int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, tid, nice)
}

func threadNice(tid int) (int, error) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return 0, err
	}
	return 20 - prio, nil // the system call's value is 20 - nice
}

// threadBoost is the boost of the calling goroutine's thread: one
// goroutine's own (Run's reader, a spawned handler).
type threadBoost struct {
	on      bool // the goroutine is locked to its thread, boosted or at BoostNice already
	changed bool // its nice value was lowered: saved goes back
	tid     int
	saved   int
}

// set boosts the calling goroutine's thread (urgent) or restores it. The
// errors it meets are counted in AsyncErrors: a boost that cannot be
// applied or undone must not stop the handlers.
func (b *threadBoost) set(r *Ring, urgent bool) {
	if urgent == b.on {
		return
	}
	if urgent {
		runtime.LockOSThread()
		b.on, b.changed, b.tid = true, false, unix.Gettid()
		saved, err := threadNice(b.tid)
		if err == nil && saved > BoostNice {
			if err = setThreadNice(b.tid, BoostNice); err == nil {
				b.changed, b.saved = true, saved
			}
		}
		if err != nil {
			r.async.fail(fmt.Errorf("goaem: boost thread %d: %w", b.tid, err))
		}
		return
	}
	b.on = false
	if b.changed {
		if err := setThreadNice(b.tid, b.saved); err != nil {
			// Left boosted: keep the goroutine on it, so that the thread
			// ends with the goroutine instead of serving others boosted.
			r.async.fail(fmt.Errorf("goaem: restore thread %d to nice %d: %w", b.tid, b.saved, err))
			return
		}
	}
	runtime.UnlockOSThread()
}

// checkBoost is WithBoost's check at Open: can this thread be raised to
// BoostNice? It needs CAP_SYS_NICE (or an RLIMIT_NICE that allows it).
func checkBoost() error {
	runtime.LockOSThread()
	tid := unix.Gettid()
	saved, err := threadNice(tid)
	if err == nil && saved > BoostNice {
		if err = setThreadNice(tid, BoostNice); err == nil {
			if rerr := setThreadNice(tid, saved); rerr != nil {
				// Still boosted: the thread stays with this goroutine and
				// ends with it.
				return fmt.Errorf("goaem: open: restore thread %d to nice %d: %w", tid, saved, rerr)
			}
		}
	}
	runtime.UnlockOSThread()
	if err != nil {
		return fmt.Errorf("goaem: open: WithBoost raises the threads of urgent handlers to nice %d, which needs CAP_SYS_NICE: %w",
			BoostNice, err)
	}
	return nil
}

// urgentReady reports whether class 0 holds events, in its ring or in the
// kernel side's backlog.
func (r *Ring) urgentReady() bool {
	cq := &r.cq[0]
	return atomic.LoadUint32(cq.ktail) != atomic.LoadUint32(cq.khead) ||
		atomic.LoadUint32(cq.kflags)&abi.CQFOverflow != 0
}

// hasUrgent reports whether a batch holds class 0 events. The reader
// reads class 0 first, so a batch without them found class 0 empty.
func hasUrgent(evs []Event) bool {
	for i := range evs {
		if evs[i].cqe.Prio == 0 {
			return true
		}
	}
	return false
}
