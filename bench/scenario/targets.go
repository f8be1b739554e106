package scenario

import "github.com/aem-dev/aem/bench/peers"

// A Verdict is one design target judged from one run's rows: AEM's figure
// against a peer's in the same run, or against a fixed bound. The targets
// are issue 10's and 12's (docs/BENCHMARKS.md, "Against the design
// targets", keeps what each has measured over time); a run judges only
// those whose rows it has, and a verdict is a benchmark's, never a test's.
type Verdict struct {
	Row     string  // the AEM row judged, e.g. fanin/producers=4
	What    string  // the figure compared, e.g. "events/s ÷ chan's"
	Value   float64 // AEM's figure, or its ratio to the peer's
	Ratio   bool    // Value is a ratio to a peer's figure
	AtLeast bool    // the target is Value >= Bound; else Value <= Bound
	Bound   float64
	Unit    string // an absolute Value's unit ("/s", "B")
	Met     bool
}

// target is a design target as data: AEM's row (scenario and backend),
// the peer's row it is compared with (none: against bound alone), the
// figure compared and which way it must lie.
type target struct {
	scenario string // the AEM row's scenario; "" with family: the family's largest variant
	family   string
	backend  string // only AEM rows of this backend; "" any
	peer     string // the peer's transport; "" compares AEM's figure with bound
	peerScen string // the peer row's scenario when not the AEM row's
	figure   func(Row) float64
	what     string
	atLeast  bool // AEM's figure (or ratio) must be >= bound; else <=
	bound    float64
	unit     string // for an absolute bound: how Value prints
}

func eventsPerSec(r Row) float64 { return r.EventsPerSec }
func p50(r Row) float64          { return float64(r.P50) }
func p99(r Row) float64          { return float64(r.P99) }
func kernelBytes(r Row) float64  { return r.BytesPerSubscription }
func goBytes(r Row) float64      { return r.GoBytesPerSubscription }

// designTargets: issue 12's (fan-in with four producers, calls, priority,
// subscriptions) and issue 10's (HTTP at 256 connections, per backend).
var designTargets = []target{
	{scenario: "fanin/producers=4", peer: peers.NameChan, figure: eventsPerSec, what: "events/s ÷ chan's", atLeast: true, bound: 3},
	{scenario: "fanin/producers=4", peer: peers.NameURingMsgRing, figure: eventsPerSec, what: "events/s ÷ io_uring_msg_ring's", atLeast: true, bound: 10},
	{scenario: "call/mode=busy,lane", peer: peers.NameSpinPong, peerScen: "call/mode=busy", figure: p50, what: "p50 ÷ spin_pingpong's (busy)", bound: 2},
	{scenario: "call/mode=blocking", peer: peers.NameEventfdShm, figure: p50, what: "p50 ÷ eventfd_shm's", bound: 1},
	{scenario: "priority/load=flood", peer: peers.NameAEM, peerScen: "priority/load=idle", figure: p99, what: "urgent p99 ÷ its idle p99", bound: 2},
	{family: Subscriptions, figure: eventsPerSec, what: "set up per second", atLeast: true, bound: 5e6, unit: "/s"},
	{family: Subscriptions, figure: kernelBytes, what: "kernel-side bytes per idle subscription", bound: 64, unit: "B"},
	{family: Subscriptions, figure: goBytes, what: "Go-side bytes per idle subscription", bound: 64, unit: "B"},
	{scenario: "http/conns=256", backend: BackendEmbedded, peer: peers.NameGoNet, figure: eventsPerSec, what: "requests/s ÷ net/http's", atLeast: true, bound: 1.5},
	{scenario: "http/conns=256", backend: BackendEmbedded, peer: peers.NameEpoll, figure: eventsPerSec, what: "requests/s ÷ epoll's", atLeast: true, bound: 0.8},
	{scenario: "http/conns=256", backend: BackendKernel, peer: peers.NameGoNet, figure: eventsPerSec, what: "requests/s ÷ net/http's", atLeast: true, bound: 2},
	{scenario: "http/conns=256", backend: BackendKernel, peer: peers.NameEpoll, figure: eventsPerSec, what: "requests/s ÷ epoll's", atLeast: true, bound: 1},
	{scenario: "http/conns=256", peer: peers.NameGoNet, figure: p99, what: "p99 ÷ net/http's", bound: 1},
}

// Targets judges every design target whose rows this run has; failed
// rows and rows without the figure (0) judge nothing.
func Targets(rows []Row) []Verdict {
	type key struct{ scenario, transport string }
	byKey := map[key]Row{}
	largest := map[string]Row{} // family -> AEM's row of its largest Param
	for _, r := range rows {
		if r.Err != "" {
			continue
		}
		byKey[key{r.Scenario, r.Transport}] = r
		if r.Transport == peers.NameAEM {
			fam := Family(r.Scenario)
			if l, ok := largest[fam]; !ok || r.Param > l.Param {
				largest[fam] = r
			}
		}
	}
	var out []Verdict
	for _, t := range designTargets {
		var a Row
		var ok bool
		if t.family != "" {
			a, ok = largest[t.family]
		} else {
			a, ok = byKey[key{t.scenario, peers.NameAEM}]
		}
		if !ok || (t.backend != "" && a.Backend != t.backend) || t.figure(a) == 0 {
			continue
		}
		v := Verdict{Row: a.Scenario, What: t.what, Value: t.figure(a), Ratio: t.peer != "",
			AtLeast: t.atLeast, Bound: t.bound, Unit: t.unit}
		if t.peer != "" {
			scen := t.peerScen
			if scen == "" {
				scen = a.Scenario
			}
			p, ok := byKey[key{scen, t.peer}]
			if !ok || t.figure(p) == 0 {
				continue
			}
			v.Value /= t.figure(p)
		}
		if t.atLeast {
			v.Met = v.Value >= t.bound
		} else {
			v.Met = v.Value <= t.bound
		}
		out = append(out, v)
	}
	return out
}
