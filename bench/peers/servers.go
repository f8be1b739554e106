package peers

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Server peers: what AEM's socket source is compared with in the server
// scenarios (tcp_echo, http). They serve nothing else.
const (
	NameGoNet    = "go_net"       // Go's net (echo), net/http (http): a goroutine per connection
	NameEpoll    = "epoll"        // C, one thread, level-triggered epoll
	NameURingNet = "io_uring_net" // C, one thread, liburing: multishot accept and receive
)

// ServerNames lists the server peers, in table order.
func ServerNames() []string { return []string{NameGoNet, NameEpoll, NameURingNet} }

// IsServer says whether name is a server peer (it takes only the server
// scenarios).
func IsServer(name string) bool { return slices.Contains(ServerNames(), name) }

// What a server answers.
const (
	ServeEcho = "echo" // every byte back, in order
	ServeHTTP = "http" // every HTTP/1.1 request with 200 and Body, keep-alive
)

// ServerParams describes a server to start.
type ServerParams struct {
	Kind  string // ServeEcho or ServeHTTP
	Body  []byte // ServeHTTP: the response body
	Conns int    // connections it must hold at once
}

// Server is a running server on a loopback port.
type Server interface {
	Addr() string
	// Notes is what the server counted, for the result row (may be "").
	Notes() string
	// Close stops it and closes its connections; it reports a failure
	// of the server's own loop.
	Close() error
}

// Serving is a transport that can run a server (AEM and the server
// peers).
type Serving interface {
	Serve(p ServerParams) (Server, error)
}

// HTTPResponse is the response the C servers send for body: the headers
// net/http would send but Date.
func HTTPResponse(body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// goNet is the Go peer: net for echo, net/http for http.
type goNet struct{ Unsupported }

func (goNet) Name() string { return NameGoNet }

func (goNet) Serve(p ServerParams) (Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	switch p.Kind {
	case ServeEcho:
		s := &goEcho{ln: ln, conns: map[net.Conn]struct{}{}}
		s.wg.Add(1)
		go s.accept()
		return s, nil
	case ServeHTTP:
		body := slices.Clone(p.Body)
		length := strconv.Itoa(len(body))
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hd := w.Header()
			hd["Content-Type"] = []string{"text/plain; charset=utf-8"}
			hd["Content-Length"] = []string{length}
			_, _ = w.Write(body)
		})
		s := &goHTTP{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}, done: make(chan error, 1)}
		go func() { s.done <- s.srv.Serve(ln) }()
		return s, nil
	}
	ln.Close()
	return nil, fmt.Errorf("go_net: kind %q: want %s or %s", p.Kind, ServeEcho, ServeHTTP)
}

type goEcho struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool // set by Close under mu: a connection accepted after it is closed at once
}

func (s *goEcho) Addr() string  { return s.ln.Addr().String() }
func (s *goEcho) Notes() string { return "" }

func (s *goEcho) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		// Accept may hand out a connection it dequeued just before Close
		// closed the listener; Close has then already closed the ones it
		// knew of and waits for their loops, so this one must not start.
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.echo(c)
	}
}

// echo is the plain loop of a Go echo server: read, write it all back.
func (s *goEcho) echo(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (s *goEcho) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

type goHTTP struct {
	ln   net.Listener
	srv  *http.Server
	done chan error

	closeOnce sync.Once
	closeErr  error
}

func (s *goHTTP) Addr() string  { return s.ln.Addr().String() }
func (s *goHTTP) Notes() string { return "" }

// Close stops the server; a second Close answers as the first did.
func (s *goHTTP) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.srv.Close()
		if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && s.closeErr == nil {
			s.closeErr = serr
		}
	})
	return s.closeErr
}
