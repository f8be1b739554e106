//go:build cgo

package goaem

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// The child producer of TestRemoteLanes: this test binary run again with
// GOAEM_LANE_ADDR set. It opens a lane to that address from a ring of its
// own, posts its records, makes GOAEM_LANE_CALLS calls through it (the
// consumer answers each with the request and "ok"), and closes the lane
// (or, with GOAEM_LANE_DIE, exits with it open).
func TestRemoteLaneProducerChild(t *testing.T) {
	addr := os.Getenv("GOAEM_LANE_ADDR")
	if addr == "" {
		t.Skip("run by TestRemoteLanes as a producer process")
	}
	a, _ := strconv.ParseUint(addr, 0, 64)
	g, _ := strconv.Atoi(os.Getenv("GOAEM_LANE_ID"))
	each, _ := strconv.Atoi(os.Getenv("GOAEM_LANE_EACH"))
	entries := uint32(64)
	if e, _ := strconv.Atoi(os.Getenv("GOAEM_LANE_ENTRIES")); e > 0 {
		entries = uint32(e)
	}
	r, err := Open(WithBackend(BackendKernel))
	require.NoError(t, err)
	l, err := r.OpenLaneTo(Addr(a), LaneOptions{Entries: entries, RecordSize: 8})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	buf := make([]byte, 8)
	for k := 0; k < each; k++ {
		require.NoError(t, l.Post(ctx, laneRecord(buf, uint32(g), uint32(k))), "post %d", k)
	}
	if os.Getenv("GOAEM_LANE_SLEEPS") != "" {
		// The lane was full most of the time: the producer slept in the
		// module and the consumer's hand-back woke it.
		l.mu.Lock()
		woken := l.remote.woken
		l.mu.Unlock()
		fmt.Fprintf(os.Stderr, "producer %d: %d records through a lane of %d, woken for room %d times\n", g, each, entries, woken)
		require.NotZero(t, woken, "the producer never slept in AEM_IOC_LANE_WAIT")
	}
	calls, _ := strconv.Atoi(os.Getenv("GOAEM_LANE_CALLS"))
	resp := make([]byte, 32)
	for k := 0; k < calls; k++ {
		req := laneRecord(buf, uint32(g), uint32(k))
		n, err := l.Call(ctx, req, resp)
		require.NoError(t, err, "call %d", k)
		require.Equal(t, string(req)+"ok", string(resp[:n]), "call %d: its own answer", k)
	}
	if os.Getenv("GOAEM_LANE_DIE") != "" {
		os.Exit(0) // the module ends the lane: AEM_LANE_P_CLOSED
	}
	require.NoError(t, l.Close())
	require.NoError(t, r.Close())
}

func startProducer(t *testing.T, addr Addr, g, each, calls int, die bool, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestRemoteLaneProducerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOAEM_LANE_ADDR=%#x", uint64(addr)),
		fmt.Sprintf("GOAEM_LANE_ID=%d", g), fmt.Sprintf("GOAEM_LANE_EACH=%d", each),
		fmt.Sprintf("GOAEM_LANE_CALLS=%d", calls))
	cmd.Env = append(cmd.Env, env...)
	if die {
		cmd.Env = append(cmd.Env, "GOAEM_LANE_DIE=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	return cmd
}

// Producers in other processes post through remote lanes into a ring's
// Msg subscription: every record arrives, in each producer's order, as the
// subscription's events, while the reader sleeps in Wait between batches
// (the producers' kicks wake it); one producer dies with its lane open and
// its records still all arrive; calls through remote lanes are answered
// across the processes; lanes' slots come back; a producer of a full lane
// sleeps in the module until the reader's hand-back wakes it. Closing the
// consumer ring makes the producer's post fail with ErrClosed and EPIPE.
// Elsewhere than on the module, remote lanes are refused with EOPNOTSUPP.
func TestRemoteLanes(t *testing.T) {
	if _, err := os.Stat(abi.DevicePath); err != nil {
		r := openEmbedded(t)
		_, err := r.OpenLaneTo(r.Addr(9), LaneOptions{})
		require.ErrorIs(t, err, syscall.EOPNOTSUPP)
		_, err = Open(WithBackend(BackendEmbedded), WithRemoteLanes(1))
		require.ErrorIs(t, err, syscall.EOPNOTSUPP)
		return
	}
	const producers, each, calls = 3, 2000, 300
	r := openKernel(t, WithRemoteLanes(producers))
	sub, err := r.Subscribe(Msg{Channel: 9}, SubOptions{Tag: 77})
	require.NoError(t, err)
	ctx := testCtx(t)

	cmds := make([]*exec.Cmd, producers)
	for g := range producers {
		cmds[g] = startProducer(t, r.Addr(9), g, each, calls*(g%2), g == 0) // producer 1 calls
	}
	answered := 0
	o := orderCheck{next: make([]uint32, producers)}
	batch := make([]Event, 32)
	for (o.got < producers*each || answered < calls) && ctx.Err() == nil {
		n, err := r.Wait(ctx, batch, 1)
		require.NoError(t, err)
		for i := range batch[:n] {
			ev := &batch[i]
			assert.Equal(t, sub, ev.Subscription(), "a remote lane event belongs to its subscription")
			assert.Equal(t, uint64(77), ev.Tag())
			if ev.IsCall() {
				require.NoError(t, ev.Reply(append(ev.Payload(), "ok"...)))
				answered++
				continue
			}
			o.see(t, ev)
			ev.Release()
		}
	}
	for _, cmd := range cmds {
		require.NoError(t, cmd.Wait(), "a producer process failed")
	}
	assert.Equal(t, producers*each, o.got, "every record arrived")
	assert.Equal(t, calls, answered, "every call was answered")
	assert.Zero(t, o.bad, "each producer's records in its order")

	// The lanes end (drained, detached), so their slots take new producers.
	cmd := startProducer(t, r.Addr(9), 0, 10, 0, false)
	o.next[0] = 0
	got := o.got
	for o.got < got+10 && ctx.Err() == nil {
		n, err := r.Wait(ctx, batch, 1)
		require.NoError(t, err)
		for i := range batch[:n] {
			o.see(t, &batch[i])
			batch[i].Release()
		}
	}
	require.NoError(t, cmd.Wait())
	assert.Equal(t, got+10, o.got, "a reused slot's records arrived")

	// A producer on a lane of 4 and a reader that reads slowly: the
	// producer sleeps in the module for room (AEM_IOC_LANE_WAIT) and the
	// reader's hand-back wakes it (AEM_IOC_LANE_ROOM); the child asserts
	// that it was woken and that no post failed. Every record arrives, in
	// order.
	const slow = 2000
	cmd = startProducer(t, r.Addr(9), 1, slow, 0, false, "GOAEM_LANE_ENTRIES=4", "GOAEM_LANE_SLEEPS=1")
	o.next[1] = 0
	got = o.got
	for o.got < got+slow && ctx.Err() == nil {
		n, err := r.Wait(ctx, batch, 1)
		require.NoError(t, err)
		for i := range batch[:n] {
			o.see(t, &batch[i])
			batch[i].Release()
			if o.got%50 == 0 {
				time.Sleep(time.Millisecond) // slow: the lane stays full
			}
		}
	}
	require.NoError(t, cmd.Wait(), "the tiny lane's producer failed")
	assert.Equal(t, got+slow, o.got, "every record of the tiny lane arrived")
	assert.Zero(t, o.bad, "the tiny lane's records in order")

	// The producer's side of a closed consumer.
	p := openKernel(t)
	c := openKernel(t, WithRemoteLanes(1))
	_, err = c.Subscribe(Msg{Channel: 3}, SubOptions{Tag: 5})
	require.NoError(t, err)
	_, err = p.OpenLaneTo(c.Addr(4), LaneOptions{})
	require.ErrorIs(t, err, syscall.ENOENT, "no subscription on that channel")
	_, err = p.OpenLaneTo(c.Addr(3), LaneOptions{RecordSize: abi.LaneMaxRecord + 1})
	require.ErrorIs(t, err, syscall.EINVAL)
	l, err := p.OpenLaneTo(c.Addr(3), LaneOptions{Entries: 4})
	require.NoError(t, err)
	_, err = p.OpenLaneTo(c.Addr(3), LaneOptions{})
	require.ErrorIs(t, err, syscall.ENOSPC, "the consumer takes one lane")
	require.NoError(t, c.Close())
	err = l.TryPost([]byte("x"))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, err, syscall.EPIPE)
	require.NoError(t, l.Close())
}
