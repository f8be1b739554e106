package aemnet

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

// forEachBackend runs f on the embedded backend, and on the module when
// /dev/aem exists.
func forEachBackend(t *testing.T, f func(t *testing.T, b goaem.Backend)) {
	backends := []goaem.Backend{goaem.BackendEmbedded}
	if _, err := os.Stat(abi.DevicePath); err == nil {
		backends = append(backends, goaem.BackendKernel)
	}
	for _, b := range backends {
		t.Run(b.String(), func(t *testing.T) { f(t, b) })
	}
}

// listen opens a Listener on b, closed when the test ends.
func listen(t testing.TB, b goaem.Backend, opts ...goaem.Option) *Listener {
	t.Helper()
	l, err := Listen("tcp", "127.0.0.1:0", append([]goaem.Option{goaem.WithBackend(b)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() {
		n, aerr := l.Ring().AsyncErrors()
		l.Close()
		assert.Zero(t, n, "sends refused: %v", aerr)
	})
	return l
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// echoServer serves io.Copy echoes on l until it closes.
func echoServer(l *Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// echoClient sends msg, ends its side, and checks that exactly msg comes
// back.
func echoClient(addr string, msg []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// Bounded, with room for the debug kernel's guest (KASAN under TCG),
	// where 48 echoes through the embedded backend took over 20 s.
	_ = c.SetDeadline(time.Now().Add(90 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if err = <-werr; err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes: %d came back, or differ", len(msg), len(got))
	}
	return nil
}

// Every byte of many connections of random sizes comes back once and in
// order through io.Copy on Conns.
func TestEcho(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		l := listen(t, b, goaem.WithSlotSize(4096))
		go echoServer(l)
		const conns = 48
		errs := make(chan error, conns)
		for i := 0; i < conns; i++ {
			msg := randBytes(mrand.Intn(300 << 10))
			go func() { errs <- echoClient(l.Addr().String(), msg) }()
		}
		for i := 0; i < conns; i++ {
			require.NoError(t, <-errs)
		}
	})
}

// net/http serves on a Listener: keep-alive requests, a POST body and a
// response both much larger than a slot, every byte checked.
func TestHTTP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		l := listen(t, b, goaem.WithSlotSize(4096))
		big := randBytes(3 << 20)
		mux := http.NewServeMux()
		mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") })
		mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(big) })
		mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) })
		var conns atomic.Int32
		srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()

		tr := &http.Transport{MaxIdleConnsPerHost: 4}
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		base := "http://" + l.Addr().String()
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					resp, err := cl.Get(base + "/hello")
					if !assert.NoError(t, err) {
						return
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					assert.NoError(t, err)
					assert.Equal(t, "hello", string(body))
				}
			}()
		}
		wg.Wait()
		assert.LessOrEqual(t, int(conns.Load()), 8, "100 requests over 4 keep-alive clients took %d connections", conns.Load())

		resp, err := cl.Get(base + "/big")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.True(t, bytes.Equal(big, body), "large response: %d of %d bytes", len(body), len(big))

		post := randBytes(2 << 20)
		resp, err = cl.Post(base+"/echo", "application/octet-stream", bytes.NewReader(post))
		require.NoError(t, err)
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.True(t, bytes.Equal(post, body), "echoed POST: %d of %d bytes", len(body), len(post))

		require.NoError(t, l.Close())
		assert.ErrorIs(t, <-served, net.ErrClosed)
	})
}

// accept dials l and returns both ends.
func accept(t *testing.T, l *Listener) (client net.Conn, server *Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	// Bounded: a connection that never arrives closes the listener, which
	// ends Accept with an error instead of the test binary's timeout.
	giveUp := time.AfterFunc(20*time.Second, func() { l.Close() })
	c, err := l.Accept()
	giveUp.Stop()
	require.NoError(t, err)
	assert.Equal(t, client.LocalAddr().String(), c.RemoteAddr().String())
	assert.Equal(t, l.Addr().String(), c.LocalAddr().String())
	return client, c.(*Conn)
}

// A read deadline ends a blocked Read with os.ErrDeadlineExceeded; the
// connection still works after the deadline moves.
func TestReadDeadline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		l := listen(t, b)
		client, c := accept(t, l)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
		buf := make([]byte, 16)
		start := time.Now()
		_, err := c.Read(buf)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
		assert.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)

		require.NoError(t, c.SetReadDeadline(time.Time{}))
		_, err = client.Write([]byte("ping"))
		require.NoError(t, err)
		n, err := io.ReadFull(c, buf[:4])
		require.NoError(t, err)
		assert.Equal(t, "ping", string(buf[:n]))

		// A deadline set while Read blocks wakes it.
		go func() {
			time.Sleep(30 * time.Millisecond)
			_ = c.SetReadDeadline(time.Now())
		}()
		_, err = c.Read(buf)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

// A peer's reset fails Read and Write with ECONNRESET (after the bytes
// that came before it); a peer's end-of-stream is io.EOF after the data.
func TestPeerResetAndEOF(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		l := listen(t, b)
		client, c := accept(t, l)
		_, err := client.Write([]byte("last words"))
		require.NoError(t, err)
		require.NoError(t, client.(*net.TCPConn).CloseWrite())
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		require.NoError(t, client.SetReadDeadline(time.Now().Add(20*time.Second)))
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Equal(t, "last words", string(got))
		_, err = c.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		got, err = io.ReadAll(client)
		require.NoError(t, err)
		assert.Equal(t, "bye", string(got))

		client, c = accept(t, l)
		require.NoError(t, client.(*net.TCPConn).SetLinger(0))
		require.NoError(t, client.Close())
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c)
		require.ErrorIs(t, err, syscall.ECONNRESET)
		_, err = c.Write([]byte("anyone?"))
		require.Error(t, err)
		assert.NoError(t, c.Close())
	})
}

// Listener.Close unblocks Accept and the Reads and Writes of its
// connections.
func TestListenerClose(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		l := listen(t, b)
		_, c := accept(t, l)
		errs := make(chan error, 2)
		go func() {
			_, err := l.Accept()
			errs <- err
		}()
		go func() {
			_, err := c.Read(make([]byte, 8))
			errs <- err
		}()
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, l.Close())
		for i := 0; i < 2; i++ {
			select {
			case err := <-errs:
				assert.ErrorIs(t, err, net.ErrClosed)
			case <-time.After(10 * time.Second):
				t.Fatal("Close left Accept or Read blocked")
			}
		}
		_, err := c.Write([]byte("x"))
		assert.ErrorIs(t, err, net.ErrClosed)
	})
}

// heldNow is how many events c keeps for want of buffer room, and the
// length of its receive buffer.
func (c *Conn) heldNow() (events, buf int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held) - c.hoff, len(c.buf)
}

// A connection not read for a while holds at most the ring's slots and
// its fixed buffer; the sender is paused, not dropped, and every byte
// arrives in order once it reads.
func TestSlowReader(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		const slots, slot = 32, 4096
		l := listen(t, b, goaem.WithSlots(slots), goaem.WithSlotSize(slot))
		client, c := accept(t, l)
		msg := randBytes(8 << 20)
		// Before the writer starts: once it has, bytes may be held already.
		_, idleBuf := c.heldNow()
		assert.Zero(t, idleBuf, "a connection with nothing to read holds a buffer")
		wrote := make(chan error, 1)
		go func() {
			_, err := client.Write(msg)
			wrote <- err
		}()
		maxHeld, maxBuf := 0, 0
		for i := 0; i < 20; i++ {
			time.Sleep(20 * time.Millisecond)
			held, buf := c.heldNow()
			maxHeld, maxBuf = max(maxHeld, held), max(maxBuf, buf)
		}
		select {
		case err := <-wrote:
			t.Fatalf("the writer finished (%v) with nobody reading: no back-pressure", err)
		default:
		}
		assert.LessOrEqual(t, maxHeld, slots)
		assert.Positive(t, maxHeld, "the full buffer held no events")
		assert.Equal(t, l.bufMax, maxBuf)

		got := make([]byte, 0, len(msg))
		buf := make([]byte, 1500)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for len(got) < len(msg) {
			n, err := c.Read(buf)
			require.NoError(t, err)
			got = append(got, buf[:n]...)
		}
		require.NoError(t, <-wrote)
		assert.True(t, bytes.Equal(msg, got), "bytes lost or out of order")
		heldAfter, bufAfter := c.heldNow()
		assert.Zero(t, heldAfter)
		assert.Zero(t, bufAfter, "the empty buffer went back to the listener")
	})
}

// The receive path allocates nothing per event: a transfer of many
// events through Read into a fixed buffer costs (nearly) no allocation.
func TestReceiveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		l := listen(t, b, goaem.WithSlotSize(4096))
		client, c := accept(t, l)
		msg := randBytes(1 << 20)
		buf := make([]byte, 64<<10)
		transfer := func() {
			go func() { _, _ = client.Write(msg) }()
			for got := 0; got < len(msg); {
				n, err := c.Read(buf)
				if err != nil {
					panic(err)
				}
				got += n
			}
		}
		transfer() // warm up: the held slice, timers, the goroutine stacks
		before := l.events.Load()
		const runs = 5
		allocs := testing.AllocsPerRun(runs, transfer)
		events := float64(l.events.Load()-before) / (runs + 1)
		perEvent := allocs / events
		t.Logf("%.0f allocations per MiB received, %.0f events: %.4f per event", allocs, events, perEvent)
		assert.Less(t, perEvent, 0.05, "allocations per received event")
	})
}

// A benchmark of the receive path: bytes from a TCP client through the
// ring into Read, allocations per event reported.
func BenchmarkReceive(b *testing.B) {
	l := listen(b, goaem.BackendEmbedded, goaem.WithSlotSize(16<<10))
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(b, err)
	defer client.Close()
	nc, err := l.Accept()
	require.NoError(b, err)
	c := nc.(*Conn)
	chunk := randBytes(64 << 10)
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := client.Write(chunk); err != nil {
				return
			}
		}
	}()
	before := l.events.Load()
	b.ResetTimer()
	for got := 0; got < b.N*len(chunk); {
		n, err := c.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		got += n
	}
	b.StopTimer()
	b.ReportMetric(float64(l.events.Load()-before)/float64(b.N), "events/op")
}

// A write deadline ends a Write that a peer not reading holds up; the
// error is os.ErrDeadlineExceeded.
func TestWriteDeadline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		l := listen(t, b, goaem.WithSlotSize(4096))
		client, c := accept(t, l)
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(make([]byte, 32<<20))
			done <- err
		}()
		select {
		case err := <-done:
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		case <-time.After(10 * time.Second):
			t.Fatal("Write outlived its deadline")
		}
		// The sends handed over before the deadline still go out, then the close.
		// (32 MiB is more than loopback's socket buffers take.)
		require.NoError(t, c.Close())
		_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := io.Copy(io.Discard, client)
		require.NoError(t, err)
		assert.Zero(t, n%4096, "a send cut short")
	})
}

// A Unix stream listener works too; its peers have no address.
func TestUnix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		path := t.TempDir() + "/sock"
		l, err := Listen("unix", path, goaem.WithBackend(b))
		if unixRefused(b, err) {
			t.Skip("this kernel has no SO_PASSRIGHTS (before 6.16): the module refuses Unix listeners with EOPNOTSUPP (PROTOCOL.md section 10)")
		}
		require.NoError(t, err)
		defer l.Close()
		go echoServer(l)
		client, err := net.Dial("unix", path)
		require.NoError(t, err)
		defer client.Close()
		msg := randBytes(100 << 10)
		go func() {
			_, _ = client.Write(msg)
			_ = client.(*net.UnixConn).CloseWrite()
		}()
		_ = client.SetDeadline(time.Now().Add(20 * time.Second))
		got, err := io.ReadAll(client)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(msg, got))
	})
}

// soPassRights is SO_PASSRIGHTS (Linux 6.16), which x/sys/unix lacks.
const soPassRights = 83

// unixRefused reports whether err is the module's documented refusal of a
// Unix listener on a kernel without SO_PASSRIGHTS; anything else, on any
// backend, is a failure.
func unixRefused(b goaem.Backend, err error) bool {
	if b != goaem.BackendKernel || !errors.Is(err, syscall.EOPNOTSUPP) {
		return false
	}
	fd, serr := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if serr != nil {
		return false
	}
	defer unix.Close(fd)
	_, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, soPassRights)
	return errors.Is(gerr, unix.ENOPROTOOPT)
}

// benchHTTP loads net/http serving on ln with keep-alive GETs from conns
// connections, b.N requests in all.
func benchHTTP(b *testing.B, ln net.Listener) {
	const conns = 32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "hello")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	var next sync.WaitGroup
	work := make(chan struct{}, b.N)
	for i := 0; i < b.N; i++ {
		work <- struct{}{}
	}
	close(work)
	b.ResetTimer()
	for i := 0; i < conns; i++ {
		next.Add(1)
		go func() {
			defer next.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			br := bufio.NewReader(c)
			for range work {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	next.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// net/http on an aemnet Listener (embedded backend).
func BenchmarkHTTPAemnet(b *testing.B) {
	benchHTTP(b, listen(b, goaem.BackendEmbedded))
}

// net/http on Go's own listener, for comparison.
func BenchmarkHTTPNet(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	defer ln.Close()
	benchHTTP(b, ln)
}

// Several goroutines may Accept at once, as net.Listener allows: every
// connection dialled, in bursts, is accepted by one of them.
func TestConcurrentAccept(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		const acceptors, bursts, perBurst = 4, 50, 4
		l := listen(t, b)
		accepted := make(chan net.Conn, bursts*perBurst)
		for range acceptors {
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return // the listener closed
					}
					accepted <- c
				}
			}()
		}
		var clients []net.Conn
		defer func() {
			for _, c := range clients {
				c.Close()
			}
		}()
		deadline := time.After(20 * time.Second)
		for burst := range bursts {
			for range perBurst {
				c, err := net.Dial("tcp", l.Addr().String())
				require.NoError(t, err)
				clients = append(clients, c)
			}
			for i := range perBurst {
				select {
				case c := <-accepted:
					c.Close()
				case <-deadline:
					t.Fatalf("burst %d: %d of %d connections accepted after 20 s", burst, i, perBurst)
				}
			}
		}
	})
}
