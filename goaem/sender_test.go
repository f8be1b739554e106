package goaem

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// A message event names its sender (ABI 4): this process, its effective
// uid and the posting ring, for inline posts (up to 32 bytes, as before)
// and one in a slot; reading it allocates nothing. An event of another
// source has none.
func TestEventSender(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		if !b.timers {
			t.Skip("the heap test kernel has no second ring to post from")
		}
		rx, tx := b.open(t), b.open(t)
		_, err := rx.Subscribe(Msg{Channel: 3}, SubOptions{})
		require.NoError(t, err)
		for _, n := range []int{8, abi.CQEInline, 100} {
			require.NoError(t, tx.Post(MakeAddr(rx.ID(), 3), make([]byte, n), 0))
			batch := make([]Event, 4)
			ctx := testCtx(t)
			got, err := rx.Wait(ctx, batch, 1)
			require.NoError(t, err)
			require.Equal(t, 1, got)
			ev := &batch[0]
			assert.Len(t, ev.Payload(), n)
			assert.Equal(t, n > abi.CQEInline, ev.cqe.Flags&abi.CQEFSlot != 0, "a %d-byte post in a slot", n)
			s, ok := ev.Sender()
			require.True(t, ok, "a %d-byte post on an ABI %d ring carries its sender", n, abi.APIVersion)
			assert.Equal(t, int32(os.Getpid()), s.PID)
			assert.Equal(t, uint32(os.Geteuid()), s.UID)
			assert.Equal(t, tx.ID(), s.RingID)
			assert.Zero(t, testing.AllocsPerRun(100, func() { s, ok = ev.Sender() }), "Sender allocates")
			ev.Release()
		}
		_, err = rx.Subscribe(Timer{First: time.Millisecond}, SubOptions{})
		require.NoError(t, err)
		batch := make([]Event, 1)
		_, err = rx.Wait(testCtx(t), batch, 1)
		require.NoError(t, err)
		_, ok := batch[0].Sender()
		assert.False(t, ok, "a timer event has no sender")
		batch[0].Release()
	})
}
