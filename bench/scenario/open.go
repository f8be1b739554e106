package scenario

import (
	"fmt"
	"slices"

	"github.com/aem-dev/aem/bench/aemt"
	"github.com/aem-dev/aem/bench/peers"
)

// Open opens AEM (on backend) or a peer by name.
func Open(name, backend string) (peers.Transport, error) {
	if name == peers.NameAEM {
		return aemt.Open(backend)
	}
	return peers.New(name)
}

// Headline is the number a row is compared by, with its unit.
func Headline(r Row) (float64, string) {
	switch Family(r.Scenario) {
	case Call:
		if r.EventsPerSec == 0 {
			return 0, "ns/call"
		}
		return 1e9 / r.EventsPerSec, "ns/call"
	case Latency, Priority:
		return float64(r.P99), "p99 ns"
	case Subscriptions:
		return r.BytesPerSubscription, "B/sub"
	case Timers:
		return r.EventsPerSec, "firings/cpu-s"
	case TCPEcho, HTTP:
		return r.EventsPerSec, "requests/s"
	}
	return r.EventsPerSec, "events/s"
}

// Ratio is a peer's headline divided by AEM's in the same scenario variant;
// 0 when either is missing.
func Ratio(peer, aem Row) float64 {
	p, _ := Headline(peer)
	a, _ := Headline(aem)
	if a == 0 || p == 0 {
		return 0
	}
	return p / a
}

// CheckNames reports the first name in got that is not in known.
func CheckNames(kind string, got, known []string) error {
	for _, g := range got {
		if !slices.Contains(known, g) {
			return fmt.Errorf("unknown %s %q (known: %v)", kind, g, known)
		}
	}
	return nil
}
