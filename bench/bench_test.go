package bench_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/bench/scenario"
)

// backend is AEM's backend for these benchmarks: AEM_BENCH_BACKEND, else
// auto (libaem then honours AEM_BACKEND).
func backend() string {
	if b := os.Getenv("AEM_BENCH_BACKEND"); b != "" {
		return b
	}
	return scenario.BackendAuto
}

// open opens a transport or skips the benchmark, saying why.
func open(b *testing.B, name string) peers.Transport {
	b.Helper()
	t, err := scenario.Open(name, backend())
	if err != nil {
		b.Skipf("%s: %v", name, err)
	}
	b.Cleanup(func() { _ = t.Close() })
	return t
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// tally adds up a benchmark's runs and reports them.
type tally struct {
	events  uint64
	elapsed time.Duration
	samples []int64
	mallocs uint64
}

func (t *tally) add(res peers.Result) {
	t.events += res.Events
	t.elapsed += res.Elapsed
	t.samples = append(t.samples, res.Samples...)
}

func (t *tally) report(b *testing.B) {
	if t.events == 0 || t.elapsed <= 0 {
		return
	}
	b.ReportMetric(float64(t.events)/t.elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(t.elapsed.Nanoseconds())/float64(t.events), "ns/event")
	b.ReportMetric(float64(t.mallocs)/float64(t.events), "allocs/event")
	if len(t.samples) > 0 {
		p50, p99, _, _ := scenario.Percentiles(t.samples)
		b.ReportMetric(float64(p50), "p50-ns")
		b.ReportMetric(float64(p99), "p99-ns")
	}
}

// run loops a measurement with b.Loop; unsupported skips the benchmark.
func run(b *testing.B, measure func() (peers.Result, error)) {
	b.Helper()
	runProbed(b, measure, measure)
}

// runProbed is run with a cheaper first call that finds out whether the
// transport can make the measurement (and warms it up).
func runProbed(b *testing.B, probe, measure func() (peers.Result, error)) {
	b.Helper()
	if _, err := probe(); err != nil {
		if errors.Is(err, peers.ErrUnsupported) {
			b.Skip("the transport has no such mode")
		}
		b.Fatal(err)
	}
	b.ReportAllocs()
	var t tally
	var own, dropped uint64
	ownSet := false
	before := mallocs()
	for b.Loop() {
		res, err := measure()
		if err != nil {
			b.Fatal(err)
		}
		if bad := res.Lost() + res.Errors; bad > 0 {
			b.Fatalf("%d events lost without account, out of order or corrupted", bad)
		}
		dropped += res.Dropped
		t.add(res)
		// a transport that counts its own allocations leaves its set-up out
		own += res.Mallocs
		ownSet = ownSet || res.MallocsSet
	}
	t.mallocs = mallocs() - before
	if ownSet {
		t.mallocs = own
	}
	t.report(b)
	if t.events > 0 {
		// refused past a bound, and counted: AEM's posts under overload
		b.ReportMetric(float64(dropped)/float64(t.events), "dropped/event")
	}
}

func forEach(b *testing.B, fn func(b *testing.B, name string)) {
	for _, name := range scenario.AllTransports() {
		if peers.IsServer(name) {
			continue // they serve the server scenarios only (aembench)
		}
		b.Run("transport="+name, func(b *testing.B) { fn(b, name) })
	}
}

// One op moves this many events: big enough to amortise a run's set-up.
const chunk = 1 << 18

// BenchmarkThroughput: one producer, one consumer, batches of 64 32-byte
// events (aembench --scenario throughput).
func BenchmarkThroughput(b *testing.B) {
	forEach(b, func(b *testing.B, name string) {
		t := open(b, name)
		p := peers.Params{Events: chunk, Duration: time.Minute, Batch: 64, Producers: 1,
			Payload: peers.DefaultPayload, Busy: true}
		run(b, func() (peers.Result, error) { return t.Stream(p) })
	})
}

// BenchmarkFanin: four producers into one consumer.
func BenchmarkFanin(b *testing.B) {
	forEach(b, func(b *testing.B, name string) {
		t := open(b, name)
		p := peers.Params{Events: chunk, Duration: time.Minute, Batch: 64, Producers: 4,
			Payload: peers.DefaultPayload, Busy: true}
		run(b, func() (peers.Result, error) { return t.Stream(p) })
	})
}

// BenchmarkLatency: 20 000 events/s, one at a time, each one's latency.
func BenchmarkLatency(b *testing.B) {
	forEach(b, func(b *testing.B, name string) {
		t := open(b, name)
		p := peers.Params{Events: 1000, Duration: time.Minute, Batch: 1, Producers: 1, Rate: 20000,
			Payload: peers.DefaultPayload, SampleEvery: 1}
		run(b, func() (peers.Result, error) { return t.Stream(p) })
	})
}

// BenchmarkCall: round trips, request -> handler -> writeback -> caller.
func BenchmarkCall(b *testing.B) {
	for _, busy := range []bool{false, true} {
		mode := map[bool]string{false: "blocking", true: "busy"}[busy]
		b.Run("mode="+mode, func(b *testing.B) {
			forEach(b, func(b *testing.B, name string) {
				t := open(b, name)
				p := peers.Params{Events: 2000, Duration: time.Minute, Payload: peers.DefaultPayload,
					Busy: busy, SampleEvery: 8}
				run(b, func() (peers.Result, error) { return t.Call(p) })
			})
		})
	}
}

// BenchmarkTimers: CPU time per firing of 1000 periodic timers while the
// rest of N wait.
func BenchmarkTimers(b *testing.B) {
	for _, n := range []int{1000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("active=%d", n), func(b *testing.B) {
			forEach(b, func(b *testing.B, name string) {
				t := open(b, name)
				tp := scenario.TimerParams(n, 100*time.Millisecond)
				var cpu time.Duration
				var firings uint64
				probe := func() (peers.Result, error) { return t.Timers(scenario.TimerParams(10, time.Millisecond)) }
				runProbed(b, probe, func() (peers.Result, error) {
					res, err := t.Timers(tp)
					cpu += res.CPU
					firings += res.Events
					return res, err
				})
				if firings > 0 {
					b.ReportMetric(float64(cpu.Nanoseconds())/float64(firings), "cpu-ns/firing")
				}
			})
		})
	}
}

// BenchmarkPriority: urgent-event latency, idle and under a low-class flood.
func BenchmarkPriority(b *testing.B) {
	for _, flood := range []bool{false, true} {
		load := map[bool]string{false: "idle", true: "flood"}[flood]
		b.Run("load="+load, func(b *testing.B) {
			forEach(b, func(b *testing.B, name string) {
				t := open(b, name)
				p := peers.Params{Events: 1000, Duration: time.Minute, Rate: 10000,
					Payload: peers.DefaultPayload, SampleEvery: 1}
				run(b, func() (peers.Result, error) { return t.Priority(p, flood) })
			})
		})
	}
}

// BenchmarkSubscriptions: bytes per idle subscription.
func BenchmarkSubscriptions(b *testing.B) {
	for _, n := range []int{1000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			forEach(b, func(b *testing.B, name string) {
				t := open(b, name)
				if _, err := t.Subscribe(1000); errors.Is(err, peers.ErrUnsupported) {
					b.Skip("the transport has no subscriptions")
				}
				var bytes float64
				var subs int
				var elapsed time.Duration
				for b.Loop() {
					res, err := t.Subscribe(n)
					if err != nil {
						b.Fatal(err)
					}
					bytes += res.BytesPer * float64(res.Subscriptions)
					subs += res.Subscriptions
					elapsed += res.Elapsed
				}
				b.ReportMetric(bytes/float64(subs), "B/sub")
				b.ReportMetric(float64(subs)/elapsed.Seconds(), "subs/s")
			})
		})
	}
}
