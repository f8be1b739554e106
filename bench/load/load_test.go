package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serve runs handle on every connection of a loopback listener until the
// test ends.
func serve(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
	)
	// The end closes every connection, so no handler waits on a client
	// that a failed check left open.
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// corrupt echoes, but flips one byte once `after` bytes went back.
func corrupt(after int) func(c net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, 4096)
		total := 0
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if total <= after && after < total+n {
				buf[after-total] ^= 0x40
			}
			total += n
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

func httpServer(body string, length int) func(c net.Conn) {
	return func(c net.Conn) {
		rd := bufio.NewReader(c)
		for {
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\r\n" {
					break
				}
			}
			resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", length, body)
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	}
}

func TestEchoChecksEveryByte(t *testing.T) {
	addr := serve(t, echo)
	for _, pipe := range []int{1, 4} {
		res, err := Run(context.Background(), Config{Addr: addr, Kind: Echo, Conns: 8, Pipeline: pipe,
			Duration: 5 * time.Second, MaxRequests: 2000, Size: 100})
		require.NoError(t, err)
		assert.Zero(t, res.Errors, "%v", res.FirstError)
		assert.Equal(t, uint64(2000), res.Requests, "the request bound holds exactly")
		assert.Equal(t, uint64(2000*100), res.BytesChecked)
		assert.Equal(t, int64(2000), res.Hist.TotalCount())
		assert.Positive(t, res.Percentile(50))
		assert.Positive(t, res.RequestsPerSec())
	}
}

func TestCorruptEchoIsCaught(t *testing.T) {
	addr := serve(t, corrupt(1234))
	res, err := Run(context.Background(), Config{Addr: addr, Kind: Echo, Conns: 2, Duration: 5 * time.Second,
		MaxRequests: 200, Size: 64})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), res.Errors, "each connection meets its flipped byte")
	require.Error(t, res.FirstError)
	assert.Contains(t, res.FirstError.Error(), "echo differs at byte 18 of 64") // 1234 = 19*64 + 18
}

func TestHTTPChecksStatusLengthAndBody(t *testing.T) {
	body := strings.Repeat("aem ", 100)
	res, err := Run(context.Background(), Config{Addr: serve(t, httpServer(body, len(body))), Kind: HTTP,
		Conns: 4, Pipeline: 2, Duration: 5 * time.Second, MaxRequests: 400, Body: []byte(body)})
	require.NoError(t, err)
	assert.Zero(t, res.Errors, "%v", res.FirstError)
	assert.Equal(t, uint64(400), res.Requests)
	assert.Greater(t, res.BytesChecked, uint64(400*len(body)), "headers are counted too")

	bad := strings.Repeat("aem ", 99) + "aex "
	res, err = Run(context.Background(), Config{Addr: serve(t, httpServer(bad, len(bad))), Kind: HTTP,
		Conns: 1, Duration: 5 * time.Second, MaxRequests: 10, Body: []byte(body)})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), res.Errors)
	assert.ErrorContains(t, res.FirstError, "body differs")

	res, err = Run(context.Background(), Config{Addr: serve(t, httpServer(body, len(body)-1)), Kind: HTTP,
		Conns: 1, Duration: 5 * time.Second, MaxRequests: 10, Body: []byte(body)})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), res.Errors)
	assert.ErrorContains(t, res.FirstError, "Content-Length 399: want 400")
}

func TestStopsOnTime(t *testing.T) {
	addr := serve(t, echo)
	start := time.Now()
	res, err := Run(context.Background(), Config{Addr: addr, Kind: Echo, Conns: 16, Duration: 200 * time.Millisecond, Size: 32})
	require.NoError(t, err)
	assert.Zero(t, res.Errors, "%v", res.FirstError)
	assert.Positive(t, res.Requests)
	assert.Less(t, time.Since(start), 200*time.Millisecond+DefaultGrace)

	// a server that never answers: the run still ends, each connection
	// failed by its deadline
	silent := serve(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	start = time.Now()
	res, err = Run(context.Background(), Config{Addr: silent, Kind: Echo, Conns: 3, Duration: 100 * time.Millisecond,
		Size: 32, Grace: 300 * time.Millisecond})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 400*time.Millisecond+time.Second)
	assert.Equal(t, uint64(3), res.Errors)
	assert.Zero(t, res.Requests)

	// a cancel ends it at once, without errors
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	res, err = Run(ctx, Config{Addr: silent, Kind: Echo, Conns: 3, Duration: time.Minute, Size: 32})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), DefaultGrace)
	assert.Zero(t, res.Errors)
}

func TestRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Addr: "10.1.2.3:80", Kind: Echo, Conns: 1, Duration: time.Second, Size: 8},
		{Addr: "127.0.0.1:1", Kind: Echo, Conns: 0, Duration: time.Second, Size: 8},
		{Addr: "127.0.0.1:1", Kind: Echo, Conns: 1, Duration: time.Second, Size: 4},
		{Addr: "127.0.0.1:1", Kind: "ftp", Conns: 1, Duration: time.Second},
		{Addr: "127.0.0.1:1", Kind: HTTP, Conns: 1, Pipeline: MaxPipeline + 1, Duration: time.Second},
		{Addr: "127.0.0.1:1", Kind: HTTP, Conns: 1},
	} {
		_, err := Run(context.Background(), cfg)
		assert.Error(t, err, "%+v", cfg)
	}
}
