// Package app is aembench: flag parsing, the measurement loop and the
// output formats. It is a package of its own so that tests and fuzz targets
// can call ParseArgs and Main.
package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/aem-dev/aem/bench/load"
	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/bench/scenario"
)

// Limits on flag values: every run stays bounded.
const (
	MaxDuration      = 10 * time.Minute
	MaxBatch         = 4096
	MaxRate          = 1e9
	MaxSubscriptions = 10_000_000
	MaxConns         = 16384
)

// Options is a parsed command line.
type Options struct {
	scenario.Config
	JSON    bool
	GoBench bool
	Plot    string // file to write a chart to (.svg or .png)
}

// ErrHelp is returned by ParseArgs for -h and --help.
var ErrHelp = flag.ErrHelp

// ErrVersion is returned by ParseArgs for --version.
var ErrVersion = errors.New("version requested")

// Usage is the help text.
func Usage(w io.Writer) {
	fmt.Fprintf(w, `aembench: load-test AEM against its peers.

usage: aembench [flags]

  --scenario LIST     scenarios: %s, or all (default all)
  --transport LIST    aem, a peer (%s), a comma list, or all (default all)
  --backend B         AEM backend: auto, embedded or kernel (default auto)
  --duration D        length of each measured run (default 300ms)
  --warmup D          unmeasured run before each measured one (default 100ms)
  --producers N       fan-in producers (default 4)
  --batch LIST        events per batch; a list sweeps throughput (default 64;
                      latency uses 1 unless given)
  --payload N         payload bytes after the 16-byte header (default 16: 32-byte events)
  --rate R            events/s for latency, urgent events/s for priority (default 10000)
  --max-subscriptions N  largest subscriptions and timers size, 1000..10000000 (default %d)
  --conns LIST        tcp_echo and http: concurrent keep-alive connections; a list
                      sweeps, e.g. 64,256,1024,4096 (default %d)
  --pipeline N        tcp_echo and http: requests each connection keeps in flight (default 1)
  --echo-size N       tcp_echo: bytes per request (default %d)
  --fanin-path P      fanin: AEM's producers post through a producer lane each
                      (lane), a lane each opened through the module as another
                      process would (remote; kernel backend), or POST SQEs
                      through a ring each (sq) (default lane)
  --sqpoll MODE       fanin: AEM's producers post through rings with a submission
                      poller: off, on, or both (a row each, same run) (default off)
  --json              one JSON object per result
  --gobench           Go benchmark lines, for benchstat
  --plot FILE         write latency percentiles and throughput against batch
                      size as SVG or PNG (by extension)
  --version           print aembench's version and exit
`, strings.Join(scenario.Names(), ", "), strings.Join(peers.Names(), ", "), scenario.DefaultMaxSubscriptions,
		scenario.DefaultConns, scenario.DefaultEchoSize)
}

// ParseArgs turns command-line arguments (without the program name) into
// Options. Any bad value is an error; -h gives ErrHelp.
func ParseArgs(args []string) (Options, error) {
	opts := Options{Config: scenario.Default()}
	fs := flag.NewFlagSet("aembench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	var scenarios, transports, batches, conns string
	sqpoll := "off"
	fs.StringVar(&opts.Backend, "backend", opts.Backend, "")
	fs.DurationVar(&opts.Duration, "duration", opts.Duration, "")
	fs.DurationVar(&opts.Warmup, "warmup", opts.Warmup, "")
	fs.IntVar(&opts.Producers, "producers", opts.Producers, "")
	fs.StringVar(&batches, "batch", "", "")
	fs.IntVar(&opts.Payload, "payload", opts.Payload, "")
	fs.Float64Var(&opts.Rate, "rate", opts.Rate, "")
	fs.StringVar(&scenarios, "scenario", "all", "")
	fs.StringVar(&transports, "transport", "all", "")
	fs.IntVar(&opts.MaxSubscriptions, "max-subscriptions", opts.MaxSubscriptions, "")
	fs.StringVar(&conns, "conns", "", "")
	fs.IntVar(&opts.Pipeline, "pipeline", opts.Pipeline, "")
	fs.IntVar(&opts.EchoSize, "echo-size", opts.EchoSize, "")
	fs.StringVar(&sqpoll, "sqpoll", sqpoll, "")
	fs.StringVar(&opts.FanInPath, "fanin-path", opts.FanInPath, "")
	fs.BoolVar(&opts.JSON, "json", false, "")
	fs.BoolVar(&opts.GoBench, "gobench", false, "")
	fs.StringVar(&opts.Plot, "plot", "", "")
	version := fs.Bool("version", false, "")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return opts, ErrHelp
		}
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *version {
		return opts, ErrVersion
	}

	switch opts.Backend {
	case scenario.BackendAuto, scenario.BackendEmbedded, scenario.BackendKernel:
	default:
		return opts, fmt.Errorf("--backend %q: want auto, embedded or kernel", opts.Backend)
	}
	if opts.Duration <= 0 || opts.Duration > MaxDuration {
		return opts, fmt.Errorf("--duration %v: want more than 0 and at most %v", opts.Duration, MaxDuration)
	}
	if opts.Warmup < 0 || opts.Warmup > MaxDuration {
		return opts, fmt.Errorf("--warmup %v: want 0 to %v", opts.Warmup, MaxDuration)
	}
	if opts.Producers < 1 || opts.Producers > peers.MaxProducers {
		return opts, fmt.Errorf("--producers %d: want 1 to %d", opts.Producers, peers.MaxProducers)
	}
	if opts.Payload < 0 || opts.Payload > peers.MaxPayload {
		return opts, fmt.Errorf("--payload %d: want 0 to %d", opts.Payload, peers.MaxPayload)
	}
	if !(opts.Rate > 0 && opts.Rate <= MaxRate) { // also refuses NaN
		return opts, fmt.Errorf("--rate %v: want more than 0 and at most %g", opts.Rate, MaxRate)
	}
	if opts.MaxSubscriptions < 1000 || opts.MaxSubscriptions > MaxSubscriptions {
		return opts, fmt.Errorf("--max-subscriptions %d: want 1000 to %d", opts.MaxSubscriptions, MaxSubscriptions)
	}
	if opts.Pipeline < 1 || opts.Pipeline > load.MaxPipeline {
		return opts, fmt.Errorf("--pipeline %d: want 1 to %d", opts.Pipeline, load.MaxPipeline)
	}
	if opts.EchoSize < 8 || opts.EchoSize > load.MaxSize {
		return opts, fmt.Errorf("--echo-size %d: want 8 to %d", opts.EchoSize, load.MaxSize)
	}
	switch sqpoll {
	case "off":
		opts.SQPoll = []bool{false}
	case "on":
		opts.SQPoll = []bool{true}
	case "both":
		opts.SQPoll = []bool{false, true}
	default:
		return opts, fmt.Errorf("--sqpoll %q: want off, on or both", sqpoll)
	}
	if opts.FanInPath != peers.FanInLane && opts.FanInPath != peers.FanInRemote && opts.FanInPath != peers.FanInSQ {
		return opts, fmt.Errorf("--fanin-path %q: want %s, %s or %s", opts.FanInPath, peers.FanInLane, peers.FanInRemote, peers.FanInSQ)
	}
	if opts.JSON && opts.GoBench {
		return opts, errors.New("--json and --gobench: choose one output format")
	}
	if opts.Plot != "" {
		if ext := plotFormat(opts.Plot); ext == "" {
			return opts, fmt.Errorf("--plot %q: the file name must end in .svg or .png", opts.Plot)
		}
	}

	var err error
	if opts.Scenarios, err = parseList("--scenario", scenarios, scenario.Names()); err != nil {
		return opts, err
	}
	if opts.Transports, err = parseList("--transport", transports, scenario.AllTransports()); err != nil {
		return opts, err
	}
	if transports == "all" {
		opts.Transports = scenario.BuiltTransports()
	}
	if conns != "" {
		if opts.Conns, err = parseInts("--conns", conns, 1, MaxConns); err != nil {
			return opts, err
		}
	}
	if batches != "" {
		opts.Batches, err = parseBatches(batches)
		if err != nil {
			return opts, err
		}
		opts.Batch, opts.BatchSet = opts.Batches[0], true
	} else if opts.Plot != "" {
		// a chart of throughput against batch size needs a sweep
		opts.Batches = []int{1, 8, 64, 256}
	}
	return opts, nil
}

// parseList reads "all" or a comma list of known names, keeping the known
// order and dropping repeats.
func parseList(flagName, s string, known []string) ([]string, error) {
	if s == "all" {
		return append([]string(nil), known...), nil
	}
	seen := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("%s %q: empty name in the list", flagName, s)
		}
		if err := scenario.CheckNames(flagName[2:], []string{name}, known); err != nil {
			return nil, err
		}
		seen[name] = true
	}
	var out []string
	for _, k := range known {
		if seen[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

func parseBatches(s string) ([]int, error) { return parseInts("--batch", s, 1, MaxBatch) }

// parseInts reads a comma list of numbers within lo..hi.
func parseInts(flagName, s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%s %q: %q is not a number", flagName, s, f)
		}
		if n < lo || n > hi {
			return nil, fmt.Errorf("%s %d: want %d to %d", flagName, n, lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

func plotFormat(name string) string {
	switch {
	case strings.HasSuffix(strings.ToLower(name), ".svg"):
		return "svg"
	case strings.HasSuffix(strings.ToLower(name), ".png"):
		return "png"
	}
	return ""
}
