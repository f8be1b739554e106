//go:build cgo

package goaem

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Design targets (measured, never asserted): delivery of 32-byte events
// from the embedded generator to one goaem poller at >= 100 M events/s with
// batch 256, and >= 3x BenchmarkDeliverChan in the same run.

var benchBatches = []int{1, 16, 256}

// BenchmarkDeliver: one op is one 32-byte event produced by the embedded
// backend's generator thread and read, touched and released by Wait,
// which sleeps on the netpoller whenever the ring is empty. The figure is
// bounded by the slower side, usually the producer thread.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			benchDeliver(b, size, true)
		})
	}
}

// BenchmarkDeliverSpin is BenchmarkDeliver with a consumer that never
// sleeps: it busy-polls with Poll, as the C delivery benchmark does. It
// needs a core of its own beside the producer's.
func BenchmarkDeliverSpin(b *testing.B) {
	for _, size := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			benchDeliver(b, size, false)
		})
	}
}

func benchDeliver(b *testing.B, size int, wait bool) {
	r, err := Open(WithBackend(BackendEmbedded), WithClasses(1), WithCQEntries(16384))
	require.NoError(b, err)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	deadline := time.Now().Add(time.Minute)
	batch := make([]Event, size)
	b.ReportAllocs()
	b.ResetTimer()
	_, err = r.Subscribe(Generator{Count: uint64(b.N), PayloadLen: 32}, SubOptions{})
	require.NoError(b, err)
	var sum byte
	for got, idle := 0, 0; got < b.N; {
		var n int
		if wait {
			n, err = r.Wait(ctx, batch, 1)
		} else {
			n, err = r.Poll(batch)
		}
		if err != nil {
			b.Fatalf("after %d of %d events: %v", got, b.N, err)
		}
		if n == 0 {
			if idle++; idle&0xffff == 0 && time.Now().After(deadline) {
				b.Fatalf("after %d of %d events: nothing for too long", got, b.N)
			}
			continue
		}
		for i := 0; i < n; i++ {
			sum += batch[i].Payload()[0]
			batch[i].Release()
		}
		got += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = sum
}

// BenchmarkDeliverHeap is goaem's consumer against the fastest producer
// there is: a Go goroutine writing 32-byte events straight into a ring in
// Go memory, one tail store per batch of up to 256, read by Wait. It shows
// what the consumer side sustains when the producer is not the limit.
func BenchmarkDeliverHeap(b *testing.B) {
	for _, size := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			r, k := newHeapRing(b, WithClasses(1), WithCQEntries(16384))
			batch := make([]Event, size)
			b.ReportAllocs()
			b.ResetTimer()
			done := make(chan struct{})
			go func() {
				defer close(done)
				k.produceFast(0, b.N, 256)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var sum byte
			for got := 0; got < b.N; {
				n, err := r.Wait(ctx, batch, 1)
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < n; i++ {
					sum += batch[i].Payload()[0]
					batch[i].Release()
				}
				got += n
			}
			b.StopTimer()
			<-done
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			_ = sum
		})
	}
}

// BenchmarkPoll isolates the consumer: the ring is filled once by the
// generator, then its producer index is moved forward by hand a ring's
// worth at a time, so each op is one event read, touched and released by
// Poll, with nothing else running.
func BenchmarkPoll(b *testing.B) {
	for _, size := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			benchPoll(b, size)
		})
	}
}

func benchPoll(b *testing.B, size int) {
	const entries = 4096
	r, err := Open(WithBackend(BackendEmbedded), WithClasses(1), WithCQEntries(entries))
	require.NoError(b, err)
	defer r.Close()
	// Fill the ring with real events, then stop the source.
	sub, err := r.Subscribe(Generator{Count: entries - 1, PayloadLen: 32}, SubOptions{})
	require.NoError(b, err)
	cq := &r.cq[0]
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The source is gone once it has posted its final event.
		if _, err := sub.Stats(); err != nil {
			break
		}
		require.True(b, time.Now().Before(deadline), "generator did not fill the ring: %d CQEs",
			atomic.LoadUint32(cq.ktail)-atomic.LoadUint32(cq.khead))
		time.Sleep(time.Millisecond)
	}
	batch := make([]Event, size)
	var sum byte
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		head := atomic.LoadUint32(cq.khead)
		if atomic.LoadUint32(cq.ktail) == head {
			atomic.StoreUint32(cq.ktail, head+entries) // the same CQEs, once more
		}
		n, _ := r.Poll(batch)
		for i := 0; i < n; i++ {
			if p := batch[i].Payload(); len(p) != 0 {
				sum += p[0]
			}
			batch[i].Release()
		}
		got += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = sum
}

// BenchmarkDeliverChan is the baseline: a buffered channel carrying one
// 32-byte event per send, from a producer goroutine to one consumer.
func BenchmarkDeliverChan(b *testing.B) {
	type event [32]byte
	ch := make(chan event, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		var ev event
		for i := 0; i < b.N; i++ {
			ev[0] = byte(i)
			ch <- ev
		}
	}()
	var sum byte
	for i := 0; i < b.N; i++ {
		ev := <-ch
		sum += ev[0]
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = sum
}

// BenchmarkCall: one op is a call round trip on one ring, answered by an
// inline handler under Run in another goroutine (blocking waits: both sides
// sleep on the netpoller between messages).
func BenchmarkCall(b *testing.B) {
	r, err := Open(WithBackend(BackendEmbedded))
	require.NoError(b, err)
	defer r.Close()
	_, err = r.Subscribe(Msg{Channel: 1}, SubOptions{Handler: func(ev *Event) error {
		return ev.Writeback(ev.Payload())
	}})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, nil) }()
	req := []byte("ping")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Call(context.Background(), r.Addr(1), req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	cancel()
	<-done
}

// BenchmarkTimers: one op is one timer expiration delivered, from 4096
// periodic 1 ms timers.
func BenchmarkTimers(b *testing.B) {
	const timers = 4096
	r, err := Open(WithBackend(BackendEmbedded), WithClasses(1), WithCQEntries(8192))
	require.NoError(b, err)
	defer r.Close()
	// First expiry after the last subscribe: a subscribe's answer queues
	// behind events nobody reads yet.
	for i := 0; i < timers; i++ {
		_, err := r.Subscribe(Timer{First: 300 * time.Millisecond, Interval: time.Millisecond}, SubOptions{})
		require.NoError(b, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	batch := make([]Event, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for got := 0; got < b.N; {
		n, err := r.Wait(ctx, batch, 1)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < n; i++ {
			exp, _ := batch[i].TimerExpirations()
			got += int(exp)
			batch[i].Release()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkCallInto: one op is a call round trip between two rings, as
// aembench's call scenario makes it, with CallInto reusing one reply
// buffer. blocking: the server is in Run and the caller parks; kernel: the
// same, both sleeping in the kernel side (WithKernelWait, Block); busy: the
// server polls in a loop and the caller busy-polls for its reply (each
// side wants a core of its own).
func BenchmarkCallInto(b *testing.B) {
	for _, mode := range []string{"blocking", "kernel", "busy"} {
		busy, kernel := mode == "busy", mode == "kernel"
		b.Run("mode="+mode, func(b *testing.B) {
			srvOpts := []Option{WithBackend(BackendEmbedded)}
			if kernel { // both sides sleep in the kernel side
				srvOpts = append(srvOpts, WithKernelWait(0))
			}
			srv, err := Open(srvOpts...)
			require.NoError(b, err)
			defer srv.Close()
			cli, err := Open(WithBackend(BackendEmbedded))
			require.NoError(b, err)
			defer cli.Close()
			handle := func(ev *Event) error { return ev.Writeback(ev.Payload()) }
			_, err = srv.Subscribe(Msg{Channel: 1}, SubOptions{Handler: handle})
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			opts := CallOptions{Spin: -1, Block: kernel}
			if busy {
				opts.Spin = 10 * time.Millisecond
				go func() {
					batch := make([]Event, 64)
					for spins := 0; ctx.Err() == nil; {
						n, _ := srv.Poll(batch)
						for i := range batch[:n] {
							_ = handle(&batch[i])
						}
						if n == 0 {
							if spins++; spins%256 == 0 {
								runtime.Gosched()
							}
						}
					}
					done <- nil
				}()
			} else {
				go func() { done <- srv.Run(ctx, nil) }()
			}
			req := make([]byte, 32)
			resp := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := cli.CallWith(context.Background(), srv.Addr(1), req, resp, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			cancel()
			<-done
		})
	}
}
