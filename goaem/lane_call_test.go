package goaem

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// serveLaneCalls runs Run on r with h until the test ends.
func serveLaneCalls(t *testing.T, r *Ring, h Handler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// Calls and posts through one lane: each call gets its own answer, the
// posts between them arrive as plain events, each once (in order where
// one goroutine handles them), on a reader in Run (inline and spawned
// handlers) and on one that polls.
func TestLaneCallRoundTrip(t *testing.T) {
	calls := 5000
	if raceEnabled {
		calls = 500
	}
	forEachBackend(t, func(t *testing.T, b testBackend) {
		for _, mode := range []string{"inline", "spawn", "poll"} {
			t.Run(mode, func(t *testing.T) {
				r := b.open(t, WithLanes(1))
				var posts, wrong atomic.Int64
				seen := make([]atomic.Bool, calls/7+1)
				handle := func(ev *Event) error {
					p := ev.Payload()
					if !ev.IsCall() {
						k := uint64(len(seen))
						if len(p) == 8 {
							k = binary.LittleEndian.Uint64(p)
						}
						// Spawned handlers run at once, so posts may finish out of order.
						if k >= uint64(len(seen)) || seen[k].Swap(true) || (mode != "spawn" && k != uint64(posts.Load())) {
							wrong.Add(1)
						}
						posts.Add(1)
						return nil
					}
					var out [16]byte
					binary.LittleEndian.PutUint64(out[:], binary.LittleEndian.Uint64(p)*3)
					copy(out[8:], "answered")
					return ev.Reply(out[:])
				}
				opts := SubOptions{Handler: handle}
				if mode == "spawn" {
					opts.Mode = ModeSpawn
				}
				sub, err := r.Subscribe(Msg{Channel: 9}, opts)
				require.NoError(t, err)
				l, err := r.OpenLane(sub, LaneOptions{Entries: 8})
				require.NoError(t, err)
				if mode == "poll" {
					ctx, cancel := context.WithCancel(context.Background())
					stopped := make(chan struct{})
					go func() {
						defer close(stopped)
						batch := make([]Event, 8)
						for ctx.Err() == nil {
							n, err := r.Poll(batch)
							if err != nil {
								return
							}
							for i := range batch[:n] {
								if handle(&batch[i]) != nil {
									wrong.Add(1)
								}
								batch[i].Release()
							}
						}
					}()
					t.Cleanup(func() { cancel(); <-stopped })
				} else {
					serveLaneCalls(t, r, nil)
				}
				ctx := testCtx(t)
				req, resp, rec := make([]byte, 8), make([]byte, 32), make([]byte, 8)
				sent := 0
				for k := range calls {
					binary.LittleEndian.PutUint64(req, uint64(k)+1)
					n, err := l.Call(ctx, req, resp)
					require.NoError(t, err, "call %d", k)
					require.Equal(t, 16, n)
					require.Equal(t, (uint64(k)+1)*3, binary.LittleEndian.Uint64(resp), "call %d got another call's answer", k)
					require.Equal(t, "answered", string(resp[8:16]))
					if k%7 == 0 {
						binary.LittleEndian.PutUint64(rec, uint64(sent))
						require.NoError(t, l.Post(ctx, rec))
						sent++
					}
				}
				require.Eventually(t, func() bool { return posts.Load() == int64(sent) }, 10*time.Second, time.Millisecond)
				assert.Zero(t, wrong.Load(), "a post delivered twice or out of order, or a handler failed")
				assert.Zero(t, l.Malformed())
				n, aerr := r.AsyncErrors()
				assert.Zero(t, n, "%v", aerr)
			})
		}
	})
}

// What a caller hears besides a reply: an error reply, a release without
// one, a reply longer than its buffer; and a reply too long for the lane
// is refused to the handler, which may answer again.
func TestLaneCallAnswers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		var handlerErrs atomic.Int64
		r := b.open(t, WithLanes(1), WithErrorHandler(func(*Event, error) { handlerErrs.Add(1) }))
		var tooLarge atomic.Value
		sub, err := r.Subscribe(Msg{Channel: 9}, SubOptions{Handler: func(ev *Event) error {
			switch string(ev.Payload()) {
			case "error":
				return ev.ReplyError(syscall.EPERM)
			case "drop":
				ev.Release()
				return nil
			case "fails":
				return errors.New("handler failed")
			case "huge":
				tooLarge.Store(ev.Reply(make([]byte, abi.LaneMaxRecord+1)))
				return ev.Reply([]byte("smaller"))
			}
			return ev.Reply([]byte("a reply of 24 bytes ...."))
		}})
		require.NoError(t, err)
		serveLaneCalls(t, r, nil)
		l, err := r.OpenLane(sub, LaneOptions{})
		require.NoError(t, err)
		ctx := testCtx(t)
		resp := make([]byte, 32)

		_, err = l.Call(ctx, []byte("error"), resp)
		assert.ErrorIs(t, err, syscall.EPERM)
		_, err = l.Call(ctx, []byte("drop"), resp)
		assert.ErrorIs(t, err, syscall.ECONNRESET, "released without a reply")
		_, err = l.Call(ctx, []byte("fails"), resp)
		assert.ErrorIs(t, err, syscall.EIO, "a failed handler answers with an error")
		assert.Eventually(t, func() bool { return handlerErrs.Load() == 1 }, 5*time.Second, time.Millisecond,
			"the handler's error is reported once the caller has its answer")
		n, err := l.Call(ctx, []byte("huge"), resp)
		require.NoError(t, err)
		assert.Equal(t, "smaller", string(resp[:n]))
		assert.ErrorIs(t, tooLarge.Load().(error), ErrTooLarge)
		n, err = l.Call(ctx, []byte("short"), resp[:10])
		assert.ErrorIs(t, err, io.ErrShortBuffer)
		assert.Equal(t, "a reply of", string(resp[:n]))
		_, err = l.Call(ctx, make([]byte, abi.LaneMaxRecord+1), resp)
		assert.ErrorIs(t, err, ErrTooLarge)
		n, err = l.Call(ctx, []byte("again"), resp)
		require.NoError(t, err, "the lane goes on after all of the above")
		assert.Equal(t, 24, n)
	})
}

// A caller that gives up: its late answer is dropped (counted) and never
// lands in the next call, which gets its own.
func TestLaneCallAbandoned(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithLanes(1))
		held, gaveUp := make(chan *Event, 1), make(chan struct{})
		sub, err := r.Subscribe(Msg{Channel: 9}, SubOptions{Mode: ModeSpawn, Handler: func(ev *Event) error {
			if string(ev.Payload()) == "slow" {
				held <- ev
				<-gaveUp // answered after the caller gave up
				return ev.Reply([]byte("late"))
			}
			return ev.Reply(append([]byte("re: "), ev.Payload()...))
		}})
		require.NoError(t, err)
		serveLaneCalls(t, r, nil)
		l, err := r.OpenLane(sub, LaneOptions{})
		require.NoError(t, err)
		resp := make([]byte, 32)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err = l.Call(ctx, []byte("slow"), resp)
		cancel()
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		close(gaveUp)
		<-held
		n, err := l.Call(testCtx(t), []byte("next"), resp)
		require.NoError(t, err)
		assert.Equal(t, "re: next", string(resp[:n]), "the late answer never lands in a later call")
		require.Eventually(t, func() bool {
			n, _ := r.AsyncErrors()
			return n == 1
		}, 5*time.Second, time.Millisecond, "the late answer is counted")
		_, aerr := r.AsyncErrors()
		assert.ErrorIs(t, aerr, syscall.ENOENT)
	})
}

// A reader that hands records out in place cannot reply: the caller hears
// ECONNRESET at once.
func TestLaneCallReadInPlace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 1)
		l, err := r.OpenLane(sub, LaneOptions{})
		require.NoError(t, err)
		called := make(chan error, 1)
		go func() {
			_, err := l.Call(testCtx(t), []byte("in place"), make([]byte, 32))
			called <- err
		}()
		var seen []string
		require.Eventually(t, func() bool {
			_, err := r.ReadLanes(8, func(_ *Subscription, data []byte) { seen = append(seen, string(data)) })
			require.NoError(t, err)
			return len(seen) == 1
		}, 10*time.Second, time.Millisecond)
		assert.Equal(t, []string{"in place"}, seen)
		assert.ErrorIs(t, <-called, syscall.ECONNRESET)
	})
}

// A consumer that writes garbage into the call line: the caller reads no
// byte past the reply area and hears EIO; the line's words it does not
// expect leave it waiting until its context ends.
func TestLaneCallHostileConsumer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 1)
		l, err := r.OpenLane(sub, LaneOptions{})
		require.NoError(t, err)
		ctl := l.ctl
		resp := make([]byte, 32)
		for i, res := range []int32{1000, abi.LaneMaxRecord + 1, -abi.CallErrnoMax - 1} {
			called := make(chan error, 1)
			go func() {
				_, err := l.Call(testCtx(t), []byte("x"), resp)
				called <- err
			}()
			pos := uint64(i)
			require.Eventually(t, func() bool {
				return atomic.LoadUint64(&ctl.Call) == abi.LaneCall(abi.LaneCallWaiting, pos)
			}, 10*time.Second, 100*time.Microsecond)
			atomic.StoreInt32(&ctl.CallRes, res)
			atomic.StoreUint64(&ctl.Call, abi.LaneCall(abi.LaneCallDone, pos))
			assert.ErrorIs(t, <-called, syscall.EIO, "call_res %d", res)
		}
		// DONE for another position, or a state that is no state: not an answer.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		go func() {
			for ctx.Err() == nil {
				atomic.StoreUint64(&ctl.Call, abi.LaneCall(abi.LaneCallDone, 99))
				time.Sleep(time.Millisecond)
			}
		}()
		_, err = l.Call(ctx, []byte("x"), resp)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

// A busy call round trip allocates nothing, on either side.
func TestLaneCallAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithLanes(1))
		sub, err := r.Subscribe(Msg{Channel: 9}, SubOptions{Handler: func(ev *Event) error {
			return ev.Reply(ev.Payload())
		}})
		require.NoError(t, err)
		serveLaneCalls(t, r, nil)
		l, err := r.OpenLane(sub, LaneOptions{})
		require.NoError(t, err)
		ctx := testCtx(t)
		req, resp := []byte("ping"), make([]byte, 32)
		_, err = l.Call(ctx, req, resp) // the reader's batch is allocated once
		require.NoError(t, err)
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := l.Call(ctx, req, resp); err != nil {
				t.Error(err)
			}
		})
		assert.Zero(t, allocs)
	})
}
