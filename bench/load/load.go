// Package load is aembench's load generator for its server scenarios
// (tcp_echo, http): C concurrent keep-alive connections over loopback, each
// sending a request and reading its whole response before the next (or
// Pipeline requests ahead), for a bounded time and count. Every response is
// checked byte for byte: an echo must return exactly the bytes sent, an
// HTTP response must carry status 200, a Content-Length and the expected
// body. Latency is recorded per request in HdrHistograms.
//
// A run stops by itself: at Duration, or after MaxRequests, and no read or
// write waits past the deadline plus Grace.
package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// Kinds of load.
const (
	Echo = "echo" // Size bytes out, the same Size bytes back
	HTTP = "http" // GET Path, a 200 with Body back
)

// Limits on a run.
const (
	MaxConns    = 65536
	MaxPipeline = 64
	MaxSize     = 1 << 20
	// DefaultGrace bounds how long a read or write may wait past the
	// deadline: a request still unanswered then fails its connection.
	// Thousands of connections on a loaded 2-core machine need seconds.
	DefaultGrace = 5 * time.Second
	// dialTimeout bounds connecting all the connections.
	dialTimeout = 10 * time.Second
	// shards: connections share this many histograms, each under a lock,
	// so that memory stays bounded at any connection count.
	shards = 16
	// maxLatency is the largest latency a histogram records (larger ones
	// are recorded as this).
	maxLatency = int64(time.Minute)
)

// Config is one run.
type Config struct {
	Addr        string        // host:port on loopback
	Kind        string        // Echo or HTTP
	Conns       int           // concurrent connections
	Pipeline    int           // requests written before their responses are read; 0: 1
	Duration    time.Duration // the run ends this long after the start
	MaxRequests uint64        // over all connections; 0: no bound but Duration
	Size        int           // Echo: bytes per request
	Path        string        // HTTP: the request's path; "": "/"
	Body        []byte        // HTTP: the body every response must carry
	Grace       time.Duration // past the deadline, a request still unanswered fails; 0: DefaultGrace
}

// Result is what a run measured.
type Result struct {
	Requests     uint64 // answered and checked
	BytesChecked uint64 // response bytes compared with what was expected
	Errors       uint64 // connections that failed (a wrong byte, a reset, a timeout)
	FirstError   error  // the first of them
	Elapsed      time.Duration
	Hist         *hdrhistogram.Histogram // latency per request, ns
}

// RequestsPerSec is Requests over Elapsed.
func (r Result) RequestsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile of the latency in ns; 0 without samples.
func (r Result) Percentile(q float64) int64 {
	if r.Hist == nil || r.Hist.TotalCount() == 0 {
		return 0
	}
	return r.Hist.ValueAtQuantile(q)
}

func (c Config) normalized() (Config, error) {
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	switch {
	case c.Addr == "":
		return c, errors.New("load: no address")
	case c.Conns < 1 || c.Conns > MaxConns:
		return c, fmt.Errorf("load: %d connections: want 1 to %d", c.Conns, MaxConns)
	case c.Pipeline < 1 || c.Pipeline > MaxPipeline:
		return c, fmt.Errorf("load: pipeline %d: want 1 to %d", c.Pipeline, MaxPipeline)
	case c.Duration <= 0:
		return c, fmt.Errorf("load: duration %v: must be positive", c.Duration)
	}
	switch c.Kind {
	case Echo:
		if c.Size < 8 || c.Size > MaxSize {
			return c, fmt.Errorf("load: echo size %d: want 8 to %d", c.Size, MaxSize)
		}
	case HTTP:
	default:
		return c, fmt.Errorf("load: kind %q: want %s or %s", c.Kind, Echo, HTTP)
	}
	if err := loopback(c.Addr); err != nil {
		return c, err
	}
	return c, nil
}

// loopback refuses any address but a loopback one: the generator never
// loads another machine.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("load: address %q: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("load: address %q: only loopback addresses are loaded", addr)
	}
	return nil
}

// EnsureFiles raises RLIMIT_NOFILE so that n more descriptors fit beside
// those open, or says why it cannot.
func EnsureFiles(n int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("load: getrlimit: %w", err)
	}
	need := uint64(n) + 256 // stdio, rings, the runtime's own
	if lim.Cur >= need {
		return nil
	}
	want := lim
	want.Cur = need
	if want.Max < need {
		want.Max = need
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("load: %d connections need %d open files, RLIMIT_NOFILE is %d (hard %d) and cannot be raised (%v): raise it (ulimit -n) or use fewer connections",
			n, need, lim.Cur, lim.Max, err)
	}
	return nil
}

// Run connects cfg.Conns connections, loads them until the deadline or the
// request bound, and closes them. ctx cancels the run early.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return Result{}, err
	}
	// both ends of every connection may be in this process
	if err := EnsureFiles(2 * cfg.Conns); err != nil {
		return Result{}, err
	}
	conns, err := dialAll(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	g := &gen{cfg: cfg}
	for i := range g.hists {
		g.hists[i].h = hdrhistogram.New(1, maxLatency, 3)
	}
	start := time.Now()
	end := start.Add(cfg.Duration)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			g.conn(ctx, i, c, end)
		}()
	}
	// a cancelled run unblocks its connections at once
	stop := context.AfterFunc(ctx, func() {
		if ctx.Err() == context.Canceled {
			for _, c := range conns {
				_ = c.SetDeadline(time.Now())
			}
		}
	})
	wg.Wait()
	stop()
	res := Result{
		Requests:     g.requests.Load(),
		BytesChecked: g.bytes.Load(),
		Errors:       g.errors.Load(),
		Elapsed:      time.Since(start),
		Hist:         hdrhistogram.New(1, maxLatency, 3),
	}
	if e := g.firstErr.Load(); e != nil {
		res.FirstError = *e
	}
	for i := range g.hists {
		res.Hist.Merge(g.hists[i].h)
	}
	return res, nil
}

// dialAll connects every connection before the clock starts, a few at a
// time.
func dialAll(ctx context.Context, cfg Config) ([]net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conns := make([]net.Conn, cfg.Conns)
	errs := make(chan error, cfg.Conns)
	sem := make(chan struct{}, 64)
	var d net.Dialer
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.DialContext(ctx, "tcp", cfg.Addr)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, fmt.Errorf("load: connect %d connections to %s: %w", cfg.Conns, cfg.Addr, err)
	}
	return conns, nil
}

type shard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

type gen struct {
	cfg      Config
	issued   atomic.Uint64 // requests taken against MaxRequests
	requests atomic.Uint64
	bytes    atomic.Uint64
	errors   atomic.Uint64
	firstErr atomic.Pointer[error]
	hists    [shards]shard
}

func (g *gen) fail(err error) {
	g.errors.Add(1)
	g.firstErr.CompareAndSwap(nil, &err)
}

// take reserves n requests against MaxRequests; it returns how many it got.
func (g *gen) take(n int) int {
	if g.cfg.MaxRequests == 0 {
		return n
	}
	after := g.issued.Add(uint64(n))
	if after <= g.cfg.MaxRequests {
		return n
	}
	over := after - g.cfg.MaxRequests
	if over >= uint64(n) {
		return 0
	}
	return n - int(over)
}

// conn runs one connection until the deadline, the request bound or an
// error. Responses are read in the order their requests went out.
func (g *gen) conn(ctx context.Context, id int, c net.Conn, end time.Time) {
	if err := c.SetDeadline(end.Add(g.cfg.Grace)); err != nil {
		g.fail(err)
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	cfg := g.cfg
	rd := bufio.NewReaderSize(c, 64<<10)
	var out []byte
	var echoBuf, want []byte
	if cfg.Kind == Echo {
		out = make([]byte, 0, cfg.Size*cfg.Pipeline)
		echoBuf = make([]byte, cfg.Size)
		want = make([]byte, cfg.Size*cfg.Pipeline)
	} else {
		req := "GET " + cfg.Path + " HTTP/1.1\r\nHost: aembench\r\n\r\n"
		for range cfg.Pipeline {
			out = append(out, req...)
		}
	}
	sent := make([]time.Time, cfg.Pipeline)
	h := &g.hists[id%shards]
	var seq uint64
	var lat [MaxPipeline]int64
	for ctx.Err() == nil {
		n := g.take(cfg.Pipeline)
		if n == 0 {
			return
		}
		msg := out
		if cfg.Kind == Echo {
			// every request is distinct: connection, sequence, then a
			// pattern from both, so a byte from elsewhere shows
			msg = out[:n*cfg.Size]
			for k := range n {
				fill(msg[k*cfg.Size:(k+1)*cfg.Size], uint32(id), seq+uint64(k))
			}
			copy(want, msg)
		} else {
			msg = out[:len(out)/cfg.Pipeline*n]
		}
		now := time.Now()
		for k := range n {
			sent[k] = now
		}
		if _, err := c.Write(msg); err != nil {
			g.failIO(ctx, id, err)
			return
		}
		for k := range n {
			var got int
			var err error
			if cfg.Kind == Echo {
				got, err = readEcho(rd, echoBuf, want[k*cfg.Size:(k+1)*cfg.Size])
			} else {
				got, err = readHTTP(rd, cfg.Body)
			}
			if err != nil {
				g.failIO(ctx, id, fmt.Errorf("request %d: %w", seq+uint64(k), err))
				return
			}
			lat[k] = int64(time.Since(sent[k]))
			g.bytes.Add(uint64(got))
		}
		seq += uint64(n)
		g.requests.Add(uint64(n))
		h.mu.Lock()
		for _, v := range lat[:n] {
			_ = h.h.RecordValue(min(max(v, 1), maxLatency))
		}
		h.mu.Unlock()
	}
}

// failIO counts err unless a cancelled run cut the request short.
func (g *gen) failIO(ctx context.Context, id int, err error) {
	var ne net.Error
	if errors.Is(ctx.Err(), context.Canceled) && errors.As(err, &ne) && ne.Timeout() {
		return
	}
	g.fail(fmt.Errorf("connection %d: %w", id, err))
}

// fill writes the request pattern of (conn, seq) into b (at least 8 bytes).
func fill(b []byte, conn uint32, seq uint64) {
	binary.LittleEndian.PutUint32(b, conn)
	binary.LittleEndian.PutUint32(b[4:], uint32(seq))
	x := uint32(seq)*2654435761 ^ conn*40503
	for i := 8; i < len(b); i++ {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
}

// readEcho reads len(want) bytes and compares them with want.
func readEcho(rd *bufio.Reader, buf, want []byte) (int, error) {
	if _, err := io.ReadFull(rd, buf); err != nil {
		return 0, err
	}
	if !bytes.Equal(buf, want) {
		i := 0
		for i < len(buf) && buf[i] == want[i] {
			i++
		}
		return 0, fmt.Errorf("echo differs at byte %d of %d", i, len(want))
	}
	return len(want), nil
}

var (
	statusOK     = []byte("HTTP/1.1 200 ")
	headerLength = []byte("content-length:")
)

// readHTTP reads one response: status 200, headers with a Content-Length,
// then exactly that body, which must equal body. It returns the bytes read.
func readHTTP(rd *bufio.Reader, body []byte) (int, error) {
	line, err := rd.ReadSlice('\n')
	if err != nil {
		return 0, fmt.Errorf("status line: %w", err)
	}
	if !bytes.HasPrefix(line, statusOK) {
		return 0, fmt.Errorf("status line %q: want %q", bytes.TrimSpace(line), statusOK)
	}
	n := len(line)
	length := -1
	for {
		line, err = rd.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("headers: %w", err)
		}
		n += len(line)
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		if len(line) > len(headerLength) && bytes.EqualFold(line[:len(headerLength)], headerLength) {
			v := string(bytes.TrimSpace(line[len(headerLength):]))
			l, err := strconv.Atoi(v)
			if err != nil || l < 0 {
				return 0, fmt.Errorf("Content-Length %q", v)
			}
			length = l
		}
	}
	if length < 0 {
		return 0, errors.New("response without Content-Length")
	}
	if length != len(body) {
		return 0, fmt.Errorf("Content-Length %d: want %d", length, len(body))
	}
	for off := 0; off < length; {
		chunk, err := rd.Peek(min(length-off, rd.Size()))
		if err != nil {
			return 0, fmt.Errorf("body: %w", err)
		}
		if !bytes.Equal(chunk, body[off:off+len(chunk)]) {
			return 0, fmt.Errorf("body differs in bytes %d..%d", off, off+len(chunk))
		}
		_, _ = rd.Discard(len(chunk))
		off += len(chunk)
	}
	return n + length, nil
}
