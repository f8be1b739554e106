//go:build cgo

package goaem

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary serve as its own handler process.
func TestMain(m *testing.M) {
	ServeProcessHandler()
	os.Exit(m.Run())
}

const testProcHandler = "goaem-test"

// By the payload's first byte: 'r' reverses the rest in place and appends
// the process's pid; 'w' waits 200 ms first; 'c' panics; 'k' dies of a
// signal; 'e' exits; 's' sleeps past any timeout; 'f' fails, quoting what
// it was given.
func init() {
	RegisterProcessHandler(testProcHandler, func(d []byte) (int, error) {
		if len(d) == 0 {
			return 0, nil
		}
		switch d[0] {
		case 'c':
			var p *int
			*p = 1 // a nil dereference: the Go runtime panics, exit status 2
		case 'k':
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		case 'e':
			os.Exit(7)
		case 's':
			time.Sleep(time.Minute)
		case 'f':
			return 0, fmt.Errorf("refused %q", d)
		case 'w':
			time.Sleep(200 * time.Millisecond)
		}
		slices.Reverse(d[1:])
		if cap(d) < len(d)+4 {
			return 0, fmt.Errorf("no room for the pid")
		}
		d = binary.LittleEndian.AppendUint32(d, uint32(os.Getpid()))
		return len(d), nil
	})
}

// procServer subscribes a ProcessHandler to channel 1 of a new ring and
// runs it; handler errors arrive on the returned channel.
func procServer(t *testing.T, b testBackend, opts ProcessOptions) (*Ring, *ProcessHandler, <-chan error) {
	errs := make(chan error, 16)
	r := b.open(t, WithErrorHandler(func(_ *Event, err error) { errs <- err }))
	ph, err := r.NewProcessHandler(opts)
	require.NoError(t, err)
	t.Cleanup(func() { ph.Close() })
	_, err = r.Subscribe(Msg{Channel: 1}, SubOptions{Mode: ModeSpawn, Handler: ph.Handle, MaxInFlight: opts.MaxProcs})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, ph, errs
}

// callReversed calls with req ("r..." or "w...") and checks the reply: the
// rest reversed, then the pid of the process that served it.
func callReversed(t *testing.T, r *Ring, req string) int {
	reply, err := r.Call(testCtx(t), r.Addr(1), []byte(req))
	require.NoError(t, err, "call %q", req)
	require.Len(t, reply, len(req)+4, "reply %q", reply)
	want := []byte(req)
	slices.Reverse(want[1:])
	assert.Equal(t, string(want), string(reply[:len(req)]))
	return int(binary.LittleEndian.Uint32(reply[len(req):]))
}

func procBackends(t *testing.T, f func(t *testing.T, b testBackend)) {
	for _, b := range testBackends {
		if b.name != "heap" { // its payload is Go memory: nothing to share
			t.Run(b.name, func(t *testing.T) { f(t, b) })
		}
	}
}

func TestProcessHandlerInPlace(t *testing.T) {
	procBackends(t, func(t *testing.T, b testBackend) {
		for _, pool := range []bool{false, true} {
			t.Run(fmt.Sprintf("pool=%v", pool), func(t *testing.T) {
				r, _, errs := procServer(t, b, ProcessOptions{Handler: testProcHandler, MaxProcs: 2, Pool: pool})
				var pids []int
				for _, word := range []string{"rstressed", "rdrawer", "rlive", "r" + string(make([]byte, 100))} {
					pids = append(pids, callReversed(t, r, word))
				}
				assert.NotContains(t, pids, os.Getpid(), "the handler ran in the test process")
				distinct := len(slices.Compact(slices.Sorted(slices.Values(pids))))
				if pool {
					assert.LessOrEqual(t, distinct, 2, "four events on a pool of two: pids %v", pids)
				} else {
					assert.Equal(t, len(pids), distinct, "a new process per event: pids %v", pids)
				}
				assert.Empty(t, errs)
			})
		}
	})
}

// At most MaxProcs at once: four 200 ms handlers on two processes take two
// rounds, and a pool serves them with its two processes only.
func TestProcessHandlerBound(t *testing.T) {
	procBackends(t, func(t *testing.T, b testBackend) {
		r, _, _ := procServer(t, b, ProcessOptions{Handler: testProcHandler, MaxProcs: 2, Pool: true})
		var mu sync.Mutex
		pids := map[int]bool{}
		var wg sync.WaitGroup
		start := time.Now()
		for range 4 {
			wg.Go(func() {
				pid := callReversed(t, r, "wbound")
				mu.Lock()
				pids[pid] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		assert.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond, "four 200 ms handlers, two at a time")
		assert.LessOrEqual(t, len(pids), 2, "pool of two served by %v", pids)
	})
}

// A process that crashes, exits, hangs or fails is the event's error; the
// caller gets an error reply (EIO) before its own timeout; the ring and
// the handler go on.
func TestProcessHandlerFailures(t *testing.T) {
	procBackends(t, func(t *testing.T, b testBackend) {
		for _, pool := range []bool{false, true} {
			t.Run(fmt.Sprintf("pool=%v", pool), func(t *testing.T) {
				r, _, errs := procServer(t, b, ProcessOptions{
					// Timeout: generous for a loaded TCG guest, where a
					// trivial handler once took over 500 ms.
					Handler: testProcHandler, MaxProcs: 2, Pool: pool, Timeout: 2 * time.Second})
				before := callReversed(t, r, "rbefore")
				for _, tc := range []struct {
					req, msg string
					want     error
				}{
					{"crash", "exit status 2", ErrProcessDied},
					{"kill", "signal: killed", ErrProcessDied},
					{"exit", "exit status 7", ErrProcessDied},
					{"sleep", "killed", ErrProcessTimeout},
					{"fail", `refused "fail"`, nil},
				} {
					_, err := r.Call(testCtx(t), r.Addr(1), []byte(tc.req))
					assert.ErrorIs(t, err, syscall.EIO, "call %q: the error reply", tc.req)
					select {
					case herr := <-errs:
						var he *HandlerError
						require.True(t, errors.As(herr, &he), "%v", herr)
						if tc.want != nil {
							assert.ErrorIs(t, herr, tc.want)
						}
						assert.Contains(t, herr.Error(), tc.msg)
					case <-time.After(20 * time.Second): // a start under emulation may take seconds
						t.Fatalf("no error reported for %q", tc.req)
					}
				}
				pids := map[int]bool{}
				for range 4 {
					pids[callReversed(t, r, "rafter")] = true
				}
				if pool {
					// Crashes and the timeout ended processes: replacements serve, and are reused.
					assert.LessOrEqual(t, len(pids), 2, "pool of two after failures: pids %v (first %d)", pids, before)
				} else {
					assert.Len(t, pids, 4)
					assert.NotContains(t, pids, before)
				}
				// Released slots are reclaimed at the kernel side's next submit.
				assert.Eventually(t, func() bool {
					require.NoError(t, r.Flush())
					st, err := r.Stats()
					require.NoError(t, err)
					return st.SlotsFree == uint64(r.pay.slotCount)
				}, 5*time.Second, 10*time.Millisecond, "every slot back with the ring")
			})
		}
	})
}

// An inline event (a post of at most 32 bytes) reaches the process through
// the shared scratch area.
func TestProcessHandlerInline(t *testing.T) {
	procBackends(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ph, err := r.NewProcessHandler(ProcessOptions{Handler: testProcHandler, MaxProcs: 1})
		require.NoError(t, err)
		defer ph.Close()
		_, err = r.Subscribe(Msg{Channel: 2}, SubOptions{})
		require.NoError(t, err)
		require.NoError(t, r.Post(r.Addr(2), []byte("finline"), 0))
		evs := make([]Event, 1)
		n, err := r.Wait(testCtx(t), evs, 1)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		err = ph.Handle(&evs[0])
		evs[0].Release()
		assert.ErrorContains(t, err, `refused "finline"`)
		require.NoError(t, ph.Close())
		assert.ErrorIs(t, ph.Handle(&evs[0]), ErrClosed)
	})
}

func TestProcessHandlerRefusals(t *testing.T) {
	heap, _ := newHeapRing(t)
	_, err := heap.NewProcessHandler(ProcessOptions{Handler: testProcHandler})
	assert.ErrorContains(t, err, "cannot share its payload region")
	r := openEmbedded(t)
	_, err = r.NewProcessHandler(ProcessOptions{Handler: "nobody"})
	assert.ErrorContains(t, err, "not registered")
	_, err = r.NewProcessHandler(ProcessOptions{Handler: testProcHandler, MaxProcs: -1})
	assert.Error(t, err)
	assert.Panics(t, func() { RegisterProcessHandler(testProcHandler, func([]byte) (int, error) { return 0, nil }) })
}

// A pooled process killed between events is replaced before the next one,
// which it does not fail.
func TestProcessHandlerPoolReplacesDead(t *testing.T) {
	procBackends(t, func(t *testing.T, b testBackend) {
		r, _, errs := procServer(t, b, ProcessOptions{Handler: testProcHandler, MaxProcs: 1, Pool: true})
		pid := callReversed(t, r, "rfirst")
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		require.Eventually(t, func() bool { // reaped by the handler's waiter
			_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
			return os.IsNotExist(err)
		}, 10*time.Second, 10*time.Millisecond)
		assert.NotEqual(t, pid, callReversed(t, r, "rsecond"))
		assert.Empty(t, errs)
	})
}
