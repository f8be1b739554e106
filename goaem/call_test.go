package goaem

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve answers calls on srv until the returned stop is called: Run, or a
// Poll loop.
func serve(t *testing.T, ctx context.Context, srv *Ring, handle Handler, busy bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	if !busy {
		go func() { done <- srv.Run(ctx, nil) }()
	} else {
		go func() {
			batch := make([]Event, 64)
			for ctx.Err() == nil {
				n, err := srv.Poll(batch)
				if err != nil {
					done <- err
					return
				}
				for i := range batch[:n] {
					if err := handle(&batch[i]); err != nil {
						done <- err
						return
					}
				}
				if n == 0 {
					runtime.Gosched() // AllocsPerRun runs on one P
				}
			}
			done <- ctx.Err()
		}()
	}
	return func() {
		cancel()
		err := <-done
		assert.True(t, errors.Is(err, context.Canceled), "server stopped with %v", err)
	}
}

// incrementReply answers a call with its request, each byte plus one.
func incrementReply(ev *Event) error {
	p := ev.Payload()
	for i := range p {
		p[i]++
	}
	return ev.Writeback(p)
}

func TestCallIntoShortBuffer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error {
			return ev.Writeback(ev.Payload())
		}})
		require.NoError(t, err)
		stop := serve(t, ctx, r, nil, false)
		defer stop()

		resp := make([]byte, 4)
		n, err := r.CallInto(ctx, r.Addr(1), []byte("0123456789"), resp)
		assert.ErrorIs(t, err, io.ErrShortBuffer)
		assert.Equal(t, 4, n)
		assert.Equal(t, "0123", string(resp))

		n, err = r.CallInto(ctx, r.Addr(1), []byte("abc"), resp)
		require.NoError(t, err)
		assert.Equal(t, "abc", string(resp[:n]))
	})
}

func TestCallBusyPoll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		// Heap rings cannot reach each other: there the ring calls itself.
		twoRings := b.name != "heap"
		srv := b.open(t)
		cli := srv
		if twoRings {
			cli = b.open(t, WithCallSpin(time.Second))
		}
		ctx := testCtx(t)
		handle := incrementReply
		_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: handle})
		require.NoError(t, err)
		// Events on the caller's ring that nobody reads while it spins:
		// kept for the next reader, in order.
		_, err = cli.Subscribe(Msg{Channel: 2}, SubOptions{})
		require.NoError(t, err)
		stop := serve(t, ctx, srv, handle, true)
		defer stop()

		resp := make([]byte, 64)
		for i := 0; i < 50; i++ {
			if twoRings {
				require.NoError(t, cli.Post(cli.Addr(2), []byte{byte(i)}, 0))
			}
			req := []byte{byte(i), byte(i + 1), byte(i + 2)}
			n, err := cli.CallWith(ctx, srv.Addr(1), req, resp, CallOptions{Spin: time.Second})
			require.NoError(t, err)
			assert.Equal(t, []byte{byte(i + 1), byte(i + 2), byte(i + 3)}, resp[:n])
		}
		if twoRings {
			i := 0
			waitN(t, ctx, cli, 50, func(ev *Event) {
				assert.Equal(t, []byte{byte(i)}, ev.Payload(), "event %d kept for the reader", i)
				i++
			})
		}

		_, err = cli.CallWith(ctx, cli.Addr(99), []byte("nobody"), resp, CallOptions{Spin: time.Millisecond})
		assert.ErrorIs(t, err, syscall.ENOENT)
	})
}

// A caller that gives up races its reply: whatever it returns is its own
// reply or an error, never another call's, and its buffer is not written
// after it returns.
func TestCallGiveUpRacesReply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		srv := b.open(t)
		cli := srv // heap rings cannot reach each other
		if b.name != "heap" {
			cli = b.open(t)
		}
		ctx := testCtx(t)
		var delay atomic.Int64
		handle := func(ev *Event) error {
			if d := delay.Add(7919) % 200000; d > 100000 {
				time.Sleep(time.Duration(d - 100000))
			}
			return ev.Writeback(ev.Payload())
		}
		_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: handle})
		require.NoError(t, err)
		stop := serve(t, ctx, srv, handle, false)
		defer stop()

		var ok, gaveUp int
		for i := 0; i < 300; i++ {
			req := []byte{byte(i), byte(i >> 8), 0xaa}
			resp := make([]byte, 8)
			cctx, cancel := context.WithTimeout(ctx, time.Duration(i%5)*20*time.Microsecond+time.Microsecond)
			opts := CallOptions{Spin: -1}
			if i%2 == 0 {
				opts.Spin = 30 * time.Microsecond
			}
			n, err := cli.CallWith(cctx, srv.Addr(1), req, resp, opts)
			cancel()
			snapshot := append([]byte(nil), resp...)
			if err != nil {
				require.ErrorIs(t, err, context.DeadlineExceeded, "call %d", i)
				gaveUp++
			} else {
				require.Equal(t, req, resp[:n], "call %d", i)
				ok++
			}
			time.Sleep(50 * time.Microsecond)
			assert.Equal(t, snapshot, resp, "call %d: buffer written after the call returned", i)
		}
		t.Logf("%d answered, %d gave up", ok, gaveUp)
		// The late replies were routed to nobody and their slots returned:
		// the ring still answers.
		resp := make([]byte, 8)
		n, err := cli.CallInto(ctx, srv.Addr(1), []byte("last"), resp)
		require.NoError(t, err)
		assert.Equal(t, "last", string(resp[:n]))
	})
}

// Close while results are routed (calls answered under Run on the same
// ring) neither hangs nor loses a caller: every call returns.
func TestCloseWhileRouting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		for i := 0; i < 40; i++ {
			r := b.open(t)
			_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error {
				return ev.Writeback(ev.Payload())
			}})
			require.NoError(t, err)
			ctx := testCtx(t)
			ran := make(chan error, 1)
			go func() { ran <- r.Run(ctx, nil) }()
			called := make(chan error, 2)
			for k := 0; k < 2; k++ {
				go func() {
					resp := make([]byte, 8)
					for {
						if _, err := r.CallInto(ctx, r.Addr(1), []byte("ping"), resp); err != nil {
							called <- err
							return
						}
					}
				}()
			}
			time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
			closed := make(chan error, 1)
			go func() { closed <- r.Close() }()
			select {
			case err := <-closed:
				require.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: Close hung", i)
			}
			for k := 0; k < 2; k++ {
				assert.ErrorIs(t, <-called, ErrClosed, "round %d", i)
			}
			assert.ErrorIs(t, <-ran, ErrClosed, "round %d", i)
		}
	})
}

// A call whose handler never answers ends with its context: the error
// matches context.DeadlineExceeded or context.Canceled, whichever side,
// Go or the kernel's call timeout, noticed first.
func TestCallContextErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		srv := b.open(t)
		cli := srv
		if b.name != "heap" {
			cli = b.open(t)
		}
		ctx := testCtx(t)
		silent := func(ev *Event) error { return nil } // releases, never replies
		_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: silent})
		require.NoError(t, err)
		stop := serve(t, ctx, srv, silent, false)
		defer stop()
		for i := 0; i < 10; i++ {
			cctx, cancel := context.WithTimeout(ctx, time.Duration(1+i%3)*time.Millisecond)
			_, err := cli.Call(cctx, srv.Addr(1), []byte("late"))
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded, "call %d", i)
		}
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(5*time.Millisecond, cancel)
		_, err = cli.Call(cctx, srv.Addr(1), []byte("cancelled"))
		require.ErrorIs(t, err, context.Canceled)
	})
}
