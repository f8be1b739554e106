// Package peers holds the transports that AEM is measured against: the ways
// a Linux program can move events from producers to a consumer, or make a
// round trip, without AEM. Each stands behind Transport, as AEM's own
// transport does, so that every scenario runs the same code for all of them.
//
// The hot loops of the C peers run entirely in C: one cgo call moves every
// event of a run and returns counts and nanoseconds, so the cgo crossing is
// paid once per run and does not pollute the peer.
package peers

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"
)

// ErrUnsupported is returned by a transport for a measurement it cannot make
// (a round trip over io_uring NOPs, say). Scenarios skip those.
var ErrUnsupported = errors.ErrUnsupported

// Transport names.
const (
	NameAEM          = "aem"
	NameChan         = "chan"
	NameURingMsgRing = "io_uring_msg_ring"
	NameURingNop     = "io_uring_nop"
	NameEventfdShm   = "eventfd_shm"
	NamePipe         = "pipe"
	NameUnixDgram    = "unix_dgram"
	NameSPSCRing     = "spsc_ring"
	NameFutexPong    = "futex_pingpong"
	NameSpinPong     = "spin_pingpong"
)

// Names lists every peer, in the order tables show them, the server
// peers (ServerNames) last. AEM is not a peer.
func Names() []string {
	return append([]string{
		NameChan, NameURingMsgRing, NameURingNop, NameEventfdShm, NamePipe,
		NameUnixDgram, NameSPSCRing, NameFutexPong, NameSpinPong,
	}, ServerNames()...)
}

// DefaultPayload is the payload of the design's 32-byte event: a 16-byte
// header (sequence, send time) and 16 bytes of data.
const DefaultPayload = 16

// EventSize is the size of one record carrying payload bytes.
func EventSize(payload int) int {
	size := (16 + payload + 7) &^ 7
	return max(size, 32)
}

// Params describes one measured run. Every run is bounded by Duration, and
// by Events when that is not zero.
type Params struct {
	Events      uint64        // events (or round trips) over all producers; 0: no bound
	Duration    time.Duration // producers stop this long after the start
	Batch       int           // events per publish, submit or write
	Payload     int           // bytes after the 16-byte header
	Producers   int           // posting threads or goroutines
	Rate        float64       // events/s over all producers; 0: flat out
	SampleEvery int           // record the latency of every n-th event; 0: none
	MaxSamples  int           // at most this many samples
	Busy        bool          // consumers (and callers) spin rather than sleep
	// SQPoll: AEM's producers post through rings with a submission
	// poller (goaem.WithSQPoll); the peers have no such thing.
	SQPoll bool
	// KernelSleep: AEM's blocking callers and call handler sleep in the
	// kernel side (goaem.CallOptions.Block, goaem.WithKernelWait), not in
	// Go's netpoller; the peers sleep in the kernel anyway.
	KernelSleep bool
	// KernelSpin: with KernelSleep, how long AEM's call handler polls
	// before each sleep (goaem.WithKernelWait's spin).
	KernelSpin time.Duration
	// CallLane: AEM's busy caller calls through a producer lane
	// (goaem.Lane.Call) instead of CALL SQEs; the peers have one way each.
	CallLane bool
	// FanInPath is how AEM's fan-in producers post: FanInLane (the
	// default, also ""), FanInRemote or FanInSQ; the peers have one way
	// each.
	FanInPath string
}

// Fan-in paths of AEM (Params.FanInPath).
const (
	FanInLane = "lane" // a producer lane each: shared memory the poller drains
	FanInSQ   = "sq"   // POST SQEs through a producer ring each
	// FanInRemote: a lane each opened through the module (Ring.OpenLaneTo),
	// as producers in other processes do; the kernel backend only.
	FanInRemote = "remote"
)

// Normalized fills the defaults in and checks the ranges.
func (p Params) Normalized() (Params, error) {
	if p.Duration <= 0 {
		return p, fmt.Errorf("duration %v: must be positive", p.Duration)
	}
	if p.Batch <= 0 {
		p.Batch = 1
	}
	if p.Producers <= 0 {
		p.Producers = 1
	}
	if p.Producers > MaxProducers {
		return p, fmt.Errorf("producers %d: at most %d", p.Producers, MaxProducers)
	}
	if p.Payload < 0 || p.Payload > MaxPayload {
		return p, fmt.Errorf("payload %d: must be within 0..%d", p.Payload, MaxPayload)
	}
	if p.Rate < 0 {
		return p, fmt.Errorf("rate %v: must not be negative", p.Rate)
	}
	if p.SampleEvery < 0 {
		p.SampleEvery = 0
	}
	if p.SampleEvery > 0 && p.MaxSamples <= 0 {
		p.MaxSamples = 1 << 20
		if p.Events > 0 {
			p.MaxSamples = int(min(p.Events/uint64(p.SampleEvery)+1, 1<<20))
		}
	}
	return p, nil
}

// Limits shared with the C side.
const (
	MaxProducers = 64
	MaxPayload   = 1 << 16
)

// Result is what a run measured.
type Result struct {
	Events   uint64        // consumed and verified (or round trips completed)
	Produced uint64        // sent by the producers
	Dropped  uint64        // refused or lost by the transport
	Errors   uint64        // out of order or corrupted
	Elapsed  time.Duration // first send to last receive
	Samples  []int64       // latencies in ns, as sampled
	// CPU is the process's CPU time (user and system, every thread) over
	// the measured part, when the transport measures it (timers).
	CPU time.Duration
	// Mallocs is the Go allocations of the measured part, when the
	// transport counts them itself (its set-up excluded); else the
	// scenario counts around the whole call.
	Mallocs    uint64
	MallocsSet bool
	// Notes is what the transport counted beside the figures (AEM's
	// fan-in: its producers' entries into the kernel side per event).
	Notes string
}

// Lost is how many produced events neither arrived nor were counted as
// dropped.
func (r Result) Lost() uint64 {
	if r.Events+r.Dropped >= r.Produced {
		return 0
	}
	return r.Produced - r.Events - r.Dropped
}

// TimerParams describes a timer run: Hot periodic timers firing every
// Interval, and Idle more armed an hour or more ahead that never fire in
// the run, for Duration. What a firing costs is the process's CPU time over
// the firings delivered (Result.CPU / Result.Events).
type TimerParams struct {
	Hot      int
	Idle     int
	Interval time.Duration
	Duration time.Duration
}

// SubResult is what a subscription run measured.
type SubResult struct {
	Subscriptions int
	Elapsed       time.Duration // to make them all
	BytesPer      float64       // memory per subscription (AEM: the kernel side's)
	GoBytesPer    float64       // AEM: goaem's Go-side bookkeeping per subscription
}

// Transport is one way of moving events. A transport that cannot make a
// measurement returns ErrUnsupported for it.
type Transport interface {
	Name() string
	// Stream moves events from p.Producers producers to one consumer
	// (the throughput, latency and fan-in scenarios).
	Stream(p Params) (Result, error)
	// Call makes round trips: request, handler changes the payload,
	// reply; p.Busy chooses busy-polling over blocking.
	Call(p Params) (Result, error)
	// Timers counts hot-timer firings, and the CPU time they took, while
	// tp.Idle timers wait.
	Timers(tp TimerParams) (Result, error)
	// Priority sends urgent events at p.Rate and records their latency,
	// under a flood of low-class events when flood is set.
	Priority(p Params, flood bool) (Result, error)
	// Subscribe makes n idle subscriptions, measures them, removes them.
	Subscribe(n int) (SubResult, error)
	Close() error
}

// Unsupported answers ErrUnsupported to everything; transports embed it and
// override what they can do.
type Unsupported struct{}

func (Unsupported) Stream(Params) (Result, error)         { return Result{}, ErrUnsupported }
func (Unsupported) Call(Params) (Result, error)           { return Result{}, ErrUnsupported }
func (Unsupported) Timers(TimerParams) (Result, error)    { return Result{}, ErrUnsupported }
func (Unsupported) Priority(Params, bool) (Result, error) { return Result{}, ErrUnsupported }
func (Unsupported) Subscribe(int) (SubResult, error)      { return SubResult{}, ErrUnsupported }
func (Unsupported) Close() error                          { return nil }

// Missing names the peers this build left out, each with the reason.
func Missing() map[string]string {
	if uringMissing == "" {
		return nil
	}
	return map[string]string{NameURingMsgRing: uringMissing, NameURingNop: uringMissing, NameURingNet: uringMissing}
}

// Built lists the peers of Names that this build has (without Missing).
func Built() []string {
	missing := Missing()
	return slices.DeleteFunc(Names(), func(name string) bool {
		_, ok := missing[name]
		return ok
	})
}

// New returns the peer called name.
func New(name string) (Transport, error) {
	if why, ok := Missing()[name]; ok {
		return nil, fmt.Errorf("peer %s: %s", name, why)
	}
	switch name {
	case NameChan:
		return &Chan{}, nil
	case NameURingMsgRing, NameURingNop, NameEventfdShm, NamePipe,
		NameUnixDgram, NameSPSCRing, NameFutexPong, NameSpinPong:
		return newCPeer(name)
	case NameGoNet:
		return goNet{}, nil
	case NameEpoll, NameURingNet:
		return newCServer(name)
	}
	return nil, fmt.Errorf("unknown peer %q (known: %v)", name, Names())
}

// CPUTime is the process's CPU time so far, every thread, user and system.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
