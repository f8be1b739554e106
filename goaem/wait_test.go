package goaem

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A context's cancellation nudges the sleeper from a goroutine of its own
// (context.AfterFunc), so a nudge meant for one wait can land while the
// next wait, with the next context, sets its own deadline. Whatever the
// interleaving, a wait must look: a past deadline left behind without the
// nudged flag would have every later wait with that context return
// without looking, until the context ends.
func TestPollFileLateNudge(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	defer unix.Close(efd)
	var looks atomic.Int64
	pf, err := openPollFile(efd, func() error { return nil }, func() bool { looks.Add(1); return true })
	require.NoError(t, err)
	defer pf.close()
	const rounds, maxWaits = 20000, 100
	start := make(chan struct{})
	for i := range rounds {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		before := looks.Load()
		nudged := make(chan struct{})
		go func() {
			<-start
			pf.nudge()
			close(nudged)
		}()
		start <- struct{}{} // the nudge races this round's waits
		for w := 0; ; w++ {
			done, err := pf.wait(ctx)
			require.NoError(t, err, "round %d", i)
			if done {
				break
			}
			require.Less(t, w, maxWaits, "round %d: the waits return without looking", i)
		}
		require.Equal(t, before+1, looks.Load(), "round %d", i)
		<-nudged
		cancel()
	}
}
