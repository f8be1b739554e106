// Package scenario runs aembench's measurements: each scenario, on each
// transport (AEM or a peer), with a warm-up, and turns what the transport
// measured into result rows. cmd/aembench prints the rows; the Go benchmarks
// in bench/ run the same steps.
package scenario

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/aem-dev/aem/bench/aemt"
	"github.com/aem-dev/aem/bench/peers"
)

// Scenario names.
const (
	Throughput    = "throughput"
	Latency       = "latency"
	Call          = "call"
	FanIn         = "fanin"
	Timers        = "timers"
	Priority      = "priority"
	Subscriptions = "subscriptions"
	Handlers      = "handlers"
	TCPEcho       = "tcp_echo"
	HTTP          = "http"
)

// Names lists the scenarios in the order they run.
func Names() []string {
	return []string{Throughput, Latency, Call, FanIn, Timers, Priority, Subscriptions, Handlers, TCPEcho, HTTP}
}

// IsServerScenario says whether a scenario loads servers (AEM's and the
// server peers) over loopback rather than moving events.
func IsServerScenario(name string) bool { return name == TCPEcho || name == HTTP }

// Backends AEM can run on.
const (
	BackendAuto     = "auto"
	BackendEmbedded = "embedded"
	BackendKernel   = "kernel"
	// BackendNone is the backend column of a peer's row.
	BackendNone = "none"
)

// Config is one aembench invocation's measurement plan.
type Config struct {
	Backend    string
	Duration   time.Duration // each measured run
	Warmup     time.Duration // an unmeasured run before each measured one; 0: none
	Producers  int           // fan-in producers
	Batches    []int         // throughput batch sizes
	Batch      int           // fan-in batch; latency batch when BatchSet
	BatchSet   bool          // --batch given: latency uses it too
	Payload    int
	Rate       float64 // latency events/s, and priority's urgent events/s
	Scenarios  []string
	Transports []string
	// MaxSubscriptions bounds the subscriptions and timers sweeps.
	MaxSubscriptions int
	// The server scenarios (tcp_echo, http): the concurrent connections
	// of each step (a sweep), requests each keeps in flight, and the
	// bytes of an echo request.
	Conns    []int
	Pipeline int
	EchoSize int
	// SQPoll lists the fan-in runs of AEM: false, its producers enter
	// the kernel side to submit; true, through rings with a submission
	// poller (variant "producers=N,sqpoll", AEM alone).
	SQPoll []bool
	// FanInPath is how AEM's fan-in producers post when SQPoll is false:
	// peers.FanInLane or peers.FanInSQ.
	FanInPath string
}

// Default returns the configuration `make run` uses: every scenario, every
// transport, briefly, within about a minute.
func Default() Config {
	return Config{
		Backend:          BackendAuto,
		Duration:         300 * time.Millisecond,
		Warmup:           100 * time.Millisecond,
		Producers:        4,
		Batches:          []int{64},
		Batch:            64,
		Payload:          peers.DefaultPayload,
		Rate:             10000,
		Scenarios:        Names(),
		Transports:       BuiltTransports(),
		MaxSubscriptions: DefaultMaxSubscriptions,
		Conns:            []int{DefaultConns},
		Pipeline:         1,
		EchoSize:         DefaultEchoSize,
		SQPoll:           []bool{false},
		FanInPath:        peers.FanInLane,
	}
}

// Server scenario defaults: `make run` loads 64 connections; the issue's
// figures are at 256 (--conns 256), its sweep up to 4096.
const (
	DefaultConns    = 64
	DefaultEchoSize = 64
	// MaxServerRequests bounds one run's requests besides its duration.
	MaxServerRequests = 100_000_000
)

// ServerBody is the http scenario's response body.
var ServerBody = []byte("hello, world\n")

// DefaultMaxSubscriptions bounds the default timers and subscriptions
// sweeps, so that the default run stays brief on a loaded machine: AEM
// subscribes one timer per request, 0.2–0.6 M/s on a loaded 2-core
// machine, so 100 k takes well under a second per step where 1 M takes
// 2–5 s, each of them far from goaem's 10 s answer timeout. Larger sizes,
// up to the design's 10 M, are asked for with --max-subscriptions.
const DefaultMaxSubscriptions = 100_000

// AllTransports is AEM and every peer.
func AllTransports() []string {
	return append([]string{peers.NameAEM}, peers.Names()...)
}

// BuiltTransports is AllTransports without the peers this build left out
// (peers.Missing).
func BuiltTransports() []string {
	return append([]string{peers.NameAEM}, peers.Built()...)
}

// Row is one result line. Its JSON form has exactly the documented fields.
type Row struct {
	Scenario             string  `json:"scenario"` // family/variant, e.g. throughput/batch=64
	Backend              string  `json:"backend"`
	Transport            string  `json:"transport"`
	Events               uint64  `json:"events"`
	Seconds              float64 `json:"seconds"`
	EventsPerSec         float64 `json:"events_per_sec"`
	P50                  int64   `json:"p50_ns"`
	P99                  int64   `json:"p99_ns"`
	P999                 int64   `json:"p999_ns"`
	Max                  int64   `json:"max_ns"`
	Dropped              uint64  `json:"dropped"`
	AllocsPerEvent       float64 `json:"allocs_per_event"`
	BytesPerSubscription float64 `json:"bytes_per_subscription"`

	// GoBytesPerSubscription is AEM's Go-side bookkeeping per
	// subscription (goaem); shown in the table, not in JSON.
	GoBytesPerSubscription float64 `json:"-"`

	// BytesChecked is the server scenarios' response bytes compared end
	// to end with what was expected.
	BytesChecked uint64 `json:"bytes_checked"`
	// Notes is what a server counted (AEM: requests per enter of its
	// ring); empty for most rows.
	Notes string `json:"notes,omitempty"`

	// Err is why the step failed: the row then carries no figures.
	Err string `json:"error,omitempty"`

	Family  string `json:"-"` // scenario name
	Variant string `json:"-"` // e.g. batch=64
	Param   int    `json:"-"` // the variant's number (batch, active timers, ...)
}

// MarshalJSON writes null, not 0, for the figures a row did not measure:
// latencies (every measured one is at least 1 ns) and memory per
// subscription. The fields keep Row's order.
func (r Row) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Scenario             string   `json:"scenario"`
		Backend              string   `json:"backend"`
		Transport            string   `json:"transport"`
		Events               uint64   `json:"events"`
		Seconds              float64  `json:"seconds"`
		EventsPerSec         float64  `json:"events_per_sec"`
		P50                  *int64   `json:"p50_ns"`
		P99                  *int64   `json:"p99_ns"`
		P999                 *int64   `json:"p999_ns"`
		Max                  *int64   `json:"max_ns"`
		Dropped              uint64   `json:"dropped"`
		AllocsPerEvent       float64  `json:"allocs_per_event"`
		BytesPerSubscription *float64 `json:"bytes_per_subscription"`
		BytesChecked         uint64   `json:"bytes_checked"`
		Notes                string   `json:"notes,omitempty"`
		Err                  string   `json:"error,omitempty"`
	}{r.Scenario, r.Backend, r.Transport, r.Events, r.Seconds, r.EventsPerSec,
		measured(r.P50), measured(r.P99), measured(r.P999), measured(r.Max),
		r.Dropped, r.AllocsPerEvent, measured(r.BytesPerSubscription), r.BytesChecked, r.Notes, r.Err})
}

// measured is v, or nil for 0, the value of a figure not measured.
func measured[T int64 | float64](v T) *T {
	if v == 0 {
		return nil
	}
	return &v
}

// Family of a scenario string such as "throughput/batch=64".
func Family(scenario string) string {
	f, _, _ := strings.Cut(scenario, "/")
	return f
}

// Opener opens a transport by name on a backend.
type Opener func(name, backend string) (peers.Transport, error)

// Step is one measurement: a scenario variant on one transport.
type Step struct {
	Family    string
	Variant   string
	Param     int
	Transport string
	run       func(t peers.Transport, cfg Config) (Row, error)
}

// Label names the step for progress lines.
func (s Step) Label() string {
	return s.Family + "/" + s.Variant + " " + s.Transport
}

// Plan lists the steps of cfg in order: scenarios, their variants, then
// transports, so that rows to compare sit together.
func Plan(cfg Config) []Step {
	var steps []Step
	// The server peers take only the server scenarios; AEM takes all.
	add := func(family, variant string, param int, run func(peers.Transport, Config) (Row, error)) {
		for _, tr := range cfg.Transports {
			if peers.IsServer(tr) != IsServerScenario(family) && tr != peers.NameAEM {
				continue
			}
			steps = append(steps, Step{Family: family, Variant: variant, Param: param, Transport: tr, run: run})
		}
	}
	for _, sc := range cfg.Scenarios {
		switch sc {
		case Throughput:
			for _, b := range cfg.Batches {
				add(sc, fmt.Sprintf("batch=%d", b), b, func(t peers.Transport, c Config) (Row, error) {
					return runStream(t, c, peers.Params{Batch: b, Producers: 1, Busy: true})
				})
			}
		case Latency:
			batch := 1
			if cfg.BatchSet {
				batch = cfg.Batch
			}
			add(sc, fmt.Sprintf("rate=%g", cfg.Rate), int(cfg.Rate), func(t peers.Transport, c Config) (Row, error) {
				return runStream(t, c, peers.Params{Batch: batch, Producers: 1, Rate: c.Rate, SampleEvery: 1,
					MaxSamples: sampleCap(c.Rate, c.Duration)})
			})
		case Call:
			for _, busy := range []bool{false, true} {
				mode := map[bool]string{false: "blocking", true: "busy"}[busy]
				add(sc, "mode="+mode, 0, func(t peers.Transport, c Config) (Row, error) {
					return runCall(t, c, peers.Params{Busy: busy})
				})
				if !slices.Contains(cfg.Transports, peers.NameAEM) {
					continue
				}
				if busy {
					steps = append(steps, Step{Family: sc, Variant: "mode=busy,lane", Transport: peers.NameAEM,
						run: func(t peers.Transport, c Config) (Row, error) {
							return runCall(t, c, peers.Params{Busy: true, CallLane: true})
						}})
					continue
				}
				for _, spin := range []time.Duration{0, KernelCallSpin} {
					variant := "mode=blocking,kernel"
					if spin != 0 {
						variant += fmt.Sprintf(",spin=%dus", spin.Microseconds())
					}
					steps = append(steps, Step{Family: sc, Variant: variant, Transport: peers.NameAEM,
						run: func(t peers.Transport, c Config) (Row, error) {
							return runCall(t, c, peers.Params{KernelSleep: true, KernelSpin: spin})
						}})
				}
			}
		case FanIn:
			for _, sqpoll := range cfg.SQPoll {
				run := func(t peers.Transport, c Config) (Row, error) {
					return runStream(t, c, peers.Params{Batch: c.Batch, Producers: c.Producers, Busy: true, SQPoll: sqpoll,
						FanInPath: c.FanInPath})
				}
				if !sqpoll {
					add(sc, fmt.Sprintf("producers=%d", cfg.Producers), cfg.Producers, run)
				} else if slices.Contains(cfg.Transports, peers.NameAEM) {
					steps = append(steps, Step{Family: sc, Variant: fmt.Sprintf("producers=%d,sqpoll", cfg.Producers),
						Param: cfg.Producers, Transport: peers.NameAEM, run: run})
				}
			}
		case Timers:
			for _, n := range Sizes(cfg.MaxSubscriptions) {
				add(sc, fmt.Sprintf("active=%d", n), n, func(t peers.Transport, c Config) (Row, error) {
					return runTimers(t, c, n)
				})
			}
		case Priority:
			for _, flood := range []bool{false, true} {
				load := map[bool]string{false: "idle", true: "flood"}[flood]
				add(sc, "load="+load, 0, func(t peers.Transport, c Config) (Row, error) {
					return runPriority(t, c, flood)
				})
			}
		case Subscriptions:
			for _, n := range Sizes(cfg.MaxSubscriptions) {
				add(sc, fmt.Sprintf("n=%d", n), n, func(t peers.Transport, c Config) (Row, error) {
					return runSubscribe(t, c, n)
				})
			}
		case TCPEcho, HTTP:
			for _, n := range cfg.Conns {
				variant := fmt.Sprintf("conns=%d", n)
				if cfg.Pipeline > 1 {
					variant += fmt.Sprintf(",pipeline=%d", cfg.Pipeline)
				}
				add(sc, variant, n, func(t peers.Transport, c Config) (Row, error) {
					return runServer(t, c, sc, n)
				})
			}
		case Handlers:
			// AEM alone: the rows compare its handler modes with each
			// other (a goroutine, a process, os/exec), not with peers.
			if !slices.Contains(cfg.Transports, peers.NameAEM) {
				break
			}
			for _, mode := range HandlerModes {
				steps = append(steps, Step{Family: sc, Variant: "mode=" + mode, Transport: peers.NameAEM,
					run: func(t peers.Transport, c Config) (Row, error) { return runHandler(t, c, mode) }})
			}
		}
	}
	return steps
}

// HandlerModes are the handlers scenario's variants: where a call's
// handler runs (bench/aemt names them).
var HandlerModes = []string{aemt.HandlerGoroutine, aemt.HandlerProcessPool, aemt.HandlerProcessNew, aemt.HandlerExec}

// HandlerRunner is a transport that can run a call's handler elsewhere
// than its poller (AEM).
type HandlerRunner interface {
	Handler(p peers.Params, mode string) (peers.Result, error)
}

// runHandler times one call at a time whose handler runs in mode: its
// p50 is the cost of one event in that mode.
func runHandler(t peers.Transport, cfg Config, mode string) (Row, error) {
	h, ok := t.(HandlerRunner)
	if !ok {
		return Row{}, ErrSkipped
	}
	p := peers.Params{Payload: cfg.Payload, SampleEvery: 1, Duration: cfg.Duration,
		MaxSamples: sampleCap(1e6, cfg.Duration)}
	before := mallocs()
	res, err := h.Handler(p, mode)
	allocs := mallocs() - before
	if err != nil {
		return Row{}, err
	}
	return fromResult(t, res, allocs)
}

// Sizes is the 1 k, 10 k, ... sweep up to max.
func Sizes(max int) []int {
	var s []int
	for n := 1000; n <= max; n *= 10 {
		s = append(s, n)
	}
	return s
}

func sampleCap(rate float64, d time.Duration) int {
	n := int(rate*d.Seconds()*1.2) + 1024
	return min(n, 8<<20)
}

// OpenError says a transport could not be opened at all (AEM's kernel
// backend without the module, say); its other steps will fail the same way.
type OpenError struct {
	Transport string
	Err       error
}

func (e *OpenError) Error() string { return "open " + e.Transport + ": " + e.Err.Error() }
func (e *OpenError) Unwrap() error { return e.Err }

// ErrSkipped marks a step the transport cannot make.
var ErrSkipped = peers.ErrUnsupported

// RunStep opens the step's transport, runs it and closes it. A transport
// that cannot make the measurement yields ErrSkipped.
func RunStep(s Step, cfg Config, open Opener) (Row, error) {
	t, err := open(s.Transport, cfg.Backend)
	if err != nil {
		return Row{}, &OpenError{Transport: s.Transport, Err: err}
	}
	row, err := s.run(t, cfg)
	if cerr := t.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", s.Transport, cerr)
	}
	if err != nil {
		if errors.Is(err, peers.ErrUnsupported) {
			return Row{}, ErrSkipped
		}
		return Row{}, fmt.Errorf("%s: %w", s.Label(), err)
	}
	row.Family, row.Variant, row.Param = s.Family, s.Variant, s.Param
	row.Scenario = s.Family + "/" + s.Variant
	row.Transport = s.Transport
	if row.Backend == "" {
		row.Backend = BackendNone
	}
	return row, nil
}

// Backend reports which backend a transport ran on: transports that have
// one implement it.
type Backender interface {
	Backend() string
}

func backendOf(t peers.Transport) string {
	if b, ok := t.(Backender); ok {
		return b.Backend()
	}
	return BackendNone
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// fromResult fills a row from a transport's result.
func fromResult(t peers.Transport, res peers.Result, allocs uint64) (Row, error) {
	if res.Errors > 0 {
		return Row{}, fmt.Errorf("%d events out of order or corrupted", res.Errors)
	}
	row := Row{
		Backend: backendOf(t),
		Events:  res.Events,
		Seconds: res.Elapsed.Seconds(),
		Dropped: res.Dropped + res.Lost(),
		Notes:   res.Notes,
	}
	if row.Seconds > 0 {
		row.EventsPerSec = float64(res.Events) / row.Seconds
	}
	if res.MallocsSet {
		allocs = res.Mallocs
	}
	if res.Events > 0 {
		row.AllocsPerEvent = float64(allocs) / float64(res.Events)
	}
	row.P50, row.P99, row.P999, row.Max = Percentiles(res.Samples)
	return row, nil
}

// Percentiles of latency samples in ns: p50, p99, p99.9, max.
func Percentiles(samples []int64) (p50, p99, p999, maxv int64) {
	if len(samples) == 0 {
		return 0, 0, 0, 0
	}
	h := hdrhistogram.New(1, int64(time.Minute), 3)
	for _, s := range samples {
		_ = h.RecordValue(min(max(s, 1), int64(time.Minute)))
	}
	return h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.ValueAtQuantile(99.9), slices.Max(samples)
}

func runStream(t peers.Transport, cfg Config, p peers.Params) (Row, error) {
	p.Payload = cfg.Payload
	if cfg.Warmup > 0 {
		w := p
		w.Duration = cfg.Warmup
		if _, err := t.Stream(w); err != nil {
			return Row{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	p.Duration = cfg.Duration
	before := mallocs()
	res, err := t.Stream(p)
	allocs := mallocs() - before
	if err != nil {
		return Row{}, err
	}
	return fromResult(t, res, allocs)
}

// KernelCallSpin is how long the call handler of the row
// "mode=blocking,kernel,spin=..." polls before each sleep: longer than a
// round trip, so that a steady stream of calls never puts it to sleep.
const KernelCallSpin = 20 * time.Microsecond

// runCall times round trips of calls made as p says (Busy, KernelSleep).
func runCall(t peers.Transport, cfg Config, p peers.Params) (Row, error) {
	// Every 8th round trip is timed: two clock reads per trip would show
	// in a spinning exchange of a few hundred ns.
	p.Payload, p.SampleEvery = cfg.Payload, 8
	if cfg.Warmup > 0 {
		w := p
		w.Duration = cfg.Warmup
		if _, err := t.Call(w); err != nil {
			return Row{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	p.Duration = cfg.Duration
	before := mallocs()
	res, err := t.Call(p)
	allocs := mallocs() - before
	if err != nil {
		return Row{}, err
	}
	return fromResult(t, res, allocs)
}

// Timer scenario shape: HotTimers periodic timers every TimerInterval,
// the rest of the N active ones idle.
const (
	HotTimers     = 1000
	TimerInterval = time.Millisecond
)

// TimerParams is the timers scenario's run with n active timers.
func TimerParams(n int, d time.Duration) peers.TimerParams {
	hot := min(n, HotTimers)
	return peers.TimerParams{Hot: hot, Idle: n - hot, Interval: TimerInterval, Duration: d}
}

// runTimers reports CPU time, not wall time, as the row's seconds: the
// hot timers fire at a fixed rate, and what grows with N is what each
// firing costs, so events_per_sec is firings per CPU-second.
func runTimers(t peers.Transport, cfg Config, active int) (Row, error) {
	res, err := t.Timers(TimerParams(active, cfg.Duration))
	if err != nil {
		return Row{}, err
	}
	if res.CPU > 0 {
		res.Elapsed = res.CPU
	}
	return fromResult(t, res, 0)
}

func runPriority(t peers.Transport, cfg Config, flood bool) (Row, error) {
	p := peers.Params{Payload: cfg.Payload, Rate: cfg.Rate, SampleEvery: 1,
		MaxSamples: sampleCap(cfg.Rate, cfg.Duration), Duration: cfg.Duration}
	before := mallocs()
	res, err := t.Priority(p, flood)
	allocs := mallocs() - before
	if err != nil {
		return Row{}, err
	}
	return fromResult(t, res, allocs)
}

// subscribeRounds bounds the rounds of a subscriptions row.
const subscribeRounds = 15

// runSubscribe sets up n subscriptions in rounds, each from nothing (AEM:
// on a new ring), while the rounds take less than cfg.Duration in all (at
// least one, at most subscribeRounds), and reports the round of median
// time: one round of 100 k takes some 20 ms, short enough for a moment of
// a shared machine's noise to move it by a quarter. The first round, the
// only one in a process that has not set up subscriptions before (its
// heap still growing), is in the row's notes beside the count.
func runSubscribe(t peers.Transport, cfg Config, n int) (Row, error) {
	var results []peers.SubResult
	var total time.Duration
	for len(results) < subscribeRounds && (len(results) == 0 || total < cfg.Duration) {
		res, err := t.Subscribe(n)
		if err != nil {
			return Row{}, err
		}
		results = append(results, res)
		total += res.Elapsed
	}
	first := results[0]
	slices.SortStableFunc(results, func(a, b peers.SubResult) int { return cmp.Compare(a.Elapsed, b.Elapsed) })
	res := results[len(results)/2]
	row := Row{
		Backend:                backendOf(t),
		Events:                 uint64(res.Subscriptions),
		Seconds:                res.Elapsed.Seconds(),
		BytesPerSubscription:   res.BytesPer,
		GoBytesPerSubscription: res.GoBytesPer,
		Notes: fmt.Sprintf("the median of %d rounds; the first %s/s, %s–%s/s in all", len(results),
			siRate(first), siRate(results[len(results)-1]), siRate(results[0])),
	}
	if len(results) == 1 {
		row.Notes = "one round (longer than --duration)"
	}
	if row.Seconds > 0 {
		row.EventsPerSec = float64(res.Subscriptions) / row.Seconds
	}
	return row, nil
}

// siRate is a round's subscriptions per second, as 4.20M.
func siRate(r peers.SubResult) string {
	if r.Elapsed <= 0 {
		return "-"
	}
	return SI(float64(r.Subscriptions) / r.Elapsed.Seconds())
}

// SI writes a count with a k/M/G suffix.
func SI(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
