package goaem

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Close completes while other goroutines keep calling the ring, as they
// may before they notice ErrClosed: a call that finds the ring closing must
// not hold Close up. Afterwards every call gets ErrClosed.
func TestCloseWhileCallersHammer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		const callers = 16
		deadline := time.Now().Add(10 * time.Second) // bounds the loops whatever Close does
		var stop atomic.Bool
		call := func(g int) error {
			switch g % 4 {
			case 0, 1:
				_, err := r.Stats()
				return err
			case 2:
				if err := r.Post(r.Addr(1), []byte{1}, 0); !errors.Is(err, ErrBusy) {
					return err
				}
				return nil
			default:
				_, err := r.Poll(make([]Event, 4))
				if errors.Is(err, ErrConcurrentRead) {
					return nil
				}
				return err
			}
		}
		lastErr := make([]error, callers)
		var started, done sync.WaitGroup
		for g := 0; g < callers; g++ {
			started.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				started.Done()
				for i := 0; i < 1e8 && !stop.Load() && time.Now().Before(deadline); i++ {
					_ = call(g)
				}
				lastErr[g] = call(g)
			}()
		}
		started.Wait()
		time.Sleep(20 * time.Millisecond) // let them hammer

		closed := make(chan error, 1)
		begun := time.Now()
		go func() { closed <- r.Close() }()
		select {
		case err := <-closed:
			assert.NoError(t, err)
			t.Logf("Close took %v with %d callers", time.Since(begun), callers)
		case <-time.After(5 * time.Second):
			t.Errorf("Close did not return within 5 s while %d goroutines called the ring", callers)
		}
		stop.Store(true)
		done.Wait()
		for g, err := range lastErr {
			assert.ErrorIs(t, err, ErrClosed, "caller %d after Close", g)
		}
	})
}

// A call that finds the ring closing leaves the count alone, however many
// keep trying: Close waits for the calls inside and for no others.
func TestLifeClosedCallsDoNotCount(t *testing.T) {
	l := life{idle: make(chan struct{}, 1)}
	require.True(t, l.acquire(), "an open ring lets a call in")
	l.close()
	var stop atomic.Bool
	var tries atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1e7 && !stop.Load(); i++ {
				if l.acquire() {
					l.release()
					t.Error("a call entered a closed ring")
					return
				}
				tries.Add(1)
			}
		}()
	}
	// Watch the count while the turned-away calls pile up (bounded in time).
	for end := time.Now().Add(5 * time.Second); tries.Load() < 200000 && time.Now().Before(end); {
		if v := l.refs.Load(); v != lifeClosed+1 {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("count %d with one call inside: a turned-away call raised it", v-lifeClosed)
		}
	}
	left := make(chan struct{})
	go func() {
		l.wait()
		close(left)
	}()
	l.release()
	select {
	case <-left:
	case <-time.After(5 * time.Second):
		t.Error("wait did not return after the last call inside left")
	}
	stop.Store(true)
	wg.Wait()
}
