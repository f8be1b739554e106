//go:build !cgo

package peers

import "fmt"

// Without cgo only the Go peers exist.
func newCPeer(name string) (Transport, error) {
	return nil, fmt.Errorf("peer %q is written in C and needs a cgo build (CGO_ENABLED=1)", name)
}

func newCServer(name string) (Transport, error) {
	return nil, fmt.Errorf("peer %q is written in C and needs a cgo build (CGO_ENABLED=1)", name)
}
