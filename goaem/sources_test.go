package goaem

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/aem-dev/aem/goaem/abi"
)

// The socket and process sources exist in the module and the embedded
// backend (the process source where the connector answers: privileged, in
// the initial namespaces); elsewhere subscribing says so with EOPNOTSUPP
// (EPERM without the privilege).
func TestFDSource(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t)
		sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		defer unix.Close(sp[0])
		defer unix.Close(sp[1])
		sub, err := r.Subscribe(FD{FD: sp[0], Events: abi.FDReadable | abi.FDHangup}, SubOptions{Tag: 3})
		if errors.Is(err, syscall.EOPNOTSUPP) {
			t.Skipf("%s backend has no socket source", b.name)
		}
		require.NoError(t, err)
		_, err = unix.Write(sp[1], []byte("x"))
		require.NoError(t, err)
		waitN(t, testCtx(t), r, 1, func(ev *Event) {
			assert.Equal(t, uint8(abi.SrcFD), ev.Source())
			p := ev.Payload()
			require.GreaterOrEqual(t, len(p), 8)
			assert.Equal(t, int32(sp[0]), int32(binary.LittleEndian.Uint32(p)))
			assert.NotZero(t, binary.LittleEndian.Uint32(p[4:])&abi.FDReadable)
		})
		require.NoError(t, sub.Unsubscribe())
	})
}

func TestProcSource(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		r := b.open(t, WithSlotSize(256))
		sub, err := r.Subscribe(Proc{Events: abi.ProcExit, Pid: os.Getpid()}, SubOptions{})
		if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EPERM) {
			t.Skipf("%s backend has no process source here: %v", b.name, err)
		}
		require.NoError(t, err)
		path, err := exec.LookPath("true")
		if err != nil {
			t.Skip("no true(1)")
		}
		cmd := exec.Command(path)
		require.NoError(t, cmd.Run())
		child := int32(cmd.Process.Pid)
		found := false
		ctx := testCtx(t)
		batch := make([]Event, 16)
		for !found {
			n, err := r.Wait(ctx, batch, 1)
			require.NoError(t, err, "no exit event for pid %d", child)
			for i := range batch[:n] {
				p := batch[i].Payload()
				if len(p) >= 8 && binary.LittleEndian.Uint32(p) == abi.ProcExit &&
					int32(binary.LittleEndian.Uint32(p[4:])) == child {
					found = true
				}
				batch[i].Release()
			}
		}
		require.NoError(t, sub.Unsubscribe())
	})
}
