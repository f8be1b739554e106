// Package aemnet is a net.Listener and net.Conn on goaem's socket source:
// the kernel side accepts the connections, receives their bytes and sends
// what Write hands it (goaem.Sock, docs/PROTOCOL.md section 10), and the
// program sees the standard interfaces, so net/http and the rest of the
// standard library serve on a ring unchanged:
//
//	ln, err := aemnet.Listen("tcp", "127.0.0.1:8080")
//	if err != nil {
//		log.Fatal(err)
//	}
//	log.Fatal(http.Serve(ln, handler))
//
// One goroutine per Listener reads the ring's events. A data event's bytes
// are copied into its connection's receive buffer (four slots; a
// connection takes one from the Listener when bytes arrive and gives it
// back when Read empties it, so idle connections hold none) and the
// delivery slot goes back at once; the copy is the only work per event,
// and it allocates nothing. A connection whose buffer is full (Read not
// keeping up) keeps its events, slots included, until Read drains it:
// while it holds slots the kernel side receives less, and once every slot
// is held it stops receiving (TCP back-pressure), so a slow reader costs
// bounded memory and loses nothing. Held slots are shared by the ring's
// connections: a reader that never reads, with WithSlots slots all held
// by it, pauses the other connections too until it reads or closes.
//
// Write cuts its bytes into sends of at most the ring's slot size, keeps
// at most MaxInflight of them outstanding per connection, and returns
// when the socket has taken the last byte (goaem.WithSockSent), or with
// the send's error. Close closes the connection after its queued sends;
// CloseWrite ends its sending side.
package aemnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

// MaxInflight is the number of sends Write keeps outstanding on one
// connection: half the sends the kernel side queues for it
// (abi.SockMaxQueued), which leaves room for a shutdown.
const MaxInflight = abi.SockMaxQueued / 2

// The ring Listen opens unless the options say otherwise.
const (
	defaultSlotSize  = 16 << 10
	defaultSlots     = 256
	defaultSendSlots = 64
	defaultSQ        = 1024
	defaultConns     = 1024
)

// bufSlots is the receive buffer of a connection, in slots.
const bufSlots = 4

// Listener is a net.Listener whose connections go through a ring.
type Listener struct {
	ring   *goaem.Ring
	ln     net.Listener
	lnFile *os.File
	sub    *goaem.Subscription
	bufMax int

	mu      sync.Mutex
	conns   map[uint64]*Conn
	queue   []*Conn // connected, not yet accepted
	lnErr   error   // the listener's end (its CLOSED event, the ring's failure)
	acceptC chan struct{}
	// Receive buffers of bufMax bytes no connection holds: a connection
	// takes one when bytes arrive and gives it back when Read empties it.
	free [][]byte

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // the event loop returned

	events atomic.Uint64 // data events dispatched (tests)
}

// Listen opens a ring (goaem.Open with opts after aemnet's defaults), a
// listener on network ("tcp", "tcp4", "tcp6" or "unix") and address
// without MPTCP (goaem.Listen), subscribes it and starts the goroutine
// that reads the ring's events. The options may set the backend and the
// ring's sizes; the send results are aemnet's (goaem.WithSockSent).
func Listen(network, address string, opts ...goaem.Option) (*Listener, error) {
	l := &Listener{
		conns:   make(map[uint64]*Conn),
		acceptC: make(chan struct{}, 1),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	all := append([]goaem.Option{
		goaem.WithSlotSize(defaultSlotSize), goaem.WithSlots(defaultSlots),
		goaem.WithSendSlots(defaultSendSlots), goaem.WithSQEntries(defaultSQ),
		goaem.WithSockConns(defaultConns),
	}, opts...)
	all = append(all, goaem.WithSockSent(l.sent))
	ring, err := goaem.Open(all...)
	if err != nil {
		return nil, fmt.Errorf("aemnet: open ring: %w", err)
	}
	l.ring = ring
	l.bufMax = bufSlots * ring.SlotSize()
	fail := func(err error) (*Listener, error) {
		l.closeAll()
		return nil, err
	}
	if l.ln, err = goaem.Listen(network, address); err != nil {
		return fail(fmt.Errorf("aemnet: %w", err))
	}
	filer, ok := l.ln.(interface{ File() (*os.File, error) })
	if !ok {
		return fail(fmt.Errorf("aemnet: %s listener has no fd", network))
	}
	if l.lnFile, err = filer.File(); err != nil {
		return fail(fmt.Errorf("aemnet: listener fd: %w", err))
	}
	if l.sub, err = ring.Subscribe(goaem.Sock{FD: int(l.lnFile.Fd())}, goaem.SubOptions{}); err != nil {
		return fail(fmt.Errorf("aemnet: subscribe the listener (%s backend): %w", ring.Backend(), err))
	}
	go l.loop()
	return l, nil
}

// Accept waits for the next connection; after Close it returns an error
// matching net.ErrClosed; after the listening socket's end (its CLOSED
// event) or the ring's failure, another error once the connections
// already made are accepted.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.lnErr != net.ErrClosed && len(l.queue) != 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			more := len(l.queue) != 0
			l.mu.Unlock()
			if more {
				// acceptC holds one wake-up: two connections queued while
				// two callers were on their way to sleep gave one of them
				// none. Pass it on.
				notify(l.acceptC)
			}
			return c, nil
		}
		err := l.lnErr
		l.mu.Unlock()
		if err != nil {
			return nil, &net.OpError{Op: "accept", Net: l.ln.Addr().Network(), Addr: l.ln.Addr(), Err: err}
		}
		select {
		case <-l.acceptC:
		case <-l.closed:
		}
	}
}

// Close closes the ring, which ends every connection (their Read and
// Write return net.ErrClosed), and the listener; Accept returns.
func (l *Listener) Close() error {
	l.closeAll()
	<-l.done
	return l.closeErr
}

func (l *Listener) closeAll() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		if l.lnErr == nil {
			l.lnErr = net.ErrClosed
		}
		conns := make([]*Conn, 0, len(l.conns)+len(l.queue))
		for _, c := range l.conns {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		close(l.closed)
		if l.ring != nil {
			l.closeErr = l.ring.Close()
		} else {
			close(l.done)
		}
		for _, c := range conns {
			c.finish(net.ErrClosed)
		}
		if l.lnFile != nil {
			l.lnFile.Close()
		}
		if l.ln != nil {
			l.ln.Close()
		}
	})
}

// Addr is the listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Ring is the listener's ring (its statistics, AsyncErrors, Backend).
func (l *Listener) Ring() *goaem.Ring { return l.ring }

// loop reads the ring's events until Close or the ring fails.
func (l *Listener) loop() {
	defer close(l.done)
	batch := make([]goaem.Event, 64)
	ctx := context.Background()
	for {
		n, err := l.ring.Wait(ctx, batch, 1)
		for i := 0; i < n; i++ {
			l.dispatch(&batch[i])
		}
		if err != nil {
			if !errors.Is(err, goaem.ErrClosed) {
				l.fail(err)
			}
			return
		}
	}
}

// fail ends the listener and every connection with the ring's error:
// nothing reads their events any more.
func (l *Listener) fail(err error) {
	l.setLnErr(err)
	l.mu.Lock()
	conns := make([]*Conn, 0, len(l.conns))
	for _, c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.finish(err)
	}
}

func (l *Listener) setLnErr(err error) {
	l.mu.Lock()
	if l.lnErr == nil {
		l.lnErr = err
	}
	l.mu.Unlock()
	notify(l.acceptC)
}

func (l *Listener) conn(id uint64) *Conn {
	l.mu.Lock()
	c := l.conns[id]
	l.mu.Unlock()
	return c
}

// dispatch handles one event. For a data event it allocates nothing.
func (l *Listener) dispatch(ev *goaem.Event) {
	se, ctl := ev.SockEvent()
	if !ctl {
		l.events.Add(1)
		if c := l.conn(ev.Conn()); c != nil {
			c.receive(ev)
		} else {
			ev.Release()
		}
		return
	}
	id := ev.Conn()
	switch se.Type {
	case abi.SockEvConnect:
		c := newConn(l, id, peerAddr(&se))
		l.mu.Lock()
		l.conns[id] = c
		l.queue = append(l.queue, c)
		l.mu.Unlock()
		notify(l.acceptC)
	case abi.SockEvEOF:
		if c := l.conn(id); c != nil {
			c.eof()
		}
	case abi.SockEvClosed:
		if id == l.sub.ID() {
			l.setLnErr(errListenerClosed)
			break
		}
		l.mu.Lock()
		c := l.conns[id]
		delete(l.conns, id)
		l.mu.Unlock()
		if c != nil {
			var err error = net.ErrClosed
			if se.Res < 0 {
				err = errno(se.Res)
			}
			c.finish(err)
		}
	}
	ev.Release()
}

var errListenerClosed = errors.New("aemnet: the listening socket closed")

// sent is the WithSockSent callback: a send of conn finished.
func (l *Listener) sent(id uint64, _ int, err error) {
	if c := l.conn(id); c != nil {
		c.sendDone(err)
	}
}

// getBuf returns a free receive buffer; it allocates one only when more
// connections than ever before hold unread bytes at once.
func (l *Listener) getBuf() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free); n != 0 {
		b := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		return b
	}
	return make([]byte, l.bufMax)
}

func (l *Listener) putBuf(b []byte) {
	l.mu.Lock()
	l.free = append(l.free, b)
	l.mu.Unlock()
}

// notify wakes the one waiter of ch without blocking.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
