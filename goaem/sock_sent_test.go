package goaem

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// listenSock subscribes a fresh loopback TCP listener (goaem.Listen), or
// skips on the heap test backend, which has no socket I/O source.
// sndbuf != 0 sets SO_SNDBUF on the listener, which its accepted
// connections inherit.
func listenSock(t *testing.T, r *Ring, tag uint64, sndbuf int) (net.Listener, *Subscription) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	if sndbuf != 0 {
		require.NoError(t, syscall.SetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndbuf))
	}
	sub, err := r.Subscribe(Sock{FD: int(f.Fd())}, SubOptions{Tag: tag})
	// Only the heap test backend has no socket source: a refusal on the
	// kernel or embedded backend fails the test.
	if errors.Is(err, syscall.EOPNOTSUPP) && r.Backend() == "heap" {
		t.Skipf("%s backend has no socket I/O source", r.Backend())
	}
	require.NoError(t, err)
	return ln, sub
}

// sockEvents reads events until until says stop, handing each to f; the
// test context bounds it.
func sockEvents(t *testing.T, r *Ring, f func(ev *Event), until func() bool) {
	t.Helper()
	ctx := testCtx(t)
	batch := make([]Event, 64)
	for !until() {
		n, err := r.Wait(ctx, batch, 1)
		require.NoError(t, err, "waiting for socket events")
		for i := 0; i < n; i++ {
			f(&batch[i])
			batch[i].Release() // a no-op after a writeback
		}
	}
}

// sentLog records what WithSockSent reports.
type sentLog struct {
	mu  sync.Mutex
	got []sentResult
}

type sentResult struct {
	conn uint64
	n    int
	err  error
}

// Room for every test's results: appending allocates nothing during AllocsPerRun.
func newSentLog() *sentLog {
	return &sentLog{got: make([]sentResult, 0, 1024)}
}

func (l *sentLog) add(conn uint64, n int, err error) {
	l.mu.Lock()
	l.got = append(l.got, sentResult{conn, n, err})
	l.mu.Unlock()
}

func (l *sentLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

func (l *sentLog) all() []sentResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sentResult(nil), l.got...)
}

// await waits until n results were reported, reading the ring's events
// meanwhile (a later answer is reported by the reader).
func (l *sentLog) await(t *testing.T, r *Ring, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
	defer cancel()
	batch := make([]Event, 8)
	for l.len() < n {
		wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		k, err := r.Wait(wctx, batch, 1)
		wcancel()
		for i := 0; i < k; i++ {
			batch[i].Release()
		}
		if ctx.Err() != nil {
			require.Failf(t, "send results", "%d of %d reported", l.len(), n)
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			require.NoError(t, err)
		}
	}
}

// Every send on a connection, by writeback or by SockSend, is reported
// to WithSockSent with its byte count, in order; a send to a connection
// that ended is reported with its errno (and counted in AsyncErrors).
func TestSockSent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		log := newSentLog()
		r := b.open(t, WithSendSlots(2), WithSlotSize(1024), WithSockSent(log.add))
		ln, _ := listenSock(t, r, 5, 0)

		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		require.NoError(t, err)

		// The data event: echo it by writeback.
		var conn uint64
		echoed := false
		sockEvents(t, r, func(ev *Event) {
			se, ctl := ev.SockEvent()
			switch {
			case ctl && se.Type == abi.SockEvConnect:
				conn = ev.Conn()
			case !ctl:
				assert.Equal(t, "hello", string(ev.Payload()))
				require.NoError(t, ev.Writeback(ev.Payload()))
				echoed = true
			}
		}, func() bool { return echoed })
		require.NotZero(t, conn)
		log.await(t, r, 1)

		// Then sends of every size class: inline, a send slot, empty.
		sizes := []int{1, 32, 33, 1024, 0, 700}
		var want bytes.Buffer
		want.WriteString("hello")
		for i, n := range sizes {
			msg := bytes.Repeat([]byte{byte('a' + i)}, n)
			want.Write(msg)
			require.NoError(t, r.SockSend(conn, msg))
		}
		log.await(t, r, 1+len(sizes))
		got := log.all()
		assert.Equal(t, sentResult{conn, 5, nil}, got[0], "the writeback's result")
		for i, n := range sizes {
			assert.Equal(t, sentResult{conn, n, nil}, got[1+i], "send %d of %d bytes", i, n)
		}
		buf := make([]byte, want.Len())
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err = io.ReadFull(c, buf)
		require.NoError(t, err)
		assert.Equal(t, want.Bytes(), buf, "the bytes the peer read")
		errsBefore, _ := r.AsyncErrors()
		assert.Zero(t, errsBefore)

		// Close it; a send after its CLOSED names a dead id.
		require.NoError(t, r.SockShutdown(conn, abi.SockClose))
		closed := false
		sockEvents(t, r, func(ev *Event) {
			if se, ok := ev.SockEvent(); ok && se.Type == abi.SockEvClosed && ev.Conn() == conn {
				closed = true
			}
		}, func() bool { return closed })
		require.NoError(t, r.SockSend(conn, []byte("late")))
		log.await(t, r, 2+len(sizes))
		last := log.all()[1+len(sizes)]
		assert.Equal(t, conn, last.conn)
		assert.Zero(t, last.n)
		assert.ErrorIs(t, last.err, syscall.ENOENT, "a send to an ended connection")
		n, aerr := r.AsyncErrors()
		assert.Equal(t, uint64(1), n, "the refused send is counted too")
		assert.ErrorIs(t, aerr, syscall.ENOENT)
	})
}

// The callback may send: its own sends' results come after, in order,
// without deadlock; and reporting allocates nothing.
func TestSockSentReentrant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		var r *Ring
		log := newSentLog()
		chain := 0
		r = b.open(t, WithSockSent(func(conn uint64, n int, err error) {
			log.add(conn, n, err)
			if chain < 5 {
				chain++
				assert.NoError(t, r.SockSend(conn, []byte("more")))
			}
		}))
		ln, _ := listenSock(t, r, 6, 0)
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		var conn uint64
		sockEvents(t, r, func(ev *Event) {
			if se, ok := ev.SockEvent(); ok && se.Type == abi.SockEvConnect {
				conn = ev.Conn()
			}
		}, func() bool { return conn != 0 })

		require.NoError(t, r.SockSend(conn, []byte("first")))
		log.await(t, r, 6)
		got := log.all()
		assert.Equal(t, sentResult{conn, 5, nil}, got[0])
		for i := 1; i < 6; i++ {
			assert.Equal(t, sentResult{conn, 4, nil}, got[i], "result %d", i)
		}
		buf := make([]byte, 5+5*4)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		_, err = io.ReadFull(c, buf)
		require.NoError(t, err)
		assert.Equal(t, "firstmoremoremoremoremore", string(buf))

		if b.name == "heap" || raceEnabled {
			return // the heap kernel allocates as it pleases; so does the race detector
		}
		chain = 5
		msg := []byte("0123456789")
		allocs := testing.AllocsPerRun(allocRuns, func() {
			require.NoError(t, r.SockSend(conn, msg))
		})
		assert.Zero(t, allocs, "allocations per reported send")
		go func() { _, _ = io.Copy(io.Discard, c) }()
		log.await(t, r, 6+allocRuns+1)
	})
}

// A peer that reads slowly: sends wait in the kernel side and are
// answered later, which the reader reports; every byte arrives in order.
func TestSockSentSlowPeer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		log := newSentLog()
		r := b.open(t, WithSendSlots(1), WithSlotSize(4096), WithSockSent(log.add))
		ln, _ := listenSock(t, r, 8, 4096)
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c, err := d.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer c.Close()
		var conn uint64
		sockEvents(t, r, func(ev *Event) {
			if se, ok := ev.SockEvent(); ok && se.Type == abi.SockEvConnect {
				conn = ev.Conn()
			}
		}, func() bool { return conn != 0 })

		// 1.2 MB through socket buffers of a few KB: most sends are
		// answered after the peer began to read. At most half a
		// connection's queue is left unanswered.
		const sends, size, inFlight = 300, 4096, 32
		var want bytes.Buffer
		var early atomic.Int32
		read := make(chan []byte, 1)
		go func() {
			time.Sleep(100 * time.Millisecond) // let the socket fill first
			early.Store(int32(log.len()))
			_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
			got := make([]byte, sends*size)
			n, _ := io.ReadFull(c, got)
			read <- got[:n]
		}()
		for i := 0; i < sends; i++ {
			if i >= inFlight {
				log.await(t, r, i-inFlight+1)
			}
			msg := bytes.Repeat([]byte{byte(i), byte(i >> 8)}, size/2)
			want.Write(msg)
			require.NoError(t, r.SockSend(conn, msg))
		}
		log.await(t, r, sends)
		for i, s := range log.all() {
			require.Equal(t, sentResult{conn, size, nil}, s, "result %d", i)
		}
		assert.Equal(t, want.Bytes(), <-read, "the bytes the peer read")
		assert.Less(t, int(early.Load()), sends, "all answered before the peer read: nothing was left for the reader")
	})
}

// WithSockConns bounds the connections a ring holds: past it the
// listener hears one LIMIT event (-EMFILE) and the next connection waits
// in the listen queue until one of the ring's connections ends.
func TestSockConnsLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSockConns(2))
		ln, sub := listenSock(t, r, 7, 0)
		require.Equal(t, 2, r.SockConns(), "the bound in force")

		var clients []net.Conn
		defer func() {
			for _, c := range clients {
				_ = c.Close()
			}
		}()
		for i := 0; i < 3; i++ {
			c, err := net.Dial("tcp", ln.Addr().String()) // the listen queue takes the third
			require.NoError(t, err)
			clients = append(clients, c)
		}
		var conns []uint64
		limits := 0
		sockEvents(t, r, func(ev *Event) {
			se, ok := ev.SockEvent()
			require.True(t, ok, "only control events: the clients send nothing")
			switch se.Type {
			case abi.SockEvConnect:
				conns = append(conns, ev.Conn())
			case abi.SockEvLimit:
				assert.Equal(t, sub.ID(), ev.Conn(), "LIMIT comes on the listener")
				assert.Equal(t, -int32(syscall.EMFILE), se.Res)
				limits++
			default:
				assert.Failf(t, "unexpected event", "type %d", se.Type)
			}
		}, func() bool { return len(conns) == 2 && limits == 1 })

		// Nothing more while the ring is full.
		ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
		n, err := r.Wait(ctx, make([]Event, 4), 1)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Zero(t, n, "an event while the ring holds its bound")

		// One ends: the waiting connection is accepted.
		require.NoError(t, r.SockShutdown(conns[0], abi.SockClose))
		closed := false
		sockEvents(t, r, func(ev *Event) {
			se, _ := ev.SockEvent()
			switch se.Type {
			case abi.SockEvClosed:
				assert.Equal(t, conns[0], ev.Conn())
				closed = true
			case abi.SockEvConnect:
				conns = append(conns, ev.Conn())
			}
		}, func() bool { return closed && len(conns) == 3 })
		assert.NotEqual(t, conns[0], conns[2], "a new connection id")
	})
}

func TestSockConnsOption(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		if r.features&abi.FeatSock == 0 {
			t.Skipf("%s backend has no socket I/O", b.name)
		}
		assert.Equal(t, abi.DefaultSockConns, r.SockConns(), "the default bound")
		backend := map[string]Backend{"embedded": BackendEmbedded, "kernel": BackendKernel}[b.name]
		if backend == BackendAuto {
			return // the heap kernel is opened otherwise
		}
		bad, err := Open(WithBackend(backend), WithSockConns(abi.MaxSockConns+1))
		if err == nil {
			_ = bad.Close()
		}
		assert.ErrorIs(t, err, syscall.EINVAL, "a bound above the maximum")
	})
}
