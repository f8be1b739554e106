package aemt

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"sync/atomic"

	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/goaem"
)

// Handler modes of the handlers scenario (scenario.HandlerModes): where
// the handler of a call runs.
const (
	HandlerGoroutine   = "goroutine"    // a new goroutine per event (ModeSpawn)
	HandlerProcessPool = "process-pool" // a pre-started handler process, reused
	HandlerProcessNew  = "process-new"  // a new handler process per event
	HandlerExec        = "exec"         // os/exec of cat per event (ModeClone)
)

// handlerName is the process handler the handlers scenario registers.
const handlerName = "aembench-reverse"

func init() {
	goaem.RegisterProcessHandler(handlerName, func(d []byte) (int, error) {
		slices.Reverse(d)
		return len(d), nil
	})
}

var servesProcesses atomic.Bool

// ServeHandlers makes this program its own handler process (see
// goaem.ServeProcessHandler): call it first thing in main or TestMain.
// Without it the process modes of the handlers scenario are skipped, since
// a handler process is this program started again.
func ServeHandlers() {
	goaem.ServeProcessHandler()
	servesProcesses.Store(true)
}

// Handler measures one call round trip whose handler runs in mode, one
// call at a time, for p.Duration: the cost per event of that mode. The
// handler reverses the request in place (cat echoes it).
func (t *Transport) Handler(p peers.Params, mode string) (peers.Result, error) {
	p, err := p.Normalized()
	if err != nil {
		return peers.Result{}, err
	}
	size := peers.EventSize(p.Payload)
	srv, cli, err := t.callRings(size, false, 0)
	if err != nil {
		return peers.Result{}, err
	}
	defer srv.Close()
	defer cli.Close()

	var opts goaem.SubOptions
	switch mode {
	case HandlerGoroutine:
		opts = goaem.SubOptions{Mode: goaem.ModeSpawn, MaxInFlight: 1, Handler: func(ev *goaem.Event) error {
			pl := ev.Payload()
			slices.Reverse(pl)
			return ev.Writeback(pl)
		}}
	case HandlerProcessPool, HandlerProcessNew:
		if !servesProcesses.Load() {
			return peers.Result{}, fmt.Errorf("%s: this program does not serve handler processes (aemt.ServeHandlers): %w",
				mode, peers.ErrUnsupported)
		}
		ph, err := srv.NewProcessHandler(goaem.ProcessOptions{Handler: handlerName, MaxProcs: 1,
			Pool: mode == HandlerProcessPool})
		if err != nil {
			return peers.Result{}, fmt.Errorf("aem: %s: %w", mode, err)
		}
		defer ph.Close()
		opts = goaem.SubOptions{Mode: goaem.ModeSpawn, MaxInFlight: 1, Handler: ph.Handle}
	case HandlerExec:
		cat, err := exec.LookPath("cat")
		if err != nil {
			return peers.Result{}, fmt.Errorf("exec: %w: %w", err, peers.ErrUnsupported)
		}
		opts = goaem.SubOptions{Mode: goaem.ModeClone, MaxInFlight: 1, Clone: &goaem.Cloner{Path: cat}}
	default:
		return peers.Result{}, fmt.Errorf("aem: unknown handler mode %q", mode)
	}
	if _, err := srv.Subscribe(goaem.Msg{Channel: msgChannel}, opts); err != nil {
		return peers.Result{}, fmt.Errorf("aem: subscribe msg: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go serve(ctx, srv, served)

	addr := srv.Addr(msgChannel)
	p.SampleEvery = 1 // a handler's round trip is microseconds to milliseconds: time each
	res, err := timedCalls(p, size, cli.SlotSize(), func() error { cancel(); return <-served }, callLoop{
		call: func(ctx context.Context, req, resp []byte) (int, error) {
			return cli.CallInto(ctx, addr, req, resp)
		},
		ok: func(req, resp []byte, _ uint64) bool {
			return len(resp) == len(req) && reversed(req, resp, mode == HandlerExec)
		},
		clockEvery: 1,
	})
	if err != nil {
		return res, fmt.Errorf("aem: call (%s): %w", mode, err)
	}
	return res, nil
}

// reversed says whether got is req reversed (or, for cat, req itself).
func reversed(req, got []byte, echo bool) bool {
	if len(got) != len(req) {
		return false
	}
	for i := range req {
		j := len(req) - 1 - i
		if echo {
			j = i
		}
		if got[j] != req[i] {
			return false
		}
	}
	return true
}
