//go:build cgo

package goaem

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Allocations are behaviour: every path that moves events allocates
// nothing per event. testing.AllocsPerRun counts the whole process, so a
// server goroutine's allocations count too. The libaem backends only: the
// heap kernel is a test double that allocates as it pleases.

func forEachLibaemBackend(t *testing.T, f func(t *testing.T, b testBackend)) {
	for _, b := range testBackends {
		if b.name == "heap" {
			continue
		}
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

func TestNoAllocsPerEvent(t *testing.T) {
	forEachLibaemBackend(t, func(t *testing.T, b testBackend) {
		small := []byte("0123456789")                 // inline
		large := make([]byte, 100)                    // a send slot, then a delivery slot
		ctx, cancel := context.WithCancel(testCtx(t)) // Done non-nil, as in Run
		defer cancel()

		tests := []struct {
			name string
			// events posted before the runs: one per run
			pre func(r *Ring, n int)
			run func(t *testing.T, r *Ring, batch []Event)
		}{
			{"Post inline", nil, func(t *testing.T, r *Ring, batch []Event) {
				require.NoError(t, r.Post(r.Addr(1), small, 0))
			}},
			{"Post slot", nil, func(t *testing.T, r *Ring, batch []Event) {
				require.NoError(t, r.Post(r.Addr(1), large, 1))
			}},
			{"PostBatch", nil, func(t *testing.T, r *Ring, batch []Event) {
				msgs := [2][]byte{small, large}
				n, err := r.PostBatch(ctx, r.Addr(1), msgs[:], 0)
				require.NoError(t, err)
				require.Equal(t, 2, n)
			}},
			{"Poll and Release", postN(large), func(t *testing.T, r *Ring, batch []Event) {
				n, err := r.Poll(batch[:1])
				require.NoError(t, err)
				require.Equal(t, 1, n)
				batch[0].Release()
			}},
			{"Wait with events ready", postN(large), func(t *testing.T, r *Ring, batch []Event) {
				n, err := r.Wait(ctx, batch[:1], 1)
				require.NoError(t, err)
				require.Equal(t, 1, n)
				batch[0].Release()
			}},
			{"Writeback", postN(small), func(t *testing.T, r *Ring, batch []Event) {
				// Refused by the msg source (not a call), counted: the
				// refusal's path allocates nothing either.
				n, err := r.Poll(batch[:1])
				require.NoError(t, err)
				require.Equal(t, 1, n)
				require.NoError(t, batch[0].Writeback(batch[0].Payload()))
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := b.open(t, WithCQEntries(1024), WithSlots(512))
				_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
				require.NoError(t, err)
				if tt.pre != nil {
					tt.pre(r, allocRuns+1)
				}
				batch := make([]Event, 4)
				allocs := testing.AllocsPerRun(allocRuns, func() { tt.run(t, r, batch) })
				assert.Zero(t, allocs, "allocations per event")
			})
		}
	})
}

// postN posts n events of data to channel 1.
func postN(data []byte) func(r *Ring, n int) {
	return func(r *Ring, n int) {
		for i := 0; i < n; i++ {
			if err := r.Post(r.Addr(1), data, 0); err != nil {
				panic(err)
			}
		}
	}
}

// A Wait that sleeps until an event comes allocates nothing either: the
// context's cancellation stays watched from one wait to the next.
func TestWaitSleepsWithoutAllocs(t *testing.T) {
	forEachLibaemBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		kick := make(chan struct{})
		posted := make(chan error, 1)
		go func() {
			for range kick {
				time.Sleep(50 * time.Microsecond) // mostly, Wait is asleep by now
				posted <- r.Post(r.Addr(1), []byte("x"), 0)
			}
		}()
		defer close(kick)
		batch := make([]Event, 4)
		allocs := testing.AllocsPerRun(allocRuns, func() {
			kick <- struct{}{}
			n, err := r.Wait(ctx, batch, 1)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			batch[0].Release()
			require.NoError(t, <-posted)
		})
		assert.Zero(t, allocs, "allocations per event")
	})
}

// A call round trip allocates nothing on either side: CallInto on the
// caller, Run with an inline handler that writes back on the server (its
// blocking waits included), or a server polling in a loop and a caller
// busy-polling for the reply.
func TestCallIntoNoAllocs(t *testing.T) {
	forEachLibaemBackend(t, func(t *testing.T, b testBackend) {
		for _, busy := range []bool{false, true} {
			t.Run(map[bool]string{false: "blocking", true: "busy"}[busy], func(t *testing.T) {
				srv, cli := b.open(t), b.open(t)
				ctx := testCtx(t)
				handle := func(ev *Event) error {
					p := ev.Payload()
					p[0]++
					return ev.Writeback(p)
				}
				_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: handle})
				require.NoError(t, err)
				served := serve(t, ctx, srv, handle, busy)
				defer served()

				opts := CallOptions{Spin: -1}
				if busy {
					opts.Spin = time.Second
				}
				req := make([]byte, 64)
				resp := make([]byte, 128)
				var seq uint64
				runs := allocRuns
				if busy {
					runs = 50 // two spinners on two shared cores: slow when the machine is busy
				}
				allocs := testing.AllocsPerRun(runs, func() {
					seq++
					binary.LittleEndian.PutUint64(req[8:], seq)
					req[0] = 1
					n, err := cli.CallWith(ctx, srv.Addr(1), req, resp, opts)
					require.NoError(t, err)
					require.Equal(t, len(req), n)
					require.Equal(t, byte(2), resp[0])
					require.Equal(t, seq, binary.LittleEndian.Uint64(resp[8:]))
				})
				assert.Zero(t, allocs, "allocations per call")
			})
		}
	})
}

// A Batch in steady state allocates nothing per queued entry: posts (inline
// and through a send slot) and calls, each round reset and submitted again.
func TestBatchNoAllocs(t *testing.T) {
	forEachLibaemBackend(t, func(t *testing.T, b testBackend) {
		srv, r := b.open(t), b.open(t, WithCQEntries(1024), WithSlots(512))
		ctx := testCtx(t)
		handle := func(ev *Event) error { return ev.Writeback(ev.Payload()) }
		_, err := srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: handle})
		require.NoError(t, err)
		served := serve(t, ctx, srv, handle, false)
		defer served()
		_, err = r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		small, large := []byte("0123456789"), make([]byte, 100)
		resp := make([]byte, 16)
		bt := r.NewBatch()
		events := make([]Event, 4)
		allocs := testing.AllocsPerRun(allocRuns, func() {
			bt.Reset()
			bt.Post(r.Addr(1), small, 0)
			bt.Post(r.Addr(1), large, 1)
			c := bt.Call(srv.Addr(1), small, resp, CallOptions{})
			require.NoError(t, bt.Submit(ctx))
			n, err := bt.Reply(c)
			require.NoError(t, err)
			if string(resp[:n]) != string(small) {
				t.Fatalf("reply %q, want %q", resp[:n], small)
			}
			for got := 0; got < 2; {
				k, err := r.Poll(events)
				require.NoError(t, err)
				for i := range events[:k] {
					events[i].Release()
				}
				got += k
			}
		})
		assert.Zero(t, allocs, "allocations per batch of three entries")
	})
}
