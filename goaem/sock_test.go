package goaem

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// echoPeer sends msg to addr, ends its side, and checks that exactly msg
// comes back before the server closes.
func echoPeer(addr string, msg []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	go func() {
		_, _ = c.Write(msg)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err == nil && !bytes.Equal(got, msg) {
		err = errors.New("echo differs")
	}
	return err
}

// An echo server on a Sock subscription: every byte a peer sends comes
// back once and in order, written back from the slot it arrived in; the
// peer's end-of-stream is answered with a close; a connection's CLOSED
// ends the connection, not the subscription.
func TestSockEcho(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSendSlots(2), WithSlotSize(1024))
		ln, sub := listenSock(t, r, 77, 0)

		const conns = 4
		want := make([][]byte, conns)
		done := make(chan error, conns)
		for i := range want {
			want[i] = make([]byte, 1+rand.Intn(20000))
			_, _ = rand.Read(want[i])
			go func(msg []byte) { done <- echoPeer(ln.Addr().String(), msg) }(want[i])
		}

		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		batch := make([]Event, 64)
		closed, connects := 0, 0
		for closed < conns {
			n, err := r.Wait(ctx, batch, 1)
			require.NoError(t, err)
			for i := 0; i < n; i++ {
				ev := &batch[i]
				assert.Equal(t, uint64(77), ev.Tag())
				se, ctl := ev.SockEvent()
				switch {
				case !ctl:
					require.NoError(t, ev.Writeback(ev.Payload()))
					continue
				case se.Type == abi.SockEvConnect:
					connects++
				case se.Type == abi.SockEvEOF:
					require.NoError(t, r.SockShutdown(ev.Conn(), abi.SockClose))
				case se.Type == abi.SockEvClosed:
					assert.True(t, ev.Final())
					assert.Zero(t, se.Res)
					closed++
				}
				ev.Release()
			}
		}
		for i := 0; i < conns; i++ {
			require.NoError(t, <-done)
		}
		assert.Equal(t, conns, connects)
		assert.False(t, sub.Ended(), "a connection's CLOSED ended the listener's subscription")
		n, aerr := r.AsyncErrors()
		assert.Zero(t, n, "refused sends: %v", aerr)
		require.NoError(t, sub.Unsubscribe())
	})
}

// SockSendLater queues sends for the end of Run's batch: more of them than
// there are send slots still go out whole and in order, and a batch's
// sends cost no crossing of their own.
func TestSockSendLater(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSendSlots(2), WithSlotSize(1024))
		ln, _ := listenSock(t, r, 5, 0)
		msg := make([]byte, 50000)
		_, _ = rand.Read(msg)
		done := make(chan error, 1)
		go func() { done <- echoPeer(ln.Addr().String(), msg) }()

		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		err := r.Run(ctx, func(ev *Event) error {
			se, ctl := ev.SockEvent()
			switch {
			case !ctl:
				// In pieces of 40 bytes (beyond the SQE: each in a send slot).
				for p := ev.Payload(); len(p) > 0; {
					n := min(len(p), 40)
					if err := r.SockSendLater(ev.Conn(), p[:n]); err != nil {
						return err
					}
					p = p[n:]
				}
			case se.Type == abi.SockEvEOF:
				return r.SockShutdownLater(ev.Conn(), abi.SockClose)
			case se.Type == abi.SockEvClosed:
				cancel()
			}
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		require.NoError(t, <-done)
		n, aerr := r.AsyncErrors()
		assert.Zero(t, n, "refused sends: %v", aerr)
		assert.NotZero(t, r.Enters())
	})
}
