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
		"call/mode=blocking aem", "call/mode=blocking chan", "call/mode=blocking,kernel aem",
		"call/mode=blocking,kernel,spin=20us aem",
		"call/mode=busy aem", "call/mode=busy chan", "call/mode=busy,lane aem",
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

// The server scenarios run AEM and the server peers only, per connection
// count; a server peer's step loads it and checks every response.
func TestServerScenarioSteps(t *testing.T) {
	cfg := Default()
	cfg.Duration, cfg.Warmup = 100*time.Millisecond, 20*time.Millisecond
	cfg.Scenarios = []string{Throughput, TCPEcho, HTTP}
	cfg.Transports = []string{peers.NameAEM, peers.NameChan, peers.NameEpoll}
	cfg.Conns = []int{4, 16}
	var labels []string
	for _, s := range Plan(cfg) {
		labels = append(labels, s.Label())
	}
	assert.Equal(t, []string{
		"throughput/batch=64 aem", "throughput/batch=64 chan",
		"tcp_echo/conns=4 aem", "tcp_echo/conns=4 epoll", "tcp_echo/conns=16 aem", "tcp_echo/conns=16 epoll",
		"http/conns=4 aem", "http/conns=4 epoll", "http/conns=16 aem", "http/conns=16 epoll",
	}, labels)

	for _, step := range Plan(cfg)[3:] {
		if step.Transport != peers.NameEpoll || step.Param != 4 {
			continue
		}
		row, err := RunStep(step, cfg, Open)
		require.NoError(t, err, step.Label())
		assert.Positive(t, row.Events)
		assert.Positive(t, row.BytesChecked)
		assert.Positive(t, row.P50)
		v, unit := Headline(row)
		assert.Equal(t, "requests/s", unit)
		assert.Positive(t, v)
	}
}

// subscribeScript is a transport whose rounds of subscriptions take the
// given times, in order.
type subscribeScript struct {
	peers.Unsupported
	elapsed []time.Duration
	calls   int
}

func (s *subscribeScript) Name() string { return "script" }

func (s *subscribeScript) Subscribe(n int) (peers.SubResult, error) {
	d := s.elapsed[s.calls%len(s.elapsed)]
	s.calls++
	return peers.SubResult{Subscriptions: n, Elapsed: d, BytesPer: float64(s.calls)}, nil
}

// A subscriptions row reports its round of median time, with the first
// round and the spread in its notes; the rounds stop at the row's
// duration (after one at least) or at subscribeRounds.
func TestSubscribeRowIsTheMedianRound(t *testing.T) {
	cfg := Default()
	cfg.Duration = 100 * time.Millisecond
	ms := time.Millisecond
	tr := &subscribeScript{elapsed: []time.Duration{40 * ms, 10 * ms, 20 * ms, 50 * ms}}
	row, err := runSubscribe(tr, cfg, 1000)
	require.NoError(t, err)
	assert.Equal(t, 4, tr.calls, "rounds until 100 ms were spent")
	assert.InDelta(t, 0.040, row.Seconds, 1e-9, "the median of 10, 20, 40, 50 ms (the upper one)")
	assert.InDelta(t, 25_000, row.EventsPerSec, 1e-6)
	assert.Equal(t, 1.0, row.BytesPerSubscription, "the median round's own figures")
	assert.Equal(t, "the median of 4 rounds; the first 25.0k/s, 20.0k–100.0k/s in all", row.Notes)

	tr = &subscribeScript{elapsed: []time.Duration{time.Second}}
	row, err = runSubscribe(tr, cfg, 1000)
	require.NoError(t, err)
	assert.Equal(t, 1, tr.calls, "one round longer than the duration")
	assert.Equal(t, "one round (longer than --duration)", row.Notes)

	tr = &subscribeScript{elapsed: []time.Duration{ms}}
	_, err = runSubscribe(tr, cfg, 1000)
	require.NoError(t, err)
	assert.Equal(t, subscribeRounds, tr.calls)
}
