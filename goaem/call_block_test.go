package goaem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockRings opens a server ring with opts and a caller ring; heap rings
// cannot reach each other, so there the ring calls itself (and Block falls
// back to the CALL SQE).
func blockRings(t *testing.T, b testBackend, opts ...Option) (srv, cli *Ring) {
	srv = b.open(t, opts...)
	if b.name == "heap" {
		return srv, srv
	}
	return srv, b.open(t)
}

// The reply lands in the caller's buffer, whichever way the server waits;
// a short buffer and an unknown subscriber read as without Block.
func TestCallBlock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		for _, server := range []struct {
			name string
			opts []Option
		}{
			{"netpoller", nil},
			{"kernel", []Option{WithKernelWait(0)}},
			{"kernel,spin", []Option{WithKernelWait(50 * time.Microsecond)}},
		} {
			t.Run(server.name, func(t *testing.T) {
				srv, cli := blockRings(t, b, server.opts...)
				ctx := testCtx(t)
				handle := incrementReply
				_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: handle})
				require.NoError(t, err)
				stop := serve(t, ctx, srv, handle, false)
				defer stop()

				block := CallOptions{Block: true}
				resp := make([]byte, 64)
				longest := 48 // inline and slot payloads
				if b.name == "heap" {
					longest = 32 // heap rings have no send slots
				}
				for i := 0; i < 100; i++ {
					req := bytes.Repeat([]byte{byte(i)}, 1+i%longest)
					n, err := cli.CallWith(ctx, srv.Addr(1), req, resp, block)
					require.NoError(t, err, "call %d", i)
					assert.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, len(req)), resp[:n], "call %d", i)
				}
				short := make([]byte, 4)
				n, err := cli.CallWith(ctx, srv.Addr(1), []byte("0123456789"), short, block)
				assert.ErrorIs(t, err, io.ErrShortBuffer)
				assert.Equal(t, 4, n)
				assert.Equal(t, "1234", string(short))

				_, err = cli.CallWith(ctx, srv.Addr(99), []byte("nobody"), resp, block)
				assert.ErrorIs(t, err, syscall.ENOENT)
			})
		}
	})
}

// Refusals and error replies of a blocking call are the CALL SQE's, for
// unknown and hostile addresses alike.
func TestCallBlockErrorsAsAsync(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		srv, cli := blockRings(t, b, WithKernelWait(0))
		ctx := testCtx(t)
		_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error {
			return ev.ReplyError(syscall.EPERM)
		}})
		require.NoError(t, err)
		stop := serve(t, ctx, srv, nil, false)
		defer stop()
		goneAddr := MakeAddr(^uint32(0)-1, 1)
		if b.name != "heap" { // heap rings all have one id
			gone := b.open(t)
			goneAddr = gone.Addr(1)
			require.NoError(t, gone.Close())
		}

		resp := make([]byte, 16)
		for _, c := range []struct {
			name string
			addr Addr
			want error
		}{
			{"error reply", srv.Addr(1), syscall.EPERM},
			{"no such channel", srv.Addr(2), syscall.ENOENT},
			{"closed ring", goneAddr, syscall.ENOENT},
			{"no such ring", MakeAddr(^uint32(0), 1), syscall.ENOENT},
			{"ring 0", MakeAddr(0, 0), syscall.ENOENT},
		} {
			_, asyncErr := cli.CallWith(ctx, c.addr, []byte("x"), resp, CallOptions{})
			_, blockErr := cli.CallWith(ctx, c.addr, []byte("x"), resp, CallOptions{Block: true})
			assert.ErrorIs(t, asyncErr, c.want, c.name)
			assert.ErrorIs(t, blockErr, c.want, c.name)
		}
		_, err = cli.CallWith(ctx, srv.Addr(1), make([]byte, 1<<20), resp, CallOptions{Block: true})
		assert.ErrorIs(t, err, ErrTooLarge)
	})
}

// A blocking call ends at ctx's deadline with context.DeadlineExceeded; the
// reply that comes later is never written into the buffer it was given.
func TestCallBlockDeadlineLateReply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		srv, cli := blockRings(t, b, WithKernelWait(0))
		ctx := testCtx(t)
		// Handlers that began and that have written back: a call whose
		// deadline passed before it was submitted (a loaded VM) never
		// reaches one, so the wait is for those that began.
		var began, late atomic.Int32
		_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Mode: ModeSpawn, Handler: func(ev *Event) error {
			began.Add(1)
			defer late.Add(1)
			time.Sleep(time.Second) // well past the caller's deadline, even in a loaded VM
			return ev.Writeback([]byte("late reply"))
		}})
		require.NoError(t, err)
		stop := serve(t, ctx, srv, nil, false)
		defer stop()

		resp := bytes.Repeat([]byte{0xee}, 32)
		const calls = 3
		for i := 0; i < calls; i++ {
			cctx, cancel := context.WithTimeout(ctx, time.Duration(2+i)*time.Millisecond)
			start := time.Now()
			_, err := cli.CallWith(cctx, srv.Addr(1), []byte("slow"), resp, CallOptions{Block: true})
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded, "call %d", i)
			assert.Less(t, time.Since(start), 800*time.Millisecond, "call %d returned at its deadline, not at the reply", i)
		}
		// The handlers write back; their writebacks find no call.
		for i := 0; (began.Load() == 0 || late.Load() < began.Load()) && i < 2000; i++ {
			time.Sleep(time.Millisecond)
		}
		require.Equal(t, began.Load(), late.Load(), "handlers done")
		require.NoError(t, srv.Flush())
		time.Sleep(5 * time.Millisecond)
		assert.Equal(t, bytes.Repeat([]byte{0xee}, 32), resp, "a late reply reached a returned buffer")

		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err = cli.CallWith(cctx, srv.Addr(1), []byte("cancelled"), resp, CallOptions{Block: true})
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// Callers on one ring, each with its own buffer, each get their own reply.
func TestCallBlockConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		srv, cli := blockRings(t, b, WithKernelWait(0))
		ctx := testCtx(t)
		handle := func(ev *Event) error { return ev.Writeback(ev.Payload()) }
		_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: handle})
		require.NoError(t, err)
		stop := serve(t, ctx, srv, handle, false)
		defer stop()

		const callers, calls = 4, 50
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp := make([]byte, 64)
				for i := 0; i < calls; i++ {
					// Blocking and asynchronous calls mixed on one ring.
					req := []byte(fmt.Sprintf("caller %d call %d", c, i))
					n, err := cli.CallWith(ctx, srv.Addr(1), req, resp, CallOptions{Block: i%3 != 0})
					if err == nil && !bytes.Equal(req, resp[:n]) {
						err = fmt.Errorf("caller %d call %d: reply %q", c, i, resp[:n])
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
	})
}

// A reader sleeping in the kernel side wakes for its context's end and for
// Close.
func TestKernelWaitEnds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithKernelWait(0))
		ctx := testCtx(t)
		batch := make([]Event, 4)

		cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		_, err := r.Wait(cctx, batch, 1)
		cancel()
		assert.ErrorIs(t, err, context.DeadlineExceeded)

		cctx, cancel = context.WithCancel(ctx)
		time.AfterFunc(10*time.Millisecond, cancel)
		start := time.Now()
		err = r.Run(cctx, func(*Event) error { return nil })
		assert.ErrorIs(t, err, context.Canceled)
		assert.Less(t, time.Since(start), 5*time.Second)

		// Events still wake it.
		_, err = r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		time.AfterFunc(10*time.Millisecond, func() { _ = r.Post(r.Addr(1), []byte("hi"), 0) })
		n, err := r.Wait(ctx, batch, 1)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		assert.Equal(t, "hi", string(batch[0].Payload()))
		batch[0].Release()

		done := make(chan error, 1)
		go func() { done <- r.Run(ctx, func(*Event) error { return nil }) }()
		time.Sleep(10 * time.Millisecond)
		require.NoError(t, r.Close())
		select {
		case err := <-done:
			assert.True(t, errors.Is(err, ErrClosed), "Run after Close: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not wake the reader sleeping in the kernel side")
		}
	})
}

// unwatchableCtx ends without a Done channel to watch: what a reader in
// the kernel side sees when the NOP meant to wake it was taken by another
// goroutine routing results. It breaks Context's contract on purpose.
type unwatchableCtx struct {
	context.Context
	ended atomic.Bool
}

func (c *unwatchableCtx) Done() <-chan struct{} { return nil }
func (c *unwatchableCtx) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

// A reader sleeping in the kernel side with no deadline looks again after
// a bounded sleep: a lost wake-up costs a slice, not the reader.
func TestKernelWaitLostWakeUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithKernelWait(0))
		if _, ok := r.be.(kernelWaiter); !ok {
			t.Skipf("the %s backend has no sleep in the kernel side: WithKernelWait is ignored", b.name)
		}
		ctx := &unwatchableCtx{Context: context.Background()}
		done := make(chan error, 1)
		go func() {
			_, err := r.Wait(ctx, make([]Event, 4), 1)
			done <- err
		}()
		require.Eventually(t, func() bool { return r.Enters() > 0 }, 5*time.Second, time.Millisecond,
			"the reader never slept")
		ctx.ended.Store(true)
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(10 * time.Second):
			require.NoError(t, r.Close()) // the sleeper's slice: Close's own NOP ends it
			t.Fatal("a reader sleeping in the kernel side never looked at its context again")
		}
	})
}
