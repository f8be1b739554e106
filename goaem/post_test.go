package goaem

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// Several producers post a million events (Post and PostBatch) to one
// Msg subscription served by Run with default options: nothing is lost
// and each producer's events arrive in its order.
func TestPostManyProducersLosesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		const posters, batch = 4, 64
		total := 1_000_000
		if raceEnabled {
			total = 100_000
		}
		each := total / posters
		r := b.open(t)
		ctx := testCtx(t)
		next := make([]uint32, posters) // touched only by the one Run goroutine
		var got atomic.Int64
		sub, err := r.Subscribe(Msg{Channel: 7}, SubOptions{Handler: func(ev *Event) error {
			p := ev.Payload()
			g, seq := binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
			if seq != next[g] {
				return fmt.Errorf("poster %d: got %d, want %d", g, seq, next[g])
			}
			next[g]++
			got.Add(1)
			return nil
		}})
		require.NoError(t, err)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(runCtx, nil) }()

		// Bounded in time as well as count: a KASAN kernel under emulation
		// posts some hundred times slower; what was posted must all arrive.
		budget := time.Now().Add(8 * time.Second)
		posted := make([]int, posters)
		var wg sync.WaitGroup
		for g := range posters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bufs := make([][8]byte, batch)
				msgs := make([][]byte, batch)
				i := 0
				defer func() { posted[g] = i }()
				for i < each && time.Now().Before(budget) {
					n := 1
					if g%2 == 1 { // odd producers batch, even ones post one by one
						n = min(batch, each-i)
					}
					for k := range n {
						binary.LittleEndian.PutUint32(bufs[k][:], uint32(g))
						binary.LittleEndian.PutUint32(bufs[k][4:], uint32(i+k))
						msgs[k] = bufs[k][:]
					}
					var err error
					if n == 1 {
						err = r.PostContext(ctx, r.Addr(7), msgs[0], 0)
					} else {
						var took int
						took, err = r.PostBatch(ctx, r.Addr(7), msgs[:n], 0)
						if err == nil && took != n {
							err = fmt.Errorf("PostBatch took %d of %d without an error", took, n)
						}
					}
					if err != nil {
						t.Errorf("poster %d at %d: %v", g, i, err)
						return
					}
					i += n
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-done:
			require.NoError(t, err, "Run ended early")
		default:
		}
		sent := 0
		for _, n := range posted {
			sent += n
		}
		require.Positive(t, sent)
		require.Eventually(t, func() bool { return got.Load() == int64(sent) }, 20*time.Second, time.Millisecond,
			"got %d of %d", got.Load(), sent)
		stop()
		assert.ErrorIs(t, <-done, context.Canceled)
		st, err := sub.Stats()
		require.NoError(t, err)
		assert.Equal(t, Stats{Produced: uint64(sent), Delivered: uint64(sent)}, st)
		n, asyncErr := r.AsyncErrors()
		assert.Zero(t, n, "refused posts: %v", asyncErr)
	})
}

// With nobody reading, a full target makes TryPost answer ErrWouldBlock,
// PostContext wait until its deadline, and nothing is dropped; once the
// consumer reads, Post goes through.
func TestPostFullTargetRefusesNotDrops(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithCQEntries(64), WithBacklogLimit(128))
		sub, err := r.Subscribe(Msg{Channel: 3}, SubOptions{})
		require.NoError(t, err)
		msg := []byte("event")
		var err2 error
		sent := 0
		for ; sent < 10_000; sent++ {
			if err2 = r.TryPost(r.Addr(3), msg, 0); err2 != nil {
				break
			}
		}
		require.ErrorIs(t, err2, ErrWouldBlock)
		require.ErrorIs(t, err2, syscall.EAGAIN)
		require.Positive(t, sent)

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, r.PostContext(ctx, r.Addr(3), msg, 0), context.DeadlineExceeded)
		cctx, ccancel := context.WithCancel(context.Background())
		ccancel()
		require.ErrorIs(t, r.PostContext(cctx, r.Addr(3), msg, 0), context.Canceled)
		took, err := r.TryPostBatch(r.Addr(3), [][]byte{msg, msg}, 0)
		require.ErrorIs(t, err, ErrWouldBlock)
		require.Zero(t, took)

		st, err := sub.Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(sent), st.Produced)
		assert.Zero(t, st.Dropped)
		if b.name != "heap" {
			rs, err := r.Stats()
			require.NoError(t, err)
			assert.Positive(t, rs.Refused[abi.RefuseFull], "%+v", rs)
		}

		// A consumer makes room: a blocked Post completes.
		posted := make(chan error, 1)
		go func() { posted <- r.PostContext(testCtx(t), r.Addr(3), msg, 0) }()
		evs := make([]Event, 16)
		n, err := r.Poll(evs)
		require.NoError(t, err)
		require.Positive(t, n)
		for i := range evs[:n] {
			evs[i].Release()
		}
		require.NoError(t, r.Flush())
		require.NoError(t, <-posted)
		n2, asyncErr := r.AsyncErrors()
		assert.Zero(t, n2, "%v", asyncErr)
	})
}

// PostLossy lets a full target drop, and every drop is counted: what was
// sent is what was delivered, backlogged or dropped.
func TestPostLossyCountsDrops(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithCQEntries(64), WithBacklogLimit(128))
		sub, err := r.Subscribe(Msg{Channel: 4}, SubOptions{})
		require.NoError(t, err)
		const sent = 5000
		for i := 0; i < sent; i++ {
			require.NoError(t, r.PostLossy(r.Addr(4), []byte("lossy"), 0))
		}
		st, err := sub.Stats()
		require.NoError(t, err)
		assert.Equal(t, uint64(sent), st.Delivered+st.Backlog+st.Dropped, "%+v", st)
		assert.Positive(t, st.Dropped)
		n, _ := r.AsyncErrors()
		assert.Equal(t, st.Dropped, n, "every drop is reported to the poster's ring")
	})
}
