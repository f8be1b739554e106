// Package aemt is AEM's transport for the benchmarks: goaem behind the same
// peers.Transport interface as every peer, so that each scenario runs the
// same code for AEM and for what it is compared with.
//
// Each measurement opens its own rings, sized for it, and closes them
// after; Open only checks that the backend can be had.
package aemt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

const (
	pollBatch = 512 // events per Poll
	// fanInPollBatch is the fan-in poller's: its 128 events (12 KiB) stay
	// in the first-level cache while the loop reads them back; with 512
	// the lane path moved 39 M/s against 44 M/s in four alternated pairs.
	fanInPollBatch = 128
	// fanInYield is how many empty polls the fan-in poller makes before it
	// yields: its producers share its CPUs, and a poller that spins while
	// they fill their lanes takes the CPU they need (with 256, the spin's
	// default, it made 11.7 M empty polls in a 2 s run against 0.8 M that
	// found events).
	fanInYield = 16
	cqEntries  = 8192 // per class
	msgChannel = 1
	// grace bounds the drain after a run's deadline.
	grace = 10 * time.Second
	// busySpin bounds a busy caller's spin for one reply.
	busySpin = 100 * time.Millisecond
	// sqPollIdle is the fan-in producers' pollers' idle time (--sqpoll):
	// longer than a run's pauses, so they sleep only after it.
	sqPollIdle = time.Second
)

// Transport is AEM through goaem on one backend.
type Transport struct {
	peers.Unsupported
	backend goaem.Backend
	name    string // the backend libaem chose
}

// Open checks that AEM can run on backend (auto, embedded or kernel).
func Open(backend string) (peers.Transport, error) {
	var b goaem.Backend
	switch backend {
	case "", "auto":
		b = goaem.BackendAuto
	case "embedded":
		b = goaem.BackendEmbedded
	case "kernel":
		b = goaem.BackendKernel
	default:
		return nil, fmt.Errorf("aem: backend %q: want auto, embedded or kernel", backend)
	}
	t := &Transport{backend: b}
	r, err := t.ring()
	if err != nil {
		return nil, err
	}
	t.name = r.Backend()
	if err := r.Close(); err != nil {
		return nil, fmt.Errorf("aem: close: %w", err)
	}
	return t, nil
}

// Name implements peers.Transport.
func (t *Transport) Name() string { return peers.NameAEM }

// Backend is the backend the rings run on: embedded or kernel.
func (t *Transport) Backend() string { return t.name }

func (t *Transport) ring(opts ...goaem.Option) (*goaem.Ring, error) {
	opts = append([]goaem.Option{goaem.WithBackend(t.backend), goaem.WithClasses(2),
		goaem.WithCQEntries(cqEntries)}, opts...)
	r, err := goaem.Open(opts...)
	if err != nil {
		return nil, fmt.Errorf("aem: %w", err)
	}
	return r, nil
}

// slotOpts sizes payload slots for events of size bytes.
func slotOpts(size int) []goaem.Option {
	slot := 64
	for slot < size {
		slot <<= 1
	}
	return []goaem.Option{goaem.WithSlotSize(uint32(slot))}
}

// monoClock reads CLOCK_MONOTONIC, the clock AEM stamps events with,
// through Go's monotonic clock (the same clock, read through the vDSO)
// plus an offset taken once.
type monoClock struct {
	base   time.Time
	offset int64
}

func newMonoClock() monoClock {
	c := monoClock{base: time.Now()}
	best := int64(1 << 62)
	// the tightest of a few bracketed readings gives the offset to within
	// half a system call
	for range 32 {
		t1 := int64(time.Since(c.base))
		var ts unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
			continue
		}
		t2 := int64(time.Since(c.base))
		if t2-t1 < best {
			best = t2 - t1
			c.offset = ts.Nano() - (t1+t2)/2
		}
	}
	return c
}

func (c monoClock) now() int64 { return int64(time.Since(c.base)) + c.offset }

// spin is one step of a busy-poll loop: now and then let other goroutines
// and threads run, as the C peers do.
func spin(spins *int) {
	*spins++
	if *spins%256 == 0 {
		runtime.Gosched()
	}
}

// Stream implements peers.Transport. One producer is AEM's generator
// source feeding a goaem poller (--batch is its burst); several, or any
// number with SQPoll, are goroutines posting to a Msg subscription of the
// poller's ring.
func (t *Transport) Stream(p peers.Params) (peers.Result, error) {
	p, err := p.Normalized()
	if err != nil {
		return peers.Result{}, err
	}
	if p.Producers > 1 || p.SQPoll {
		return t.fanIn(p)
	}
	g, err := t.newGenRun(p)
	if err != nil {
		return peers.Result{}, err
	}
	defer g.close()
	r, batch := g.r, g.batch
	var res peers.Result
	// class 1: the answers to goaem's own requests (the unsubscribe at
	// the end) do not queue behind a full ring of generator events
	sub, err := r.Subscribe(goaem.Generator{Rate: uint64(p.Rate), Count: p.Events,
		Burst: uint32(p.Batch), PayloadLen: uint32(g.size)}, goaem.SubOptions{Class: 1})
	if err != nil {
		return res, fmt.Errorf("aem: subscribe generator: %w", err)
	}
	var dropped uint64
	var unsubscribed chan error
	var polls int
	stopped, final := false, false
	for spins := 0; !final; {
		var n int
		if p.Busy || stopped {
			n, err = r.Poll(batch)
		} else {
			n, err = r.Wait(g.ctx, batch, 1)
			if errors.Is(err, context.DeadlineExceeded) {
				err = nil
			}
		}
		if err != nil {
			return res, fmt.Errorf("aem: read events: %w", err)
		}
		for i := range batch[:n] {
			ev := &batch[i]
			g.count(ev, &res, p.SampleEvery)
			final = final || ev.Final()
			ev.Release()
		}
		if unsubscribed != nil && !stopped {
			// keep reading while the unsubscribe is under way: its answer
			// comes through the rings too
			select {
			case err := <-unsubscribed:
				if err != nil {
					return res, err
				}
				stopped = true
			default:
			}
		}
		// look at the clock now and then, also while events keep coming:
		// a generator that stays ahead would otherwise never be stopped
		polls++
		check := polls%64 == 0 || (n == 0 && spins%16 == 0)
		if unsubscribed == nil && check && !time.Now().Before(g.deadline) {
			// what was dropped before the stop is real; what the stop
			// itself discards from the backlog is not the transport's
			if dropped, err = ringDropped(r); err != nil {
				return res, err
			}
			unsubscribed = make(chan error, 1)
			go func() { unsubscribed <- sub.Unsubscribe() }()
			continue
		}
		if n > 0 {
			spins = 0
			continue
		}
		if stopped {
			break // unsubscribed and drained
		}
		if p.Busy || unsubscribed != nil {
			spin(&spins)
		}
	}
	res.Elapsed = time.Since(g.start)
	if final {
		if dropped, err = ringDropped(r); err != nil {
			return res, err
		}
	}
	res.Dropped = dropped
	res.Produced = res.Events + res.Dropped
	res.Samples = g.samples
	return res, nil
}

// genRun is what the generator scenarios share: a ring sized for the
// payload, the clock and buffers for latency samples, and one context for
// every Wait of the run (a context per Wait would allocate per event in a
// rate-limited run).
type genRun struct {
	r               *goaem.Ring
	size            int
	clock           monoClock
	samples         []int64
	batch           []goaem.Event
	expect          uint64 // the next generator sequence number
	start, deadline time.Time
	ctx             context.Context
	cancel          context.CancelFunc
}

func (t *Transport) newGenRun(p peers.Params) (*genRun, error) {
	size := peers.EventSize(p.Payload)
	r, err := t.ring(slotOpts(size)...)
	if err != nil {
		return nil, err
	}
	g := &genRun{r: r, size: size, clock: newMonoClock(),
		samples: make([]int64, 0, p.MaxSamples), batch: make([]goaem.Event, pollBatch)}
	g.start = time.Now()
	g.deadline = g.start.Add(p.Duration)
	g.ctx, g.cancel = context.WithDeadline(context.Background(), g.deadline)
	return g, nil
}

func (g *genRun) close() {
	g.cancel()
	g.r.Close()
}

// count checks a generator event's sequence number and size, counts it in
// res, and keeps its latency as a sample when its sequence number is a
// multiple of sampleEvery (> 0) and there is room.
func (g *genRun) count(ev *goaem.Event, res *peers.Result, sampleEvery int) {
	seq, ts := ev.GenSeq()
	if seq != g.expect || len(ev.Payload()) != g.size {
		res.Errors++
	}
	g.expect = seq + 1
	res.Events++
	if sampleEvery > 0 && seq%uint64(sampleEvery) == 0 && len(g.samples) < cap(g.samples) {
		g.samples = append(g.samples, g.clock.now()-int64(ts))
	}
}

func ringDropped(r *goaem.Ring) (uint64, error) {
	st, err := r.Stats()
	if err != nil {
		return 0, fmt.Errorf("aem: ring stats: %w", err)
	}
	return st.Dropped, nil
}

// fanIn: p.Producers goroutines post events to a Msg subscription of the
// poller's ring (the event carries the producer and its sequence, as the
// peers' do), --batch at a time. On the lane path (the default) each
// producer writes into a lane of its own (goaem.Lane): shared memory the
// poller drains, no system call per batch. On the SQ path (--fanin-path
// sq, any --sqpoll run, or events larger than a lane record) each
// producer has a ring of its own (OpenProducer) and hands a batch of posts
// to the kernel side with one Batch Submit; with p.SQPoll those rings have
// a submission poller, and a Submit enters the kernel side only to wake
// it. Notes names the path, and for the SQ path the producers' entries per
// event.
func (t *Transport) fanIn(p peers.Params) (peers.Result, error) {
	size := peers.EventSize(p.Payload)
	lanes := p.FanInPath != peers.FanInSQ && !p.SQPoll && size <= abi.LaneMaxRecord
	remote := lanes && p.FanInPath == peers.FanInRemote
	opts := slotOpts(size)
	switch {
	case remote:
		opts = append(opts, goaem.WithRemoteLanes(p.Producers))
	case lanes:
		opts = append(opts, goaem.WithLanes(p.Producers))
	}
	r, err := t.ring(opts...)
	if err != nil {
		return peers.Result{}, err
	}
	defer r.Close()
	sub, err := r.Subscribe(goaem.Msg{Channel: msgChannel}, goaem.SubOptions{})
	if err != nil {
		return peers.Result{}, fmt.Errorf("aem: subscribe msg: %w", err)
	}

	var res peers.Result
	var posted, producing, enters, laneDropped atomic.Int64
	var perr atomic.Pointer[error]
	fail := func(err error) {
		// a copy: an err whose address is taken lives on the heap, one
		// allocation per post
		failed := err
		perr.Store(&failed)
	}
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	var start time.Time
	producing.Store(int64(p.Producers))
	for id := range p.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer producing.Add(-1)
			quota := ^uint64(0)
			if p.Events > 0 {
				quota = p.Events / uint64(p.Producers)
				if uint64(id) < p.Events%uint64(p.Producers) {
					quota++
				}
			}
			nb := max(p.Batch, 1)
			bufs := make([][]byte, nb)
			for i := range bufs {
				bufs[i] = make([]byte, size)
			}
			var pr fanInProducer
			var err error
			switch {
			case remote:
				pr, err = openRemoteLaneProducer(r, nb)
			case lanes:
				pr, err = openLaneProducer(r, sub, nb)
			default:
				pr, err = openSQProducer(r, nb, p.SQPoll)
			}
			if err != nil {
				fail(err)
				return
			}
			defer func() {
				e, d := pr.close()
				enters.Add(int64(e))
				laneDropped.Add(int64(d))
			}()
			<-startGate
			deadline := start.Add(p.Duration)
			// The context bounds a wait for room should the poller stop.
			ctx, cancel := context.WithDeadline(context.Background(), start.Add(p.Duration+grace))
			defer cancel()
			for k := uint64(0); k < quota; {
				if !time.Now().Before(deadline) {
					break
				}
				n := int(min(uint64(nb), quota-k))
				for i := range n {
					putEvent(bufs[i], uint64(id)<<48|(k+uint64(i)))
				}
				took, err := pr.post(ctx, bufs[:n])
				posted.Add(int64(took))
				k += uint64(took)
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	batch := make([]goaem.Event, fanInPollBatch)
	var expect [peers.MaxProducers]uint64
	var gaps uint64 // events skipped within a producer's sequence
	start = time.Now()
	close(startGate)
	hard := start.Add(p.Duration + grace)
	see := func(_ *goaem.Subscription, pl []byte) {
		seq := getSeq(pl)
		id, k := seq>>48, seq&(1<<48-1)
		switch {
		case len(pl) != size || id >= peers.MaxProducers || pl[len(pl)-1] != byte(seq):
			res.Errors++
		case k < expect[id]:
			res.Errors++ // out of order: never allowed
		default:
			// a jump forward is events the ring dropped past its
			// backlog bound: allowed, and checked against the
			// drop count below
			gaps += k - expect[id]
			expect[id] = k + 1
		}
		res.Events++
	}
	for spins := 0; ; {
		var n int
		var err error
		if lanes {
			// Nothing but the lanes carries the producers' events: read
			// them in place.
			n, err = r.ReadLanes(fanInPollBatch, see)
		}
		if (!lanes || remote && n == 0) && err == nil {
			// Remote lanes arrive as notes on the result ring, which
			// Poll reads (and the lanes with it).
			n, err = r.Poll(batch)
			for i := range batch[:n] {
				see(nil, batch[i].Payload())
				batch[i].Release()
			}
		}
		if err != nil {
			return res, fmt.Errorf("aem: poll: %w", err)
		}
		if n > 0 {
			spins = 0
			continue
		}
		if spins++; spins%fanInYield == 0 {
			runtime.Gosched()
		}
		if spins%64 != 0 {
			continue // the end is looked for now and then: reading the clock costs as much as a poll
		}
		if producing.Load() == 0 {
			dropped, err := ringDropped(r)
			if err != nil {
				return res, err
			}
			dropped += uint64(laneDropped.Load())
			if res.Events+dropped >= uint64(posted.Load()) {
				res.Dropped = dropped
				break
			}
		}
		if time.Now().After(hard) {
			return res, fmt.Errorf("aem: fan-in: %d of %d posted events never arrived", uint64(posted.Load())-res.Events, posted.Load())
		}
	}
	res.Elapsed = time.Since(start)
	wg.Wait()
	if e := perr.Load(); e != nil {
		return res, fmt.Errorf("aem: post: %w", *e)
	}
	res.Produced = uint64(posted.Load())
	if gaps > res.Dropped {
		// missing from the sequences, yet not counted as dropped
		res.Errors += gaps - res.Dropped
	}
	switch {
	case remote:
		res.Notes = "path=remote"
	case lanes:
		res.Notes = "path=lane"
	case res.Events > 0:
		res.Notes = fmt.Sprintf("path=sq, %.4f enters/event", float64(enters.Load())/float64(res.Events))
	}
	return res, nil
}

// fanInProducer is one fan-in producer's way into the poller's ring.
type fanInProducer interface {
	// post hands msgs over in order, waiting for room, and says how many
	// were taken.
	post(ctx context.Context, msgs [][]byte) (int, error)
	// close ends it and says how often it entered the kernel side and
	// how many events it dropped.
	close() (enters, dropped uint64)
}

// laneProducer posts through a lane of the poller's ring: one store
// publishes a batch, and a full lane makes PostBatch wait.
type laneProducer struct {
	l    *goaem.Lane
	ring *goaem.Ring // the producer's own ring (remote lanes), closed with it
}

func openLaneProducer(r *goaem.Ring, sub *goaem.Subscription, batch int) (*laneProducer, error) {
	// Room for a few batches: the producer fills one while the poller
	// drains the one before.
	l, err := r.OpenLane(sub, goaem.LaneOptions{Entries: uint32(max(1024, 4*batch))})
	if err != nil {
		return nil, err
	}
	return &laneProducer{l: l}, nil
}

// openRemoteLaneProducer opens a producer ring and through it a lane
// the module maps into both rings (OpenLaneTo): the way a producer in
// another process posts; kicking a sleeping poller is an ioctl.
func openRemoteLaneProducer(r *goaem.Ring, batch int) (*laneProducer, error) {
	pr, err := r.OpenProducer()
	if err != nil {
		return nil, err
	}
	l, err := pr.OpenLaneTo(r.Addr(msgChannel), goaem.LaneOptions{Entries: uint32(max(1024, 4*batch))})
	if err != nil {
		pr.Close()
		return nil, err
	}
	return &laneProducer{l: l, ring: pr}, nil
}

func (p *laneProducer) post(ctx context.Context, msgs [][]byte) (int, error) {
	return p.l.PostBatch(ctx, msgs)
}

func (p *laneProducer) close() (uint64, uint64) {
	_ = p.l.Close()
	if p.ring != nil {
		_ = p.ring.Close()
	}
	return 0, p.l.Dropped()
}

// sqProducer posts through a ring of its own (OpenProducer), so producers
// share no submission lock: a batch is a goaem.Batch flushed with one
// Submit. Submit waits while the target is full, so nothing is dropped;
// every entry's result says whether it was taken.
type sqProducer struct {
	pr      *goaem.Ring
	addr    goaem.Addr
	bt      *goaem.Batch
	enters0 uint64
}

func openSQProducer(r *goaem.Ring, batch int, sqPoll bool) (*sqProducer, error) {
	var popts []goaem.Option
	if sqPoll {
		// Room for a few batches: the producer fills one while the
		// poller consumes the one before.
		popts = append(popts, goaem.WithSQPoll(sqPollIdle), goaem.WithSQEntries(uint32(4*batch)))
	}
	pr, err := r.OpenProducer(popts...)
	if err != nil {
		return nil, err
	}
	return &sqProducer{pr: pr, addr: r.Addr(msgChannel), bt: pr.NewBatch(), enters0: pr.Enters()}, nil
}

func (p *sqProducer) post(ctx context.Context, msgs [][]byte) (int, error) {
	p.bt.Reset()
	for _, m := range msgs {
		p.bt.Post(p.addr, m, 0)
	}
	err := p.bt.Submit(ctx)
	took := 0
	for took < len(msgs) && p.bt.Err(took) == nil {
		took++
	}
	return took, err
}

func (p *sqProducer) close() (uint64, uint64) {
	enters := p.pr.Enters() - p.enters0
	_ = p.pr.Close()
	return enters, 0
}

// putEvent writes the peers' event layout: sequence, send time (unused
// here), payload bytes equal to the sequence's low byte.
func putEvent(buf []byte, seq uint64) {
	binary.LittleEndian.PutUint64(buf, seq)
	binary.LittleEndian.PutUint64(buf[8:], 0)
	fill := uint64(byte(seq)) * 0x0101010101010101
	i := 16
	for ; i+8 <= len(buf); i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], fill)
	}
	for ; i < len(buf); i++ {
		buf[i] = byte(seq)
	}
}

func getSeq(b []byte) uint64 {
	if len(b) < 8 {
		return ^uint64(0)
	}
	return binary.LittleEndian.Uint64(b)
}

// callRings opens a server and a client ring whose slots hold size bytes;
// with kernelWait the server's reader sleeps in the kernel side, after
// polling for up to kernelSpin.
func (t *Transport) callRings(size int, kernelWait bool, kernelSpin time.Duration) (srv, cli *goaem.Ring, err error) {
	srvOpts := slotOpts(size)
	if kernelWait {
		srvOpts = append(srvOpts, goaem.WithKernelWait(kernelSpin))
	}
	if srv, err = t.ring(srvOpts...); err != nil {
		return nil, nil, err
	}
	if cli, err = t.ring(slotOpts(size)...); err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, cli, nil
}

// serve runs srv until ctx ends and sends Run's error (nil when ctx ended it).
func serve(ctx context.Context, srv *goaem.Ring, served chan<- error) {
	err := srv.Run(ctx, nil)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	served <- err
}

// Call implements peers.Transport: a caller ring calls a Msg subscription
// on a server ring, whose handler changes the payload in place and writes
// it back (AEM's call -> handler -> writeback -> caller resumes). Blocking:
// the server reads with Run and the caller parks; with p.KernelSleep both
// sleep in the kernel side (WithKernelWait, CallOptions.Block). Busy: the
// server spins on Poll and the caller busy-polls for its reply
// (CallOptions.Spin). Each
// call reuses one reply buffer (CallInto): nothing is allocated per call.
func (t *Transport) Call(p peers.Params) (peers.Result, error) {
	p, err := p.Normalized()
	if err != nil {
		return peers.Result{}, err
	}
	size := peers.EventSize(p.Payload)
	if p.CallLane {
		return t.laneCall(p, size)
	}
	srv, cli, err := t.callRings(size, p.KernelSleep, p.KernelSpin)
	if err != nil {
		return peers.Result{}, err
	}
	defer srv.Close()
	defer cli.Close()

	if _, err := srv.Subscribe(goaem.Msg{Channel: msgChannel}, goaem.SubOptions{Handler: answerCall}); err != nil {
		return peers.Result{}, fmt.Errorf("aem: subscribe msg: %w", err)
	}
	var stopServer func() error
	if p.Busy {
		stopServer = busyServe(srv)
	} else {
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go serve(ctx, srv, served)
		stopServer = func() error { cancel(); return <-served }
	}

	addr := srv.Addr(msgChannel)
	opts := goaem.CallOptions{Spin: -1, Block: p.KernelSleep}
	if p.Busy {
		// long enough that a caller parks only when the server stalls
		opts.Spin = busySpin
	}
	res, err := timedCalls(p, size, cli.SlotSize(), stopServer, callLoop{
		call: func(ctx context.Context, req, resp []byte) (int, error) {
			return cli.CallWith(ctx, addr, req, resp, opts)
		},
		ok: echoed, clockEvery: 64,
	})
	if err != nil {
		return res, fmt.Errorf("aem: call: %w", err)
	}
	return res, nil
}

// answerCall is the call scenario's handler: it changes the payload after
// the header in place and writes it back.
func answerCall(ev *goaem.Event) error {
	pl := ev.Payload()
	for i := 16; i < len(pl); i++ {
		pl[i]++
	}
	return ev.Writeback(pl)
}

// busyServe spins on srv's Poll in a goroutine of its own, answering
// calls with answerCall, until the function it returns is called; that
// returns the server's error.
func busyServe(srv *goaem.Ring) (stop func() error) {
	served := make(chan error, 1)
	var stopped atomic.Bool
	go func() {
		batch := make([]goaem.Event, pollBatch)
		for spins := 0; !stopped.Load(); {
			n, err := srv.Poll(batch)
			if err != nil {
				served <- err
				return
			}
			for i := range batch[:n] {
				if err := answerCall(&batch[i]); err != nil {
					served <- err
					return
				}
			}
			if n == 0 {
				spin(&spins)
			}
		}
		served <- nil
	}()
	return func() error {
		stopped.Store(true)
		return <-served
	}
}

// callLoop is how timedCalls calls: through call, one at a time, with a
// look at the clock every clockEvery calls (each look costs tens of ns
// against a busy call's few hundred), each reply checked by ok.
type callLoop struct {
	call       func(ctx context.Context, req, resp []byte) (int, error)
	ok         func(req, resp []byte, seq uint64) bool
	clockEvery uint64
}

// echoed is the call scenario's check: the request's sequence number,
// and the payload after the header changed by answerCall.
func echoed(req, resp []byte, seq uint64) bool {
	return len(resp) == len(req) && getSeq(resp) == seq && (len(req) <= 16 || resp[16] == byte(seq+1))
}

// timedCalls makes calls of size bytes as l says, for p.Duration (or
// p.Events calls), timing every p.SampleEvery-th; then it stops the
// server. Nothing is allocated per call.
func timedCalls(p peers.Params, size, respSize int, stopServer func() error, l callLoop) (peers.Result, error) {
	req, resp := make([]byte, size), make([]byte, respSize)
	samples := make([]int64, 0, p.MaxSamples)
	var res peers.Result
	start := time.Now()
	deadline := start.Add(p.Duration)
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(grace))
	defer cancel()
	var n uint64
	var cerr error
	for p.Events == 0 || n < p.Events {
		if n%l.clockEvery == 0 && !time.Now().Before(deadline) {
			break
		}
		putEvent(req, n)
		sampled := p.SampleEvery > 0 && n%uint64(p.SampleEvery) == 0
		var t0 time.Time
		if sampled {
			t0 = time.Now()
		}
		m, err := l.call(ctx, req, resp)
		if err != nil {
			cerr = err
			break
		}
		if sampled && len(samples) < cap(samples) {
			samples = append(samples, int64(time.Since(t0)))
		}
		if !l.ok(req, resp[:m], n) {
			res.Errors++
		}
		n++
	}
	res.Elapsed = time.Since(start)
	if err := stopServer(); err != nil && !errors.Is(err, context.Canceled) && cerr == nil {
		cerr = fmt.Errorf("aem: server: %w", err)
	}
	res.Events, res.Produced, res.Samples = n, n, samples
	if cerr != nil {
		return res, cerr
	}
	return res, nil
}

// laneCall is Call's busy caller through a producer lane (Lane.Call): the
// server spins on Poll as in the busy call, and its handler's writeback
// answers in the lane; no CALL or WRITEBACK SQE, no kernel-side step.
func (t *Transport) laneCall(p peers.Params, size int) (peers.Result, error) {
	if size > abi.LaneMaxRecord {
		return peers.Result{}, fmt.Errorf("aem: lane call: %d-byte requests, a lane record holds %d", size, abi.LaneMaxRecord)
	}
	srv, err := t.ring(goaem.WithLanes(1))
	if err != nil {
		return peers.Result{}, err
	}
	defer srv.Close()
	sub, err := srv.Subscribe(goaem.Msg{Channel: msgChannel}, goaem.SubOptions{Handler: answerCall})
	if err != nil {
		return peers.Result{}, fmt.Errorf("aem: subscribe msg: %w", err)
	}
	lane, err := srv.OpenLane(sub, goaem.LaneOptions{Entries: 2, RecordSize: uint32(size)})
	if err != nil {
		return peers.Result{}, fmt.Errorf("aem: open lane: %w", err)
	}
	defer lane.Close()
	res, err := timedCalls(p, size, abi.LaneMaxRecord, busyServe(srv), callLoop{call: lane.Call, ok: echoed, clockEvery: 64})
	if err != nil {
		return res, fmt.Errorf("aem: lane call: %w", err)
	}
	return res, nil
}

// Timers implements peers.Transport: tp.Idle one-shot timers an hour or
// more away and tp.Hot periodic ones, all subscriptions of one ring read
// by a blocking poller; the CPU time is the whole process's, so it
// includes the embedded backend's timer thread.
func (t *Transport) Timers(tp peers.TimerParams) (peers.Result, error) {
	if tp.Duration <= 0 || tp.Interval <= 0 || tp.Idle < 0 || tp.Hot <= 0 {
		return peers.Result{}, fmt.Errorf("aem timers: duration %v, interval %v, hot %d, idle %d: bad parameters",
			tp.Duration, tp.Interval, tp.Hot, tp.Idle)
	}
	r, err := t.ring()
	if err != nil {
		return peers.Result{}, err
	}
	defer r.Close()
	if err := subscribeIdle(r, tp.Idle); err != nil {
		return peers.Result{}, err
	}
	var res peers.Result
	before, cpu0 := mallocs(), peers.CPUTime()
	start := time.Now()
	// The reader runs while the hot timers are armed one by one: the first
	// ones fire meanwhile, and unread they would fill the completion ring
	// and goaem's stash, leaving the later subscriptions' answers unread
	// (a "no answer" timeout on a loaded machine). It stops when the run's
	// time is up and every timer is armed, whichever comes last.
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	read := make(chan error, 1)
	go func() {
		batch := make([]goaem.Event, pollBatch)
		for {
			n, err := r.Wait(stop, batch, 1)
			for i := range batch[:n] {
				batch[i].Release()
			}
			res.Events += uint64(n)
			if errors.Is(err, context.Canceled) {
				read <- nil
				return
			}
			if err != nil {
				read <- fmt.Errorf("aem: wait: %w", err)
				return
			}
		}
	}()
	for range tp.Hot {
		if _, err := r.Subscribe(goaem.Timer{First: tp.Interval, Interval: tp.Interval}, goaem.SubOptions{}); err != nil {
			cancel()
			<-read
			return res, fmt.Errorf("aem: hot timer: %w", err)
		}
	}
	time.Sleep(time.Until(start.Add(tp.Duration)))
	cancel()
	if err := <-read; err != nil {
		return res, err
	}
	res.CPU, res.Elapsed = peers.CPUTime()-cpu0, time.Since(start)
	res.Mallocs, res.MallocsSet = mallocs()-before, true
	res.Produced = res.Events
	return res, nil
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// Priority implements peers.Transport: urgent generator events in class 0
// at p.Rate, and with flood a generator filling class 1 as fast as the
// ring takes it; the poller drains class 0 first.
func (t *Transport) Priority(p peers.Params, flood bool) (peers.Result, error) {
	p, err := p.Normalized()
	if err != nil {
		return peers.Result{}, err
	}
	if p.Rate <= 0 {
		return peers.Result{}, fmt.Errorf("aem priority: needs a rate for the urgent events")
	}
	if p.MaxSamples <= 0 {
		p.MaxSamples = 1 << 20
	}
	g, err := t.newGenRun(p)
	if err != nil {
		return peers.Result{}, err
	}
	defer g.close()
	r, batch := g.r, g.batch
	var res peers.Result
	if flood {
		if _, err := r.Subscribe(goaem.Generator{Burst: 64, PayloadLen: uint32(g.size)}, goaem.SubOptions{Class: 1}); err != nil {
			return res, fmt.Errorf("aem: subscribe flood: %w", err)
		}
	}
	urgent, err := r.Subscribe(goaem.Generator{Rate: uint64(p.Rate), Count: p.Events, Burst: 1,
		PayloadLen: uint32(g.size)}, goaem.SubOptions{Class: 0})
	if err != nil {
		return res, fmt.Errorf("aem: subscribe urgent: %w", err)
	}
	for final := false; !final; {
		n, err := r.Wait(g.ctx, batch, 1)
		for i := range batch[:n] {
			ev := &batch[i]
			if ev.Class() == 0 {
				g.count(ev, &res, 1)
				final = final || ev.Final()
			}
			ev.Release()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("aem: wait: %w", err)
		}
	}
	res.Elapsed = time.Since(g.start)
	if !urgent.Ended() {
		_ = urgent.Unsubscribe()
	}
	res.Produced, res.Samples = res.Events, g.samples
	return res, nil
}

// Subscribe implements peers.Transport: n idle timers (an hour or more
// away). BytesPer is the kernel side's memory per subscription: the growth
// of the ring's charge (abi.RingStats.Charged), which counts the
// subscription table as it grows, on either backend. GoBytesPer is goaem's
// own bookkeeping of a subscription, on the Go heap.
func (t *Transport) Subscribe(n int) (peers.SubResult, error) {
	if n <= 0 {
		return peers.SubResult{}, fmt.Errorf("aem subscriptions %d: must be positive", n)
	}
	r, err := t.ring()
	if err != nil {
		return peers.SubResult{}, err
	}
	defer r.Close()
	st0, err := r.Stats()
	if err != nil {
		return peers.SubResult{}, err
	}
	heap0 := goHeap()
	start := time.Now()
	if err := subscribeIdle(r, n); err != nil {
		return peers.SubResult{}, err
	}
	elapsed := time.Since(start)
	st1, err := r.Stats()
	if err != nil {
		return peers.SubResult{}, err
	}
	heap1 := goHeap()
	return peers.SubResult{Subscriptions: n, Elapsed: elapsed,
		BytesPer:   float64(st1.Charged-st0.Charged) / float64(n),
		GoBytesPer: float64(heap1-heap0) / float64(n)}, nil
}

// subscribeIdle makes n idle timer subscriptions, in goaem.Batches of
// subBatch subscribes, each submitted with one entry into the kernel side
// per submission ring's worth; two goroutines keep one batch in flight
// while the other is being filled.
func subscribeIdle(r *goaem.Ring, n int) error {
	const workers, subBatch = 2, 1024
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bt := r.NewBatch()
			for lo := w * subBatch; lo < n && first.Load() == nil; lo += workers * subBatch {
				bt.Reset()
				for i := lo; i < min(lo+subBatch, n); i++ {
					bt.SubscribeTimer(goaem.Timer{First: time.Hour + time.Duration(i)*time.Microsecond}, goaem.SubOptions{Class: 1})
				}
				if err := bt.Submit(context.Background()); err != nil {
					err = fmt.Errorf("aem: idle timers from %d: %w", lo, err)
					first.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return *e
	}
	return nil
}

func goHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
