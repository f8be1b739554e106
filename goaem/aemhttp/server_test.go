package aemhttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

// start runs a server on b until the test ends.
func start(t *testing.T, b goaem.Backend, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Options = append([]goaem.Option{goaem.WithBackend(b)}, cfg.Options...)
	s, err := Listen(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "Serve")
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
		assert.NoError(t, s.Close())
		st := s.Stats()
		assert.Zero(t, st.SendErrors, "sends refused or lost")
	})
	return s
}

// dial opens a raw connection to s with a deadline.
func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	t.Cleanup(func() { c.Close() })
	return c
}

// send opens a raw connection to s and writes raw on it.
func send(t *testing.T, s *Server, raw string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dial(t, s)
	_, err := io.WriteString(c, raw)
	require.NoError(t, err)
	return c, bufio.NewReader(c)
}

// readResponse reads one response to a request of method from r.
func readResponse(t *testing.T, r *bufio.Reader, method string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(r, &http.Request{Method: method})
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, body
}

// inParallel runs f in n goroutines and requires that none failed.
func inParallel(t *testing.T, n int, f func() error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- f()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// requireClosed checks that the server closed c after what was read.
func requireClosed(t *testing.T, r *bufio.Reader) {
	t.Helper()
	rest, err := io.ReadAll(r)
	require.NoError(t, err, "want end-of-stream")
	assert.Empty(t, rest, "bytes after the last response")
}

func TestKeepAliveClient(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{})
		tr := &http.Transport{MaxConnsPerHost: 4, MaxIdleConnsPerHost: 4}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		const n = 500
		inParallel(t, n, func() error {
			resp, err := client.Get("http://" + s.Addr().String() + "/")
			if err != nil {
				return err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != 200 || string(body) != "hello, world\n") {
				err = fmt.Errorf("status %d body %q", resp.StatusCode, body)
			}
			return err
		})
		st := s.Stats()
		assert.Equal(t, uint64(n), st.Requests)
		assert.LessOrEqual(t, st.Conns, uint64(4), "keep-alive: connections reused")
		assert.NotZero(t, st.Enters)
	})
}

func TestPipelining(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{Body: []byte("pipelined body\n")})
		c := dial(t, s)
		const n = 300
		methods := make([]string, n)
		var req bytes.Buffer
		for i := range methods {
			switch i % 3 {
			case 0:
				methods[i] = "GET"
				req.WriteString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			case 1:
				methods[i] = "HEAD"
				req.WriteString("HEAD /?q=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: pipeline-test\r\n\r\n")
			case 2:
				methods[i] = "POST"
				fmt.Fprintf(&req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nrequest %d", len(fmt.Sprint("request ", i)), i)
			}
		}
		_, err := c.Write(req.Bytes())
		require.NoError(t, err)
		r := bufio.NewReader(c)
		for i, m := range methods {
			resp, body := readResponse(t, r, m)
			require.Equal(t, 200, resp.StatusCode, "response %d", i)
			switch m {
			case "GET":
				require.Equal(t, "pipelined body\n", string(body), "response %d", i)
			case "HEAD":
				require.Empty(t, body)
				require.Equal(t, int64(len("pipelined body\n")), resp.ContentLength)
			case "POST":
				require.Equal(t, fmt.Sprint("request ", i), string(body), "response %d in order", i)
			}
		}
	})
}

func TestSplitByteByByte(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{})
		c := dial(t, s)
		req := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello there" +
			"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nsplit\r\n3\r\n by\r\n0\r\nX-Trailer: t\r\n\r\n" +
			"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		go func() {
			for i := 0; i < len(req); i++ {
				if _, err := c.Write([]byte{req[i]}); err != nil {
					return
				}
				if i%16 == 0 {
					time.Sleep(100 * time.Microsecond) // let some bytes arrive alone
				}
			}
		}()
		r := bufio.NewReader(c)
		_, body := readResponse(t, r, "POST")
		assert.Equal(t, "hello there", string(body))
		_, body = readResponse(t, r, "POST")
		assert.Equal(t, "split by", string(body))
		resp, body := readResponse(t, r, "GET")
		assert.Equal(t, "hello, world\n", string(body))
		assert.True(t, resp.Close)
		requireClosed(t, r)
	})
}

func TestBodies(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{})
		client := &http.Client{Timeout: 20 * time.Second}
		url := "http://" + s.Addr().String()
		for _, size := range []int{0, 1, 100, 16 << 10, 100_000, MaxBodyBytes} {
			want := make([]byte, size)
			_, _ = rand.Read(want)
			// A Reader of unknown length goes chunked; a bytes.Reader with its
			// Content-Length.
			for _, chunked := range []bool{false, true} {
				var body io.Reader = bytes.NewReader(want)
				if chunked {
					body = io.MultiReader(bytes.NewReader(want))
				}
				resp, err := client.Post(url+"/echo", "application/octet-stream", body)
				require.NoError(t, err)
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				require.Equal(t, 200, resp.StatusCode)
				require.True(t, bytes.Equal(want, got), "echo of %d bytes (chunked %v) differs", size, chunked)
			}
		}
		// A body to "/" is read and dropped; the next request on the
		// connection is answered.
		_, r := send(t, s, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"+
			"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		for i := 0; i < 2; i++ {
			resp, body := readResponse(t, r, "GET")
			assert.Equal(t, 200, resp.StatusCode)
			assert.Equal(t, "hello, world\n", string(body))
		}
	})
}

func TestBadRequests(t *testing.T) {
	cases := []struct {
		name, req string
		status    int
	}{
		{"garbage", "this is not http\r\n\r\n", 400},
		{"no version", "GET /\r\n\r\n", 400},
		{"bad header", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"folded", "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
		{"bad length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400},
		{"two lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"length and chunked", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400},
		{"chunk without CRLF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n", 400},
		{"body too large", fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", MaxBodyBytes+1), 413},
		{"chunk too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n", 413},
		{"chunk framing too large", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\na\r\n", 2100), 413},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", MaxHeaderBytes) + "\r\n\r\n", 431},
		{"header never ends", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 2*MaxHeaderBytes), 431},
		{"gzip coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"method", "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 501},
		{"version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
	}
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{})
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				// A good request first: the error closes a kept-alive connection.
				_, r := send(t, s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"+tc.req+"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, _ := readResponse(t, r, "GET")
				require.Equal(t, 200, resp.StatusCode)
				resp, body := readResponse(t, r, "GET")
				assert.Equal(t, tc.status, resp.StatusCode, "body %q", body)
				assert.True(t, resp.Close, "an error response closes the connection")
				assert.Contains(t, string(body), fmt.Sprint(tc.status, " "))
				requireClosed(t, r)
			})
		}
	})
}

func TestHTTP10(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{})
		_, r := send(t, s, "GET / HTTP/1.0\r\n\r\n")
		resp, body := readResponse(t, r, "GET")
		assert.Equal(t, "hello, world\n", string(body))
		assert.True(t, resp.Close)
		requireClosed(t, r)

		_, r = send(t, s, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
		resp, body = readResponse(t, r, "GET")
		assert.Equal(t, "hello, world\n", string(body))
		assert.False(t, resp.Close)
		assert.Equal(t, "keep-alive", resp.Header.Get("Connection"))
		resp, body = readResponse(t, r, "HEAD")
		assert.Empty(t, body)
		assert.Equal(t, int64(13), resp.ContentLength)
		assert.False(t, resp.Close)
	})
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	big := make([]byte, 200_000) // many 16 KiB slots
	_, _ = rand.Read(big)
	require.NoError(t, os.WriteFile(filepath.Join(root, "sub", "big.bin"), big, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "small.txt"), []byte("small file\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("secret\n"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "escape")))
	require.NoError(t, os.Symlink("small.txt", filepath.Join(root, "inside")))
	huge, err := os.Create(filepath.Join(root, "huge.bin"))
	require.NoError(t, err)
	require.NoError(t, huge.Truncate(4<<20))
	require.NoError(t, huge.Close())

	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{Root: root})
		client := &http.Client{Timeout: 20 * time.Second}
		url := "http://" + s.Addr().String()
		for i := 0; i < 3; i++ { // the same connection, kept alive
			resp, err := client.Get(url + "/files/sub/big.bin")
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, 200, resp.StatusCode)
			require.True(t, bytes.Equal(big, got), "file of %d bytes served as %d differing bytes", len(big), len(got))
		}
		resp, err := client.Head(url + "/files/sub/big.bin")
		require.NoError(t, err)
		assert.Equal(t, int64(len(big)), resp.ContentLength)
		resp.Body.Close()
		resp, err = client.Get(url + "/files/inside")
		require.NoError(t, err)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "small file\n", string(got), "a symlink inside the root is served")

		for _, tc := range []struct {
			target string
			status int
		}{
			{"/files/../secret", 403},
			{"/files/sub/../../secret", 403},
			{"/files/%2e%2e/secret", 403},
			{"/files/escape", 403},
			{"/files/missing", 404},
			{"/files/sub", 404},
			{"/files/", 403},
		} {
			_, r := send(t, s, "GET "+tc.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, body := readResponse(t, r, "GET")
			assert.Equal(t, tc.status, resp.StatusCode, "%s: %q", tc.target, body)
			assert.NotContains(t, string(body), "secret")
		}

		// A file of 4 MiB (256 slots, past one connection's send queue).
		_, r := send(t, s, "GET /files/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, body := readResponse(t, r, "GET")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, make([]byte, 4<<20), body)

		// Pipelined file requests past one connection's send queue: every
		// response comes whole, in order.
		_, r = send(t, s, strings.Repeat("GET /files/sub/big.bin HTTP/1.1\r\nHost: x\r\n\r\n", 10))
		for n := 0; n < 10; n++ {
			resp, err := http.ReadResponse(r, nil)
			require.NoError(t, err, "pipelined file %d", n)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.True(t, bytes.Equal(big, got), "pipelined file %d", n)
		}
	})
}

func TestManyConnections(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{})
		const conns, each = 200, 5
		inParallel(t, conns, func() error {
			c, err := net.DialTimeout("tcp", s.Addr().String(), 10*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			for k := 0; k < each; k++ {
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					return err
				}
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					return err
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				if string(body) != "hello, world\n" {
					return fmt.Errorf("body %q", body)
				}
			}
			return nil
		})
		st := s.Stats()
		assert.Equal(t, uint64(conns*each), st.Requests)
		assert.Equal(t, uint64(conns), st.Conns)
		t.Logf("%s: %d requests, %d enters: %.2f requests per enter", b, st.Requests, st.Enters, st.RequestsPerEnter())
	})
}

func TestCloseWithOpenConnections(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s, err := Listen(Config{Addr: "127.0.0.1:0", Options: []goaem.Option{goaem.WithBackend(b)}})
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- s.Serve(context.Background()) }()
		var readers []*bufio.Reader
		for i := 0; i < 10; i++ {
			_, r := send(t, s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			_, body := readResponse(t, r, "GET")
			require.Equal(t, "hello, world\n", string(body))
			readers = append(readers, r)
		}
		assert.Equal(t, uint64(10), s.Stats().Open)
		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return with connections open")
		}
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after Close")
		}
		for _, r := range readers {
			_, err := r.ReadByte() // the ring's teardown closed every connection
			assert.Error(t, err)
		}
		assert.NoError(t, s.Close(), "Close twice")
		_, err = net.DialTimeout("tcp", s.Addr().String(), time.Second)
		assert.Error(t, err, "the listener is closed")
	})
}

// The static response allocates nothing: parsing, the response and its
// head are built in buffers the server and the connection keep.
func TestStaticResponseAllocs(t *testing.T) {
	s, c := coreServer(), &conn{}
	reqs := [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"),
		[]byte("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
		[]byte("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
	}
	for _, req := range reqs {
		s.tick()
		allocs := testing.AllocsPerRun(1000, func() {
			s.out = s.out[:0]
			s.tick()
			if n := s.serveOne(c, req, 0); n != len(req) {
				panic(fmt.Sprintf("took %d of %d bytes", n, len(req)))
			}
		})
		assert.Zero(t, allocs, "%q", req)
		assert.Contains(t, string(s.out), "HTTP/1.1 200 OK\r\n")
	}
}

// A client that sends "Expect: 100-continue" gets "100 Continue" before it
// sends the body, then the response.
func TestExpectContinue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		s := start(t, b, Config{})
		c, r := send(t, s, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
		line, err = r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "\r\n", line)
		_, err = io.WriteString(c, "body")
		require.NoError(t, err)
		resp, body := readResponse(t, r, "POST")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, "body", string(body))
	})
}

// smallRcvbuf dials s with a small receive buffer, so that the server's
// sends wait in the kernel side for the reader.
func smallRcvbuf(t *testing.T, s *Server) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(40*time.Second)))
	t.Cleanup(func() { c.Close() })
	return c
}

// A client that pipelines 500 requests, whose responses take thousands of
// sends, before it reads any: every response arrives, complete and in
// order, and no send is refused (start checks SendErrors).
func TestPipelinedUnread(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		body := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB: 5 sends of 4 KiB slots
		s := start(t, b, Config{Body: body, Options: []goaem.Option{goaem.WithSlotSize(4096)}})
		c := smallRcvbuf(t, s)
		const n = 500
		var reqs bytes.Buffer
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				reqs.WriteString("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			} else {
				msg := fmt.Sprintf("request %d", i)
				fmt.Fprintf(&reqs, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
			}
		}
		_, err := c.Write(reqs.Bytes())
		require.NoError(t, err)
		time.Sleep(200 * time.Millisecond) // the server answers into a full socket meanwhile
		r := bufio.NewReader(c)
		for i := 0; i < n; i++ {
			method := "GET"
			if i%2 == 1 {
				method = "POST"
			}
			resp, got := readResponse(t, r, method)
			require.Equal(t, 200, resp.StatusCode, "response %d", i)
			if i%2 == 0 {
				require.Equal(t, body, got, "response %d", i)
			} else {
				require.Equal(t, fmt.Sprintf("request %d", i), string(got), "response %d", i)
			}
		}
		st := s.Stats()
		assert.Equal(t, uint64(n), st.Requests)
		assert.Zero(t, st.SendErrors)
		assert.Zero(t, st.Overruns)
		assert.Positive(t, s.waits.Load(), "the output waited for the send window")
	})
}

// A client that pipelines requests, half-closes, and reads only then:
// the end-of-stream closes the connection only after every request before
// it is answered.
func TestPipelinedThenEOF(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		body := bytes.Repeat([]byte("z"), 16<<10)
		s := start(t, b, Config{Body: body, Options: []goaem.Option{goaem.WithSlotSize(4096)}})
		c := smallRcvbuf(t, s)
		const n = 200
		_, err := c.Write(bytes.Repeat([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), n))
		require.NoError(t, err)
		require.NoError(t, c.(*net.TCPConn).CloseWrite())
		time.Sleep(100 * time.Millisecond) // the end-of-stream arrives while responses wait
		r := bufio.NewReader(c)
		for i := 0; i < n; i++ {
			resp, err := http.ReadResponse(r, nil)
			require.NoError(t, err, "response %d", i)
			got, err := io.ReadAll(resp.Body)
			require.NoError(t, err, "response %d", i)
			require.Equal(t, 200, resp.StatusCode, "response %d", i)
			require.Equal(t, body, got, "response %d", i)
		}
		requireClosed(t, r)
		assert.Equal(t, uint64(n), s.Stats().Requests)
	})
}

// A file of many slots to several slow readers at once, each asking for
// it twice and then for "/" on one connection: every byte arrives, in
// order.
func TestLargeFileSlowReaders(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		dir := t.TempDir()
		data := make([]byte, 1<<20) // 256 slots of 4 KiB
		_, err := rand.Read(data)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "big.bin"), data, 0o644))
		s := start(t, b, Config{Root: dir, Options: []goaem.Option{goaem.WithSlotSize(4096)}})
		const readers = 4
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for k := 0; k < readers; k++ {
			c := smallRcvbuf(t, s)
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- slowRead(c, data)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.Zero(t, s.Stats().SendErrors)
		assert.Positive(t, s.waits.Load(), "the output waited for the send window")
	})
}

// slowRead asks c for big.bin twice and "/", then reads the responses in
// small pieces with pauses.
func slowRead(c net.Conn, want []byte) error {
	req := "GET /files/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(c, req+req+"GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	r := bufio.NewReaderSize(&slowReader{c: c}, 4096)
	for i := 0; i < 3; i++ {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("response %d: %w", i, err)
		}
		if i < 2 && !bytes.Equal(got, want) {
			return fmt.Errorf("response %d: %d bytes, not the file's %d", i, len(got), len(want))
		}
		if i == 2 && string(got) != "hello, world\n" {
			return fmt.Errorf("response %d: %q", i, got)
		}
	}
	return nil
}

// slowReader reads at most 2 KiB at a time, pausing every 64 reads.
type slowReader struct {
	c net.Conn
	n int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.n++; s.n%64 == 0 {
		time.Sleep(2 * time.Millisecond)
	}
	return s.c.Read(p[:min(len(p), 2048)])
}

// A peer that pipelines requests past maxPipelined while it reads none of
// the responses: the server stops reading its requests, sends what it owes
// for those before, and closes the connection.
func TestPipelineOverrun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b goaem.Backend) {
		body := bytes.Repeat([]byte("x"), 64<<10)
		s := start(t, b, Config{Body: body, Options: []goaem.Option{goaem.WithSlotSize(4096)}})
		c := smallRcvbuf(t, s)
		req := []byte(fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", 32<<10, bytes.Repeat([]byte("y"), 32<<10)))
		done := make(chan struct{})
		go func() { // writes until the server stops taking them (bounded)
			defer close(done)
			for i := 0; i < 1000; i++ {
				if _, err := c.Write(req); err != nil {
					return
				}
			}
		}()
		if !assert.Eventually(t, func() bool { return s.Stats().Overruns == 1 }, 20*time.Second, 10*time.Millisecond) {
			rs, err := s.ring.Stats()
			t.Fatalf("no overrun: server %+v, ring %+v %v", s.Stats(), rs, err)
		}
		// What the peer reads is whole responses, then the end.
		r := bufio.NewReader(c)
		n := 0
		for ; n < 1000; n++ {
			resp, err := http.ReadResponse(r, &http.Request{Method: "POST"})
			if err != nil {
				break
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				break // the close may reset the stream under the unread requests
			}
			require.Equal(t, body, got, "response %d", n)
		}
		assert.Positive(t, n)
		c.Close()
		<-done
	})
}
