//go:build cgo

package goaem

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// sqPollBackends opens rings on the backends that serve a submission
// poller: the embedded one, and the module where it is loaded.
func sqPollBackends(t *testing.T, f func(t *testing.T, open func(t testing.TB, opts ...Option) *Ring)) {
	for _, b := range testBackends {
		if b.name == "heap" {
			continue // the test double has no poller
		}
		t.Run(b.name, func(t *testing.T) { f(t, b.open) })
	}
}

// receive counts the Msg events of a Run on rx and checks their order.
func receive(t *testing.T, rx *Ring, channel uint32) (got *atomic.Int64, stop func()) {
	got = new(atomic.Int64)
	var next uint64
	_, err := rx.Subscribe(Msg{Channel: channel}, SubOptions{Handler: func(ev *Event) error {
		if seq := binary.LittleEndian.Uint64(ev.Payload()); seq != next {
			t.Errorf("event %d arrived as number %d", seq, next)
		}
		next++
		got.Add(1)
		return nil
	}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- rx.Run(ctx, nil) }()
	return got, func() {
		cancel()
		if err := <-done; err != nil {
			require.ErrorIs(t, err, context.Canceled)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "%s: not within 10s", what)
		time.Sleep(time.Millisecond)
	}
}

// While the poller is busy, posts (one by one, in batches, and with
// payloads in send slots) reach their target in order with no entry into
// the kernel side.
func TestSQPollBusyPostsWithoutEnters(t *testing.T) {
	sqPollBackends(t, func(t *testing.T, open func(t testing.TB, opts ...Option) *Ring) {
		const posts, batch = 2000, 16
		rx := open(t, WithCQEntries(4096))
		got, stop := receive(t, rx, 3)
		defer stop()
		tx := open(t, WithSQPoll(10*time.Second), WithSQEntries(64))
		require.True(t, tx.sq.polled, "features %#x lack FeatSQPoll", tx.features)

		before := tx.Enters()
		var buf [8]byte
		big := make([]byte, 100) // beyond the SQE: a send slot
		msgs := make([][]byte, batch)
		for i := range msgs {
			msgs[i] = make([]byte, 8)
		}
		seq := uint64(0)
		for seq < posts {
			switch seq % 3 {
			case 0:
				binary.LittleEndian.PutUint64(buf[:], seq)
				require.NoError(t, tx.Post(rx.Addr(3), buf[:], 0))
				seq++
			case 1:
				for i := range msgs {
					binary.LittleEndian.PutUint64(msgs[i], seq+uint64(i))
				}
				n, err := tx.PostBatch(testCtx(t), rx.Addr(3), msgs, 0)
				require.NoError(t, err)
				require.Equal(t, batch, n)
				seq += batch
			default:
				binary.LittleEndian.PutUint64(big, seq)
				require.NoError(t, tx.Post(rx.Addr(3), big, 0))
				seq++
			}
		}
		waitFor(t, "all posts delivered", func() bool { return got.Load() == int64(seq) })
		assert.Equal(t, before, tx.Enters(), "entries into the kernel side for %d posts to a busy poller", seq)
		count, aerr := tx.AsyncErrors()
		assert.Zero(t, count, "refusals: %v", aerr)
	})
}

// After its idle time the poller sleeps (NEED_WAKEUP); the next post
// wakes it with one entry and is delivered; the flag is then clear.
func TestSQPollSleepsAndWakes(t *testing.T) {
	sqPollBackends(t, func(t *testing.T, open func(t testing.TB, opts ...Option) *Ring) {
		rx := open(t)
		got, stop := receive(t, rx, 4)
		defer stop()
		tx := open(t, WithSQPoll(20*time.Millisecond))
		asleep := func() bool { return atomic.LoadUint32(tx.sq.kflags)&abi.SQFNeedWakeup != 0 }
		var buf [8]byte
		for round := range 3 {
			waitFor(t, "NEED_WAKEUP after the idle time", asleep)
			before := tx.Enters()
			binary.LittleEndian.PutUint64(buf[:], uint64(round))
			require.NoError(t, tx.Post(rx.Addr(4), buf[:], 0))
			assert.Equal(t, before+1, tx.Enters(), "round %d: one entry wakes the poller", round)
			waitFor(t, "the post after the wake-up delivered", func() bool { return got.Load() == int64(round+1) })
		}
	})
}

// A bad idle time is refused before any ring is made; closing a ring
// whose poller runs or sleeps returns.
func TestSQPollOptionsAndClose(t *testing.T) {
	for _, idle := range []time.Duration{-time.Millisecond, (abi.MaxSQIdleMS + 1) * time.Millisecond} {
		_, err := Open(WithBackend(BackendEmbedded), WithSQPoll(idle))
		require.ErrorIs(t, err, syscall.EINVAL, "idle %v", idle)
	}
	sqPollBackends(t, func(t *testing.T, open func(t testing.TB, opts ...Option) *Ring) {
		r := open(t, WithSQPoll(0))
		require.NoError(t, r.Close()) // running
		r = open(t, WithSQPoll(time.Millisecond))
		waitFor(t, "NEED_WAKEUP", func() bool { return atomic.LoadUint32(r.sq.kflags)&abi.SQFNeedWakeup != 0 })
		require.NoError(t, r.Close()) // asleep
	})
}

// Subscribes submitted in batches to a polled ring are answered by the
// poller's thread while Submit sleeps for them: every batch gets all its
// answers, each Submit with a context of its own (whose cancellation, as
// it returns, must not blind the next one's sleep: TestPollFileLateNudge).
func TestSQPollBatchSubscribesAnswered(t *testing.T) {
	sqPollBackends(t, func(t *testing.T, open func(t testing.TB, opts ...Option) *Ring) {
		r := open(t, WithSQPoll(50*time.Millisecond))
		const batches, per = 64, 512
		bt := r.NewBatch()
		for k := range batches {
			bt.Reset()
			for i := range per {
				bt.SubscribeTimer(Timer{First: time.Hour + time.Duration(k*per+i)*time.Microsecond}, SubOptions{Class: 1})
			}
			ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
			err := bt.Submit(ctx)
			cancel()
			require.NoError(t, err, "batch %d", k)
			for i := range per {
				require.NotZero(t, bt.Subscription(i).ID(), "batch %d entry %d", k, i)
			}
		}
		st, err := r.Stats()
		require.NoError(t, err)
		assert.EqualValues(t, batches*per, st.Subscriptions)
	})
}
