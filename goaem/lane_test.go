package goaem

import (
	"context"
	"encoding/binary"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// laneRing opens a ring with n lanes and a Msg subscription for them.
func laneRing(t *testing.T, b testBackend, n int, opts ...Option) (*Ring, *Subscription) {
	r := b.open(t, append([]Option{WithLanes(n)}, opts...)...)
	sub, err := r.Subscribe(Msg{Channel: 9}, SubOptions{Tag: 77})
	require.NoError(t, err)
	return r, sub
}

// laneRecord is producer g's k-th record: its id, its sequence number.
func laneRecord(buf []byte, g, k uint32) []byte {
	binary.LittleEndian.PutUint32(buf, g)
	binary.LittleEndian.PutUint32(buf[4:], k)
	return buf[:8]
}

// postedLane opens a lane of entries 8-byte records and has posted n
// records of producer 0 through it; buf is the producer's record buffer.
func postedLane(t *testing.T, r *Ring, sub *Subscription, entries uint32, n int) (*Lane, []byte) {
	l, err := r.OpenLane(sub, LaneOptions{Entries: entries, RecordSize: 8})
	require.NoError(t, err)
	buf := make([]byte, 8)
	for k := range n {
		require.NoError(t, l.TryPost(laneRecord(buf, 0, uint32(k))))
	}
	return l, buf
}

// orderCheck follows each producer's sequence.
type orderCheck struct {
	next []uint32
	got  int
	bad  int
}

func (o *orderCheck) see(t *testing.T, ev *Event) {
	p := ev.Payload()
	if !assert.Len(t, p, 8, "a lane event carries what was posted") {
		o.bad++
		return
	}
	g, k := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
	if g >= uint32(len(o.next)) || k != o.next[g] {
		o.bad++
	} else {
		o.next[g]++
	}
	o.got++
}

// Several producers, each on its lane, through a lane smaller than what
// they post and a reader that is slow at times: every record arrives, in
// its producer's order, as an event of the subscription.
func TestLaneManyProducersKeepOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		const producers, batch = 4, 16
		each := 20_000
		if raceEnabled {
			each = 3_000
		}
		r, sub := laneRing(t, b, producers)
		ctx := testCtx(t)
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		for g := range producers {
			l, err := r.OpenLane(sub, LaneOptions{Entries: 64, RecordSize: 8})
			require.NoError(t, err)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer l.Close()
				bufs := make([][]byte, batch)
				msgs := make([][]byte, batch)
				for i := range bufs {
					bufs[i] = make([]byte, 8)
				}
				for k := 0; k < each; {
					if k%3 == 0 { // single posts between the batches
						if err := l.Post(ctx, laneRecord(bufs[0], uint32(g), uint32(k))); err != nil {
							errs <- err
							return
						}
						k++
						continue
					}
					n := min(batch, each-k)
					for i := range n {
						msgs[i] = laneRecord(bufs[i], uint32(g), uint32(k+i))
					}
					if _, err := l.PostBatch(ctx, msgs[:n]); err != nil {
						errs <- err
						return
					}
					k += n
				}
			}()
		}
		o := orderCheck{next: make([]uint32, producers)}
		batchEv := make([]Event, 32)
		for o.got < producers*each && ctx.Err() == nil {
			n, err := r.Wait(ctx, batchEv, 1)
			require.NoError(t, err)
			for i := range batchEv[:n] {
				ev := &batchEv[i]
				assert.Equal(t, sub, ev.Subscription(), "a lane event belongs to its subscription")
				assert.Equal(t, uint64(77), ev.Tag())
				assert.Equal(t, uint8(abi.SrcMsg), ev.Source())
				o.see(t, ev)
				ev.Release()
			}
			if o.got%1000 < 32 {
				time.Sleep(100 * time.Microsecond) // a slow reader now and then: the lanes fill
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.Equal(t, producers*each, o.got, "every record arrived")
		assert.Zero(t, o.bad, "each producer's records in its order")
	})
}

// The reader sleeps between bursts, many times over: a producer's records
// always wake it (no lost wake-up), with Wait and with Run, sleeping in the
// netpoller or in the kernel side (WithKernelWait, which the lanes' kick
// reaches through a NOP).
func TestLaneWakesSleepingReader(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		rounds := 300
		if raceEnabled {
			rounds = 100
		}
		for _, mode := range []string{"wait", "run", "wait/kernel", "run/kernel"} {
			t.Run(mode, func(t *testing.T) {
				var opts []Option
				if strings.HasSuffix(mode, "/kernel") {
					opts = append(opts, WithKernelWait(0))
				}
				r, sub := laneRing(t, b, 1, opts...)
				l, err := r.OpenLane(sub, LaneOptions{Entries: 8})
				require.NoError(t, err)
				ctx := testCtx(t)
				got := make(chan int, 1)
				var seen atomic.Int64
				count := func(ev *Event) {
					ev.Release()
					if v := seen.Add(1); v%3 == 0 {
						got <- int(v)
					}
				}
				done := make(chan error, 1)
				go func() {
					if strings.HasPrefix(mode, "run") {
						done <- r.Run(ctx, func(ev *Event) error { count(ev); return nil })
						return
					}
					batch := make([]Event, 4)
					for ctx.Err() == nil {
						n, err := r.Wait(ctx, batch, 1)
						if err != nil {
							done <- err
							return
						}
						for i := range batch[:n] {
							count(&batch[i])
						}
					}
					done <- ctx.Err()
				}()
				buf := make([]byte, 8)
				for round := range rounds {
					if round%16 == 0 {
						time.Sleep(200 * time.Microsecond) // the reader is surely asleep
					}
					for k := range 3 {
						require.NoError(t, l.Post(ctx, laneRecord(buf, 0, uint32(3*round+k))))
					}
					select {
					case v := <-got:
						require.Equal(t, 3*(round+1), v, "round %d: the burst arrived whole", round)
					case <-ctx.Done():
						t.Fatalf("round %d: the burst never woke the reader", round)
					}
				}
				require.NoError(t, r.Close())
				assert.ErrorIs(t, <-done, ErrClosed)
			})
		}
	})
}

// A full lane: TryPost says EAGAIN, Post waits for the reader (or its
// context), a lossy lane counts what it drops.
func TestLaneFullBackPressure(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 2)
		l, buf := postedLane(t, r, sub, 8, 8)
		err := l.TryPost(laneRecord(buf, 0, 8))
		assert.ErrorIs(t, err, ErrLaneFull)
		assert.ErrorIs(t, err, syscall.EAGAIN)
		short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		assert.ErrorIs(t, l.Post(short, buf), context.DeadlineExceeded, "a full lane holds Post until its context ends")
		cancel()

		posted := make(chan error, 1)
		go func() { posted <- l.Post(testCtx(t), laneRecord(buf, 0, 8)) }()
		select {
		case err := <-posted:
			t.Fatalf("Post into a full lane returned %v before the reader made room", err)
		case <-time.After(20 * time.Millisecond):
		}
		o := orderCheck{next: make([]uint32, 1)}
		batch := make([]Event, 16)
		n, err := r.Poll(batch)
		require.NoError(t, err)
		for i := range batch[:n] {
			o.see(t, &batch[i])
		}
		require.NoError(t, <-posted, "the reader's room wakes the waiting producer")
		n, err = r.Poll(batch)
		require.NoError(t, err)
		for i := range batch[:n] {
			o.see(t, &batch[i])
		}
		assert.Equal(t, 9, o.got)
		assert.Zero(t, o.bad)

		lossy, err := r.OpenLane(sub, LaneOptions{Entries: 4, Lossy: true})
		require.NoError(t, err)
		for range 6 {
			require.NoError(t, lossy.TryPost(buf))
		}
		msgs := [][]byte{buf, buf, buf}
		k, err := lossy.PostBatch(testCtx(t), msgs)
		require.NoError(t, err)
		assert.Equal(t, 3, k)
		assert.Equal(t, uint64(5), lossy.Dropped(), "a lossy lane counts each record it drops")
		n, err = r.Poll(batch)
		require.NoError(t, err)
		assert.Equal(t, 4, n, "what the lossy lane took arrives")
	})
}

// A producer that scribbles on its lane (huge lengths, flags, a tail far
// ahead) gets its bad records counted and skipped; good ones still arrive,
// and nothing outside the lane is touched.
func TestLaneMalformedRecords(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 1)
		l, buf := postedLane(t, r, sub, 8, 4)
		rec := func(i uint32) *abi.LaneRec { return (*abi.LaneRec)(unsafe.Pointer(&l.recs[i*l.stride])) }
		rec(1).Len = 1 << 30 // past the record size
		rec(2).Flags = 5     // flags must be zero
		batch := make([]Event, 16)
		var payloads [][]byte
		for range 4 {
			n, err := r.Poll(batch)
			require.NoError(t, err)
			for i := range batch[:n] {
				payloads = append(payloads, append([]byte(nil), batch[i].Payload()...))
				batch[i].Release()
			}
		}
		require.Len(t, payloads, 2, "records 0 and 3 arrive, 1 and 2 are refused")
		assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(payloads[0][4:]))
		assert.Equal(t, uint32(3), binary.LittleEndian.Uint32(payloads[1][4:]))
		assert.Equal(t, uint64(2), l.Malformed())

		// A tail scribbled far ahead: nothing is read from the lane, and
		// the scribble is counted; a sane tail again, and reading goes on.
		atomic.StoreUint32(&l.ctl.Tail, l.tail+1<<20)
		n, err := r.Poll(batch)
		require.NoError(t, err)
		assert.Zero(t, n, "no record of a lane whose tail no producer could have written")
		assert.Equal(t, uint64(3), l.Malformed())
		require.NoError(t, l.TryPost(laneRecord(buf, 0, 4))) // publishes the producer's own tail
		n, err = r.Poll(batch)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		assert.Equal(t, uint32(4), binary.LittleEndian.Uint32(batch[0].Payload()[4:]))
		assert.NoError(t, r.Close())
	})
}

// Closing a lane with records pending delivers them, then frees its slot;
// closing the ring ends a producer waiting for room.
func TestLaneTeardown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 1)
		l, buf := postedLane(t, r, sub, 4, 3)
		require.NoError(t, l.Close())
		require.NoError(t, l.Close(), "closing twice does nothing")
		assert.ErrorIs(t, l.TryPost(buf), ErrClosed)
		_, err := r.OpenLane(sub, LaneOptions{})
		assert.ErrorIs(t, err, syscall.ENOSPC, "the closed lane holds its slot until drained")
		batch := make([]Event, 8)
		n, err := r.Poll(batch)
		require.NoError(t, err)
		assert.Equal(t, 3, n, "records posted before Close arrive")
		_, err = r.Poll(batch) // finds the lane drained and closed
		require.NoError(t, err)

		l2, err := r.OpenLane(sub, LaneOptions{Entries: 2, RecordSize: 8})
		require.NoError(t, err, "a drained lane's slot takes a new lane")
		require.NoError(t, l2.TryPost(buf))
		require.NoError(t, l2.TryPost(buf))
		posted := make(chan error, 1)
		go func() { posted <- l2.Post(testCtx(t), buf) }()
		time.Sleep(10 * time.Millisecond)
		require.NoError(t, r.Close())
		assert.ErrorIs(t, <-posted, ErrClosed, "Close ends a producer waiting for room")
		assert.ErrorIs(t, l2.TryPost(buf), ErrClosed)
	})
}

// When a lane's subscription ends, nothing in the lane is lost untold: the
// records found there are counted in Dropped, a call among them is
// answered EPIPE, posts and calls answer EPIPE from then on, a producer
// waiting for room stops, and the lane keeps its slot until its producer
// closes it.
func TestLaneSubscriptionEnded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 1)
		l, buf := postedLane(t, r, sub, 4, 2)
		called := make(chan error, 1)
		go func() {
			_, err := l.Call(testCtx(t), []byte("ping"), make([]byte, 8))
			called <- err
		}()
		// The call's record is the third; the lane's tail says it is there.
		require.Eventually(t, func() bool { return atomic.LoadUint32(&l.ctl.Tail) == 3 }, 10*time.Second, time.Millisecond)
		require.NoError(t, sub.Unsubscribe())

		batch := make([]Event, 8)
		n, err := r.Poll(batch)
		require.NoError(t, err)
		assert.Zero(t, n, "records of an ended subscription are not delivered")
		assert.EqualValues(t, 3, l.Dropped(), "the two posts and the call, counted")
		err = <-called
		assert.ErrorIs(t, err, syscall.EPIPE, "the call in the lane is answered")
		assert.ErrorIs(t, l.TryPost(buf), syscall.EPIPE)
		assert.ErrorIs(t, l.Post(testCtx(t), buf), syscall.EPIPE)
		_, err = l.Call(testCtx(t), buf, buf)
		assert.ErrorIs(t, err, syscall.EPIPE)
		assert.EqualValues(t, 3, l.Dropped(), "refused posts are the producer's to count")

		other, err := r.Subscribe(Msg{Channel: 10}, SubOptions{})
		require.NoError(t, err)
		_, err = r.OpenLane(other, LaneOptions{})
		assert.ErrorIs(t, err, syscall.ENOSPC, "the lane keeps its slot while its producer holds it")
		require.NoError(t, l.Close())
		_, err = r.Poll(batch) // finds it closed and empty
		require.NoError(t, err)
		l2, err := r.OpenLane(other, LaneOptions{Entries: 2, RecordSize: 8})
		require.NoError(t, err, "a closed lane's slot takes a new lane")
		require.NoError(t, l2.TryPost(buf))
		n, err = r.Poll(batch)
		require.NoError(t, err)
		assert.Equal(t, 1, n, "the new lane delivers")
		assert.Same(t, other, batch[0].Subscription())
		batch[0].Release()
	})
}

// A producer waiting for room in a full lane stops when the lane's
// subscription ends and the reader finds it so.
func TestLaneSubscriptionEndedWakesWaitingProducer(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 1)
		l, buf := postedLane(t, r, sub, 2, 2)
		posted := make(chan error, 1)
		go func() { posted <- l.Post(testCtx(t), buf) }()
		require.Eventually(t, func() bool {
			return atomic.LoadUint32(&l.ctl.ProdFlags)&abi.LanePWaiting != 0
		}, 10*time.Second, time.Millisecond, "the producer sleeps for room")
		require.NoError(t, sub.Unsubscribe())
		_, err := r.Poll(make([]Event, 4))
		require.NoError(t, err)
		assert.ErrorIs(t, <-posted, syscall.EPIPE)
		assert.EqualValues(t, 2, l.Dropped())
	})
}

// Attaching is refused past the lane count, to another source's
// subscription, for records larger than an inline event.
func TestLaneAttachRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		plain := b.open(t)
		psub, err := plain.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		_, err = plain.OpenLane(psub, LaneOptions{})
		assert.ErrorIs(t, err, syscall.ENOSPC, "a ring without WithLanes has no lane")

		r, sub := laneRing(t, b, 1)
		_, err = r.OpenLane(psub, LaneOptions{})
		assert.ErrorIs(t, err, syscall.EINVAL, "another ring's subscription")
		_, err = r.OpenLane(sub, LaneOptions{RecordSize: abi.LaneMaxRecord + 1})
		assert.ErrorIs(t, err, syscall.EINVAL)
		_, err = r.OpenLane(sub, LaneOptions{Entries: abi.LaneMaxEntries + 1})
		assert.ErrorIs(t, err, syscall.EINVAL)
		l, err := r.OpenLane(sub, LaneOptions{RecordSize: 8})
		require.NoError(t, err)
		assert.ErrorIs(t, l.TryPost(make([]byte, 9)), ErrTooLarge)
		_, err = r.OpenLane(sub, LaneOptions{})
		assert.ErrorIs(t, err, syscall.ENOSPC, "past the lane count")

		batch := make([]Event, 2)
		require.NoError(t, l.TryPost([]byte("hi")))
		n, err := r.Poll(batch)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		assert.Error(t, batch[0].Writeback(nil), "a lane event takes no writeback")
		batch[0].Release()

		require.NoError(t, sub.Unsubscribe())
		_, err = r.OpenLane(sub, LaneOptions{})
		assert.ErrorIs(t, err, syscall.EINVAL, "an ended subscription")
	})
	cfg := defaultConfig()
	WithLanes(abi.MaxLanes + 1)(&cfg)
	assert.ErrorIs(t, cfg.validate(), syscall.EINVAL)
}

// Posting through a lane and reading with Poll allocate nothing.
func TestLaneAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r, sub := laneRing(t, b, 1)
		l, err := r.OpenLane(sub, LaneOptions{Entries: 64})
		require.NoError(t, err)
		ctx := testCtx(t)
		buf := make([]byte, 32)
		msgs := [][]byte{buf, buf, buf, buf}
		batch := make([]Event, 8)
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := l.PostBatch(ctx, msgs); err != nil {
				panic(err)
			}
			if err := l.Post(ctx, buf); err != nil {
				panic(err)
			}
			n, _ := r.Poll(batch)
			for i := range batch[:n] {
				batch[i].Release()
			}
		})
		assert.Zero(t, allocs)
	})
}

// cpuTime is the process's user and system time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// Producers that post and close at once, many times over, while the
// reader polls: a lane is detached only once its last record is read.
func TestLaneCloseRacesReader(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		rounds := 400
		if raceEnabled {
			rounds = 100
		}
		const producers = 3
		r, sub := laneRing(t, b, producers)
		ctx := testCtx(t)
		batch := make([]Event, 64)
		for round := range rounds {
			var wg sync.WaitGroup
			for g := range producers {
				l, err := r.OpenLane(sub, LaneOptions{Entries: 16, RecordSize: 8})
				require.NoError(t, err)
				wg.Add(1)
				go func() {
					defer wg.Done()
					b := make([]byte, 8)
					for k := range 5 {
						if err := l.Post(ctx, laneRecord(b, uint32(g), uint32(k))); err != nil {
							return // the test failed and closed the ring
						}
					}
					_ = l.Close()
				}()
			}
			got := 0
			for got < 5*producers && ctx.Err() == nil {
				n, err := r.Poll(batch)
				require.NoError(t, err)
				got += n
			}
			wg.Wait()
			require.Equal(t, 5*producers, got, "round %d: every record of the closed lanes arrived", round)
			// The lanes detach as the reader finds them drained.
			for attached := producers; attached > 0 && ctx.Err() == nil; {
				_, err := r.Poll(batch)
				require.NoError(t, err)
				attached = 0
				for i := range producers {
					if r.lanes.lanes[i].Load() != nil {
						attached++
					}
				}
			}
		}
	})
}

// ReadLanes hands the records over in place: several producers, a max
// smaller than what waits, every record once and in its producer's order,
// malformed ones skipped and counted, no allocation, and the reader role
// taken as Poll takes it.
func TestLaneReadInPlace(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		const producers, each = 3, 40
		r, sub := laneRing(t, b, producers)
		lanes := make([]*Lane, producers)
		buf := make([]byte, 8)
		for g := range lanes {
			l, err := r.OpenLane(sub, LaneOptions{Entries: 64, RecordSize: 8})
			require.NoError(t, err)
			lanes[g] = l
			for k := range each {
				require.NoError(t, l.TryPost(laneRecord(buf, uint32(g), uint32(k))))
			}
		}
		// Record 5 of producer 1 claims more than the record holds.
		(*abi.LaneRec)(unsafe.Pointer(&lanes[1].recs[5*lanes[1].stride])).Len = 1 << 30

		next := make([]uint32, producers)
		var got, bad int
		visit := func(s *Subscription, data []byte) {
			if s != sub || len(data) != 8 {
				bad++
				return
			}
			g, k := binary.LittleEndian.Uint32(data), binary.LittleEndian.Uint32(data[4:])
			if g == 1 && next[g] == 5 {
				next[g]++ // the malformed one
			}
			if g >= producers || k != next[g] {
				bad++
				return
			}
			next[g]++
			got++
		}
		for range 20 {
			n, err := r.ReadLanes(16, visit)
			require.NoError(t, err)
			require.LessOrEqual(t, n, 16)
		}
		assert.Zero(t, bad)
		assert.Equal(t, producers*each-1, got, "every record but the malformed one, once")
		assert.Equal(t, uint64(1), lanes[1].Malformed())

		if !raceEnabled { // the race detector allocates
			ctx := testCtx(t)
			allocs := testing.AllocsPerRun(100, func() {
				if err := lanes[0].Post(ctx, laneRecord(buf, 0, next[0])); err != nil {
					panic(err)
				}
				if n, _ := r.ReadLanes(16, visit); n != 1 {
					panic("one record")
				}
			})
			assert.Zero(t, allocs)
			assert.Zero(t, bad)
		}

		r.rd.role.Store(true) // another reader
		_, err := r.ReadLanes(16, visit)
		assert.ErrorIs(t, err, ErrConcurrentRead)
		r.rd.role.Store(false)
		assert.NoError(t, r.Close())
		_, err = r.ReadLanes(16, visit)
		assert.ErrorIs(t, err, ErrClosed)
	})
}
