// Package aemhttp is an HTTP/1.1 server whose I/O is the ring: the kernel
// side accepts its connections, receives their bytes into delivery slots
// and sends its responses (goaem.Sock, docs/PROTOCOL.md section 10). The
// server never calls accept, read or write; one goroutine (Serve) parses
// each event's bytes and answers with the event's writeback or with queued
// sends, which go to the kernel side once per batch of events.
//
// It serves a static body at "/" (GET, HEAD, and POST, whose body it
// reads and drops), echoes a POST body at "/echo", and serves the files of
// a directory under "/files/". Connections are kept alive (HTTP/1.1, or
// HTTP/1.0 with "Connection: keep-alive"); pipelined requests are answered
// in order; bodies come with Content-Length or chunked. A malformed, too
// large or unsupported request is answered 400, 413, 431, 501 or 505 with
// the reason in the body, and its connection closed. A connection closes
// gracefully: after its last response the server ends its sending side,
// reads and drops what the peer still sends (up to 256 KiB), and closes at
// the peer's end-of-stream, so that unread bytes never reset the
// connection before the peer has read that response.
//
// Limits: a head is at most MaxHeaderBytes, a body MaxBodyBytes. The
// kernel side queues at most 64 sends per connection and refuses more, and
// a send's completion is not reported to the server, so one event's
// responses go out in at most sendBudget (60) sends: a file or an echo
// larger than Server.MaxResponseBody (about 60 slots) is answered 500, and
// when pipelined responses to one receive would need more sends the server
// answers those that fit and closes the connection (the client retries the rest, as after any close
// of a pipelined connection). Sends are assumed taken by the time the
// peer's next bytes arrive: a peer that keeps sending requests while it
// reads no responses can fill its queue, and sends refused then
// (AsyncErrors) are lost to it.
package aemhttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

// Config configures Listen.
type Config struct {
	Addr    string         // listen address, e.g. "127.0.0.1:8080" (":0" for any port)
	Body    []byte         // static response body for GET / (default "hello, world\n")
	Root    string         // directory served under /files/ ("" = none)
	Options []goaem.Option // ring options (backend, slot sizes ...), after the server's defaults
}

// DefaultBody is the static body when Config.Body is nil.
var DefaultBody = []byte("hello, world\n")

// Stats counts what a server did.
type Stats struct {
	Requests uint64 // requests answered, errors included
	Conns    uint64 // connections accepted
	Open     uint64 // connections open now
	Enters   uint64 // entries of the server's ring into the kernel side (goaem.Ring.Enters)
	// SendErrors counts sends and shutdowns the server could not queue or
	// the kernel side refused (the ring's AsyncErrors).
	SendErrors uint64
}

// RequestsPerEnter is requests over enters: how many requests one system
// call (on the module) served.
func (s Stats) RequestsPerEnter() float64 {
	if s.Enters == 0 {
		return 0
	}
	return float64(s.Requests) / float64(s.Enters)
}

// The ring the server opens unless Config.Options say otherwise.
const (
	defaultSlotSize  = 32 << 10 // a MaxBodyBytes echo fits the send budget
	defaultSlots     = 256
	defaultSendSlots = 64
	defaultSQ        = 4096
	defaultConns     = 4096
)

// sendBudget bounds the sends one event's responses take: below the
// kernel side's 64 queued sends per connection, with room for the
// writeback and the close.
const sendBudget = 60

// Server is an HTTP/1.1 server on one ring. Serve runs it; Stats and Close
// may be called from any goroutine.
type Server struct {
	ring   *goaem.Ring
	ln     net.Listener
	lnFile *os.File
	root   *os.Root
	slot   int
	body   []byte

	requests atomic.Uint64
	accepted atomic.Uint64
	open     atomic.Int64
	closeErr error
	closing  sync.Once

	// Serve's goroutine alone.
	conns   map[uint64]*conn
	free    []*conn
	out     []byte // the responses of the event being handled, not yet sent
	sends   int    // sends queued for the event being handled
	ev      *goaem.Event
	scratch []byte // a decoded file path
	rq      request
	date    []byte // the Date field's value, once per second
	dateSec int64
	limit   int64 // MaxResponseBody
}

// conn is one connection's parser state.
type conn struct {
	id        uint64
	in        []byte // the bytes of a request not yet complete
	scan      int    // in[:scan] holds no end of the head
	body      []byte // a decoded chunked body
	bodyOff   int    // where decoding the chunked body in 'in' resumes (after the head)
	continued bool   // "100 Continue" sent for the request in 'in'
	closing   bool   // no further request is read
	wrShut    bool   // its end-of-stream to the peer is queued
	closeSent bool   // its close is queued
	drained   int    // bytes received and dropped since closing
}

// Listen opens the server's ring and listening socket and subscribes it.
func Listen(cfg Config) (*Server, error) {
	s := &Server{body: cfg.Body, conns: make(map[uint64]*conn)}
	if s.body == nil {
		s.body = DefaultBody
	}
	opts := append([]goaem.Option{
		goaem.WithSlotSize(defaultSlotSize), goaem.WithSlots(defaultSlots),
		goaem.WithSendSlots(defaultSendSlots), goaem.WithSQEntries(defaultSQ),
		goaem.WithSockConns(defaultConns),
	}, cfg.Options...)
	if cfg.Root != "" {
		root, err := os.OpenRoot(cfg.Root)
		if err != nil {
			return nil, fmt.Errorf("aemhttp: root: %w", err)
		}
		s.root = root
	}
	ring, err := goaem.Open(opts...)
	if err != nil {
		s.closeRoot()
		return nil, fmt.Errorf("aemhttp: open ring: %w", err)
	}
	s.ring, s.slot = ring, ring.SlotSize()
	s.limit = int64(sendBudget*s.slot - maxHead)
	if max := s.limit / 2; int64(len(s.body)) > max {
		s.Close()
		return nil, fmt.Errorf("aemhttp: body of %d bytes: at most %d with %d-byte slots", len(s.body), max, s.slot)
	}
	if s.ln, err = goaem.Listen("tcp", cfg.Addr); err != nil {
		s.Close()
		return nil, fmt.Errorf("aemhttp: %w", err)
	}
	if s.lnFile, err = s.ln.(*net.TCPListener).File(); err != nil {
		s.Close()
		return nil, fmt.Errorf("aemhttp: listener fd: %w", err)
	}
	if _, err = ring.Subscribe(goaem.Sock{FD: int(s.lnFile.Fd())}, goaem.SubOptions{Tag: 1}); err != nil {
		s.Close()
		return nil, fmt.Errorf("aemhttp: subscribe the listener (%s backend): %w", ring.Backend(), err)
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Backend names the ring's backend.
func (s *Server) Backend() string { return s.ring.Backend() }

// MaxResponseBody is the largest body the server sends: a file, or an
// echo. It is about sendBudget slots.
func (s *Server) MaxResponseBody() int64 { return s.limit }

// Serve handles the ring's events until ctx ends or Close; it returns nil
// then, and the ring's error otherwise. One Serve runs at a time.
func (s *Server) Serve(ctx context.Context) error {
	err := s.ring.Run(ctx, s.handle)
	if errors.Is(err, goaem.ErrClosed) || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		return nil
	}
	return err
}

// Close closes the ring, which ends every connection, and the listener;
// a Serve running returns. Close is idempotent.
func (s *Server) Close() error {
	s.closing.Do(func() {
		if s.ring != nil {
			s.closeErr = s.ring.Close()
		}
		if s.lnFile != nil {
			s.lnFile.Close()
		}
		if s.ln != nil {
			s.ln.Close()
		}
		s.closeRoot()
		s.open.Store(0)
	})
	return s.closeErr
}

func (s *Server) closeRoot() {
	if s.root != nil {
		s.root.Close()
	}
}

// Stats reports the server's counts.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests: s.requests.Load(),
		Conns:    s.accepted.Load(),
		Open:     uint64(max(s.open.Load(), 0)),
	}
	if s.ring != nil {
		st.Enters = s.ring.Enters()
		st.SendErrors, _ = s.ring.AsyncErrors()
	}
	return st
}

// handle is the ring's handler: Run runs it for every event, inline.
func (s *Server) handle(ev *goaem.Event) error {
	id := ev.Conn()
	if se, ok := ev.SockEvent(); ok {
		switch se.Type {
		case abi.SockEvConnect:
			s.connect(id)
		case abi.SockEvEOF:
			if c := s.conns[id]; c != nil {
				c.closing = true
				s.closeConn(c, abi.SockClose)
			}
		case abi.SockEvClosed:
			s.forget(id)
		}
		return nil
	}
	if ev.Final() { // the core ended the connection (the source went away)
		s.forget(id)
		return nil
	}
	c := s.conns[id]
	if c == nil {
		return nil // the listener's own event, or a connection already forgotten
	}
	s.onData(ev, c)
	return nil
}

func (s *Server) connect(id uint64) {
	var c *conn
	if k := len(s.free); k > 0 {
		c, s.free = s.free[k-1], s.free[:k-1]
	} else {
		c = new(conn)
	}
	c.id = id
	s.conns[id] = c
	s.accepted.Add(1)
	s.open.Add(1)
}

func (s *Server) forget(id uint64) {
	c := s.conns[id]
	if c == nil {
		return
	}
	delete(s.conns, id)
	s.open.Add(-1)
	// Keep small buffers for the next connection, not large ones.
	in, body := c.in[:0], c.body[:0]
	if cap(in) > 64<<10 {
		in = nil
	}
	if cap(body) > 64<<10 {
		body = nil
	}
	*c = conn{in: in, body: body}
	if len(s.free) < 1024 {
		s.free = append(s.free, c)
	}
}

// onData takes a connection's received bytes: it answers every request
// they complete and keeps the rest.
func (s *Server) onData(ev *goaem.Event, c *conn) {
	if c.closing {
		// Closing: the peer's late bytes are read and dropped until its
		// end-of-stream, a bounded amount, so that closing with them
		// unread does not reset the connection before the peer has read
		// the last response.
		if c.drained += len(ev.Payload()); c.drained > maxDrain {
			s.closeConn(c, abi.SockClose)
		}
		return // Run releases the event
	}
	s.ev, s.sends = ev, 0
	s.out = s.out[:0]
	s.tick()
	s.consume(c, ev.Payload())
	s.flush(c, true)
	s.ev = nil
	if c.closing {
		s.closeConn(c, abi.SockShutWR)
	}
}

// consume answers every request that c's kept bytes and p complete, into
// s.out, and keeps the rest of p in c.
func (s *Server) consume(c *conn, p []byte) {
	buf, scan := p, 0
	if len(c.in) != 0 {
		c.in = append(c.in, p...)
		buf, scan = c.in, c.scan
	}
	off := 0
	for off < len(buf) && !c.closing {
		n := s.serveOne(c, buf[off:], scan)
		if n == 0 {
			break
		}
		off += n
		scan = 0
	}
	switch rest := buf[off:]; {
	case c.closing || len(rest) == 0:
		c.in, c.scan = c.in[:0], 0
	case len(c.in) == 0:
		c.in = append(c.in, rest...)
	default:
		c.in = c.in[:copy(c.in, rest)]
	}
}

// serveOne answers the request at the start of b and returns the bytes it
// took, or 0 when b does not hold all of it yet (c.scan then says how far
// the head was searched). scan is where the search for the head's end
// resumes.
func (s *Server) serveOne(c *conn, b []byte, scan int) int {
	if b[0] == '\r' || b[0] == '\n' { // blank lines before a request are ignored
		n := 0
		for n < len(b) && n < 4 && (b[n] == '\r' || b[n] == '\n') {
			n++
		}
		return n
	}
	end := headEnd(b, scan)
	if end < 0 || end > MaxHeaderBytes {
		if end > MaxHeaderBytes || len(b) > MaxHeaderBytes {
			s.fail(c, errHeadTooLarge, false)
			return len(b)
		}
		c.scan = max(len(b)-3, 0)
		return 0
	}
	rq := &s.rq
	if herr := parseHead(b[:end], rq); herr != nil {
		s.fail(c, herr, false)
		return len(b)
	}
	head := isHead(rq.method)
	var body []byte
	n := end
	switch {
	case rq.chunked:
		dst := c.body
		if c.bodyOff == 0 {
			dst = dst[:0]
		}
		used, dec, st := decodeChunked(b[end:], dst, c.bodyOff, MaxBodyBytes)
		c.body, c.bodyOff = dec, 0
		switch st {
		case chunkMore:
			s.continue100(c, rq)
			c.scan = 0 // the head is whole: search it again next time (it is short)
			c.bodyOff = used
			return 0
		case chunkBad:
			s.fail(c, errBadChunk, head)
			return len(b)
		case chunkTooLarge:
			s.fail(c, errBodyTooLarge, head)
			return len(b)
		}
		body, n = dec, end+used
	case rq.hasLen:
		if rq.length > MaxBodyBytes {
			s.fail(c, errBodyTooLarge, head)
			return len(b)
		}
		if int64(len(b)-end) < rq.length {
			s.continue100(c, rq)
			c.scan = 0
			return 0
		}
		body, n = b[end:end+int(rq.length)], end+int(rq.length)
	}
	c.continued = false
	keep := rq.keepAlive()
	s.respond(c, rq, body, head, keep)
	if !keep {
		c.closing = true
	}
	s.requests.Add(1)
	return n
}

func isHead(method []byte) bool { return string(method) == "HEAD" }

// continue100 tells a client that waits for it to send the body.
func (s *Server) continue100(c *conn, rq *request) {
	if rq.expect && rq.minor >= 1 && !c.continued {
		c.continued = true
		s.out = append(s.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
	}
}

// respond appends the response to a complete request.
func (s *Server) respond(c *conn, rq *request, body []byte, head, keep bool) {
	path := rq.target
	if q := indexByte(path, '?'); q >= 0 {
		path = path[:q]
	}
	switch m := string(rq.method); {
	case m != "GET" && m != "HEAD" && m != "POST":
		s.fail(c, errMethod, head)
	case string(path) == "/":
		if s.fits(c, int64(len(s.body)), head, keep, rq.minor) {
			s.reply(200, "text/plain; charset=utf-8", s.body, head, keep, rq.minor)
		}
	case string(path) == "/echo" && m == "POST":
		if s.fits(c, int64(len(body)), false, keep, rq.minor) {
			s.reply(200, "application/octet-stream", body, false, keep, rq.minor)
		}
	case hasPrefix(path, "/files/") && m != "POST" && s.root != nil:
		s.file(c, path[len("/files/"):], head, keep, rq.minor)
	default:
		s.reply(404, "text/plain; charset=utf-8", []byte("404 not found\n"), head, keep, rq.minor)
	}
}

// maxHead bounds the head of a response (status line and fields).
const maxHead = 512

// fits says whether a response with a body of n bytes goes out in this
// event's send budget. When it does not it answers for it: 500 for a body
// over MaxResponseBody; else nothing, and the connection closes after the
// responses before it (the client asks again on a new one, as after any
// close of a pipelined connection).
func (s *Server) fits(c *conn, n int64, head, keep bool, minor int) bool {
	if n > s.limit {
		msg := "500 response body of " + strconv.FormatInt(n, 10) + " bytes: this server sends at most " +
			strconv.FormatInt(s.limit, 10) + "\n"
		s.reply(500, "text/plain; charset=utf-8", []byte(msg), head, keep, minor)
		return false
	}
	if head {
		n = 0
	}
	if s.sends+(len(s.out)+maxHead+int(n)+s.slot-1)/s.slot > sendBudget {
		c.closing = true
		return false
	}
	return true
}

// fail answers with an error status and closes the connection.
func (s *Server) fail(c *conn, herr *httpError, head bool) {
	s.status(herr.status, "text/plain; charset=utf-8", int64(len(statusText(herr.status))+len(herr.reason)+7), false, 1)
	if !head {
		s.out = strconv.AppendInt(s.out, int64(herr.status), 10)
		s.out = append(s.out, ' ')
		s.out = append(s.out, statusText(herr.status)...)
		s.out = append(s.out, ": "...)
		s.out = append(s.out, herr.reason...)
		s.out = append(s.out, '\n')
	}
	c.closing = true
	s.requests.Add(1)
}

// reply appends a whole response.
func (s *Server) reply(code int, ctype string, body []byte, head, keep bool, minor int) {
	s.status(code, ctype, int64(len(body)), keep, minor)
	if !head {
		s.out = append(s.out, body...)
	}
}

// status appends a status line and the header fields.
func (s *Server) status(code int, ctype string, length int64, keep bool, minor int) {
	out := append(s.out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, statusText(code)...)
	out = append(out, "\r\nDate: "...)
	out = append(out, s.date...)
	out = append(out, "\r\nContent-Type: "...)
	out = append(out, ctype...)
	out = append(out, "\r\nContent-Length: "...)
	out = strconv.AppendInt(out, length, 10)
	switch {
	case !keep:
		out = append(out, "\r\nConnection: close"...)
	case minor == 0:
		out = append(out, "\r\nConnection: keep-alive"...)
	}
	s.out = append(out, "\r\n\r\n"...)
}

func statusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 413:
		return "Content Too Large"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Status"
}

// tick refreshes the Date field once per second.
func (s *Server) tick() {
	now := time.Now()
	if sec := now.Unix(); sec != s.dateSec || s.date == nil {
		s.dateSec = sec
		s.date = now.UTC().AppendFormat(s.date[:0], "Mon, 02 Jan 2006 15:04:05 GMT")
	}
}

// flush hands the event's output to the ring: whole slots now, and with
// final the rest. The first and only piece of a final flush goes back in
// the event's own writeback (no send slot, no copy when it fits); later
// pieces are queued sends. All go to the kernel side at the end of Run's
// batch, in order.
func (s *Server) flush(c *conn, final bool) {
	out := s.out
	if final && s.sends == 0 && len(out) > 0 && len(out) <= s.slot && s.ev != nil {
		if s.ev.Writeback(out) == nil {
			s.sends++
			s.out = out[:0]
			return
		}
	}
	for len(out) > 0 && (final || len(out) >= s.slot) && !c.wrShut && !c.closeSent {
		n := min(len(out), s.slot)
		if err := s.ring.SockSendLater(c.id, out[:n]); err != nil {
			c.closing = true // the stream has a hole: end it
			break
		}
		s.sends++
		out = out[n:]
	}
	if final {
		out = out[:0]
	}
	s.out = s.out[:copy(s.out, out)]
}

// maxDrain bounds the bytes a closing connection reads and drops.
const maxDrain = 256 << 10

// closeConn queues, after the connection's sends, the end of its sending
// side (abi.SockShutWR: the peer reads every response, then end-of-stream;
// its EOF closes) or its close.
func (s *Server) closeConn(c *conn, how uint32) {
	switch {
	case c.closeSent, how == abi.SockShutWR && c.wrShut:
		return
	case how == abi.SockShutWR:
		c.wrShut = true
	default:
		c.closeSent = true
	}
	_ = s.ring.SockShutdownLater(c.id, how)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }
