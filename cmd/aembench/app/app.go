package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem"
	"github.com/aem-dev/aem/bench/peers"
	"github.com/aem-dev/aem/bench/scenario"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitFail  = 1 // a measurement failed
	ExitUsage = 2 // bad flags or names
)

// Main runs aembench with args (without the program name) and returns the
// exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	opts, err := ParseArgs(args)
	switch {
	case errors.Is(err, ErrHelp):
		Usage(stdout)
		return ExitOK
	case errors.Is(err, ErrVersion):
		fmt.Fprintf(stdout, "aembench %s\n", aem.Version)
		return ExitOK
	case err != nil:
		fmt.Fprintf(stderr, "aembench: %v\nrun 'aembench -h' for usage\n", err)
		return ExitUsage
	}
	return Run(opts, scenario.Open, stdout, stderr)
}

// Run measures what opts asks for, opening transports with open, and
// prints the results. A step that fails is reported at once and keeps its
// row, with the reason, in the table.
func Run(opts Options, open scenario.Opener, stdout, stderr io.Writer) int {
	steps := scenario.Plan(opts.Config)
	table := !opts.JSON && !opts.GoBench
	tty := isTerminal(stdout)
	prog := newProgress(stdout, len(steps), table && tty)
	// Without a terminal, a line per finished step shows the run is alive.
	var lines io.Writer
	if table && !tty {
		lines = stderr
	}
	if missing := peers.Missing(); len(missing) > 0 && slices.Equal(opts.Transports, scenario.BuiltTransports()) {
		// "all" in a build without some peers: say once what is not there
		fmt.Fprintf(stderr, "aembench: left out: %s\n", leftOut(missing))
	}

	var rows []scenario.Row
	var skipped []scenario.Step
	unopened := map[string]bool{}
	failed := false
	enc := json.NewEncoder(stdout)
	if opts.GoBench {
		writeGoBenchHeader(stdout)
	}
	for i, st := range steps {
		if unopened[st.Transport] {
			prog.done()
			continue
		}
		prog.start(st.Label())
		row, err := scenario.RunStep(st, opts.Config, open)
		prog.done()
		var oerr *scenario.OpenError
		switch {
		case errors.Is(err, scenario.ErrSkipped):
			skipped = append(skipped, st)
			continue
		case errors.As(err, &oerr):
			// one row says it; the transport's other steps would repeat it
			unopened[st.Transport] = true
			err = fmt.Errorf("%w (its other steps not run)", err)
			fallthrough
		case err != nil:
			failed = true
			row = scenario.Row{Scenario: st.Family + "/" + st.Variant, Transport: st.Transport,
				Family: st.Family, Variant: st.Variant, Param: st.Param, Err: err.Error()}
			if lines == nil {
				fmt.Fprintf(stderr, "aembench: %s: FAILED: %v\n", st.Label(), err)
			}
		}
		if lines != nil {
			fmt.Fprintf(lines, "aembench: %d/%d %s\n", i+1, len(steps), rowSummary(row))
		}
		rows = append(rows, row)
		// stream the machine-readable formats as results come
		switch {
		case opts.JSON:
			_ = enc.Encode(row)
		case opts.GoBench:
			writeGoBench(stdout, row)
		}
	}
	prog.finish()
	if table {
		writeTable(stdout, rows)
		writeSkipped(stdout, steps, skipped)
	}
	if opts.Plot != "" {
		if err := writePlot(opts.Plot, measuredRows(rows)); err != nil {
			fmt.Fprintf(stderr, "aembench: plot: %v\n", err)
			failed = true
		} else {
			fmt.Fprintf(stderr, "aembench: wrote the chart to %s\n", opts.Plot)
		}
	}
	if failed {
		return ExitFail
	}
	return ExitOK
}

// leftOut lists left-out transports, grouped by reason, on one line.
func leftOut(m map[string]string) string {
	byWhy := map[string][]string{}
	for name, why := range m {
		byWhy[why] = append(byWhy[why], name)
	}
	var parts []string
	for why, names := range byWhy {
		slices.Sort(names)
		parts = append(parts, strings.Join(names, ", ")+": "+why)
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// rowSummary is a finished row in a few words: its headline figure, or why
// it failed.
func rowSummary(r scenario.Row) string {
	label := r.Scenario + " " + r.Transport
	if r.Err != "" {
		return label + ": FAILED: " + r.Err
	}
	v, unit := scenario.Headline(r)
	switch unit {
	case "p99 ns":
		return fmt.Sprintf("%s: p99 %s", label, ns(int64(v)))
	case "ns/call":
		return fmt.Sprintf("%s: %s/call", label, ns(int64(v)))
	}
	return fmt.Sprintf("%s: %s %s", label, scenario.SI(v), unit)
}

// measuredRows drops the failed rows.
func measuredRows(rows []scenario.Row) []scenario.Row {
	return slices.DeleteFunc(slices.Clone(rows), func(r scenario.Row) bool { return r.Err != "" })
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progress is the live line on a terminal; a no-op elsewhere.
type progress struct {
	p     *mpb.Progress
	bar   *mpb.Bar
	mu    sync.Mutex
	label string
}

func newProgress(w io.Writer, total int, on bool) *progress {
	pr := &progress{}
	if !on || total == 0 {
		return pr
	}
	// a slow refresh: the renderer shares two cores with the measurement
	pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(30), mpb.WithRefreshRate(500*time.Millisecond))
	pr.bar = pr.p.AddBar(int64(total),
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Name("aembench "), decor.CountersNoUnit("%d/%d ")),
		mpb.AppendDecorators(
			decor.Name(" ETA "), decor.AverageETA(decor.ET_STYLE_MMSS),
			decor.Any(func(decor.Statistics) string {
				pr.mu.Lock()
				defer pr.mu.Unlock()
				return " " + pr.label
			})),
	)
	return pr
}

func (pr *progress) start(label string) {
	pr.mu.Lock()
	pr.label = label
	pr.mu.Unlock()
}

func (pr *progress) done() {
	if pr.bar != nil {
		pr.bar.Increment()
	}
}

func (pr *progress) finish() {
	if pr.p == nil {
		return
	}
	if !pr.bar.Completed() {
		pr.bar.Abort(true)
	}
	pr.p.Wait()
}

// ---- table ----

func writeTable(w io.Writer, rows []scenario.Row) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no results")
		return
	}
	aem := map[string]scenario.Row{}
	var failures []string
	for _, r := range rows {
		if r.Err != "" {
			failures = append(failures, r.Scenario+" "+r.Transport+": "+r.Err)
		} else if r.Transport == "aem" {
			aem[r.Scenario] = r
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttransport\tbackend\tevents\tseconds\tevents/s\tp50\tp99\tp99.9\tmax\tdropped\tallocs/ev\tB/sub\t+Go B/sub\tpeer/aem\tof\t")
	last := ""
	for _, r := range rows {
		if last != "" && r.Scenario != last {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t")
		}
		last = r.Scenario
		if r.Err != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\tFAILED\t\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Scenario, r.Transport)
			continue
		}
		ratio := ""
		_, unit := scenario.Headline(r)
		if a, ok := aem[r.Scenario]; ok && r.Transport != "aem" {
			if x := scenario.Ratio(r, a); x > 0 {
				ratio = fmt.Sprintf("%.2fx", x)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Scenario, r.Transport, r.Backend, scenario.SI(float64(r.Events)), r.Seconds, scenario.SI(r.EventsPerSec),
			ns(r.P50), ns(r.P99), ns(r.P999), ns(r.Max), r.Dropped, allocs(r.AllocsPerEvent),
			bytesPer(r.BytesPerSubscription), bytesPer(r.GoBytesPerSubscription), ratio, unit)
	}
	_ = tw.Flush()
	writeNotes(w, rows)
	writeTargets(w, rows)
	if len(failures) > 0 {
		fmt.Fprintf(w, "\nFAILED:\n  %s\n", strings.Join(failures, "\n  "))
	}
	fmt.Fprintln(w, "\npeer/aem: the peer's figure divided by AEM's, in the unit of the last column (events/s: higher is faster;")
	fmt.Fprintln(w, "ns/call, p99 ns, B/sub: lower is better). timers: seconds is CPU time, events/s firings per CPU-second.")
	fmt.Fprintln(w, "B/sub: AEM's kernel-side state (growth of the ring's charge); +Go B/sub: goaem's Go-side bookkeeping.")
}

// writeNotes lists what the server scenarios' rows checked and counted,
// and what other rows counted (the fan-in's entries per event, the
// subscriptions rows' rounds).
func writeNotes(w io.Writer, rows []scenario.Row) {
	first := true
	for _, r := range rows {
		if r.Err != "" || (r.BytesChecked == 0 && r.Notes == "") {
			continue
		}
		if first {
			fmt.Fprintln(w, "\ncounted (server scenarios: response bytes checked end to end and what the server counted; others: how the row was measured):")
			first = false
		}
		if r.BytesChecked == 0 {
			fmt.Fprintf(w, "  %s %s: %s\n", r.Scenario, r.Transport, r.Notes)
			continue
		}
		line := fmt.Sprintf("  %s %s: %s bytes checked", r.Scenario, r.Transport, scenario.SI(float64(r.BytesChecked)))
		if r.Notes != "" {
			line += "; " + r.Notes
		}
		fmt.Fprintln(w, line)
	}
}

// writeTargets judges the design targets this run has rows for.
func writeTargets(w io.Writer, rows []scenario.Row) {
	vs := scenario.Targets(rows)
	if len(vs) == 0 {
		return
	}
	fmt.Fprintln(w, "\ndesign targets, judged from this run's rows (a benchmark's verdict, not a test's; docs/BENCHMARKS.md):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range vs {
		got, want := scenario.SI(v.Value)+v.Unit, scenario.SI(v.Bound)+v.Unit
		if v.Ratio {
			got, want = fmt.Sprintf("%.2fx", v.Value), fmt.Sprintf("%gx", v.Bound)
		}
		cmp := map[bool]string{true: ">=", false: "<="}[v.AtLeast]
		verdict := map[bool]string{true: "met", false: "not met"}[v.Met]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t(want %s %s)\t%s\n", v.Row, v.What, got, cmp, want, verdict)
	}
	_ = tw.Flush()
}

// writeSkipped lists, per transport, the scenarios it has no mode for: a
// whole scenario when every variant was skipped, else the variants.
func writeSkipped(w io.Writer, all, skipped []scenario.Step) {
	if len(skipped) == 0 {
		return
	}
	variants := map[string]int{} // family -> variants planned per transport
	for _, st := range all {
		if st.Transport == all[0].Transport {
			variants[st.Family]++
		}
	}
	type key struct{ tr, fam string }
	got := map[key][]string{}
	var order []string
	seen := map[string]bool{}
	for _, st := range skipped {
		k := key{st.Transport, st.Family}
		got[k] = append(got[k], st.Family+"/"+st.Variant)
		if !seen[st.Transport] {
			seen[st.Transport] = true
			order = append(order, st.Transport)
		}
	}
	fmt.Fprintln(w, "\nnot measured (the transport has no such mode):")
	for _, tr := range order {
		var parts []string
		done := map[string]bool{}
		for _, st := range skipped {
			if st.Transport != tr || done[st.Family] {
				continue
			}
			done[st.Family] = true
			if v := got[key{tr, st.Family}]; len(v) == variants[st.Family] {
				parts = append(parts, st.Family)
			} else {
				parts = append(parts, v...)
			}
		}
		fmt.Fprintf(w, "  %s: %s\n", tr, strings.Join(parts, ", "))
	}
}

func ns(v int64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1000:
		return fmt.Sprintf("%dns", v)
	case v < 1e6:
		return fmt.Sprintf("%.1fµs", float64(v)/1e3)
	case v < 1e9:
		return fmt.Sprintf("%.2fms", float64(v)/1e6)
	}
	return fmt.Sprintf("%.2fs", float64(v)/1e9)
}

func allocs(v float64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%.3g", v)
}

func bytesPer(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", v)
}

// ---- Go benchmark format ----

func writeGoBenchHeader(w io.Writer) {
	fmt.Fprintf(w, "goos: %s\ngoarch: %s\npkg: github.com/aem-dev/aem/cmd/aembench\n", runtime.GOOS, runtime.GOARCH)
	if cpu := cpuModel(); cpu != "" {
		fmt.Fprintf(w, "cpu: %s\n", cpu)
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// GoBenchName is the benchmark name of a row, e.g.
// BenchmarkThroughput/batch=64/transport=chan-2.
func GoBenchName(r scenario.Row) string {
	fam := scenario.Family(r.Scenario)
	if fam == "" {
		return ""
	}
	name := "Benchmark" + strings.ToUpper(fam[:1]) + fam[1:]
	if _, variant, ok := strings.Cut(r.Scenario, "/"); ok {
		name += "/" + variant
	}
	return fmt.Sprintf("%s/transport=%s-%d", name, r.Transport, runtime.GOMAXPROCS(0))
}

func writeGoBench(w io.Writer, r scenario.Row) {
	n := r.Events
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "%s\t%d\t%.2f ns/op\t%.0f events/s", GoBenchName(r), n, r.Seconds*1e9/float64(n), r.EventsPerSec)
	if r.P50 > 0 {
		fmt.Fprintf(w, "\t%d p50-ns\t%d p99-ns\t%d p99.9-ns\t%d max-ns", r.P50, r.P99, r.P999, r.Max)
	}
	if r.BytesPerSubscription > 0 {
		fmt.Fprintf(w, "\t%.1f B/sub", r.BytesPerSubscription)
	}
	fmt.Fprintf(w, "\t%.4f allocs/event\t%d dropped\n", r.AllocsPerEvent, r.Dropped)
}
