package scenario

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/bench/peers"
)

func TestPlanOrdersStepsByScenarioThenTransport(t *testing.T) {
	cfg := Default()
	cfg.Scenarios = []string{Throughput, Call}
	cfg.Transports = []string{"aem", "chan"}
	cfg.Batches = []int{1, 64}
	var got []string
	for _, s := range Plan(cfg) {
		got = append(got, s.Label())
	}
	assert.Equal(t, []string{
		"throughput/batch=1 aem", "throughput/batch=1 chan",
		"throughput/batch=64 aem", "throughput/batch=64 chan",
		"call/mode=blocking aem", "call/mode=blocking chan",
		"call/mode=busy aem", "call/mode=busy chan",
	}, got)
}

func TestSizes(t *testing.T) {
	assert.Equal(t, []int{1000, 10000, 100000, 1000000}, Sizes(1_000_000))
	assert.Equal(t, []int{1000}, Sizes(5000))
	assert.Empty(t, Sizes(999))
}

func TestPercentiles(t *testing.T) {
	samples := make([]int64, 1000)
	for i := range samples {
		samples[i] = int64(i + 1)
	}
	p50, p99, p999, maxv := Percentiles(samples)
	assert.InDelta(t, 500, p50, 1)
	assert.InDelta(t, 990, p99, 1)
	assert.InDelta(t, 999, p999, 1)
	assert.Equal(t, int64(1000), maxv)
	p50, _, _, maxv = Percentiles(nil)
	assert.Zero(t, p50)
	assert.Zero(t, maxv)
}

func TestHeadlineAndRatio(t *testing.T) {
	aem := Row{Scenario: "call/mode=busy", EventsPerSec: 1e6}
	peer := Row{Scenario: "call/mode=busy", EventsPerSec: 5e5}
	v, unit := Headline(aem)
	assert.Equal(t, "ns/call", unit)
	assert.InDelta(t, 1000, v, 1e-9)
	assert.InDelta(t, 2.0, Ratio(peer, aem), 1e-9, "the peer takes twice as long per call")

	assert.Zero(t, Ratio(Row{Scenario: "throughput/batch=64"}, Row{Scenario: "throughput/batch=64", EventsPerSec: 1}))
	assert.Equal(t, "timers", Family("timers/active=1000"))
}

func TestRunStepSkipsAndFails(t *testing.T) {
	cfg := Default()
	cfg.Duration, cfg.Warmup = 20*time.Millisecond, 0
	cfg.Scenarios, cfg.Transports = []string{Call}, []string{peers.NamePipe}
	steps := Plan(cfg)
	require.Len(t, steps, 2)
	row, err := RunStep(steps[0], cfg, Open)
	require.NoError(t, err, "pipe makes blocking calls")
	assert.Equal(t, "call/mode=blocking", row.Scenario)
	assert.Equal(t, BackendNone, row.Backend)
	assert.Positive(t, row.Events)

	_, err = RunStep(steps[1], cfg, Open)
	assert.ErrorIs(t, err, ErrSkipped, "pipe has no busy-polling call")

	_, err = RunStep(Step{Family: Call, Variant: "mode=blocking", Transport: "nope", run: steps[0].run}, cfg, Open)
	var oerr *OpenError
	assert.ErrorAs(t, err, &oerr)
}

// Row's JSON form is its fields' own (names, order) with null in place of
// an unmeasured 0: a measured row encodes exactly as the plain struct does.
func TestRowJSONMatchesItsFields(t *testing.T) {
	type plain Row // without MarshalJSON
	r := Row{Scenario: "latency/rate=1", Backend: BackendEmbedded, Transport: "aem", Events: 1, Seconds: 2,
		EventsPerSec: 3, P50: 4, P99: 5, P999: 6, Max: 7, Dropped: 8, AllocsPerEvent: 9,
		BytesPerSubscription: 10, Err: "e"}
	got, err := json.Marshal(r)
	require.NoError(t, err)
	want, err := json.Marshal(plain(r))
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got))
}
