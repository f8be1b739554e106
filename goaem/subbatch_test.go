//go:build cgo

package goaem

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// subscribeTimers subscribes n one-shot timers through Batches of per,
// timer i (tag i+1) due first+i*spread from now, and returns them.
func subscribeTimers(t testing.TB, r *Ring, n, per int, first, spread time.Duration) []*Subscription {
	subs := make([]*Subscription, 0, n)
	bt := r.NewBatch()
	for lo := 0; lo < n; lo += per {
		bt.Reset()
		for i := lo; i < min(lo+per, n); i++ {
			bt.Subscribe(Timer{First: first + time.Duration(i)*spread}, SubOptions{Tag: uint64(i + 1)})
		}
		require.NoError(t, bt.Submit(context.Background()), "subscribes from %d", lo)
		for i := range bt.Len() {
			s := bt.Subscription(i)
			require.NotNil(t, s, "subscription %d", lo+i)
			require.NotZero(t, s.ID(), "subscription %d has no id", lo+i)
			subs = append(subs, s)
		}
	}
	return subs
}

// A million timers subscribed through Batches all fire, each once, to the
// subscription its answer named; none is dropped and none outlives its
// event, on either side.
func TestBatchMillionTimersFire(t *testing.T) {
	n := 1_000_000
	// A tenth under the race detector and in the VM (-test.short there):
	// the embedded backend under TCG took 100 s of the 2 minutes.
	if raceEnabled || testing.Short() {
		n = 100_000
	}
	r, err := Open(WithBackend(BackendEmbedded), WithSQEntries(4096), WithCQEntries(1<<16),
		WithBacklogLimit(uint32(n)))
	require.NoError(t, err)
	defer r.Close()
	deadline := time.Now().Add(2 * time.Minute)
	// Due from 200 ms on, a million over a second: most fire while the
	// poller reads.
	subs := subscribeTimers(t, r, n, 1024, 200*time.Millisecond, time.Second/time.Duration(n))
	ids := make(map[uint64]bool, n)
	for i, s := range subs {
		require.False(t, ids[s.ID()], "subscription %d: id %#x given twice", i, s.ID())
		ids[s.ID()] = true
	}
	clear(ids)
	seen := make([]bool, n)
	got := 0
	batch := make([]Event, 512)
	for got < n && time.Now().Before(deadline) {
		k, err := r.Poll(batch)
		require.NoError(t, err)
		for i := range batch[:k] {
			ev := &batch[i]
			tag := ev.Tag()
			require.True(t, tag >= 1 && tag <= uint64(n), "event with tag %d", tag)
			require.False(t, seen[tag-1], "timer %d fired twice", tag)
			require.Equal(t, subs[tag-1], ev.Subscription(), "timer %d: event routed to another subscription", tag)
			require.True(t, ev.Final(), "a one-shot's event is its last")
			seen[tag-1] = true
			got++
			ev.Release()
		}
		if k == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	require.Equal(t, n, got, "timers fired before the deadline")
	st, err := r.Stats()
	require.NoError(t, err)
	assert.Zero(t, st.Dropped, "events dropped")
	for i, s := range subs {
		if !assert.True(t, s.Ended(), "timer %d fired but has not ended", i+1) {
			break
		}
	}
	for st.Subscriptions != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		st, err = r.Stats()
		require.NoError(t, err)
	}
	assert.Zero(t, st.Subscriptions, "subscriptions the kernel side still keeps")
	assert.Nil(t, r.subs.get(subs[0].handle), "goaem's table still holds an ended subscription")
}

// Idle subscriptions set up and torn down through Batches: every
// unsubscribe answered with its final counts, nothing left on either side,
// and the handles then stale: refused with ENOENT, not passed on to the
// subscriptions that reuse their table entries.
func TestBatchUnsubscribeStaleHandles(t *testing.T) {
	const n = 20_000
	r, err := Open(WithBackend(BackendEmbedded), WithSQEntries(1024))
	require.NoError(t, err)
	defer r.Close()
	subs := subscribeTimers(t, r, n, 1024, time.Hour, 0)
	bt := r.NewBatch()
	for _, s := range subs {
		bt.Unsubscribe(s)
	}
	require.NoError(t, bt.Submit(context.Background()))
	st, err := r.Stats()
	require.NoError(t, err)
	assert.Zero(t, st.Subscriptions, "subscriptions left on the kernel side")
	for i, s := range subs {
		require.True(t, s.Ended(), "subscription %d not ended", i)
		c, err := s.Stats()
		require.NoError(t, err)
		require.Equal(t, Stats{}, c, "subscription %d: final counts of a timer that never fired", i)
		require.Nil(t, r.subs.get(s.handle), "subscription %d still in goaem's table", i)
	}
	// The same entries, on both sides, for new subscriptions.
	fresh := subscribeTimers(t, r, n, 1024, time.Hour, 0)
	old := subs[n/2]
	err = old.ResetTimer(time.Millisecond, 0)
	require.ErrorIs(t, err, syscall.ENOENT, "a stale handle re-armed a timer")
	assert.Contains(t, err.Error(), "reset timer")
	require.NoError(t, old.Unsubscribe(), "unsubscribing an ended subscription again does nothing")
	_, err = old.Stats()
	require.NoError(t, err, "final counts stay readable")
	st, err = r.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(n), st.Subscriptions, "the stale handles touched the new subscriptions")
	for i, s := range fresh {
		require.False(t, s.Ended(), "new subscription %d ended", i)
	}
	// A batch entry for a subscription of another ring is refused, alone.
	other, err := Open(WithBackend(BackendEmbedded))
	require.NoError(t, err)
	defer other.Close()
	bt = other.NewBatch()
	bt.Unsubscribe(fresh[0])
	require.Error(t, bt.Submit(context.Background()))
	assert.False(t, fresh[0].Ended(), "a refused unsubscribe ended the subscription")
}

// What goaem keeps per idle subscription set up through a Batch (slab
// Subscriptions, the table's slots): within the design's 64 bytes.
func TestBatchSubscriptionGoBytes(t *testing.T) {
	const n = 100_000
	r, err := Open(WithBackend(BackendEmbedded), WithSQEntries(4096))
	require.NoError(t, err)
	defer r.Close()
	var before, after runtime.MemStats
	subs := make([]*Subscription, 0, n)
	runtime.GC()
	runtime.ReadMemStats(&before)
	bt := r.NewBatch()
	for lo := 0; lo < n; lo += 1024 {
		bt.Reset()
		for i := lo; i < min(lo+1024, n); i++ {
			bt.Subscribe(Timer{First: time.Hour}, SubOptions{})
		}
		require.NoError(t, bt.Submit(context.Background()))
		for i := range bt.Len() {
			subs = append(subs, bt.Subscription(i))
		}
	}
	bt = nil // the batch's own entries are not per subscription
	runtime.GC()
	runtime.ReadMemStats(&after)
	kept := (float64(after.HeapAlloc) - float64(before.HeapAlloc) - float64(cap(subs))*float64(unsafe.Sizeof(subs[0]))) / n
	t.Logf("goaem keeps %.1f B per idle subscription", kept)
	assert.LessOrEqual(t, kept, 64.0, "Go-side bytes per idle subscription")
	runtime.KeepAlive(subs)
}

// SubscribeTimer refuses what Subscribe refuses, entry by entry, and
// queues a timer without allocating (the Batch's slab of Subscriptions
// aside: one allocation per 1023 subscribes).
func TestBatchSubscribeTimer(t *testing.T) {
	r, err := Open(WithBackend(BackendEmbedded))
	require.NoError(t, err)
	defer r.Close()
	bt := r.NewBatch()
	bt.SubscribeTimer(Timer{}, SubOptions{})
	bt.SubscribeTimer(Timer{First: time.Hour}, SubOptions{Class: r.Classes()})
	ok := bt.SubscribeTimer(Timer{First: time.Hour}, SubOptions{Tag: 7})
	require.Error(t, bt.Submit(context.Background()), "two of three entries are invalid")
	assert.ErrorIs(t, bt.Err(0), syscall.EINVAL, "a timer without a first expiry")
	assert.ErrorIs(t, bt.Err(1), syscall.EINVAL, "a class the ring does not have")
	require.NoError(t, bt.Err(ok))
	s := bt.Subscription(ok)
	require.NotNil(t, s)
	assert.NotZero(t, s.ID(), "the answer names the subscription")
	assert.Equal(t, uint64(7), s.Tag())
	require.NoError(t, s.Unsubscribe())

	queue := func() {
		bt.Reset()
		for range 1024 {
			bt.SubscribeTimer(Timer{First: time.Hour}, SubOptions{Class: 1})
		}
	}
	queue() // the entries' memory, kept by Reset
	assert.LessOrEqual(t, testing.AllocsPerRun(10, queue), 1.0, "allocations per 1024 queued timers")
}

// BenchmarkBatchSubscribe: n idle timer subscriptions set up through
// Batches of 1024 on one goroutine (aembench's subscriptions row does the
// same on two), on a new ring each round; cpu-ns/sub is the whole
// process's CPU time (its GC and the backend's threads included).
func BenchmarkBatchSubscribe(b *testing.B) {
	const per = 1024
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := Open(WithBackend(BackendEmbedded))
				require.NoError(b, err)
				bt := r.NewBatch()
				cpu0 := processCPU(b)
				start := time.Now()
				for lo := 0; lo < n; lo += per {
					bt.Reset()
					for i := lo; i < min(lo+per, n); i++ {
						bt.SubscribeTimer(Timer{First: time.Hour + time.Duration(i)*time.Microsecond}, SubOptions{Class: 1})
					}
					require.NoError(b, bt.Submit(context.Background()))
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "subs/s")
				b.ReportMetric(float64(processCPU(b)-cpu0)/float64(n), "cpu-ns/sub")
				require.NoError(b, r.Close())
			}
		})
	}
}

// processCPU is the process's CPU time so far (every thread: the embedded
// backend's too), in ns: on a shared machine it says what the work cost
// where the wall clock says how the scheduler treated it.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// Subscribes of a Batch with the same handler share what they keep beside
// it; a subscription's final counts stay its own, and each event still
// reaches its own subscription's handler.
func TestBatchSharesHandler(t *testing.T) {
	r, err := Open(WithBackend(BackendEmbedded))
	require.NoError(t, err)
	defer r.Close()
	var a, b atomic.Int32
	onA := func(ev *Event) error { a.Add(1); return nil }
	onB := func(ev *Event) error { b.Add(1); return nil }
	bt := r.NewBatch()
	// A second away: the checks of sharing below come before any of them
	// ends, which gives it a subExt of its own for its final counts (a
	// slow guest took more than 1 ms from Submit to those checks).
	bt.Subscribe(Timer{First: time.Second}, SubOptions{Handler: onA})
	bt.Subscribe(Timer{First: time.Second}, SubOptions{Handler: onA})
	bt.Subscribe(Timer{First: time.Second}, SubOptions{Handler: onB})
	bt.Subscribe(Timer{First: time.Hour}, SubOptions{Handler: onB})
	bt.Subscribe(Timer{First: time.Hour}, SubOptions{Handler: onB, MaxInFlight: 2})
	require.NoError(t, bt.Submit(context.Background()))
	s := make([]*Subscription, bt.Len())
	for i := range s {
		s[i] = bt.Subscription(i)
	}
	assert.Same(t, s[0].loadExt(), s[1].loadExt(), "the same handler: one subExt")
	assert.NotSame(t, s[1].loadExt(), s[2].loadExt(), "another handler: its own")
	assert.Same(t, s[2].loadExt(), s[3].loadExt())
	assert.NotSame(t, s[3].loadExt(), s[4].loadExt(), "a bound of its own: its own subExt")
	assert.NotNil(t, s[4].loadExt().sem)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, nil) }()
	for (a.Load() < 2 || b.Load() < 1 || !s[0].Ended() || !s[1].Ended() || !s[2].Ended()) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	assert.EqualValues(t, 2, a.Load(), "events for the first handler")
	assert.EqualValues(t, 1, b.Load(), "events for the second handler")
	for i := range 3 {
		st, err := s[i].Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(1), st.Produced, "subscription %d's own final counts", i)
	}
	assert.Nil(t, s[3].extra().final, "the ended subscription's counts reached one that shares its handler")
	require.NoError(t, s[3].Unsubscribe())
	st, err := s[3].Stats()
	require.NoError(t, err)
	assert.Zero(t, st.Produced)
	assert.NotNil(t, s[3].extra().handler, "the handler survives the final counts")
}

// A submission's timer subscribes take their table entries a run at a
// time: with refusals among them and a count that is no multiple of a
// run, every accepted one is live under an id of its own, the ring counts
// exactly those, and the entries left over are free again for the next.
func TestBatchSubscribeRunsCountExactly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		if !b.timers {
			t.Skip("the test double has no timers")
		}
		r := b.open(t)
		const n = 203
		refused := func(i int) bool { return i%7 == 3 }
		subscribe := func() []*Subscription {
			bt := r.NewBatch()
			for i := range n {
				first := time.Hour + time.Duration(i)*time.Microsecond
				if refused(i) {
					first = 1<<62 + 1 // past the kernel side's bound: refused there, not in goaem
				}
				bt.SubscribeTimer(Timer{First: first}, SubOptions{Class: 1})
			}
			require.Error(t, bt.Submit(testCtx(t)), "some entries are refused")
			var subs []*Subscription
			for i := range n {
				if refused(i) {
					require.ErrorIs(t, bt.Err(i), syscall.EINVAL, "entry %d", i)
					continue
				}
				require.NoError(t, bt.Err(i), "entry %d", i)
				subs = append(subs, bt.Subscription(i))
			}
			return subs
		}
		count := func() uint64 {
			st, err := r.Stats()
			require.NoError(t, err)
			return st.Subscriptions
		}
		subs := subscribe()
		ids := map[uint64]bool{}
		for _, s := range subs {
			require.NotZero(t, s.ID())
			require.False(t, ids[s.ID()], "id %#x given twice", s.ID())
			ids[s.ID()] = true
		}
		assert.EqualValues(t, len(subs), count())

		bt := r.NewBatch()
		for _, s := range subs {
			bt.Unsubscribe(s)
		}
		require.NoError(t, bt.Submit(testCtx(t)))
		assert.Zero(t, count(), "every accepted subscription ended, no entry left taken")
		assert.Len(t, subscribe(), len(subs))
		assert.EqualValues(t, len(subs), count())
	})
}
