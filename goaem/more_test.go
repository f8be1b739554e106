package goaem

import (
	"context"
	"encoding/binary"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// A Go producer floods two classes with slot and inline payloads while
// the consumer waits, reads and releases: under -race this checks every
// shared access of the consumer path against the producer's (the heap ring
// is Go memory, so the race detector sees both).
func TestHeapProducerConsumerRace(t *testing.T) {
	r, k := newHeapRing(t, WithClasses(2), WithCQEntries(64), WithSlots(32), WithSlotSize(128))
	ctx := testCtx(t)
	const per = 20000
	var wg sync.WaitGroup
	for c, size := range []int{100, 24} { // class 0: slots; class 1: inline
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, k.produce(ctx, uint8(c), uint64(c), per, size))
		}()
	}
	next := [2]uint64{}
	batch := make([]Event, 32)
	for got := 0; got < 2*per; {
		n, err := r.Wait(ctx, batch, 1)
		require.NoError(t, err)
		for i := 0; i < n; i++ {
			ev := &batch[i]
			c := ev.Class()
			p := ev.Payload()
			require.Equal(t, next[c], binary.LittleEndian.Uint64(p), "class %d out of order", c)
			next[c]++
			ev.Release()
		}
		got += n
	}
	wg.Wait()
}

// Several goroutines wait on one ring at once: they read one at a time,
// every event is read exactly once and nobody sleeps through one.
func TestManyWaiters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithCQEntries(1024))
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		const waiters, total = 4, 400
		var got atomic.Int32
		seen := make([]atomic.Int32, total)
		var wg sync.WaitGroup
		wctx, stop := context.WithCancel(ctx)
		for w := 0; w < waiters; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				batch := make([]Event, 3)
				for {
					n, err := r.Wait(wctx, batch, 1)
					for i := 0; i < n; i++ {
						seen[binary.LittleEndian.Uint32(batch[i].Payload())].Add(1)
						batch[i].Release()
						got.Add(1)
					}
					if err != nil {
						return
					}
				}
			}()
		}
		var msg [4]byte
		for i := 0; i < total; i++ {
			binary.LittleEndian.PutUint32(msg[:], uint32(i))
			require.NoError(t, r.Post(r.Addr(1), msg[:], 0))
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the waiters go to sleep now and then
			}
		}
		require.Eventually(t, func() bool { return got.Load() == total }, 10*time.Second, time.Millisecond)
		stop()
		wg.Wait()
		for i := range seen {
			assert.Equal(t, int32(1), seen[i].Load(), "message %d", i)
		}
	})
}

// needCommands skips a test when the system lacks a command it runs (the
// VM's busybox may).
func needCommands(t *testing.T, names ...string) {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("no %s in $PATH", n)
		}
	}
}

func TestCloneMode(t *testing.T) {
	needCommands(t, "tr", "sh", "sleep", "yes")
	forEachBackend(t, func(t *testing.T, b testBackend) {
		var mu sync.Mutex
		errs := map[uint64]error{}
		r := b.open(t, WithErrorHandler(func(ev *Event, err error) {
			mu.Lock()
			errs[ev.Tag()] = err
			mu.Unlock()
		}))
		ctx := testCtx(t)
		upper := &Cloner{Path: "tr", Args: []string{"a-z", "A-Z"}}
		subs := []struct {
			channel uint32
			clone   *Cloner
		}{
			{1, upper},
			{2, &Cloner{Path: "sh", Args: []string{"-c", "echo doomed >&2; exit 3"}}},
			{3, &Cloner{Path: "sleep", Args: []string{"10"}, Timeout: 100 * time.Millisecond}},
			{4, &Cloner{Path: "yes", MaxOutput: 64}},
			{5, &Cloner{Path: "/nonexistent/program"}},
		}
		for _, s := range subs {
			_, err := r.Subscribe(Msg{Channel: s.channel}, SubOptions{Mode: ModeClone, Clone: s.clone, Tag: uint64(s.channel)})
			require.NoError(t, err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx, nil) }()

		resp, err := r.Call(ctx, r.Addr(1), []byte("shout this"))
		require.NoError(t, err)
		assert.Equal(t, "SHOUT THIS", string(resp))

		for _, ch := range []uint32{2, 3, 4, 5} {
			require.NoError(t, r.Post(r.Addr(ch), []byte("input"), 0))
		}
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(errs) == 4
		}, 10*time.Second, 5*time.Millisecond)
		stop()
		assert.ErrorIs(t, <-done, context.Canceled)
		mu.Lock()
		defer mu.Unlock()
		assert.ErrorIs(t, errs[2], ErrCloneExit)
		assert.ErrorContains(t, errs[2], "doomed", "stderr in the message")
		assert.ErrorIs(t, errs[3], ErrCloneTimeout)
		assert.ErrorIs(t, errs[4], ErrCloneOutput)
		assert.ErrorIs(t, errs[5], ErrCloneExit)
		var he *HandlerError
		if assert.ErrorAs(t, errs[3], &he) {
			assert.Equal(t, ModeClone, he.Mode)
		}
	})
}

func TestClonerRun(t *testing.T) {
	needCommands(t, "cat", "sleep")
	c := &Cloner{Path: "cat"}
	out, err := c.Run(context.Background(), []byte("same"), 16)
	require.NoError(t, err)
	assert.Equal(t, "same", string(out))
	_, err = c.Run(context.Background(), make([]byte, 17), 16)
	assert.ErrorIs(t, err, ErrCloneOutput)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = (&Cloner{Path: "sleep", Args: []string{"5"}}).Run(ctx, nil, 16)
	assert.Error(t, err, "a cancelled context stops the command")
}

func TestGeneratorControlAndStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)
		sub, err := r.Subscribe(Generator{Count: 100, PayloadLen: 16}, SubOptions{})
		require.NoError(t, err)
		waitN(t, ctx, r, 100, nil)
		// Final and released: the kernel side has forgotten it, its counts stay.
		st, err := sub.Stats()
		require.NoError(t, err)
		assert.Equal(t, Stats{Produced: 100, Delivered: 100}, st)
		assert.NoError(t, sub.Unsubscribe(), "after its final event: nothing to do")

		sub, err = r.Subscribe(Generator{Rate: 1000, Count: 0, PayloadLen: 16}, SubOptions{})
		require.NoError(t, err)
		waitN(t, ctx, r, 5, nil)
		st, err = sub.Stats()
		require.NoError(t, err)
		assert.Equal(t, st.Produced, st.Delivered+st.Backlog+st.Dropped, "%+v", st)
		assert.GreaterOrEqual(t, st.Delivered, uint64(5))
		require.NoError(t, sub.SetGenerator(Generator{Rate: 10, PayloadLen: 16}))
		require.NoError(t, sub.Unsubscribe())
		assert.NoError(t, sub.Unsubscribe(), "twice: nothing to do")
		assert.Error(t, sub.SetGenerator(Generator{Rate: 1}), "after unsubscribe")
		rs, err := r.Stats()
		require.NoError(t, err)
		assert.NotZero(t, rs.Refused[abi.RefuseID], "the refused ops were counted")
	})
}

// A subscription's counts outlive it: the kernel side forgets an ended
// subscription, goaem keeps the final counts it sent.
func TestFinalStats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)

		// A generator with a count ends by itself, events read and released.
		ended, err := r.Subscribe(Generator{Count: 300, Burst: 7, PayloadLen: 16}, SubOptions{})
		require.NoError(t, err)
		final := 0
		waitN(t, ctx, r, 300, func(ev *Event) {
			if ev.Final() {
				final++
			}
		})
		assert.Equal(t, 1, final, "one final event")
		assert.True(t, ended.Ended())
		st, err := ended.Stats()
		require.NoError(t, err, "stats after the generator ended")
		assert.Equal(t, Stats{Produced: 300, Delivered: 300}, st)
		assert.NoError(t, ended.Unsubscribe(), "unsubscribe after the end")
		assert.NoError(t, ended.Unsubscribe(), "and again")
		st2, err := ended.Stats()
		require.NoError(t, err)
		assert.Equal(t, st, st2, "final counts do not change")

		// Ended in the kernel, its events not read yet: Unsubscribe finds it
		// over (ENOENT there, nil here), Stats still has its counts.
		unread, err := r.Subscribe(Generator{Count: 10, PayloadLen: 16}, SubOptions{})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			rs, err := r.Stats()
			return err == nil && rs.Subscriptions == 0
		}, 10*time.Second, time.Millisecond, "the generator did not end")
		assert.NoError(t, unread.Unsubscribe())
		assert.NoError(t, unread.Unsubscribe())
		assert.True(t, unread.Ended())
		st, err = unread.Stats()
		require.NoError(t, err)
		assert.Equal(t, Stats{Produced: 10, Delivered: 10}, st)
		waitN(t, ctx, r, 10, nil) // they are still delivered

		// Unsubscribed while it runs: the answer's counts, backlog discarded.
		live, err := r.Subscribe(Generator{Rate: 2000, PayloadLen: 16}, SubOptions{})
		require.NoError(t, err)
		waitN(t, ctx, r, 5, nil)
		require.NoError(t, live.Unsubscribe())
		st, err = live.Stats()
		require.NoError(t, err, "stats after unsubscribe")
		assert.GreaterOrEqual(t, st.Delivered, uint64(5))
		assert.Zero(t, st.Backlog)
		assert.Equal(t, st.Produced, st.Delivered+st.Dropped, "%+v", st)
		assert.NoError(t, live.Unsubscribe(), "twice: nothing to do")
		assert.NoError(t, live.Unsubscribe(), "three times")
		st2, err = live.Stats()
		require.NoError(t, err)
		assert.Equal(t, st, st2)

		// Kept by goaem: readable after Close.
		require.NoError(t, r.Close())
		st2, err = live.Stats()
		require.NoError(t, err, "stats after Close")
		assert.Equal(t, st, st2)
		assert.NoError(t, live.Unsubscribe(), "after Close: nothing to do")
	})
}

func TestTimers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		if !b.timers {
			t.Skip("backend has no timer source")
		}
		r := b.open(t, WithClasses(2))
		ctx := testCtx(t)
		start := time.Now()
		once, err := r.Subscribe(Timer{First: 5 * time.Millisecond}, SubOptions{Tag: 1})
		require.NoError(t, err)
		periodic, err := r.Subscribe(Timer{First: 2 * time.Millisecond, Interval: 2 * time.Millisecond}, SubOptions{Tag: 2, Class: 1})
		require.NoError(t, err)
		var onceFired, ticks int
		batch := make([]Event, 8)
		for onceFired == 0 || ticks < 5 {
			n, err := r.Wait(ctx, batch, 1)
			require.NoError(t, err)
			for i := 0; i < n; i++ {
				ev := &batch[i]
				exp, now := ev.TimerExpirations()
				assert.GreaterOrEqual(t, exp, uint64(1))
				assert.NotZero(t, now)
				assert.Equal(t, uint8(abi.SrcTimer), ev.Source())
				switch ev.Tag() {
				case 1:
					onceFired++
					assert.True(t, ev.Final(), "a one-shot timer's event is final")
				case 2:
					ticks += int(exp)
					assert.Equal(t, 1, ev.Class())
				}
				ev.Release()
			}
		}
		assert.GreaterOrEqual(t, time.Since(start), 5*time.Millisecond)
		assert.Equal(t, 1, onceFired)
		assert.True(t, once.Ended())
		require.NoError(t, periodic.ResetTimer(time.Hour, time.Hour))
		require.NoError(t, periodic.Unsubscribe())
		assert.Error(t, periodic.ResetTimer(time.Millisecond, 0), "after unsubscribe")
	})
}

func TestOptionsValidate(t *testing.T) {
	for name, opt := range map[string]Option{
		"backend":     WithBackend(Backend(9)),
		"in flight":   WithMaxInFlight(0),
		"run batch":   WithRunBatch(0),
		"op timeout":  WithOpTimeout(0),
		"kernel spin": WithKernelWait(-time.Microsecond),
	} {
		_, err := Open(opt)
		assert.ErrorIs(t, err, syscall.EINVAL, name)
	}
	assert.Equal(t, "embedded", BackendEmbedded.String())
	assert.Equal(t, "spawn", ModeSpawn.String())
	a := MakeAddr(3, 4)
	assert.Equal(t, uint32(3), a.Ring())
	assert.Equal(t, uint32(4), a.Channel())
	assert.Equal(t, "3:4", a.String())
}

// Run is already reading when Subscribe is called: the first events'
// handlers see the subscription with its id.
func TestSubscribeWhileRunning(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		ctx := testCtx(t)
		ids := make(chan uint64, 64)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- r.Run(runCtx, func(ev *Event) error {
				if s := ev.Subscription(); s != nil {
					select {
					case ids <- s.ID():
					default:
					}
				}
				return nil
			})
		}()
		sub, err := r.Subscribe(Generator{Count: 32, PayloadLen: 8}, SubOptions{})
		require.NoError(t, err)
		for i := 0; i < 32; i++ {
			select {
			case id := <-ids:
				require.Equal(t, sub.ID(), id)
			case <-ctx.Done():
				t.Fatal("events did not arrive")
			}
		}
		stop()
		assert.ErrorIs(t, <-done, context.Canceled)
	})
}

func TestParseBackend(t *testing.T) {
	for _, b := range []Backend{BackendAuto, BackendKernel, BackendEmbedded} {
		got, err := ParseBackend(b.String())
		require.NoError(t, err)
		assert.Equal(t, b, got)
	}
	_, err := ParseBackend("bogus")
	assert.ErrorIs(t, err, syscall.EINVAL)
}
