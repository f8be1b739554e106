package goaem

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runRecovering runs Run and returns what a handler panicked with, if any.
func runRecovering(ctx context.Context, r *Ring) (err error, panicked any) {
	defer func() { panicked = recover() }()
	return r.Run(ctx, nil), nil
}

// An inline handler's panic reaches Run's caller; the events of the batch
// dispatched before it and the one that panicked are handed back, and the
// rest stay in the rings: the next Run handles each of them exactly once.
func TestInlineHandlerPanicKeepsTheRestOfTheBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		const total, poison = 8, 3
		var handled [total]atomic.Int32
		var pending atomic.Int32
		pending.Store(total)
		ctx, stop := context.WithTimeout(testCtx(t), 5*time.Second)
		defer stop()
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error {
			i := ev.Payload()[0]
			handled[i].Add(1)
			if pending.Add(-1) == 0 {
				stop()
			}
			if i == poison {
				panic("poison")
			}
			return nil
		}})
		require.NoError(t, err)
		for i := 0; i < total; i++ {
			require.NoError(t, r.Post(r.Addr(1), []byte{byte(i)}, 0))
		}

		_, p := runRecovering(ctx, r)
		require.Equal(t, "poison", p, "the handler's panic reaches Run's caller")
		for i := 0; i <= poison; i++ {
			assert.EqualValues(t, 1, handled[i].Load(), "event %d before the panic handled once", i)
		}

		err, p = runRecovering(ctx, r)
		require.Nil(t, p, "the event that panicked is not delivered again")
		assert.ErrorIs(t, err, context.Canceled)
		for i := range handled {
			assert.EqualValues(t, 1, handled[i].Load(), "event %d handled exactly once", i)
		}
	})
}

// A call whose inline handler panicked is answered with EIO, so its caller
// does not wait for its deadline.
func TestInlineHandlerPanicAnswersTheCall(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSendSlots(1))
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 2}, SubOptions{Handler: func(ev *Event) error {
			panic("poison")
		}})
		require.NoError(t, err)
		called := make(chan error, 1)
		go func() {
			_, err := r.Call(ctx, r.Addr(2), []byte("x"))
			called <- err
		}()
		_, p := runRecovering(ctx, r)
		require.Equal(t, "poison", p)
		select {
		case err := <-called:
			assert.ErrorIs(t, err, syscall.EIO)
		case <-time.After(5 * time.Second):
			t.Fatal("the call was not answered after its handler panicked")
		}
	})
}
