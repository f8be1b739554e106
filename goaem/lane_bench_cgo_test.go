//go:build cgo

package goaem

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkLane is one lane's cost per event, producer and reader in one
// goroutine: PostBatch of 64 records of 32 bytes, then Poll.
func BenchmarkLane(b *testing.B) {
	r := openEmbedded(b, WithLanes(1))
	sub, err := r.Subscribe(Msg{Channel: 9}, SubOptions{})
	require.NoError(b, err)
	l, err := r.OpenLane(sub, LaneOptions{Entries: 1024})
	require.NoError(b, err)
	buf := make([]byte, 32)
	msgs := make([][]byte, 64)
	for i := range msgs {
		msgs[i] = buf
	}
	batch := make([]Event, 512)
	ctx := context.Background()
	b.ReportAllocs()
	events := 0
	cpu0 := cpuTime()
	for b.Loop() {
		for range 8 {
			if _, err := l.PostBatch(ctx, msgs); err != nil {
				b.Fatal(err)
			}
		}
		n, err := r.Poll(batch)
		if err != nil {
			b.Fatal(err)
		}
		for i := range batch[:n] {
			_ = batch[i].Payload()
			batch[i].Release()
		}
		events += n
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	// The machine is shared: CPU time per event is steadier than wall time.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(max(events, 1)), "cpu-ns/event")
}
