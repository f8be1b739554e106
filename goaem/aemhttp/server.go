// Package aemhttp is an HTTP/1.1 server whose I/O is the ring: the kernel
// side accepts its connections, receives their bytes into delivery slots
// and sends its responses (goaem.Sock, docs/PROTOCOL.md section 10). The
// server never calls accept, read or write; one goroutine (Serve) parses
// each event's bytes and answers with the event's writeback or with queued
// sends, which go to the kernel side once per batch of events, and
// continues output that waited for a connection's send queue from the
// results of its sends (goaem.WithSockSent).
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
// kernel side queues at most 64 sends per connection (abi.SockMaxQueued)
// and refuses more; the server learns each send's result
// (goaem.WithSockSent) and keeps at most sendWindow (62) sends of a
// connection outstanding, the other two for its shutdowns, so no send is
// ever refused for a full queue. Output past the window waits in the
// connection's pending buffer and goes out as results come back; a file is
// read a slot at a time as the window opens, so files of any size are
// served with bounded memory. A peer that pipelines requests without
// reading the responses is served in order as it reads: while its pending
// output is over maxPending (64 KiB), or a file is still going out, the
// server parses none of its further requests and keeps their bytes; past
// maxPipelined (about 2 MiB: a head and a chunked body at their bounds) of such unread
// requests, it stops reading them, sends what it owes for the requests
// before, and closes the connection (Stats.Overruns counts these).
package aemhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
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
	// Overruns counts connections closed because the peer sent more than
	// maxPipelined bytes of requests while it read no responses.
	Overruns uint64
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
	defaultSlotSize  = 32 << 10
	defaultSlots     = 256
	defaultSendSlots = 64
	defaultSQ        = 4096
	defaultConns     = 4096
)

// sendWindow bounds a connection's sends (and writebacks) not yet
// answered: the kernel side queues at most abi.SockMaxQueued, and two stay
// free for the shutdowns that may follow (abi.SockShutWR, then
// abi.SockClose), whose results are not reported.
const sendWindow = abi.SockMaxQueued - 2

// maxPending bounds the output a connection keeps before the server stops
// parsing its further requests; one response can go past it (an echo of
// up to MaxBodyBytes; a file is read as the window opens).
const maxPending = 64 << 10

// maxPipelined bounds the unparsed request bytes a connection keeps while
// its requests are not parsed (output pending); past it the connection is
// closed after the responses it is owed.
const maxPipelined = MaxHeaderBytes + maxChunkedBytes + 64<<10

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
	overruns atomic.Uint64
	waits    atomic.Uint64 // times a connection's output waited for its window (tests)
	open     atomic.Int64
	closeErr error
	closing  sync.Once

	// Serve's goroutine alone.
	conns   map[uint64]*conn
	free    []*conn
	out     []byte // the responses of the event being handled, not yet sent
	ev      *goaem.Event
	scratch []byte // a decoded file path
	rq      request
	date    []byte // the Date field's value, once per second
	dateSec int64
	// Send results (the WithSockSent callback) come on Serve's goroutine,
	// also from inside the server's own sends: while busy, connections that
	// can go on wait in ready and are continued before the server returns
	// to the ring.
	busy  bool
	ready []*conn
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
	stopped   bool   // requests in 'in' wait for the output to drain (blocked)
	eof       bool   // the peer's end-of-stream came
	wantWR    bool   // end the sending side after the pending output
	wantClose bool   // close after the pending output
	wrShut    bool   // its end-of-stream to the peer is queued
	closeSent bool   // its close is queued
	broken    bool   // a send failed: nothing more goes out
	isReady   bool   // in Server.ready
	drained   int    // bytes received and dropped since closing

	inflight int      // sends and writebacks not yet answered (<= sendWindow)
	pend     []byte   // output not yet handed to the ring, from pendOff
	pendOff  int      //
	file     *os.File // a file body going out after pend
	fileLeft int64    // its bytes not yet read
}

func (c *conn) pending() int { return len(c.pend) - c.pendOff }

// blocked says whether c's further requests wait: its output is over
// maxPending, or a file is going out.
func (c *conn) blocked(extra int) bool {
	return c.file != nil || c.pending()+extra > maxPending
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
		goaem.WithSockConns(defaultConns), goaem.WithSockSent(s.sent),
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

// Serve handles the ring's events until ctx ends or Close; it returns nil
// then, and the ring's error otherwise. One Serve runs at a time.
func (s *Server) Serve(ctx context.Context) error {
	err := s.ring.Run(ctx, s.handle)
	for _, c := range s.conns {
		c.dropFile()
	}
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
		Overruns: s.overruns.Load(),
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
				s.busy = true
				c.eof = true
				s.endAtEOF(c)
				s.busy = false
				s.runReady()
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
	s.busy = true
	s.onData(ev, c)
	s.busy = false
	s.runReady()
	return nil
}

// endAtEOF closes c after the peer's end-of-stream once every request it
// sent before is answered (a request left incomplete never will be).
func (s *Server) endAtEOF(c *conn) {
	if c.eof && (c.closing || !c.stopped) {
		c.closing = true
		s.closeConn(c, abi.SockClose)
	}
}

// sent is the ring's WithSockSent callback: one of c's sends or writebacks
// was answered. It runs on Serve's goroutine.
func (s *Server) sent(id uint64, _ int, err error) {
	c := s.conns[id]
	if c == nil || c.inflight == 0 {
		return // a connection already forgotten
	}
	c.inflight--
	if err != nil {
		// The connection failed (its CLOSED event follows): what is
		// pending can no longer reach the peer.
		c.broken, c.closing = true, true
		c.pend, c.pendOff = c.pend[:0], 0
		c.dropFile()
		return
	}
	if !c.isReady && (c.pending() > 0 || c.file != nil || c.stopped ||
		c.wantWR && !c.wrShut || c.wantClose && !c.closeSent) {
		c.isReady = true
		s.ready = append(s.ready, c)
	}
	if !s.busy && s.runReady() {
		_ = s.ring.Flush() // the reader submits nothing before it sleeps
	}
}

// runReady continues the connections whose sends were answered while the
// server was busy, and reports whether there were any.
func (s *Server) runReady() bool {
	if len(s.ready) == 0 {
		return false
	}
	s.busy = true
	for i := 0; i < len(s.ready); i++ { // resume may append
		c := s.ready[i]
		s.ready[i] = nil
		if c.isReady && s.conns[c.id] == c {
			c.isReady = false
			s.resume(c)
		}
	}
	s.ready = s.ready[:0]
	s.busy = false
	return true
}

// resume sends more of c's pending output and, once it is below the bound,
// answers the requests that waited.
func (s *Server) resume(c *conn) {
	s.pump(c)
	if c.closing || c.broken || !c.stopped || c.blocked(0) {
		s.endAtEOF(c)
		return
	}
	s.tick()
	s.serveKept(c)
	s.endAtEOF(c)
	if c.closing {
		s.closeConn(c, abi.SockShutWR)
	}
}

// serveKept answers the requests c keeps while its output has room: the
// output of those before may have gone out to the ring since they
// stopped (finish).
func (s *Server) serveKept(c *conn) {
	s.ev = nil
	for c.stopped && !c.closing && !c.broken && !c.blocked(0) {
		s.out = s.out[:0]
		s.consume(c, nil)
		s.finish(c)
	}
}

func (c *conn) dropFile() {
	if c.file != nil {
		c.file.Close()
		c.file, c.fileLeft = nil, 0
	}
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
	c.dropFile()
	// Keep small buffers for the next connection, not large ones.
	in, body, pend := c.in[:0], c.body[:0], c.pend[:0]
	if cap(in) > 64<<10 {
		in = nil
	}
	if cap(body) > 64<<10 {
		body = nil
	}
	if cap(pend) > 64<<10 {
		pend = nil
	}
	queued := c.isReady
	*c = conn{in: in, body: body, pend: pend}
	if !queued && len(s.free) < 1024 { // one in s.ready is not reused
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
	s.ev = ev
	s.out = s.out[:0]
	s.tick()
	s.consume(c, ev.Payload())
	s.finish(c)
	s.ev = nil
	s.serveKept(c)
	if !c.closing && len(c.in) > maxPipelined && c.stopped {
		// The peer sends requests and reads no responses: it gets those it
		// is owed, then the connection ends.
		c.closing = true
		c.in, c.scan, c.stopped = c.in[:0], 0, false
		s.overruns.Add(1)
	}
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
	for off < len(buf) && !c.closing && !c.blocked(len(s.out)) {
		n := s.serveOne(c, buf[off:], scan)
		if n == 0 {
			break
		}
		off += n
		scan = 0
	}
	c.stopped = off < len(buf) && !c.closing && c.blocked(len(s.out))
	if c.stopped {
		c.scan, c.bodyOff = 0, 0 // the next request is not started
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
		s.reply(200, "text/plain; charset=utf-8", s.body, head, keep, rq.minor)
	case string(path) == "/echo" && m == "POST":
		s.reply(200, "application/octet-stream", body, false, keep, rq.minor)
	case hasPrefix(path, "/files/") && m != "POST" && s.root != nil:
		s.file(c, path[len("/files/"):], head, keep, rq.minor)
	default:
		s.reply(404, "text/plain; charset=utf-8", []byte("404 not found\n"), head, keep, rq.minor)
	}
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

// finish hands the event's output to the ring. When the connection has
// nothing pending and room in its window, output that fits a slot goes
// back in the event's own writeback (no send slot, no copy when it fits);
// else the output joins the connection's pending output, which goes out as
// queued sends while the window has room, and the rest as results come
// back. Queued sends go to the kernel side at the end of Run's batch, in
// order.
func (s *Server) finish(c *conn) {
	out := s.out
	s.out = out[:0]
	if len(out) == 0 || c.broken {
		return
	}
	if c.pending() == 0 && c.file == nil && len(out) <= s.slot && c.inflight < sendWindow && s.ev != nil &&
		!c.wrShut && !c.closeSent {
		c.inflight++
		if s.ev.Writeback(out) == nil {
			return
		}
		c.inflight--
	}
	c.pend = append(c.pend, out...)
	s.pump(c)
}

// pump sends c's pending output, a slot per send, while its window has
// room; reads more of a file going out as the output drains; and queues
// the shutdowns asked for once nothing is pending.
func (s *Server) pump(c *conn) {
	for !c.broken && !c.wrShut && !c.closeSent && c.inflight < sendWindow {
		if c.pending() == 0 {
			c.pend, c.pendOff = c.pend[:0], 0
			if c.file == nil || !s.readFile(c) {
				break
			}
		}
		n := min(c.pending(), s.slot)
		c.inflight++
		if err := s.ring.SockSendLater(c.id, c.pend[c.pendOff:c.pendOff+n]); err != nil {
			c.inflight--
			c.broken, c.closing = true, true // the stream has a hole: end it
			c.dropFile()
			break
		}
		c.pendOff += n
	}
	if c.inflight >= sendWindow && (c.pending() > 0 || c.file != nil) {
		s.waits.Add(1)
	}
	if c.pendOff > 0 && c.pendOff >= len(c.pend)/2 {
		c.pend = c.pend[:copy(c.pend, c.pend[c.pendOff:])]
		c.pendOff = 0
	}
	s.shut(c)
}

// readFile reads a slot of c's file into its pending output, and reports
// whether it read anything.
func (s *Server) readFile(c *conn) bool {
	k := int(min(int64(s.slot), c.fileLeft))
	c.pend = slices.Grow(c.pend[:0], k)[:k]
	n, err := io.ReadFull(c.file, c.pend)
	c.pend = c.pend[:n]
	c.fileLeft -= int64(n)
	if c.fileLeft == 0 {
		c.dropFile()
	} else if err != nil {
		// The file shrank or failed under us: the length sent is wrong,
		// so the connection ends after what was read.
		c.dropFile()
		c.closing = true
		s.closeConn(c, abi.SockShutWR)
	}
	return n > 0
}

// maxDrain bounds the bytes a closing connection reads and drops.
const maxDrain = 256 << 10

// closeConn queues, after the connection's output, the end of its sending
// side (abi.SockShutWR: the peer reads every response, then end-of-stream;
// its EOF closes) or its close.
func (s *Server) closeConn(c *conn, how uint32) {
	if how == abi.SockShutWR {
		c.wantWR = true
	} else {
		c.wantClose = true
	}
	s.shut(c)
}

// shut queues the shutdowns asked for once c's output is all handed to
// the ring; the window keeps room for them.
func (s *Server) shut(c *conn) {
	if c.broken || c.closeSent || c.pending() > 0 || c.file != nil {
		return
	}
	switch {
	case c.wantClose:
		c.closeSent = true
		_ = s.ring.SockShutdownLater(c.id, abi.SockClose)
	case c.wantWR && !c.wrShut && !c.broken:
		c.wrShut = true
		_ = s.ring.SockShutdownLater(c.id, abi.SockShutWR)
	}
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
