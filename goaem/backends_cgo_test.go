//go:build cgo

package goaem

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func init() {
	testBackends = append(testBackends, testBackend{name: "embedded", open: openEmbedded, timers: true})
	// Where the module is loaded (make vmtest), every shared test runs
	// against it too.
	if _, err := os.Stat("/dev/aem"); err == nil {
		testBackends = append(testBackends, testBackend{name: "kernel", open: openKernel, timers: true})
	}
}

func openKernel(t testing.TB, opts ...Option) *Ring {
	r, err := Open(append([]Option{WithBackend(BackendKernel)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func openEmbedded(t testing.TB, opts ...Option) *Ring {
	r, err := Open(append([]Option{WithBackend(BackendEmbedded)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}
