package aemt_test

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/bench/aemt"
	"github.com/aem-dev/aem/bench/peers"
)

func open(t *testing.T) peers.Transport {
	t.Helper()
	tr, err := aemt.Open("embedded")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// AEM moves exactly N events, in order, losing none, whether they come
// from the generator or from posting goroutines.
func TestStreamMovesEveryEvent(t *testing.T) {
	cases := []struct {
		name      string
		producers int
		batch     int
		payload   int
		busy      bool
		sqpoll    bool
		path      string
	}{
		{"generator/busy", 1, 64, peers.DefaultPayload, true, false, ""},
		{"generator/blocking", 1, 1, peers.DefaultPayload, false, false, ""},
		{"generator/slots", 1, 16, 200, true, false, ""},
		{"fanin3", 3, 1, peers.DefaultPayload, true, false, ""},
		{"fanin4/lane", 4, 64, peers.DefaultPayload, true, false, peers.FanInLane},
		{"fanin3/sq", 3, 1, peers.DefaultPayload, true, false, peers.FanInSQ},
		{"fanin2/slots", 2, 16, 200, true, false, peers.FanInLane}, // too large for a lane: the SQ path
		{"fanin2/sqpoll", 2, 64, peers.DefaultPayload, true, true, ""},
		{"fanin1/sqpoll", 1, 16, peers.DefaultPayload, true, true, ""},
	}
	const n = 20000
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := open(t).Stream(peers.Params{Events: n, Duration: 30 * time.Second, Batch: tc.batch,
				Payload: tc.payload, Producers: tc.producers, Busy: tc.busy, SQPoll: tc.sqpoll, FanInPath: tc.path})
			require.NoError(t, err)
			assert.Zero(t, res.Errors, "out of order or corrupted")
			assert.Zero(t, res.Lost(), "lost")
			switch {
			case tc.sqpoll:
				// Producers enter only to wake a poller that slept (at
				// the start, or when the scheduler of a loaded machine
				// held a producer past the idle time): far fewer than
				// the one enter per batch they make without it.
				var perEvent float64
				_, err := fmt.Sscanf(res.Notes, "path=sq, %f enters/event", &perEvent)
				require.NoError(t, err, "notes %q", res.Notes)
				assert.Less(t, perEvent, 1/(10*float64(tc.batch)), "producers on busy pollers enter only to wake them")
			case tc.producers > 1 && tc.path != peers.FanInSQ && tc.payload == peers.DefaultPayload:
				assert.Equal(t, "path=lane", res.Notes)
			case tc.producers > 1:
				assert.Contains(t, res.Notes, "path=sq")
			}
			if tc.producers > 1 || tc.sqpoll {
				// posts past the backlog bound are dropped, and counted
				assert.Equal(t, uint64(n), res.Events+res.Dropped, "delivered + dropped")
				return
			}
			assert.Equal(t, uint64(n), res.Events, "consumed")
			assert.Zero(t, res.Dropped, "the generator waits for room")
		})
	}
}

// The remote-lane path needs the module: the embedded backend refuses it
// with EOPNOTSUPP, and nothing is counted as moved.
func TestFanInRemoteLanesNeedTheModule(t *testing.T) {
	res, err := open(t).Stream(peers.Params{Events: 1000, Duration: 10 * time.Second, Batch: 16,
		Payload: peers.DefaultPayload, Producers: 2, Busy: true, FanInPath: peers.FanInRemote})
	require.ErrorIs(t, err, syscall.EOPNOTSUPP)
	assert.Zero(t, res.Events)
}

// A run bounded by time stops the generator and drains the ring.
func TestStreamStopsAtDeadline(t *testing.T) {
	res, err := open(t).Stream(peers.Params{Duration: 100 * time.Millisecond, Batch: 64,
		Payload: peers.DefaultPayload, Busy: true})
	require.NoError(t, err)
	assert.Positive(t, res.Events)
	assert.Zero(t, res.Errors)
	assert.Less(t, res.Elapsed, 5*time.Second)
}

func TestCallRoundTrips(t *testing.T) {
	for _, busy := range []bool{false, true} {
		res, err := open(t).Call(peers.Params{Events: 300, Duration: 20 * time.Second,
			Payload: peers.DefaultPayload, Busy: busy, SampleEvery: 10})
		require.NoError(t, err)
		assert.Equal(t, uint64(300), res.Events)
		assert.Zero(t, res.Errors, "replies carry the handler's change")
		assert.Len(t, res.Samples, 30)
	}
}

func TestTimersPrioritySubscribe(t *testing.T) {
	tr := open(t)
	res, err := tr.Timers(peers.TimerParams{Hot: 100, Idle: 1000, Interval: time.Millisecond, Duration: 50 * time.Millisecond})
	require.NoError(t, err)
	assert.Positive(t, res.Events)
	assert.Positive(t, res.CPU)

	for _, flood := range []bool{false, true} {
		res, err := tr.Priority(peers.Params{Events: 100, Duration: 10 * time.Second, Rate: 5000}, flood)
		require.NoError(t, err)
		assert.Equal(t, uint64(100), res.Events)
		assert.Zero(t, res.Errors)
		assert.Len(t, res.Samples, 100)
	}

	sub, err := tr.Subscribe(10000)
	require.NoError(t, err)
	assert.Equal(t, 10000, sub.Subscriptions)
}

// Hot timers that fire faster than they are armed fill the completion
// ring while the later ones are still being subscribed: the run reads them
// meanwhile, so every subscription gets its answer.
func TestTimersArmedWhileFiring(t *testing.T) {
	tr := open(t)
	res, err := tr.Timers(peers.TimerParams{Hot: 4000, Interval: 20 * time.Microsecond, Duration: 300 * time.Millisecond})
	require.NoError(t, err)
	assert.Greater(t, res.Events, uint64(16384), "more firings than the ring and goaem's stash hold")
}

func TestOpenRejectsUnknownBackend(t *testing.T) {
	_, err := aemt.Open("cloud")
	require.Error(t, err)
	assert.False(t, errors.Is(err, peers.ErrUnsupported))
}
