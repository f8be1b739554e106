package goaem

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHeapPollClassOrderAndPayloads(t *testing.T) {
	r, k := newHeapRing(t, WithClasses(2), WithSlots(16))
	ctx := context.Background()
	require.NoError(t, k.produce(ctx, 1, 7, 3, 8))   // low class first...
	require.NoError(t, k.produce(ctx, 0, 8, 2, 100)) // ...urgent ones with slot payloads after
	batch := make([]Event, 16)
	n, err := r.Poll(batch)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	for i, want := range []struct {
		class int
		seq   uint64
		size  int
	}{{0, 0, 100}, {0, 1, 100}, {1, 0, 8}, {1, 1, 8}, {1, 2, 8}} {
		ev := &batch[i]
		assert.Equal(t, want.class, ev.Class(), "event %d class", i)
		p := ev.Payload()
		require.Len(t, p, want.size, "event %d payload", i)
		assert.Equal(t, want.seq, binary.LittleEndian.Uint64(p), "event %d seq", i)
		ev.Release()
	}
	n, err = r.Poll(batch)
	require.NoError(t, err)
	assert.Zero(t, n, "rings drained")
}
