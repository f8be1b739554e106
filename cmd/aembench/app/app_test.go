package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem"
	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/bench/scenario"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, o Options)
	}{
		{"defaults", nil, func(t *testing.T, o Options) {
			assert.Equal(t, scenario.Names(), o.Scenarios)
			assert.Equal(t, scenario.BuiltTransports(), o.Transports, "every transport this build has")
			assert.Equal(t, scenario.BackendAuto, o.Backend)
			assert.Equal(t, []int{64}, o.Batches)
			assert.False(t, o.BatchSet)
			assert.Equal(t, 100_000, o.MaxSubscriptions, "bounded to finish on a loaded machine")
			assert.Equal(t, peers.FanInLane, o.FanInPath, "fan-in producers post through lanes")
		}},
		{"fan-in through the submission ring", []string{"--fanin-path", "sq"}, func(t *testing.T, o Options) {
			assert.Equal(t, peers.FanInSQ, o.FanInPath)
		}},
		{"double and single dash", []string{"--duration", "2s", "-warmup=0s"}, func(t *testing.T, o Options) {
			assert.Equal(t, 2*time.Second, o.Duration)
			assert.Zero(t, o.Warmup)
		}},
		{"lists keep the known order", []string{"--scenario", "call,throughput", "--transport", "pipe, chan"}, func(t *testing.T, o Options) {
			assert.Equal(t, []string{"throughput", "call"}, o.Scenarios)
			assert.Equal(t, []string{"chan", "pipe"}, o.Transports)
		}},
		{"batch sweep", []string{"--batch", "1,16,256"}, func(t *testing.T, o Options) {
			assert.Equal(t, []int{1, 16, 256}, o.Batches)
			assert.Equal(t, 1, o.Batch)
			assert.True(t, o.BatchSet)
		}},
		{"plot sweeps batch sizes", []string{"--plot", "x.svg"}, func(t *testing.T, o Options) {
			assert.Equal(t, []int{1, 8, 64, 256}, o.Batches)
		}},
		{"everything else", []string{"--backend", "embedded", "--producers", "8", "--payload", "0",
			"--rate", "5e4", "--json", "--max-subscriptions", "10000000", "--transport", "aem"}, func(t *testing.T, o Options) {
			assert.Equal(t, "embedded", o.Backend)
			assert.Equal(t, 8, o.Producers)
			assert.Zero(t, o.Payload)
			assert.InDelta(t, 5e4, o.Rate, 0)
			assert.True(t, o.JSON)
			assert.Equal(t, 10_000_000, o.MaxSubscriptions)
			assert.Equal(t, []string{"aem"}, o.Transports)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseArgs(tc.args)
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

func TestParseArgsRejects(t *testing.T) {
	cases := []struct {
		args []string
		want string // in the message
	}{
		{[]string{"--backend", "cloud"}, "backend"},
		{[]string{"--duration", "0s"}, "duration"},
		{[]string{"--duration", "1h"}, "duration"},
		{[]string{"--duration", "soon"}, "duration"},
		{[]string{"--warmup", "-1s"}, "warmup"},
		{[]string{"--producers", "0"}, "producers"},
		{[]string{"--producers", "65"}, "producers"},
		{[]string{"--batch", "0"}, "batch"},
		{[]string{"--batch", "8,x"}, "batch"},
		{[]string{"--batch", "5000"}, "batch"},
		{[]string{"--payload", "-1"}, "payload"},
		{[]string{"--fanin-path", "carrier"}, "fanin-path"},
		{[]string{"--rate", "0"}, "rate"},
		{[]string{"--rate", "NaN"}, "rate"},
		{[]string{"--scenario", "everything"}, "scenario"},
		{[]string{"--scenario", "call,,latency"}, "scenario"},
		{[]string{"--transport", "carrier_pigeon"}, "carrier_pigeon"},
		{[]string{"--max-subscriptions", "100"}, "max-subscriptions"},
		{[]string{"--max-subscriptions", "20000000"}, "max-subscriptions"},
		{[]string{"--json", "--gobench"}, "json"},
		{[]string{"--plot", "chart.gif"}, "plot"},
		{[]string{"--nosuchflag"}, "nosuchflag"},
		{[]string{"stray"}, "stray"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := ParseArgs(tc.args)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestMainExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, ExitUsage, Main([]string{"--transport", "nope"}, &out, &errb))
	assert.Contains(t, errb.String(), `unknown transport "nope"`)
	assert.Empty(t, out.String())

	out.Reset()
	errb.Reset()
	assert.Equal(t, ExitOK, Main([]string{"-h"}, &out, &errb))
	assert.Contains(t, out.String(), "--transport")

	out.Reset()
	assert.Equal(t, ExitOK, Main([]string{"--version"}, &out, &errb))
	assert.Equal(t, "aembench "+aem.Version+"\n", out.String())
}

// A step that fails keeps its row, with the reason, in the table and in
// JSON; without a terminal every finished step prints a line at once.
func TestFailedStepShowsInTableAndJSON(t *testing.T) {
	o := quick(t, "--scenario", "throughput", "--transport", "aem,chan")
	open := func(name, backend string) (peers.Transport, error) {
		if name == peers.NameAEM {
			return failingAEM{}, nil
		}
		return scenario.Open(name, backend)
	}
	var out, errb bytes.Buffer
	require.Equal(t, ExitFail, Run(o, open, &out, &errb))
	assert.Regexp(t, `throughput/batch=64\s+aem\s+-\s+FAILED`, out.String())
	assert.Contains(t, out.String(), "FAILED:\n  throughput/batch=64 aem: throughput/batch=64 aem: no answer")
	assert.Regexp(t, `(?m)^aembench: 1/2 throughput/batch=64 aem: FAILED: .*no answer$`, errb.String())
	assert.Regexp(t, `(?m)^aembench: 2/2 throughput/batch=64 chan: .* events/s$`, errb.String())

	o.JSON = true
	out.Reset()
	require.Equal(t, ExitFail, Run(o, open, &out, &errb))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2)
	var failed map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &failed))
	assert.Contains(t, failed["error"], "no answer")
	assert.Nil(t, failed["p99_ns"], "a latency not measured is null")
}

// --transport all in a build without some peers says once which and why.
func TestLeftOutNote(t *testing.T) {
	o := quick(t, "--scenario", "subscriptions", "--transport", "all")
	var out, errb bytes.Buffer
	Run(o, func(name, backend string) (peers.Transport, error) { return &peers.Chan{}, nil }, &out, &errb)
	if len(peers.Missing()) == 0 {
		assert.NotContains(t, errb.String(), "left out")
		return
	}
	assert.Contains(t, errb.String(), "aembench: left out: "+peers.NameURingMsgRing)
}

type failingAEM struct{ fakeAEM }

func (failingAEM) Stream(peers.Params) (peers.Result, error) {
	return peers.Result{}, errors.New("no answer")
}

// Latencies and memory a row did not measure are null in JSON, not 0.
func TestJSONNullForUnmeasured(t *testing.T) {
	b, err := json.Marshal(scenario.Row{Scenario: "throughput/batch=1", Events: 5, P99: 0})
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, json.Unmarshal(b, &obj))
	for _, k := range []string{"p50_ns", "p99_ns", "p999_ns", "max_ns", "bytes_per_subscription"} {
		v, ok := obj[k]
		assert.True(t, ok, "%s present", k)
		assert.Nil(t, v, "%s is null", k)
	}
	assert.NotContains(t, obj, "error")

	b, err = json.Marshal(scenario.Row{P50: 7, BytesPerSubscription: 64})
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &obj))
	assert.EqualValues(t, 7, obj["p50_ns"])
	assert.EqualValues(t, 64, obj["bytes_per_subscription"])
}

// quick is a configuration small enough for a test.
func quick(t *testing.T, extra ...string) Options {
	t.Helper()
	args := append([]string{"--duration", "30ms", "--warmup", "0s", "--max-subscriptions", "1000",
		"--rate", "2000", "--transport", "chan"}, extra...)
	o, err := ParseArgs(args)
	require.NoError(t, err)
	return o
}

var jsonFields = []string{
	"scenario", "backend", "transport", "events", "seconds", "events_per_sec", "p50_ns", "p99_ns",
	"p999_ns", "max_ns", "dropped", "allocs_per_event", "bytes_per_subscription", "bytes_checked",
}

// Every scenario runs with the chan peer and prints one JSON object per
// result with exactly the documented fields.
func TestEveryScenarioWithChanAsJSON(t *testing.T) {
	var out, errb bytes.Buffer
	// 200ms, not quick's 30ms: under -race on a loaded machine, setting up
	// 1000 timers can eat a 30ms window before the first firing.
	code := Run(quick(t, "--json", "--duration", "200ms"), scenario.Open, &out, &errb)
	require.Equal(t, ExitOK, code, "stderr: %s", errb.String())

	seen := map[string]bool{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var obj map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &obj), "line %q", sc.Text())
		keys := make([]string, 0, len(obj))
		for k := range obj {
			if k != "notes" { // documented as present when the row has some
				keys = append(keys, k)
			}
		}
		assert.ElementsMatch(t, jsonFields, keys)
		assert.Equal(t, "chan", obj["transport"])
		assert.Equal(t, scenario.BackendNone, obj["backend"])
		assert.Positive(t, obj["events"], "%v moved events", obj["scenario"])
		assert.Zero(t, obj["dropped"])
		seen[scenario.Family(obj["scenario"].(string))] = true
	}
	for _, name := range scenario.Names() {
		if name == scenario.Handlers || scenario.IsServerScenario(name) {
			continue // AEM's own handler modes, servers: no chan row
		}
		assert.True(t, seen[name], "scenario %s produced a result", name)
	}
}

// The server scenarios load a server peer over loopback: every response
// checked, the row's bytes_checked says how many bytes.
func TestServerScenariosWithGoNet(t *testing.T) {
	var out, errb bytes.Buffer
	o := quick(t, "--json", "--duration", "200ms", "--scenario", "tcp_echo,http", "--transport", "go_net,chan",
		"--conns", "4,8", "--pipeline", "2")
	code := Run(o, scenario.Open, &out, &errb)
	require.Equal(t, ExitOK, code, "stderr: %s", errb.String())
	var got []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var row scenario.Row
		require.NoError(t, json.Unmarshal(sc.Bytes(), &row))
		got = append(got, row.Scenario+" "+row.Transport)
		assert.Positive(t, row.Events)
		assert.Positive(t, row.P99)
		assert.Greater(t, row.BytesChecked, row.Events, "%s: every response's bytes are checked", row.Scenario)
	}
	assert.Equal(t, []string{"tcp_echo/conns=4,pipeline=2 go_net", "tcp_echo/conns=8,pipeline=2 go_net",
		"http/conns=4,pipeline=2 go_net", "http/conns=8,pipeline=2 go_net"}, got, "chan serves nothing")

	for _, bad := range [][]string{{"--conns", "0"}, {"--conns", "64,x"}, {"--pipeline", "0"}, {"--echo-size", "4"}} {
		_, err := ParseArgs(bad)
		assert.Error(t, err, "%v", bad)
	}
}

func TestTableGoBenchAndPlot(t *testing.T) {
	dir := t.TempDir()
	svg := filepath.Join(dir, "chart.svg")
	o := quick(t, "--scenario", "throughput,latency", "--batch", "1,64", "--plot", svg,
		"--transport", "chan,pipe")
	var out, errb bytes.Buffer
	require.Equal(t, ExitOK, Run(o, scenario.Open, &out, &errb), errb.String())
	table := out.String()
	assert.Contains(t, table, "throughput/batch=1")
	assert.Contains(t, table, "throughput/batch=64")
	assert.Contains(t, table, "latency/rate=2000")
	b, err := os.ReadFile(svg)
	require.NoError(t, err)
	assert.Contains(t, string(b), "<svg")
	assert.Contains(t, errb.String(), "aembench: wrote the chart to "+svg+"\n")

	o = quick(t, "--scenario", "throughput", "--gobench")
	out.Reset()
	require.Equal(t, ExitOK, Run(o, scenario.Open, &out, &errb))
	var bench []string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			bench = append(bench, l)
		}
	}
	require.Len(t, bench, 1)
	f := strings.Split(bench[0], "\t")
	assert.Regexp(t, `^BenchmarkThroughput/batch=64/transport=chan-\d+$`, f[0])
	assert.Contains(t, f[2], " ns/op")
	assert.Contains(t, f[3], " events/s")
}

// With --transport all, the table has a ratio to AEM for each peer when
// AEM ran; a fake AEM transport stands in for it here.
func TestRatioToAEM(t *testing.T) {
	out := runWithFakeAEM(t, "--scenario", "throughput", "--transport", "aem,chan")
	var chanLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " chan ") {
			chanLine = l
		}
	}
	require.NotEmpty(t, chanLine)
	assert.Regexp(t, `\d+\.\d\dx\s+events/s`, chanLine)
}

// The table ends with the design targets this run's rows can judge, each
// with its figure, the target and a verdict (whichever it is).
func TestTableJudgesDesignTargets(t *testing.T) {
	table := runWithFakeAEM(t, "--scenario", "fanin", "--transport", "aem,chan")
	assert.Contains(t, table, "design targets, judged from this run's rows")
	assert.Regexp(t, `fanin/producers=4\s+events/s ÷ chan's\s+\d+\.\d\dx\s+\(want >= 3x\)\s+(met|not met)\n`, table)
	assert.NotContains(t, table, "io_uring_msg_ring's", "no MSG_RING row in this run: that target is not judged")
}

// runWithFakeAEM runs aembench with args, fakeAEM standing in for AEM,
// and returns its table.
func runWithFakeAEM(t *testing.T, args ...string) string {
	o := quick(t, args...)
	open := func(name, backend string) (peers.Transport, error) {
		if name == peers.NameAEM {
			return fakeAEM{}, nil
		}
		return scenario.Open(name, backend)
	}
	var out, errb bytes.Buffer
	require.Equal(t, ExitOK, Run(o, open, &out, &errb), errb.String())
	return out.String()
}

type fakeAEM struct{ peers.Unsupported }

func (fakeAEM) Name() string    { return peers.NameAEM }
func (fakeAEM) Backend() string { return scenario.BackendEmbedded }
func (fakeAEM) Stream(p peers.Params) (peers.Result, error) {
	return peers.Result{Events: 1000, Produced: 1000, Elapsed: time.Millisecond}, nil
}

func TestGoBenchName(t *testing.T) {
	name := GoBenchName(scenario.Row{Scenario: "call/mode=busy", Transport: "spin_pingpong"})
	assert.True(t, strings.HasPrefix(name, "BenchmarkCall/mode=busy/transport=spin_pingpong-"), name)
	assert.True(t, slices.Contains(jsonFields, "bytes_per_subscription"))
}
