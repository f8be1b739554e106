// Package aemt is AEM's transport for the benchmarks: goaem behind the same
// peers.Transport interface as every peer.
package aemt

import (
	"errors"

	"github.com/aem-dev/aem/bench/peers"
)

// ErrNotBuilt says the goaem package this transport sits on is not there yet.
var ErrNotBuilt = errors.New("aem transport: goaem is not available in this tree yet")

// Open opens AEM on backend (auto, embedded or kernel).
func Open(backend string) (peers.Transport, error) {
	return nil, ErrNotBuilt
}
