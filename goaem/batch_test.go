package goaem

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A batch mixing subscribes, posts, a call, an unsubscribe and bad entries
// goes in with few entries into the kernel side even through a tiny
// submission ring, and each entry gets its own result.
func TestBatchMixedResults(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		ctx := testCtx(t)
		r := b.open(t, WithSQEntries(4)) // smaller than the batch: submitted in pieces
		srv := b.open(t)
		_, err := srv.Subscribe(Msg{Channel: 9}, SubOptions{Handler: func(ev *Event) error {
			p := ev.Payload()
			for i := range p {
				p[i]++
			}
			return ev.Writeback(p)
		}})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		served := make(chan error, 1)
		go func() { served <- srv.Run(runCtx, nil) }()
		defer func() {
			stop()
			<-served
		}()
		old, err := r.Subscribe(Msg{Channel: 3}, SubOptions{})
		require.NoError(t, err)

		bt := r.NewBatch()
		subA := bt.Subscribe(Msg{Channel: 1}, SubOptions{Tag: 11})
		subB := bt.Subscribe(Msg{Channel: 2}, SubOptions{Tag: 22})
		dup := bt.Subscribe(Msg{Channel: 3}, SubOptions{}) // the channel is served: EEXIST
		badClass := bt.Subscribe(Msg{Channel: 4}, SubOptions{Class: 99})
		var posts []int
		for i := range 10 {
			posts = append(posts, bt.Post(r.Addr(1+uint32(i%2)), []byte{byte(i)}, 0))
		}
		nobody := bt.Post(r.Addr(77), []byte("x"), 0)
		tooBig := bt.Post(r.Addr(1), make([]byte, 1<<20), 0)
		resp := make([]byte, 8)
		call := bt.Call(srv.Addr(9), []byte{1, 2, 3}, resp, CallOptions{})
		unsub := bt.Unsubscribe(old)
		// Another ring's subscription is refused and left alone.
		other := srv
		otherSub, err := other.Subscribe(Msg{Channel: 10}, SubOptions{})
		require.NoError(t, err)
		foreign := bt.Unsubscribe(otherSub)
		require.Equal(t, 19, bt.Len())

		err = bt.Submit(ctx)
		require.Error(t, err, "some entries were bad")
		assert.Contains(t, err.Error(), "of 19 entries failed")

		sa, sb := bt.Subscription(subA), bt.Subscription(subB)
		require.NotNil(t, sa, "subscribe A: %v", bt.Err(subA))
		require.NotNil(t, sb, "subscribe B: %v", bt.Err(subB))
		assert.NotZero(t, sa.ID())
		assert.NotEqual(t, sa.ID(), sb.ID())
		assert.Equal(t, uint64(22), sb.Tag())
		if b.name != "heap" { // the test double has no per-channel check
			assert.Nil(t, bt.Subscription(dup))
			assert.ErrorIs(t, bt.Err(dup), syscall.EEXIST)
		}
		assert.ErrorIs(t, bt.Err(badClass), syscall.EINVAL)
		for _, i := range posts {
			assert.NoError(t, bt.Err(i), "post %d", i)
		}
		assert.ErrorIs(t, bt.Err(nobody), syscall.ENOENT, "a post to no subscriber is refused to its entry")
		assert.ErrorIs(t, bt.Err(tooBig), ErrTooLarge)
		if b.name != "heap" { // heap rings cannot reach each other
			n, err := bt.Reply(call)
			require.NoError(t, err)
			assert.Equal(t, []byte{2, 3, 4}, resp[:n])
		}
		assert.NoError(t, bt.Err(unsub))
		assert.True(t, old.Ended())
		assert.ErrorIs(t, bt.Err(foreign), syscall.EINVAL)
		assert.False(t, otherSub.Ended(), "another ring's subscription untouched")
		n0, _ := r.AsyncErrors()
		assert.Zero(t, n0, "refusals went to their entries, not to AsyncErrors")

		// Every post that succeeded arrives, each channel in order.
		got := map[uint64][]byte{}
		batch := make([]Event, 16)
		for total := 0; total < 10; {
			k, err := r.Wait(ctx, batch, 1)
			require.NoError(t, err)
			for i := range batch[:k] {
				got[batch[i].Tag()] = append(got[batch[i].Tag()], batch[i].Payload()[0])
				batch[i].Release()
			}
			total += k
		}
		assert.Equal(t, []byte{0, 2, 4, 6, 8}, got[11])
		assert.Equal(t, []byte{1, 3, 5, 7, 9}, got[22])

		// A second round: unsubscribes of the new ones, and one ended already.
		bt.Reset()
		u1, u2, again := bt.Unsubscribe(sa), bt.Unsubscribe(sb), bt.Unsubscribe(old)
		require.NoError(t, bt.Submit(ctx))
		for _, i := range []int{u1, u2, again} {
			assert.NoError(t, bt.Err(i))
		}
		st, err := sa.Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(5), st.Delivered, "final counts from the batched unsubscribe")
	})
}

// Producers each with a batch of their own post to one Msg subscription
// through a small ring and a small backlog, so that the submission ring
// fills and the target pushes back: every post is delivered or refused to
// its producer, and each producer's events arrive in its order.
func TestBatchManyProducersOrderAndNothingLost(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		t.Run("shared ring", func(t *testing.T) { testManyProducers(t, b, false) })
		if b.name != "heap" { // heap rings cannot reach each other
			t.Run("OpenProducer", func(t *testing.T) { testManyProducers(t, b, true) })
		}
	})
}

// testManyProducers: each producer posts through a Batch of its own, on
// the consumer's ring or (own) on a ring of its own from OpenProducer.
func testManyProducers(t *testing.T, b testBackend, own bool) {
	const producers, batchLen = 4, 100
	rounds := 200
	if raceEnabled {
		rounds = 40
	}
	ctx := testCtx(t)
	r := b.open(t, WithSQEntries(32), WithCQEntries(64), WithBacklogLimit(64))
	next := make([]uint32, producers)
	var got atomic.Int64
	_, err := r.Subscribe(Msg{Channel: 5}, SubOptions{Handler: func(ev *Event) error {
		p := ev.Payload()
		g, seq := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
		if g >= producers || seq != next[g] {
			return fmt.Errorf("producer %d: got %d, want %d", g, seq, next[g])
		}
		next[g]++
		got.Add(1)
		return nil
	}})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx, nil) }()

	var taken atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, producers)
	for g := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr := r
			if own {
				var err error
				if pr, err = r.OpenProducer(WithSQEntries(32)); err != nil {
					errs[g] = err
					return
				}
				defer pr.Close()
			}
			bt := pr.NewBatch()
			bufs := make([][8]byte, batchLen)
			seq := uint32(0)
			for range rounds {
				bt.Reset()
				for k := range batchLen {
					binary.LittleEndian.PutUint32(bufs[k][:], uint32(g))
					binary.LittleEndian.PutUint32(bufs[k][4:], seq+uint32(k))
					bt.Post(r.Addr(5), bufs[k][:], 0)
				}
				if err := bt.Submit(ctx); err != nil {
					errs[g] = err
					return
				}
				for k := range batchLen {
					if err := bt.Err(k); err != nil {
						errs[g] = err
						return
					}
				}
				seq += batchLen
				taken.Add(batchLen)
			}
		}()
	}
	wg.Wait()
	for g, err := range errs {
		require.NoError(t, err, "producer %d", g)
	}
	want := int64(producers * batchLen * rounds)
	require.Equal(t, want, taken.Load())
	deadline := time.Now().Add(15 * time.Second)
	for got.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Equal(t, want, got.Load(), "every post taken was delivered")
	st, err := r.Stats()
	require.NoError(t, err)
	assert.Zero(t, st.Dropped, "nothing dropped")
}

// A batch whose ctx ends while the target is full: what was taken is
// delivered, the rest carries the ctx's error, and nothing is left half
// done in the submission ring.
func TestBatchContextEndsWhileFull(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithCQEntries(8), WithBacklogLimit(8))
		_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, err)
		bt := r.NewBatch()
		for i := range 200 {
			bt.Post(r.Addr(1), []byte{byte(i)}, 0)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err = bt.Submit(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		ok := 0
		for i := range bt.Len() {
			if bt.Err(i) == nil {
				require.Equal(t, ok, i, "the entries taken are a prefix")
				ok++
			} else {
				require.ErrorIs(t, bt.Err(i), context.DeadlineExceeded)
			}
		}
		require.Positive(t, ok)
		require.Less(t, ok, 200)
		// Exactly the taken ones arrive, in order.
		batch := make([]Event, 256)
		seen := 0
		for range 100 {
			n, err := r.Poll(batch)
			require.NoError(t, err)
			for i := range batch[:n] {
				require.Equal(t, byte(seen), batch[i].Payload()[0])
				batch[i].Release()
				seen++
			}
			if seen == ok {
				break
			}
			require.NoError(t, r.Flush()) // the backlog comes in with an enter
		}
		assert.Equal(t, ok, seen)
		n, err := r.Poll(batch)
		require.NoError(t, err)
		assert.Zero(t, n, "nothing beyond the taken posts")
	})
}

// A batch on a closed ring fails every entry with ErrClosed; an empty
// batch submits nothing.
func TestBatchClosedAndEmpty(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		bt := r.NewBatch()
		require.NoError(t, bt.Submit(testCtx(t)))
		bt.Post(r.Addr(1), []byte("a"), 0)
		bt.Subscribe(Msg{Channel: 1}, SubOptions{})
		require.NoError(t, r.Close())
		err := bt.Submit(testCtx(t))
		require.ErrorIs(t, err, ErrClosed)
		for i := range bt.Len() {
			assert.True(t, errors.Is(bt.Err(i), ErrClosed))
		}
		assert.Nil(t, bt.Subscription(1))
	})
}

// Batches submitted by several goroutines at once through a small ring:
// an answer may be routed by another goroutine before its submitter has
// marked the entry taken, and must still reach it.
func TestBatchConcurrentSubscribes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		const workers, each = 4, 300
		r := b.open(t, WithSQEntries(16))
		ctx := testCtx(t)
		var wg sync.WaitGroup
		ids := make([][]uint64, workers)
		errs := make([]error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bt := r.NewBatch()
				for i := range each {
					bt.Subscribe(Msg{Channel: uint32(w*each + i + 1)}, SubOptions{})
				}
				if errs[w] = bt.Submit(ctx); errs[w] != nil {
					return
				}
				for i := range each {
					ids[w] = append(ids[w], bt.Subscription(i).ID())
				}
			}()
		}
		wg.Wait()
		seen := map[uint64]bool{}
		for w := range workers {
			require.NoError(t, errs[w], "worker %d", w)
			for _, id := range ids[w] {
				require.NotZero(t, id)
				require.False(t, seen[id], "id %#x twice", id)
				seen[id] = true
			}
		}
		assert.Len(t, seen, workers*each)
	})
}
