package scenario

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/bench/peers"
)

// verdictsByWhat indexes verdicts by row and figure.
func verdictsByWhat(vs []Verdict) map[string]Verdict {
	m := map[string]Verdict{}
	for _, v := range vs {
		m[v.Row+" "+v.What] = v
	}
	return m
}

func TestTargetsJudgeRatiosWithinOneRun(t *testing.T) {
	rows := []Row{
		{Scenario: "fanin/producers=4", Transport: peers.NameAEM, Backend: BackendEmbedded, EventsPerSec: 35e6},
		{Scenario: "fanin/producers=4", Transport: peers.NameChan, EventsPerSec: 10e6},
		{Scenario: "fanin/producers=4", Transport: peers.NameURingMsgRing, EventsPerSec: 4e6},
		{Scenario: "call/mode=busy", Transport: peers.NameSpinPong, P50: 300},
		{Scenario: "call/mode=busy,lane", Transport: peers.NameAEM, Backend: BackendEmbedded, P50: 600},
		{Scenario: "call/mode=blocking", Transport: peers.NameAEM, Backend: BackendEmbedded, P50: 5000},
		{Scenario: "call/mode=blocking", Transport: peers.NameEventfdShm, P50: 4000},
		{Scenario: "priority/load=idle", Transport: peers.NameAEM, Backend: BackendEmbedded, P99: 80_000},
		{Scenario: "priority/load=flood", Transport: peers.NameAEM, Backend: BackendEmbedded, P99: 120_000},
	}
	got := verdictsByWhat(Targets(rows))
	require.Len(t, got, 5)

	chanV := got["fanin/producers=4 events/s ÷ chan's"]
	assert.InDelta(t, 3.5, chanV.Value, 1e-9)
	assert.True(t, chanV.Ratio)
	assert.True(t, chanV.Met, "3.5x the channel, the target 3x")
	ring := got["fanin/producers=4 events/s ÷ io_uring_msg_ring's"]
	assert.InDelta(t, 8.75, ring.Value, 1e-9)
	assert.False(t, ring.Met, "8.75x MSG_RING, the target 10x")

	busy := got["call/mode=busy,lane p50 ÷ spin_pingpong's (busy)"]
	assert.InDelta(t, 2.0, busy.Value, 1e-9, "against the ping-pong's busy row, not a row of its own name")
	assert.True(t, busy.Met, "exactly at the bound")
	assert.False(t, got["call/mode=blocking p50 ÷ eventfd_shm's"].Met, "1.25x eventfd_shm")
	assert.True(t, got["priority/load=flood urgent p99 ÷ its idle p99"].Met, "1.5x idle")
}

func TestTargetsNeedTheirRows(t *testing.T) {
	rows := []Row{
		// no peer rows: no ratio can be judged
		{Scenario: "fanin/producers=4", Transport: peers.NameAEM, EventsPerSec: 35e6},
		// another producer count is not the target's
		{Scenario: "fanin/producers=2", Transport: peers.NameAEM, EventsPerSec: 35e6},
		{Scenario: "fanin/producers=2", Transport: peers.NameChan, EventsPerSec: 1e6},
		// a failed row judges nothing, nor a figure the row did not measure
		{Scenario: "call/mode=blocking", Transport: peers.NameAEM, P50: 100},
		{Scenario: "call/mode=blocking", Transport: peers.NameEventfdShm, Err: "boom"},
		{Scenario: "call/mode=busy,lane", Transport: peers.NameAEM},
		{Scenario: "call/mode=busy", Transport: peers.NameSpinPong, P50: 300},
	}
	assert.Empty(t, Targets(rows))
}

// Subscriptions are judged at the run's largest size: the small ones carry
// the table's first chunk.
func TestTargetsJudgeTheLargestSubscriptionRow(t *testing.T) {
	rows := []Row{
		{Scenario: "subscriptions/n=1000", Transport: peers.NameAEM, Param: 1000, EventsPerSec: 1e6, BytesPerSubscription: 262, GoBytesPerSubscription: 90},
		{Scenario: "subscriptions/n=100000", Transport: peers.NameAEM, Param: 100_000, EventsPerSec: 5.5e6, BytesPerSubscription: 60.3, GoBytesPerSubscription: 66},
		{Scenario: "subscriptions/n=10000", Transport: peers.NameAEM, Param: 10_000, EventsPerSec: 4e6, BytesPerSubscription: 78},
		{Scenario: "subscriptions/n=100000", Transport: peers.NameChan, Param: 100_000, EventsPerSec: 9e6},
	}
	got := verdictsByWhat(Targets(rows))
	require.Len(t, got, 3)
	rate := got["subscriptions/n=100000 set up per second"]
	assert.InDelta(t, 5.5e6, rate.Value, 1)
	assert.False(t, rate.Ratio)
	assert.True(t, rate.Met)
	assert.True(t, got["subscriptions/n=100000 kernel-side bytes per idle subscription"].Met)
	assert.False(t, got["subscriptions/n=100000 Go-side bytes per idle subscription"].Met, "66 B, the target 64")
}

// The HTTP targets differ by backend; p99's holds on both.
func TestTargetsHTTPByBackend(t *testing.T) {
	rows := func(backend string) []Row {
		return []Row{
			{Scenario: "http/conns=256", Transport: peers.NameAEM, Backend: backend, EventsPerSec: 90e3, P99: 10e6},
			{Scenario: "http/conns=256", Transport: peers.NameGoNet, EventsPerSec: 50e3, P99: 20e6},
			{Scenario: "http/conns=256", Transport: peers.NameEpoll, EventsPerSec: 100e3, P99: 5e6},
		}
	}
	emb := verdictsByWhat(Targets(rows(BackendEmbedded)))
	require.Len(t, emb, 3)
	assert.True(t, emb["http/conns=256 requests/s ÷ net/http's"].Met, "1.8x net/http, the target 1.5x")
	assert.True(t, emb["http/conns=256 requests/s ÷ epoll's"].Met, "0.9x epoll, the target 0.8x")
	assert.True(t, emb["http/conns=256 p99 ÷ net/http's"].Met)

	mod := verdictsByWhat(Targets(rows(BackendKernel)))
	require.Len(t, mod, 3)
	assert.False(t, mod["http/conns=256 requests/s ÷ net/http's"].Met, "1.8x net/http, the module's target 2x")
	assert.False(t, mod["http/conns=256 requests/s ÷ epoll's"].Met, "0.9x epoll, the module's target 1x")
}
