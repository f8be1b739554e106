package goaem

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// procNice reads a thread's nice value from /proc/self/task/TID/stat
// (field 19), apart from the getpriority goaem itself uses.
func procNice(t *testing.T, tid int) int {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	require.NoError(t, err)
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // fields from 3 (state) on
	nice, err := strconv.Atoi(fields[19-3])
	require.NoError(t, err)
	return nice
}

// canBoost skips a test that needs to raise a thread's priority.
func canBoost(t *testing.T) {
	if err := checkBoost(); err != nil {
		t.Skipf("cannot raise a thread to nice %d here: %v", BoostNice, err)
	}
}

type niceSeen struct {
	class, tid, nice int
}

// With WithBoost the thread running urgent handlers runs at BoostNice
// while class 0 events are handled, inline (Run's thread) and spawned, and
// gets its own nice value back once class 0 is drained; class 1 handlers
// and rings without the option run unboosted.
func TestBoostUrgentHandlers(t *testing.T) {
	canBoost(t)
	// Unboosted threads keep the process's nice value (the test may run under nice).
	base := procNice(t, unix.Getpid())
	forEachBackend(t, func(t *testing.T, b testBackend) {
		for _, tc := range []struct {
			name  string
			boost bool
			mode  HandlerMode
		}{{"inline", true, ModeInline}, {"spawn", true, ModeSpawn}, {"off", false, ModeInline}} {
			t.Run(tc.name, func(t *testing.T) {
				var opts []Option
				if tc.boost {
					opts = append(opts, WithBoost())
				}
				r := b.open(t, append(opts, WithClasses(2))...)
				ctx := testCtx(t)
				var mu sync.Mutex
				var seen []niceSeen
				done := make(chan struct{}, 16)
				_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Mode: tc.mode, Handler: func(ev *Event) error {
					tid := unix.Gettid()
					mu.Lock()
					seen = append(seen, niceSeen{ev.Class(), tid, procNice(t, tid)})
					mu.Unlock()
					done <- struct{}{}
					return nil
				}})
				require.NoError(t, err)
				runCtx, stop := context.WithCancel(ctx)
				ran := make(chan error, 1)
				go func() { ran <- r.Run(runCtx, nil) }()

				// Bounded: a handler whose check failed ends its goroutine without a word.
				handled := func(what string) {
					select {
					case <-done:
					case err := <-ran:
						t.Fatalf("Run ended before the %s event was handled: %v", what, err)
					case <-time.After(10 * time.Second):
						t.Fatalf("the %s event was not handled within 10 s", what)
					}
				}
				require.NoError(t, r.Post(r.Addr(1), []byte("urgent"), 0))
				handled("urgent")
				require.NoError(t, r.Post(r.Addr(1), []byte("later"), 1))
				handled("later")
				stop()
				require.ErrorIs(t, <-ran, context.Canceled)

				mu.Lock()
				defer mu.Unlock()
				require.Len(t, seen, 2)
				urgent, later := seen[0], seen[1]
				require.Equal(t, 0, urgent.class)
				require.Equal(t, 1, later.class)
				if tc.boost {
					assert.Equal(t, BoostNice, urgent.nice, "class 0 handler boosted")
				} else {
					assert.Equal(t, base, urgent.nice, "no boost without WithBoost")
				}
				assert.Equal(t, base, later.nice, "class 1 handler not boosted")
				assert.Equal(t, base, procNice(t, urgent.tid), "the urgent handler's thread restored")
				n, aerr := r.AsyncErrors()
				assert.Zero(t, n, "no boost failed: %v", aerr)
			})
		}
	})
}

// Without the right to raise a thread, WithBoost fails at Open with a
// clear error, on every backend: through a hook that refuses as the
// kernel would, and for real on a thread without CAP_SYS_NICE.
func TestBoostRefusedWithoutCapSysNice(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		t.Run("hook", func(t *testing.T) {
			orig := setThreadNice
			setThreadNice = func(int, int) error { return syscall.EPERM }
			defer func() { setThreadNice = orig }()
			_, err := openErr(t, b, WithBoost())
			require.ErrorIs(t, err, syscall.EPERM)
			assert.Contains(t, err.Error(), "CAP_SYS_NICE")
			_, err = openErr(t, b) // without the option nothing is asked
			require.NoError(t, err)
		})
		t.Run("capability dropped", func(t *testing.T) {
			canBoost(t)
			errc := make(chan error, 1)
			go func() {
				// Capabilities are per thread: drop CAP_SYS_NICE from this
				// one, and never unlock it, so it ends with the goroutine.
				runtime.LockOSThread()
				hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
				var data [2]unix.CapUserData
				if err := unix.Capget(&hdr, &data[0]); err != nil {
					errc <- err
					return
				}
				data[0].Effective &^= 1 << unix.CAP_SYS_NICE
				if err := unix.Capset(&hdr, &data[0]); err != nil {
					errc <- err
					return
				}
				_, err := openErr(t, b, WithBoost())
				errc <- err
			}()
			err := <-errc
			require.Error(t, err)
			assert.True(t, errorsIsAny(err, syscall.EPERM, syscall.EACCES), "want EPERM or EACCES: %v", err)
			assert.Contains(t, err.Error(), "CAP_SYS_NICE")
		})
	})
}

// openErr opens a ring on b's backend and returns Open's error instead of
// failing the test; a ring opened is closed.
func openErr(t *testing.T, b testBackend, opts ...Option) (*Ring, error) {
	var r *Ring
	var err error
	switch b.name {
	case "heap":
		cfg := defaultConfig()
		for _, o := range opts {
			o(&cfg)
		}
		k := newHeapKernel(t, cfg.params)
		if r, err = newRing(cfg, k, &k.p, k.regions); err != nil {
			_ = k.close()
		}
	default:
		r, err = Open(append([]Option{WithBackend(backendOf(b.name))}, opts...)...)
	}
	if err == nil {
		r.Close()
	}
	return r, err
}

func backendOf(name string) Backend {
	if name == "kernel" {
		return BackendKernel
	}
	return BackendEmbedded
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
