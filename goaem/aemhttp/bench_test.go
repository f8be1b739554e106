package aemhttp

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem"
)

var benchConns = flag.Int("conns", 64, "keep-alive connections of the benchmarks' load")

var benchReq = []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: aemhttp-bench\r\n\r\n")

// load sends b.N requests over -conns keep-alive connections to addr,
// one at a time per connection, and checks each response's body.
func load(b *testing.B, addr string, body []byte) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, *benchConns)
	b.ResetTimer()
	for i := 0; i < *benchConns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
			buf := make([]byte, 4096)
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Write(benchReq); err != nil {
					errs <- err
					return
				}
				got, err := readRaw(c, buf)
				if err == nil && !bytes.Equal(got, body) {
					err = fmt.Errorf("body %q", got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		require.NoError(b, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// readRaw reads one response into buf and returns its body: a client
// that allocates nothing, so -benchmem shows the server's allocations.
func readRaw(c net.Conn, buf []byte) ([]byte, error) {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return nil, err
		}
		n += m
		end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if end < 0 {
			continue
		}
		i := bytes.Index(buf[:end], []byte("Content-Length: "))
		if i < 0 {
			return nil, fmt.Errorf("no Content-Length in %q", buf[:end])
		}
		length := 0
		for _, d := range buf[i+len("Content-Length: ") : end] {
			if d < '0' || d > '9' {
				break
			}
			length = length*10 + int(d-'0')
		}
		if n >= end+4+length {
			return buf[end+4 : end+4+length], nil
		}
	}
}

// BenchmarkStatic loads the static response on the embedded backend;
// requests per enter shows how many requests one crossing served.
func BenchmarkStatic(b *testing.B) {
	s, err := Listen(Config{Addr: "127.0.0.1:0", Options: []goaem.Option{goaem.WithBackend(goaem.BackendEmbedded)}})
	require.NoError(b, err)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx) }()
	load(b, s.Addr().String(), DefaultBody)
	st := s.Stats()
	b.ReportMetric(st.RequestsPerEnter(), "req/enter")
}

// BenchmarkNetHTTP is the same load on net/http, for comparison.
func BenchmarkNetHTTP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(DefaultBody)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	load(b, ln.Addr().String(), DefaultBody)
}
