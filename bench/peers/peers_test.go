package peers_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/bench/peers"
)

// Each peer that can stream moves exactly N events, in order, and loses none.
func TestStreamMovesEveryEvent(t *testing.T) {
	cases := []struct {
		name      string
		batch     int
		payload   int
		producers int
	}{
		{"batch1", 1, peers.DefaultPayload, 1},
		{"batch64", 64, peers.DefaultPayload, 1},
		{"bigpayload", 16, 200, 1},
		{"nopayload", 8, 0, 1},
		{"fanin3", 32, peers.DefaultPayload, 3},
	}
	const n = 20000
	for _, name := range peers.Built() {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				tr, err := peers.New(name)
				require.NoError(t, err)
				defer tr.Close()
				res, err := tr.Stream(peers.Params{
					Events: n, Duration: 30 * time.Second, Batch: tc.batch,
					Payload: tc.payload, Producers: tc.producers,
				})
				if errors.Is(err, peers.ErrUnsupported) {
					t.Skipf("%s does not stream with %d producers", name, tc.producers)
				}
				require.NoError(t, err)
				assert.Equal(t, uint64(n), res.Produced, "produced")
				assert.Equal(t, uint64(n), res.Events, "consumed")
				assert.Zero(t, res.Dropped, "dropped")
				assert.Zero(t, res.Errors, "out of order or corrupted")
				assert.Zero(t, res.Lost(), "lost")
				assert.Positive(t, res.Elapsed)
			})
		}
	}
}

// A paced, sampled stream records one latency per stamped event.
func TestStreamSamplesLatency(t *testing.T) {
	for _, name := range peers.Built() {
		t.Run(name, func(t *testing.T) {
			tr, err := peers.New(name)
			require.NoError(t, err)
			res, err := tr.Stream(peers.Params{
				Events: 200, Duration: 10 * time.Second, Rate: 20000,
				Payload: peers.DefaultPayload, SampleEvery: 1,
			})
			if errors.Is(err, peers.ErrUnsupported) {
				t.Skip("no stream")
			}
			require.NoError(t, err)
			assert.Equal(t, uint64(200), res.Events)
			require.Len(t, res.Samples, 200, "one sample per event")
			for _, s := range res.Samples {
				assert.GreaterOrEqual(t, s, int64(0))
				assert.Less(t, s, int64(5*time.Second), "latency below the run length")
			}
		})
	}
}

// Round trips come back changed by the handler, as many as were asked for.
func TestCallRoundTrips(t *testing.T) {
	for _, name := range peers.Built() {
		for _, busy := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "/blocking", true: "/busy"}[busy], func(t *testing.T) {
				tr, err := peers.New(name)
				require.NoError(t, err)
				res, err := tr.Call(peers.Params{
					Events: 500, Duration: 20 * time.Second, Payload: peers.DefaultPayload,
					Busy: busy, SampleEvery: 10,
				})
				if errors.Is(err, peers.ErrUnsupported) {
					t.Skip("mode not supported")
				}
				require.NoError(t, err)
				assert.Equal(t, uint64(500), res.Events)
				assert.Zero(t, res.Errors, "replies carry the handler's change")
				assert.Len(t, res.Samples, 50)
			})
		}
	}
}

// A peer left out of the build says why instead of failing later.
func TestNewMissing(t *testing.T) {
	for name, why := range peers.Missing() {
		_, err := peers.New(name)
		require.Error(t, err)
		assert.Contains(t, err.Error(), why)
	}
}

func TestNewUnknown(t *testing.T) {
	_, err := peers.New("carrier_pigeon")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "carrier_pigeon")
}

func TestChanTimersSubscriptionsPriority(t *testing.T) {
	c := &peers.Chan{}
	res, err := c.Timers(peers.TimerParams{Hot: 100, Idle: 1000, Interval: time.Millisecond, Duration: 50 * time.Millisecond})
	require.NoError(t, err)
	assert.Positive(t, res.Events, "hot timers fired")
	assert.Positive(t, res.CPU, "their CPU time was measured")

	sub, err := c.Subscribe(10000)
	require.NoError(t, err)
	assert.Equal(t, 10000, sub.Subscriptions)
	assert.Positive(t, sub.BytesPer)

	for _, flood := range []bool{false, true} {
		res, err := c.Priority(peers.Params{Events: 100, Duration: 10 * time.Second, Rate: 5000}, flood)
		require.NoError(t, err)
		assert.Equal(t, uint64(100), res.Events)
		assert.Zero(t, res.Errors)
		assert.Len(t, res.Samples, 100)
	}
}
