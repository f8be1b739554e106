package fuzz

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/bench/scenario"
	"github.com/aem-dev/aem/cmd/aembench/app"
)

// FuzzAembenchFlags feeds aembench's flag parser arbitrary command lines
// (one argument per line of the input). A bad command line must be an
// error, never a panic; an accepted one must be within every documented
// bound and must survive a round trip: formatting the options back into
// flags and parsing them again gives the same options.
func FuzzAembenchFlags(f *testing.F) {
	for _, args := range [][]string{
		{},
		{"--scenario", "throughput", "--transport", "aem", "--batch", "1,8,64"},
		{"--duration=1s", "--warmup=0s", "--producers=2", "--payload=0", "--rate=1e9"},
		{"--scenario=latency,call", "--transport=aem,chan", "--json"},
		{"--plot", "out.svg", "--gobench", "--max-subscriptions", "1000"},
		{"--backend", "kernel", "--batch", "4096"},
		{"--batch", "0"},
		{"--batch", "1,,2"},
		{"--rate", "NaN"},
		{"--rate", "+Inf"},
		{"--duration", "-1s"},
		{"--duration", "9223372036854775807ns"},
		{"--json", "--gobench"},
		{"--scenario", "all,latency"},
		{"--scenario", ""},
		{"--transport", " aem "},
		{"--plot", "x.PNG"},
		{"--producers", "99999999999999999999"},
		{"-h"},
		{"--help"},
		{"stray"},
		{"--backend"},
		{"--max-subscriptions=-1"},
	} {
		f.Add(strings.Join(args, "\n"))
	}

	f.Fuzz(func(t *testing.T, input string) {
		var args []string
		if input != "" {
			args = strings.Split(input, "\n")
		}
		opts, err := app.ParseArgs(args)
		if err != nil {
			require.NotEmpty(t, err.Error(), "errors say what was wrong")
			if errors.Is(err, app.ErrHelp) {
				require.True(t, slices.ContainsFunc(args, isHelpFlag), "ErrHelp without -h in %q", args)
			}
			return
		}
		checkOptionsInBounds(t, opts)

		again, err := app.ParseArgs(formatOptions(opts))
		require.NoError(t, err, "re-parsing %q (from %q)", formatOptions(opts), args)
		require.Equal(t, opts, again, "options changed in a round trip through %q", formatOptions(opts))
	})
}

func isHelpFlag(a string) bool {
	switch strings.SplitN(a, "=", 2)[0] {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// checkOptionsInBounds asserts what ParseArgs promises about accepted options.
func checkOptionsInBounds(t *testing.T, o app.Options) {
	t.Helper()
	require.Contains(t, []string{scenario.BackendAuto, scenario.BackendEmbedded, scenario.BackendKernel}, o.Backend)
	require.True(t, o.Duration > 0 && o.Duration <= app.MaxDuration, "duration %v", o.Duration)
	require.True(t, o.Warmup >= 0 && o.Warmup <= app.MaxDuration, "warmup %v", o.Warmup)
	require.True(t, o.Producers >= 1 && o.Producers <= peers.MaxProducers, "producers %d", o.Producers)
	require.True(t, o.Payload >= 0 && o.Payload <= peers.MaxPayload, "payload %d", o.Payload)
	require.False(t, math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0), "rate %v", o.Rate)
	require.True(t, o.Rate > 0 && o.Rate <= app.MaxRate, "rate %v", o.Rate)
	require.True(t, o.MaxSubscriptions >= 1000 && o.MaxSubscriptions <= app.MaxSubscriptions,
		"max subscriptions %d", o.MaxSubscriptions)
	require.False(t, o.JSON && o.GoBench, "two output formats at once")

	require.NotEmpty(t, o.Scenarios, "an accepted command line runs some scenario")
	require.NotEmpty(t, o.Transports, "an accepted command line measures some transport")
	requireOrderedSubset(t, o.Scenarios, scenario.Names(), "scenarios")
	requireOrderedSubset(t, o.Transports, scenario.AllTransports(), "transports")

	require.NotEmpty(t, o.Batches, "batch sizes")
	for _, b := range o.Batches {
		require.True(t, b >= 1 && b <= app.MaxBatch, "batch %d", b)
	}
	if o.BatchSet {
		require.Equal(t, o.Batches[0], o.Batch, "the latency batch is the first listed")
	}
	if o.Plot != "" {
		lower := strings.ToLower(o.Plot)
		require.True(t, strings.HasSuffix(lower, ".svg") || strings.HasSuffix(lower, ".png"), "plot %q", o.Plot)
	}
}

// requireOrderedSubset: every name known, none twice, in the known order.
func requireOrderedSubset(t *testing.T, got, known []string, what string) {
	t.Helper()
	last := -1
	for _, g := range got {
		i := slices.Index(known, g)
		require.GreaterOrEqual(t, i, 0, "unknown %s %q", what, g)
		require.Greater(t, i, last, "%s %v out of order or repeated", what, got)
		last = i
	}
}

// formatOptions writes options back as the flags that produce them.
func formatOptions(o app.Options) []string {
	args := []string{
		"--backend=" + o.Backend,
		"--duration=" + o.Duration.String(),
		"--warmup=" + o.Warmup.String(),
		"--producers=" + strconv.Itoa(o.Producers),
		"--payload=" + strconv.Itoa(o.Payload),
		"--rate=" + strconv.FormatFloat(o.Rate, 'g', -1, 64),
		"--scenario=" + strings.Join(o.Scenarios, ","),
		"--transport=" + strings.Join(o.Transports, ","),
		"--max-subscriptions=" + strconv.Itoa(o.MaxSubscriptions),
	}
	if o.JSON {
		args = append(args, "--json")
	}
	if o.GoBench {
		args = append(args, "--gobench")
	}
	if o.Plot != "" {
		args = append(args, "--plot="+o.Plot)
	}
	if o.BatchSet {
		bs := make([]string, len(o.Batches))
		for i, b := range o.Batches {
			bs[i] = strconv.Itoa(b)
		}
		args = append(args, "--batch="+strings.Join(bs, ","))
	}
	return args
}
