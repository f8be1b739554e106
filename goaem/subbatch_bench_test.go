//go:build cgo

package goaem

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkBatchSubscribe: idle timer subscriptions set up through Batches
// of 1024 on one goroutine, as aembench's subscriptions row does on two.
func BenchmarkBatchSubscribe(b *testing.B) {
	const n, per = 100_000, 1024
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(WithBackend(BackendEmbedded))
		require.NoError(b, err)
		bt := r.NewBatch()
		cpu0 := processCPU(b)
		start := time.Now()
		for lo := 0; lo < n; lo += per {
			bt.Reset()
			for i := lo; i < min(lo+per, n); i++ {
				bt.Subscribe(Timer{First: time.Hour + time.Duration(i)*time.Microsecond}, SubOptions{Class: 1})
			}
			require.NoError(b, bt.Submit(context.Background()))
		}
		b.ReportMetric(n/time.Since(start).Seconds(), "subs/s")
		b.ReportMetric(float64(processCPU(b)-cpu0)/n, "cpu-ns/sub")
		require.NoError(b, r.Close())
	}
}

// processCPU is the process's CPU time so far (every thread: the embedded
// backend's too), in ns: on a shared machine it says what the work cost
// where the wall clock says how the scheduler treated it.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return ru.Utime.Nano() + ru.Stime.Nano()
}
