package aemnet

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

// Conn is one connection of a Listener: a net.Conn whose bytes the kernel
// side receives and sends. Read and Write may run at once; concurrent
// Writes go one after the other.
type Conn struct {
	l      *Listener
	id     uint64
	remote net.Addr

	mu sync.Mutex
	// The receive buffer: buf[off:end] unread; held events wait for room,
	// in order, after it (held[hoff:]). buf is the Listener's while empty
	// (nil here), so an idle connection holds none.
	buf      []byte
	off, end int
	held     []goaem.Event
	hoff     int
	atEOF    bool  // the peer's end-of-stream came after the data
	err      error // the connection ended: Read after the data, Write at once
	closed   bool  // Close was called
	inflight int   // sends without a result
	werr     error // a send's failure
	rdl, wdl time.Time

	readC  chan struct{} // data, end or a new read deadline
	writeC chan struct{} // a send's result, end or a new write deadline
	wmu    sync.Mutex    // one Write at a time
}

func newConn(l *Listener, id uint64, remote net.Addr) *Conn {
	return &Conn{
		l: l, id: id, remote: remote,
		held:   make([]goaem.Event, 0, 8),
		readC:  make(chan struct{}, 1),
		writeC: make(chan struct{}, 1),
	}
}

// receive takes a data event: its bytes into the buffer and its slot back
// at once, or, with no room, the event itself until Read makes room.
// It allocates nothing once held has grown to the connection's need.
func (c *Conn) receive(ev *goaem.Event) {
	p := ev.Payload()
	c.mu.Lock()
	if c.closed || c.err != nil {
		c.mu.Unlock()
		ev.Release()
		return
	}
	if c.hoff == len(c.held) && c.put(p) {
		c.mu.Unlock()
		ev.Release()
	} else {
		c.held = append(c.held, *ev)
		c.mu.Unlock()
	}
	notify(c.readC)
}

// put copies p after the unread bytes if it fits. Under mu.
func (c *Conn) put(p []byte) bool {
	if c.buf == nil {
		c.buf = c.l.getBuf()
	}
	if len(p) > len(c.buf)-(c.end-c.off) {
		return false
	}
	if len(p) > len(c.buf)-c.end {
		c.end = copy(c.buf, c.buf[c.off:c.end])
		c.off = 0
	}
	c.end += copy(c.buf[c.end:], p)
	return true
}

// refill moves held events into the buffer while they fit and releases
// them; it reports whether it released any. Under mu.
func (c *Conn) refill() bool {
	moved := false
	for c.hoff < len(c.held) {
		ev := &c.held[c.hoff]
		if !c.put(ev.Payload()) {
			break
		}
		ev.Release()
		*ev = goaem.Event{}
		c.hoff++
		moved = true
	}
	if c.hoff == len(c.held) {
		c.held, c.hoff = c.held[:0], 0
	}
	return moved
}

// putBuf hands the empty buffer back to the Listener. Under mu.
func (c *Conn) putBuf() {
	if c.buf != nil {
		c.l.putBuf(c.buf)
		c.buf, c.off, c.end = nil, 0, 0
	}
}

// dropHeld releases every held event and drops the unread bytes. Under mu.
func (c *Conn) dropHeld() {
	c.putBuf()
	for i := c.hoff; i < len(c.held); i++ {
		c.held[i].Release()
		c.held[i] = goaem.Event{}
	}
	c.held, c.hoff = c.held[:0], 0
}

func (c *Conn) eof() {
	c.mu.Lock()
	c.atEOF = true
	c.mu.Unlock()
	notify(c.readC)
}

// finish marks the connection over with err and wakes its reader and writer.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	if err == net.ErrClosed {
		c.dropHeld() // the ring is gone or the connection closed: nobody reads them
	}
	c.mu.Unlock()
	notify(c.readC)
	notify(c.writeC)
}

func (c *Conn) sendDone(err error) {
	c.mu.Lock()
	c.inflight--
	if err != nil && c.werr == nil {
		c.werr = err
	}
	c.mu.Unlock()
	notify(c.writeC)
}

// Read reads the connection's received bytes; io.EOF after the peer's
// end-of-stream, the connection's error after a reset, and an error
// matching os.ErrDeadlineExceeded past the read deadline.
func (c *Conn) Read(b []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, c.opErr("read", net.ErrClosed)
		}
		if past(c.rdl) {
			// As net.TCPConn: a deadline past fails Read even with bytes buffered.
			c.mu.Unlock()
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		kick := c.off == c.end && c.refill()
		if c.off < c.end {
			n := copy(b, c.buf[c.off:c.end])
			c.off += n
			if c.off == c.end {
				c.off, c.end = 0, 0
			}
			kick = c.refill() || kick
			if c.off == c.end {
				c.putBuf()
			}
			c.mu.Unlock()
			if kick {
				c.kick()
			}
			return n, nil
		}
		switch {
		case c.hoff < len(c.held):
			// A payload larger than the free buffer cannot happen: the
			// buffer is empty here and holds several slots.
		case c.atEOF:
			c.mu.Unlock()
			return 0, io.EOF
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return 0, c.opErr("read", err)
		}
		dl := c.rdl
		c.mu.Unlock()
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, c.opErr("read", os.ErrDeadlineExceeded)
			}
			timer = resetTimer(timer, d)
		}
		c.sleep(c.readC, timer)
	}
}

// kick has the kernel side look at the slots Read gave back: a source
// that paused for want of slots resumes at the ring's next entry, and the
// event loop may be asleep. Not under mu: the entry may report send
// results, whose callback takes mu.
func (c *Conn) kick() { _ = c.l.ring.Flush() }

// sleep waits for ch, the timer or the listener's close; the caller looks
// again at the state and the deadline.
func (c *Conn) sleep(ch chan struct{}, timer *time.Timer) {
	var tc <-chan time.Time
	if timer != nil {
		tc = timer.C
	}
	select {
	case <-ch:
	case <-tc:
	case <-c.l.closed:
		c.finish(net.ErrClosed)
	}
}

// past reports whether deadline dl is set and has passed.
func past(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

func resetTimer(t *time.Timer, d time.Duration) *time.Timer {
	if t == nil {
		return time.NewTimer(d)
	}
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
	return t
}

// Write sends b in pieces of at most the ring's slot size, at most
// MaxInflight outstanding, and returns once the socket has taken them
// all, or with the first failure (how many bytes of b went out is then
// not known; n counts the pieces handed over).
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	slot := c.l.ring.SlotSize()
	n := 0
	for {
		c.mu.Lock()
		err := c.writeErr()
		if err == nil && past(c.wdl) {
			err = os.ErrDeadlineExceeded
		}
		if err == nil && c.inflight < MaxInflight && n < len(b) {
			c.inflight++
			c.mu.Unlock()
			k := min(len(b)-n, slot)
			if err = c.l.ring.SockSend(c.id, b[n:n+k]); err != nil {
				c.mu.Lock()
				c.inflight--
				c.mu.Unlock()
				return n, c.opErr("write", err)
			}
			n += k
			continue
		}
		if err == nil && n == len(b) && c.inflight == 0 {
			c.mu.Unlock()
			return n, nil
		}
		dl := c.wdl
		c.mu.Unlock()
		if err != nil {
			return n, c.opErr("write", err)
		}
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return n, c.opErr("write", os.ErrDeadlineExceeded)
			}
			timer = resetTimer(timer, d)
		}
		c.sleep(c.writeC, timer)
	}
}

// writeErr is why Write cannot go on, or nil. Under mu.
func (c *Conn) writeErr() error {
	switch {
	case c.closed:
		return net.ErrClosed
	case c.werr != nil:
		return c.werr
	default:
		return c.err
	}
}

// Close closes the connection once its queued sends went out; Read and
// Write return net.ErrClosed from then on. Bytes received and not read
// are dropped.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	c.dropHeld()
	over := c.err != nil
	c.mu.Unlock()
	notify(c.readC)
	notify(c.writeC)
	if over {
		return nil
	}
	if err := c.l.ring.SockShutdown(c.id, abi.SockClose); err != nil && !isGone(err) {
		return c.opErr("close", err)
	}
	return nil
}

// CloseWrite ends the sending side once the queued sends went out: the
// peer reads end-of-stream.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	err := c.writeErr()
	c.mu.Unlock()
	if err == nil {
		err = c.l.ring.SockShutdown(c.id, abi.SockShutWR)
	}
	if err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// isGone reports whether err says the connection already ended.
func isGone(err error) bool {
	return errorsIsAny(err, goaem.ErrClosed, syscall.ENOENT, syscall.ESHUTDOWN)
}

// LocalAddr is the listener's address.
func (c *Conn) LocalAddr() net.Addr { return c.l.ln.Addr() }

// RemoteAddr is the peer's address, from the connection's CONNECT event.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets when a blocked or future Read fails with
// os.ErrDeadlineExceeded; the zero time means never.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	c.mu.Unlock()
	notify(c.readC)
	return nil
}

// SetWriteDeadline sets when a blocked or future Write fails with
// os.ErrDeadlineExceeded (sends already handed over still go out).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	notify(c.writeC)
	return nil
}

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.l.ln.Addr().Network(), Source: c.LocalAddr(), Addr: c.remote, Err: err}
}
