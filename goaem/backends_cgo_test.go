//go:build cgo

package goaem

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func init() {
	testBackends = append(testBackends, testBackend{name: "embedded", open: openEmbedded, timers: true})
}

func openEmbedded(t testing.TB, opts ...Option) *Ring {
	r, err := Open(append([]Option{WithBackend(BackendEmbedded)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}
