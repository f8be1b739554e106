package peers

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// chanCap is the buffered channel's capacity, the same as the C rings'.
const chanCap = 4096

// chanEvent is the 32-byte event: sequence, send time, 16 bytes of payload.
// Larger payloads live in a per-producer arena the sequence indexes, the way
// AEM keeps them in a payload area.
type chanEvent struct {
	seq  uint64
	ts   int64 // ns after the start plus one; 0: not stamped
	data [16]byte
}

// Chan is a buffered Go channel carrying one event per send; its timers are
// the Go runtime's (time.AfterFunc).
type Chan struct {
	Unsupported
}

// Name implements Transport.
func (*Chan) Name() string { return NameChan }

func fillEvent(ev *chanEvent, seq uint64, payload int, arena []byte) {
	b := byte(seq)
	n := min(payload, len(ev.data))
	for i := range n {
		ev.data[i] = b
	}
	if payload > len(ev.data) {
		for i := range arena {
			arena[i] = b
		}
	}
}

func checkEvent(ev *chanEvent, payload int, arena []byte) bool {
	b := byte(ev.seq)
	if payload == 0 {
		return true
	}
	if payload > len(ev.data) {
		return ev.data[0] == b && arena[0] == b && arena[len(arena)-1] == b
	}
	return ev.data[0] == b && ev.data[payload-1] == b
}

// spinYield lets other goroutines run every so often in a busy-poll loop:
// a spinning goroutine that never yields can hold the P the goroutine it waits
// for is queued on (the C peers' sched_yield does the same for threads).
func spinYield(spins int) {
	if spins%256 == 0 {
		runtime.Gosched()
		// and the OS thread: with two cores shared, the goroutine waited
		// for may sit on a thread queued behind this one's
		syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
	}
}

// pacer spaces sends at a rate; a zero pacer never waits.
type pacer struct {
	start    time.Time
	nsPer    float64
	deadline time.Time
	check    int
}

// next reports whether to go on sending; it waits for event number sent's
// turn first when paced.
func (pc *pacer) next(sent uint64, n int) bool {
	if pc.nsPer > 0 {
		target := pc.start.Add(time.Duration(pc.nsPer * float64(sent)))
		now := time.Now()
		if !now.Before(pc.deadline) {
			return false
		}
		if d := target.Sub(now); d > 200*time.Microsecond {
			time.Sleep(d - 100*time.Microsecond)
		}
		for time.Now().Before(target) {
		}
		return true
	}
	pc.check -= n
	if pc.check <= 0 {
		pc.check = 4096
		return time.Now().Before(pc.deadline)
	}
	return true
}

type arenas struct {
	payload int
	slots   int
	mem     []byte
}

func newArenas(payload, producers, slots int) arenas {
	a := arenas{payload: payload, slots: slots}
	if payload > 16 {
		a.mem = make([]byte, payload*slots*producers)
	}
	return a
}

func (a arenas) slot(seq uint64) []byte {
	if a.mem == nil {
		return nil
	}
	id := int(seq >> 48)
	i := id*a.slots + int((seq&(1<<48-1))%uint64(a.slots))
	return a.mem[i*a.payload : (i+1)*a.payload]
}

// Stream implements Transport.
func (c *Chan) Stream(p Params) (Result, error) {
	p, err := p.Normalized()
	if err != nil {
		return Result{}, err
	}
	ch := make(chan chanEvent, chanCap)
	// A producer's event can be in the channel or in the consumer's hands:
	// cap+2 slots each are never overwritten while still being read.
	ar := newArenas(p.Payload, p.Producers, chanCap+2)
	samples := make([]int64, 0, p.MaxSamples)
	quota := func(id int) uint64 {
		if p.Events == 0 {
			return ^uint64(0)
		}
		q := p.Events / uint64(p.Producers)
		if uint64(id) < p.Events%uint64(p.Producers) {
			q++
		}
		return q
	}
	nsPer := 0.0
	if p.Rate > 0 {
		nsPer = 1e9 * float64(p.Producers) / p.Rate
	}

	var ready, wg sync.WaitGroup
	var produced atomic.Uint64
	startGate := make(chan struct{})
	var start time.Time
	for id := range p.Producers {
		ready.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Done()
			<-startGate
			pc := pacer{start: start, nsPer: nsPer, deadline: start.Add(p.Duration), check: 4096}
			q := quota(id)
			var sent uint64
			for sent < q {
				n := min(uint64(p.Batch), q-sent)
				if !pc.next(sent, int(n)) {
					break
				}
				for i := range n {
					k := sent + i
					seq := uint64(id)<<48 | k
					ev := chanEvent{seq: seq}
					fillEvent(&ev, seq, p.Payload, ar.slot(seq))
					if p.SampleEvery > 0 && k%uint64(p.SampleEvery) == 0 {
						ev.ts = int64(time.Since(start)) + 1
					}
					ch <- ev
				}
				sent += n
			}
			produced.Add(sent)
		}()
	}
	ready.Wait()
	start = time.Now()
	close(startGate)
	go func() {
		wg.Wait()
		close(ch)
	}()

	var res Result
	var expect [MaxProducers]uint64
	for ev := range ch {
		id := ev.seq >> 48
		if id >= MaxProducers || ev.seq&(1<<48-1) != expect[id] || !checkEvent(&ev, p.Payload, ar.slot(ev.seq)) {
			res.Errors++
			if id < MaxProducers {
				expect[id] = ev.seq&(1<<48-1) + 1
			}
		} else {
			expect[id]++
		}
		res.Events++
		if ev.ts != 0 && len(samples) < cap(samples) {
			samples = append(samples, int64(time.Since(start))-(ev.ts-1))
		}
	}
	res.Elapsed = time.Since(start)
	res.Produced = produced.Load()
	res.Samples = samples
	return res, nil
}

// Call implements Transport: two channels of capacity one, a handler
// goroutine; with p.Busy both sides poll with select/default.
func (c *Chan) Call(p Params) (Result, error) {
	p, err := p.Normalized()
	if err != nil {
		return Result{}, err
	}
	req := make(chan chanEvent, 1)
	rep := make(chan chanEvent, 1)
	var shared []byte // payloads past 16 bytes change in place
	if p.Payload > 16 {
		shared = make([]byte, p.Payload)
	}
	handle := func(ev *chanEvent) {
		for i := range min(p.Payload, len(ev.data)) {
			ev.data[i]++
		}
		for i := range shared {
			shared[i]++
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var ev chanEvent
			var ok bool
			if p.Busy {
			poll:
				for spins := 1; ; spins++ {
					select {
					case ev, ok = <-req:
						break poll
					default:
						spinYield(spins)
					}
				}
			} else {
				ev, ok = <-req
			}
			if !ok {
				return
			}
			handle(&ev)
			rep <- ev
		}
	}()

	samples := make([]int64, 0, p.MaxSamples)
	deadline := time.Now().Add(p.Duration)
	var res Result
	start := time.Now()
	var n uint64
	for p.Events == 0 || n < p.Events {
		if n%64 == 0 && !time.Now().Before(deadline) {
			break
		}
		sampled := p.SampleEvery > 0 && n%uint64(p.SampleEvery) == 0
		ev := chanEvent{seq: n}
		fillEvent(&ev, n, p.Payload, shared)
		var t0 time.Time
		if sampled {
			t0 = time.Now()
		}
		req <- ev
		if p.Busy {
		wait:
			for spins := 1; ; spins++ {
				select {
				case ev = <-rep:
					break wait
				default:
					spinYield(spins)
				}
			}
		} else {
			ev = <-rep
		}
		if sampled && len(samples) < cap(samples) {
			samples = append(samples, int64(time.Since(t0)))
		}
		if ev.seq != n || (p.Payload > 0 && ev.data[0] != byte(n+1)) {
			res.Errors++
		}
		n++
	}
	res.Elapsed = time.Since(start)
	close(req)
	<-done
	res.Events, res.Produced, res.Samples = n, n, samples
	return res, nil
}

// Timers implements Transport with Go runtime timers: tp.Idle timers an
// hour or more away, and tp.Hot that re-arm themselves every tp.Interval
// (time.AfterFunc and Reset, the cheapest periodic callback Go has).
func (c *Chan) Timers(tp TimerParams) (Result, error) {
	if tp.Duration <= 0 || tp.Interval <= 0 || tp.Idle < 0 || tp.Hot <= 0 {
		return Result{}, fmt.Errorf("timers: duration %v, interval %v, hot %d, idle %d: bad parameters",
			tp.Duration, tp.Interval, tp.Hot, tp.Idle)
	}
	idle := make([]*time.Timer, tp.Idle)
	noop := func() {}
	for i := range idle {
		idle[i] = time.AfterFunc(time.Hour+time.Duration(i)*time.Microsecond, noop)
	}
	defer func() {
		for _, t := range idle {
			t.Stop()
		}
	}()

	var fired atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	timers := make([]*time.Timer, tp.Hot)
	for i := range timers {
		wg.Add(1)
		timers[i] = time.AfterFunc(time.Hour, func() {
			if stop.Load() {
				wg.Done()
				return
			}
			fired.Add(1)
			timers[i].Reset(tp.Interval)
		})
	}
	before, cpu0 := mallocs(), CPUTime()
	start := time.Now()
	for _, t := range timers {
		t.Reset(tp.Interval)
	}
	time.Sleep(tp.Duration)
	n := fired.Load()
	cpu, elapsed := CPUTime()-cpu0, time.Since(start)
	allocs := mallocs() - before
	stop.Store(true)
	wg.Wait() // each hot timer fires once more and stops
	return Result{Events: n, Produced: n, Elapsed: elapsed, CPU: cpu, Mallocs: allocs, MallocsSet: true}, nil
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// Subscribe implements Transport: n idle runtime timers are the subscriptions.
func (c *Chan) Subscribe(n int) (SubResult, error) {
	if n <= 0 {
		return SubResult{}, fmt.Errorf("subscriptions %d: must be positive", n)
	}
	timers := make([]*time.Timer, n)
	noop := func() {}
	before := heapInUse()
	start := time.Now()
	for i := range timers {
		timers[i] = time.AfterFunc(time.Hour+time.Duration(i)*time.Microsecond, noop)
	}
	elapsed := time.Since(start)
	after := heapInUse()
	for _, t := range timers {
		t.Stop()
	}
	runtime.KeepAlive(timers)
	return SubResult{Subscriptions: n, Elapsed: elapsed, BytesPer: float64(after-before) / float64(n)}, nil
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// Priority implements Transport: an urgent channel the consumer always
// looks at first, and a low channel a flood goroutine fills flat out.
func (c *Chan) Priority(p Params, flood bool) (Result, error) {
	p, err := p.Normalized()
	if err != nil {
		return Result{}, err
	}
	if p.Rate <= 0 {
		return Result{}, fmt.Errorf("priority: needs a rate for the urgent events")
	}
	if p.MaxSamples <= 0 {
		p.MaxSamples = 1 << 20
	}
	urgent := make(chan chanEvent, 1024)
	low := make(chan chanEvent, chanCap)
	var stopFlood atomic.Bool
	floodDone := make(chan struct{})
	start := time.Now()
	if flood {
		go func() {
			defer close(floodDone)
			for i := uint64(0); !stopFlood.Load(); i++ {
				low <- chanEvent{seq: i}
			}
		}()
	} else {
		close(floodDone)
	}
	var produced uint64
	go func() {
		pc := pacer{start: start, nsPer: 1e9 / p.Rate, deadline: start.Add(p.Duration)}
		for p.Events == 0 || produced < p.Events {
			if !pc.next(produced, 1) {
				break
			}
			urgent <- chanEvent{seq: produced, ts: int64(time.Since(start)) + 1}
			produced++
		}
		close(urgent)
	}()

	samples := make([]int64, 0, p.MaxSamples)
	var res Result
	take := func(ev chanEvent) {
		if ev.seq != res.Events {
			res.Errors++
		}
		res.Events++
		if len(samples) < cap(samples) {
			samples = append(samples, int64(time.Since(start))-(ev.ts-1))
		}
	}
	for open := true; open; {
		select {
		case ev, ok := <-urgent:
			if !ok {
				open = false
				continue
			}
			take(ev)
			continue
		default:
		}
		select {
		case ev, ok := <-urgent:
			if !ok {
				open = false
				continue
			}
			take(ev)
		case <-low:
		}
	}
	res.Elapsed = time.Since(start)
	stopFlood.Store(true)
	// let a flood goroutine blocked on a full channel finish
	for {
		select {
		case <-low:
			continue
		case <-floodDone:
		}
		break
	}
	res.Produced, res.Samples = produced, samples
	return res, nil
}
