package bench_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/aem-dev/aem/bench/aemt"
	"github.com/aem-dev/aem/goaem"
)

// TestMain lets this test binary serve as its own handler process (for
// BenchmarkProcessHandler and the handlers scenario).
func TestMain(m *testing.M) {
	aemt.ServeHandlers()
	os.Exit(m.Run())
}

const benchProcHandler = "bench-reverse"

func reverse(d []byte) (int, error) {
	slices.Reverse(d)
	return len(d), nil
}

func init() { goaem.RegisterProcessHandler(benchProcHandler, reverse) }

// BenchmarkProcessHandler is the cost of one event (ns/op) whose handler runs
// outside Run's goroutine, one call at a time (call -> handler -> reply):
// in a goroutine (ModeSpawn), in a pooled handler process, in a new
// handler process per event, and in a trivial program run through os/exec
// (ModeClone, cat). The handler reverses a 64-byte request in place (cat
// echoes it).
func BenchmarkProcessHandler(b *testing.B) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		b.Fatalf("cat: %v", err)
	}
	for _, bc := range []struct {
		name string
		sub  func(r *goaem.Ring) (goaem.SubOptions, func(), error)
	}{
		{"goroutine", func(*goaem.Ring) (goaem.SubOptions, func(), error) {
			return goaem.SubOptions{Mode: goaem.ModeSpawn, Handler: func(ev *goaem.Event) error {
				n, _ := reverse(ev.Payload())
				return ev.Writeback(ev.Payload()[:n])
			}}, func() {}, nil
		}},
		{"process-pool", func(r *goaem.Ring) (goaem.SubOptions, func(), error) {
			return procSub(r, true)
		}},
		{"process-new", func(r *goaem.Ring) (goaem.SubOptions, func(), error) {
			return procSub(r, false)
		}},
		{"exec-cat", func(*goaem.Ring) (goaem.SubOptions, func(), error) {
			return goaem.SubOptions{Mode: goaem.ModeClone, Clone: &goaem.Cloner{Path: cat}}, func() {}, nil
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := goaem.Open()
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			opts, done, err := bc.sub(r)
			if err != nil {
				b.Fatal(err)
			}
			defer done()
			if _, err := r.Subscribe(goaem.Msg{Channel: 1}, opts); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- r.Run(ctx, nil) }()
			defer func() { cancel(); <-ran }()
			req := make([]byte, 64)
			resp := make([]byte, 64)
			for i := range req {
				req[i] = byte(i)
			}
			for b.Loop() {
				n, err := r.CallInto(ctx, r.Addr(1), req, resp)
				if err != nil || n != len(req) || (resp[0] != req[len(req)-1] && resp[0] != req[0]) {
					b.Fatalf("call: %d bytes %x, %v", n, resp[:n], err)
				}
			}
		})
	}
}

func procSub(r *goaem.Ring, pool bool) (goaem.SubOptions, func(), error) {
	ph, err := r.NewProcessHandler(goaem.ProcessOptions{Handler: benchProcHandler, MaxProcs: 1, Pool: pool})
	if err != nil {
		return goaem.SubOptions{}, nil, err
	}
	return goaem.SubOptions{Mode: goaem.ModeSpawn, Handler: ph.Handle, MaxInFlight: 1}, func() { ph.Close() }, nil
}
