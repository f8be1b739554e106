package goaem

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// waitN collects exactly n events (bounded by ctx), copying what the
// check needs and releasing each.
func waitN(t testing.TB, ctx context.Context, r *Ring, n int, each func(ev *Event)) {
	t.Helper()
	batch := make([]Event, 64)
	for got := 0; got < n; {
		k, err := r.Wait(ctx, batch[:min(len(batch), n-got)], 1)
		for i := 0; i < k; i++ {
			if each != nil {
				each(&batch[i])
			}
			batch[i].Release()
		}
		got += k
		require.NoError(t, err, "after %d of %d events", got, n)
	}
}

func TestPostPayloadSizesAndTags(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSendSlots(4), WithSlotSize(256))
		ctx := testCtx(t)
		sub, err := r.Subscribe(Msg{Channel: 3}, SubOptions{Class: 1, Tag: 42})
		require.NoError(t, err)
		assert.NotZero(t, sub.ID())
		assert.Equal(t, uint64(42), sub.Tag())

		msgs := [][]byte{[]byte("hello"), bytes.Repeat([]byte{'x'}, 32), bytes.Repeat([]byte{'y'}, 200), {}}
		for _, m := range msgs {
			require.NoError(t, r.Post(r.Addr(3), m, 1))
		}
		i := 0
		waitN(t, ctx, r, len(msgs), func(ev *Event) {
			assert.Equal(t, msgs[i], append([]byte{}, ev.Payload()...), "message %d", i)
			assert.Equal(t, uint64(42), ev.Tag())
			assert.Same(t, sub, ev.Subscription())
			assert.Equal(t, uint8(abi.SrcMsg), ev.Source())
			assert.Equal(t, 1, ev.Class())
			assert.False(t, ev.IsCall())
			i++
		})
		_, err = r.Subscribe(Msg{Channel: 3}, SubOptions{Class: 2})
		assert.Error(t, err, "class beyond the ring's classes")
		assert.ErrorIs(t, r.Post(r.Addr(3), make([]byte, 257), 0), ErrTooLarge)
		require.NoError(t, sub.Unsubscribe())
		assert.True(t, sub.Ended())
	})
}

func TestPollDrainsUrgentClassFirst(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithClasses(3))
		var subs [3]*Subscription
		for c := range subs {
			var err error
			subs[c], err = r.Subscribe(Msg{Channel: uint32(10 + c)}, SubOptions{Class: c, Tag: uint64(c)})
			require.NoError(t, err)
		}
		// Lowest class first, so arrival order is the opposite of drain order.
		for c := 2; c >= 0; c-- {
			for i := 0; i < 3; i++ {
				require.NoError(t, r.Post(r.Addr(uint32(10+c)), []byte{byte(c), byte(i)}, c))
			}
		}
		batch := make([]Event, 16)
		n, err := r.Poll(batch)
		require.NoError(t, err)
		require.Equal(t, 9, n)
		for i := 0; i < n; i++ {
			assert.Equal(t, []byte{byte(i / 3), byte(i % 3)}, batch[i].Payload(), "event %d", i)
			batch[i].Release()
		}
	})
}

func TestCallWriteback(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSendSlots(2))
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 7}, SubOptions{Handler: func(ev *Event) error {
			if !ev.IsCall() {
				return fmt.Errorf("event is not a call")
			}
			p := ev.Payload()
			copy(p, bytes.ToUpper(p)) // in place, in the event's slot
			return ev.Writeback(p)
		}})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx, nil) }()

		for _, req := range []string{"ping", string(bytes.Repeat([]byte("abc"), 40))} {
			resp, err := r.Call(ctx, r.Addr(7), []byte(req))
			require.NoError(t, err)
			assert.Equal(t, string(bytes.ToUpper([]byte(req))), string(resp))
		}
		_, err = r.Call(ctx, r.Addr(99), []byte("nobody"))
		assert.ErrorIs(t, err, syscall.ENOENT)

		stop()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestCallContextEnds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		// A subscriber that never answers: the handler releases the call.
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error { return nil }})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(testCtx(t))
		defer stop()
		go func() { _ = r.Run(runCtx, nil) }()

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = r.Call(ctx, r.Addr(1), []byte("x"))
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT),
			"deadline or kernel-side timeout, got %v", err)
		assert.Less(t, time.Since(start), 5*time.Second)

		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		_, err = r.Call(ctx, r.Addr(1), []byte("x"))
		assert.ErrorIs(t, err, context.Canceled)
	})
}

func TestWaitContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		batch := make([]Event, 4)

		// The deadline runs from WithTimeout, so start is taken before it;
		// the margin is for a VM's coarse clock. Only that Wait waited is
		// asserted, never how long it took.
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		n, err := r.Wait(ctx, batch, 1)
		assert.Zero(t, n)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.GreaterOrEqual(t, time.Since(start), 15*time.Millisecond)

		ctx, cancel = context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		n, err = r.Wait(ctx, batch, 1)
		assert.Zero(t, n)
		assert.ErrorIs(t, err, context.Canceled)

		n, err = r.Wait(ctx, batch, 1)
		assert.Zero(t, n)
		assert.ErrorIs(t, err, context.Canceled, "already cancelled")
		n, err = r.Wait(context.Background(), batch[:0], 1)
		assert.Zero(t, n)
		assert.NoError(t, err, "empty batch")
	})
}

func TestWaitWakesOnPost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		for round := 0; round < 20; round++ {
			go func() {
				time.Sleep(time.Millisecond)
				assert.NoError(t, r.Post(r.Addr(1), []byte{byte(round)}, 0))
			}()
			waitN(t, ctx, r, 1, func(ev *Event) {
				assert.Equal(t, []byte{byte(round)}, ev.Payload())
			})
		}
	})
}

func TestCloseWakesEveryone(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error { return nil }})
		require.NoError(t, err)
		ctx := testCtx(t)
		errs := make(chan error, 8)
		var started sync.WaitGroup
		for i := 0; i < 3; i++ {
			started.Add(1)
			go func() {
				started.Done()
				_, err := r.Wait(ctx, make([]Event, 4), 1)
				errs <- err
			}()
		}
		started.Add(1)
		go func() {
			started.Done()
			errs <- r.Run(ctx, func(*Event) error { return nil })
		}()
		started.Wait()
		time.Sleep(30 * time.Millisecond) // let them park
		require.NoError(t, r.Close())
		for i := 0; i < 4; i++ {
			select {
			case err := <-errs:
				assert.ErrorIs(t, err, ErrClosed)
			case <-time.After(5 * time.Second):
				t.Fatal("a waiter did not wake at Close")
			}
		}
		assert.NoError(t, r.Close(), "Close is idempotent")
		_, err = r.Poll(make([]Event, 1))
		assert.ErrorIs(t, err, ErrClosed)
		assert.ErrorIs(t, r.Post(r.Addr(1), nil, 0), ErrClosed)
		_, err = r.Subscribe(Msg{Channel: 2}, SubOptions{})
		assert.ErrorIs(t, err, ErrClosed)
		assert.ErrorIs(t, r.Run(ctx, nil), ErrClosed)
	})
}

func TestCloseWakesCall(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		errs := make(chan error, 1)
		go func() {
			// Nobody reads the ring, so nobody answers.
			_, err := r.Call(testCtx(t), r.Addr(1), []byte("x"))
			errs <- err
		}()
		time.Sleep(30 * time.Millisecond)
		require.NoError(t, r.Close())
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Call did not return at Close")
		}
	})
}

func TestRunReturnsErrClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		done := make(chan error, 1)
		go func() { done <- r.Run(testCtx(t), func(*Event) error { return nil }) }()
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, r.Close())
		select {
		case err := <-done:
			assert.ErrorIs(t, err, ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return at Close")
		}
	})
}

func TestSpawnBackPressure(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)
		const total, bound = 12, 3
		gate := make(chan struct{})
		// Opened on every way out: a failed check before the test opens it
		// must not leave Close waiting for handlers held at the gate.
		openGate := sync.OnceFunc(func() { close(gate) })
		t.Cleanup(openGate)
		var inFlight, peak, handled atomic.Int32
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Mode: ModeSpawn, MaxInFlight: bound,
			Handler: func(ev *Event) error {
				n := inFlight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-gate
				inFlight.Add(-1)
				handled.Add(1)
				return nil
			}})
		require.NoError(t, err)
		for i := 0; i < total; i++ {
			require.NoError(t, r.Post(r.Addr(1), []byte{byte(i)}, 0))
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx, nil) }()

		require.Eventually(t, func() bool { return inFlight.Load() == bound }, 5*time.Second, time.Millisecond)
		time.Sleep(30 * time.Millisecond)
		assert.Equal(t, int32(bound), inFlight.Load(), "Run must wait at the bound, not start more")
		assert.Zero(t, handled.Load())

		openGate()
		require.Eventually(t, func() bool { return handled.Load() == total }, 5*time.Second, time.Millisecond)
		assert.Equal(t, int32(bound), peak.Load())
		stop()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestGeneratorDeliversInOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithCQEntries(256))
		ctx := testCtx(t)
		const count = 5000
		sub, err := r.Subscribe(Generator{Count: count, PayloadLen: 32}, SubOptions{Tag: 9})
		require.NoError(t, err)
		var seq uint64
		finals := 0
		waitN(t, ctx, r, count, func(ev *Event) {
			s, _ := ev.GenSeq()
			require.Equal(t, seq, s)
			require.Len(t, ev.Payload(), 32)
			seq++
			if ev.Final() {
				finals++
			}
		})
		assert.Equal(t, 1, finals, "exactly one final event")
		assert.True(t, sub.Ended(), "released final event ends the subscription")
	})
}

func TestInlineHandlerErrorStopsRunAndKeepsTheRest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)
		boom := errors.New("boom")
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Tag: 5, Handler: func(ev *Event) error {
			if ev.Payload()[0] == 3 {
				return boom
			}
			return nil
		}})
		require.NoError(t, err)
		for i := 0; i < 8; i++ {
			require.NoError(t, r.Post(r.Addr(1), []byte{byte(i)}, 0))
		}
		err = r.Run(ctx, nil)
		var he *HandlerError
		require.ErrorAs(t, err, &he)
		assert.ErrorIs(t, err, boom)
		assert.Equal(t, uint64(5), he.Tag)
		// The events after the failing one were put back, in order.
		var rest []byte
		waitN(t, ctx, r, 4, func(ev *Event) { rest = append(rest, ev.Payload()[0]) })
		assert.Equal(t, []byte{4, 5, 6, 7}, rest)
	})
}

func TestErrorHandlerAndNoHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		var mu sync.Mutex
		var errs []error
		r := b.open(t, WithErrorHandler(func(ev *Event, err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}))
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		require.NoError(t, r.Post(r.Addr(1), []byte("a"), 0))
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		assert.ErrorIs(t, r.Run(ctx, nil), context.DeadlineExceeded)
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], ErrNoHandler)
	})
}

func TestSubscribeWhileEventsWait(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		// Results share the rings with events: a Subscribe issued while
		// events wait unread must find its result behind them and keep the
		// events, in order, for the reader.
		r := b.open(t)
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		for i := 0; i < 10; i++ {
			require.NoError(t, r.Post(r.Addr(1), []byte{byte(i)}, 0))
		}
		_, err = r.Subscribe(Msg{Channel: 2}, SubOptions{})
		require.NoError(t, err)
		var got []byte
		waitN(t, ctx, r, 10, func(ev *Event) { got = append(got, ev.Payload()[0]) })
		assert.Equal(t, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, got)
	})
}

func TestEventMisuse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSlotSize(256))
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		require.NoError(t, r.Post(r.Addr(1), []byte("a"), 0))
		batch := make([]Event, 1)
		n, err := r.Wait(ctx, batch, 1)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		ev := &batch[0]
		assert.ErrorIs(t, ev.Writeback(make([]byte, 257)), ErrTooLarge, "more than a slot")
		ev.Release()
		ev.Release()
		assert.ErrorIs(t, ev.Writeback([]byte("x")), ErrReleased)
		var zero Event
		assert.Error(t, zero.Writeback(nil))
		zero.Release()
		assert.Empty(t, zero.Payload())
	})
}

func TestSubscribeRejects(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		for name, tc := range map[string]struct {
			src  Source
			opts SubOptions
		}{
			"nil source":       {nil, SubOptions{}},
			"negative class":   {Msg{}, SubOptions{Class: -1}},
			"class too high":   {Msg{}, SubOptions{Class: 9}},
			"clone without":    {Msg{}, SubOptions{Mode: ModeClone}},
			"unknown mode":     {Msg{}, SubOptions{Mode: 9}},
			"timer first zero": {Timer{}, SubOptions{}},
			"negative bound":   {Msg{}, SubOptions{MaxInFlight: -1}},
		} {
			_, err := r.Subscribe(tc.src, tc.opts)
			assert.Error(t, err, name)
		}
	})
}

// Back-to-back calls on one ring, answered by Run in another goroutine,
// exercise the two sleepers on the ring fd, the reader and the result
// pump: a lost wake-up shows as a call that times out.
//
// Run serves until the calls end, however long they take. Under testCtx it
// stopped at its 20 s deadline on a slow machine (a TCG guest under KASAN
// needs 7-14 ms a call), and the next call timed out 5 s later as if a
// wake-up had been lost; a Run that stops now fails the test at once,
// with Run's error. The calls end after 3000 or callsBudget, whichever
// comes first, so the test stays bounded there.
func TestCallsBackToBack(t *testing.T) {
	const callsBudget = 10 * time.Second
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error {
			return ev.Writeback(ev.Payload())
		}})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(context.Background())
		defer stop()
		// Calls are made under served, which ends when Run returns: a call
		// in flight then ends at once instead of at its timeout.
		served, runReturned := context.WithCancel(context.Background())
		defer runReturned()
		done := make(chan error, 1)
		go func() {
			done <- r.Run(runCtx, nil)
			runReturned()
		}()
		runStopped := func(i int) {
			select {
			case err := <-done:
				t.Fatalf("Run returned before call %d was answered: %v", i, err)
			default:
			}
		}
		var msg [4]byte
		start := time.Now()
		end := start.Add(callsBudget)
		i := 0
		for ; i < 3000 && time.Now().Before(end); i++ {
			runStopped(i)
			ctx, cancel := context.WithTimeout(served, 5*time.Second)
			binary.LittleEndian.PutUint32(msg[:], uint32(i))
			resp, err := r.Call(ctx, r.Addr(1), msg[:])
			cancel()
			if err != nil {
				runStopped(i)
			}
			require.NoError(t, err, "call %d", i)
			require.Equal(t, msg[:], resp)
		}
		t.Logf("%d calls in %v", i, time.Since(start).Round(time.Millisecond))
		stop()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

// The context a sleeping reader watched stays watched after the wait; cancelling it
// later, or waiting with another one, still ends each wait as it should.
func TestWaitContextReused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		batch := make([]Event, 4)
		parent, cancel := context.WithCancel(testCtx(t))
		for i := 0; i < 3; i++ {
			go func() {
				time.Sleep(time.Millisecond)
				assert.NoError(t, r.Post(r.Addr(1), []byte{byte(i)}, 0))
			}()
			n, err := r.Wait(parent, batch, 1)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			batch[0].Release()
		}
		short, stop := context.WithTimeout(testCtx(t), 20*time.Millisecond)
		_, err = r.Wait(short, batch, 1)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		// The same deadline again: already past.
		_, err = r.Wait(short, batch, 1)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		stop()

		go func() {
			time.Sleep(5 * time.Millisecond)
			cancel()
		}()
		start := time.Now()
		_, err = r.Wait(parent, batch, 1)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(start), 10*time.Second)
		// A cancelled context that was watched before ends a wait at once.
		_, err = r.Wait(parent, batch, 1)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// Events are read by one goroutine at a time: Poll refuses while Wait
// reads, a second Wait waits for the first, and a call made meanwhile is
// answered without any reader of the caller's events.
func TestOneReaderAtATime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		first := make(chan error, 1)
		go func() {
			batch := make([]Event, 1)
			n, err := r.Wait(ctx, batch, 1)
			if n == 1 {
				batch[0].Release()
			}
			first <- err
		}()
		require.Eventually(t, func() bool {
			_, err := r.Poll(make([]Event, 1))
			return errors.Is(err, ErrConcurrentRead)
		}, 5*time.Second, time.Millisecond, "Poll while Wait reads")
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err = r.Wait(wctx, make([]Event, 1), 1)
		cancel()
		assert.ErrorIs(t, err, context.DeadlineExceeded, "a second Wait waits for the first")
		require.NoError(t, r.Post(r.Addr(1), []byte("x"), 0))
		require.NoError(t, <-first)
		n, err := r.Poll(make([]Event, 1))
		assert.NoError(t, err, "Poll once the reader left")
		assert.Zero(t, n)
	})
}
