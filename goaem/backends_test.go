package goaem

import (
	"context"
	"testing"
	"time"
)

// testBackend opens a ring for the shared tests: over the Go heap (always)
// and the embedded backend (cgo builds; see backends_cgo_test.go).
type testBackend struct {
	name string
	open func(t testing.TB, opts ...Option) *Ring
	// timers: the backend runs the timer source.
	timers bool
}

// allocRuns is how many runs testing.AllocsPerRun averages over in the
// allocation tests.
const allocRuns = 200

var testBackends = []testBackend{
	{name: "heap", open: func(t testing.TB, opts ...Option) *Ring {
		r, _ := newHeapRing(t, opts...)
		return r
	}},
}

func forEachBackend(t *testing.T, f func(t *testing.T, b testBackend)) {
	for _, b := range testBackends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// testCtx bounds every wait in a test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
