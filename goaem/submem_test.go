//go:build cgo

package goaem

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What goaem keeps per idle subscription: the Subscription, in a slab with
// no pointer but in its head, and its slot in the ring's table. The design
// budget is 64 bytes.
func TestSubscriptionFootprint(t *testing.T) {
	obj := unsafe.Sizeof(Subscription{})
	slot := unsafe.Sizeof(atomic.Pointer[Subscription]{})
	assert.LessOrEqual(t, obj, uintptr(40), "Subscription is %d bytes", obj)
	assert.LessOrEqual(t, obj+slot, uintptr(64), "an idle subscription keeps %d+%d bytes", obj, slot)
	t.Logf("idle subscription: %d-byte Subscription + %d-byte table slot", obj, slot)
	slab := unsafe.Sizeof(subSlab[[subSlabMax]Subscription]{})
	assert.LessOrEqual(t, slab, uintptr(5*8192), "the largest slab takes %d bytes: past five pages", slab)
}

// Every slab size finds its ring and keeps each Subscription's ext apart;
// a Subscription outside a slab belongs to no ring.
func TestSubscriptionSlabs(t *testing.T) {
	r, err := Open(WithBackend(BackendEmbedded))
	require.NoError(t, err)
	defer r.Close()
	for _, n := range []int{1, 2, 16, 17, 100, 256, 512, 1000, subSlabMax} {
		subs := newSubSlab(r, n)
		require.GreaterOrEqual(t, len(subs), n)
		x := &subExt{}
		for i := range subs {
			require.Same(t, r, subs[i].ring(), "slab of %d, entry %d", n, i)
			require.Nil(t, subs[i].loadExt())
		}
		last := &subs[len(subs)-1]
		last.extSlot().Store(x)
		assert.Same(t, x, last.loadExt(), "slab of %d", n)
		if len(subs) > 1 {
			assert.Nil(t, subs[0].loadExt(), "slab of %d: another entry's ext", len(subs))
		}
	}
	var loose Subscription
	assert.Nil(t, loose.Ring())
	assert.Nil(t, loose.loadExt())
}

// A subscription with its own handler keeps the handler where it was, and
// its final counts arrive beside it.
func TestSubscriptionExtKeepsHandler(t *testing.T) {
	r, err := Open(WithBackend(BackendEmbedded))
	require.NoError(t, err)
	defer r.Close()
	fired := make(chan struct{}, 1)
	s, err := r.Subscribe(Timer{First: time.Millisecond}, SubOptions{Handler: func(ev *Event) error {
		fired <- struct{}{}
		return nil
	}, MaxInFlight: 2})
	require.NoError(t, err)
	batch := make([]Event, 8)
	deadline := time.Now().Add(10 * time.Second)
	// Until the event was handled and the subscription ended: its end result
	// (on the result ring) may be read before the event (on its class ring).
	for (len(fired) == 0 || !s.Ended()) && time.Now().Before(deadline) {
		n, err := r.Poll(batch)
		require.NoError(t, err)
		for i := range batch[:n] {
			h := s.extra().handler
			require.NotNil(t, h, "the subscription's own handler")
			require.NoError(t, h(&batch[i]))
			batch[i].Release()
		}
		time.Sleep(time.Millisecond)
	}
	require.True(t, s.Ended(), "one-shot timer did not end")
	assert.Len(t, fired, 1)
	st, err := s.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Produced)
	assert.NotNil(t, s.extra().sem, "the bound survives the final counts")
}

// BenchmarkSubscriptionMemory: Go heap kept per idle subscription (timers
// an hour away), measured after a GC.
func BenchmarkSubscriptionMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		r, err := Open(WithBackend(BackendEmbedded), WithSQEntries(4096))
		require.NoError(b, err)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		subs := make([]*Subscription, 0, n)
		for range n {
			s, err := r.Subscribe(Timer{First: time.Hour}, SubOptions{})
			require.NoError(b, err)
			subs = append(subs, s)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// The caller's own slice of handles is not goaem's.
		kept := float64(after.HeapAlloc-before.HeapAlloc) - float64(cap(subs))*8
		b.ReportMetric(kept/n, "B/sub")
		runtime.KeepAlive(subs)
		require.NoError(b, r.Close())
	}
}
