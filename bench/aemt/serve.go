package aemt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
	"github.com/aem-dev/aem/goaem/aemhttp"
)

// The echo server's ring.
const (
	echoSlotSize = 16 << 10
	echoSlots    = 512
	echoSQ       = 4096
)

// Serve implements peers.Serving: tcp_echo is an echo server on a Sock
// subscription (every data event written back as it came), http is
// aemhttp. Both run goaem's Run on one goroutine, so the writebacks of a
// batch of events go to the kernel side in one enter.
func (t *Transport) Serve(p peers.ServerParams) (peers.Server, error) {
	conns := uint32(min(max(p.Conns, 1)+64, abi.MaxSockConns))
	switch p.Kind {
	case peers.ServeEcho:
		return t.serveEcho(conns)
	case peers.ServeHTTP:
		s, err := aemhttp.Listen(aemhttp.Config{Addr: "127.0.0.1:0", Body: p.Body,
			Options: []goaem.Option{goaem.WithBackend(t.backend), goaem.WithSockConns(conns)}})
		if err != nil {
			return nil, fmt.Errorf("aem: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		h := &httpServer{s: s, cancel: cancel, done: make(chan error, 1)}
		go func() { h.done <- s.Serve(ctx) }()
		return h, nil
	}
	return nil, fmt.Errorf("aem: server kind %q", p.Kind)
}

type httpServer struct {
	s      *aemhttp.Server
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (h *httpServer) Addr() string { return h.s.Addr().String() }

func (h *httpServer) Notes() string {
	st := h.s.Stats()
	return fmt.Sprintf("%.1f requests/enter (%d requests, %d enters, %d send errors)",
		st.RequestsPerEnter(), st.Requests, st.Enters, st.SendErrors)
}

func (h *httpServer) Close() error {
	h.once.Do(func() {
		h.cancel()
		err := <-h.done
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, goaem.ErrClosed) {
			h.err = err
		}
		if cerr := h.s.Close(); h.err == nil {
			h.err = cerr
		}
	})
	return h.err
}

// echoServer answers every data event of its Sock subscription with the
// event's own writeback, and a peer's end-of-stream with a close.
type echoServer struct {
	r      *goaem.Ring
	ln     net.Listener
	lnFile *os.File
	cancel context.CancelFunc
	done   chan error
	events atomic.Uint64 // data events
	once   sync.Once
	err    error
}

func (t *Transport) serveEcho(conns uint32) (peers.Server, error) {
	r, err := goaem.Open(goaem.WithBackend(t.backend), goaem.WithSlotSize(echoSlotSize),
		goaem.WithSlots(echoSlots), goaem.WithSQEntries(echoSQ), goaem.WithSockConns(conns))
	if err != nil {
		return nil, fmt.Errorf("aem: %w", err)
	}
	s := &echoServer{r: r, done: make(chan error, 1)}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		// accepted sockets inherit it, as the C servers' do
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		})
		return errors.Join(err, serr)
	}}
	if s.ln, err = goaem.ListenConfig(lc).Listen(context.Background(), "tcp", "127.0.0.1:0"); err != nil {
		r.Close()
		return nil, fmt.Errorf("aem: %w", err)
	}
	if s.lnFile, err = s.ln.(*net.TCPListener).File(); err != nil {
		s.closeAll()
		return nil, fmt.Errorf("aem: listener fd: %w", err)
	}
	if _, err = r.Subscribe(goaem.Sock{FD: int(s.lnFile.Fd())}, goaem.SubOptions{Tag: 1}); err != nil {
		err = fmt.Errorf("aem: subscribe the listener (%s backend): %w", r.Backend(), err) // before the ring closes
		s.closeAll()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- r.Run(ctx, s.handle) }()
	return s, nil
}

func (s *echoServer) handle(ev *goaem.Event) error {
	se, ctl := ev.SockEvent()
	if !ctl {
		s.events.Add(1)
		return ev.Writeback(ev.Payload())
	}
	if se.Type == abi.SockEvEOF {
		return s.r.SockShutdownLater(ev.Conn(), abi.SockClose)
	}
	return nil
}

func (s *echoServer) Addr() string { return s.ln.Addr().String() }

func (s *echoServer) Notes() string {
	enters := s.r.Enters()
	if enters == 0 {
		return ""
	}
	n, _ := s.r.AsyncErrors()
	return fmt.Sprintf("%.1f echoes/enter (%d data events, %d enters, %d send errors)",
		float64(s.events.Load())/float64(enters), s.events.Load(), enters, n)
}

func (s *echoServer) closeAll() error {
	var errs []error
	if s.lnFile != nil {
		errs = append(errs, s.lnFile.Close())
	}
	if s.ln != nil {
		errs = append(errs, s.ln.Close())
	}
	errs = append(errs, s.r.Close())
	return errors.Join(errs...)
}

func (s *echoServer) Close() error {
	s.once.Do(func() {
		s.cancel()
		err := <-s.done
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, goaem.ErrClosed) {
			s.err = err
		}
		if cerr := s.closeAll(); s.err == nil {
			s.err = cerr
		}
	})
	return s.err
}
