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
		case <-time.After(2 * time.Second):
			t.Errorf("Close did not return within 2 s while %d goroutines called the ring", callers)
		}
		stop.Store(true)
		done.Wait()
		for g, err := range lastErr {
			assert.ErrorIs(t, err, ErrClosed, "caller %d after Close", g)
		}
	})
}
