package goaem

import (
	"context"
	"net"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// listenerProto is the SO_PROTOCOL of ln's socket: IPPROTO_TCP for a plain
// TCP listener, IPPROTO_MPTCP for a multipath one.
func listenerProto(t *testing.T, ln net.Listener) int {
	t.Helper()
	sc, ok := ln.(syscall.Conn)
	require.True(t, ok, "%T has no raw conn", ln)
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	proto, serr := 0, error(nil)
	require.NoError(t, rc.Control(func(fd uintptr) {
		proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}))
	require.NoError(t, serr)
	return proto
}

// The module's socket source refuses MPTCP listeners (EOPNOTSUPP), and Go
// makes MPTCP listeners by default where the kernel has MPTCP: Listen and
// ListenConfig must give plain TCP whatever the kernel and the caller's
// ListenConfig say.
func TestListenPlainTCP(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{
		{"tcp", "127.0.0.1:0"},
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			ln, err := Listen(tc.network, tc.addr)
			if err != nil && tc.network == "tcp6" {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			require.NoError(t, err)
			defer ln.Close()
			assert.Equal(t, unix.IPPROTO_TCP, listenerProto(t, ln))
		})
	}

	t.Run("config asks for MPTCP", func(t *testing.T) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		controlled := false
		lc.Control = func(_, _ string, _ syscall.RawConn) error {
			controlled = true
			return nil
		}
		ln, err := ListenConfig(lc).Listen(context.Background(), "tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		assert.Equal(t, unix.IPPROTO_TCP, listenerProto(t, ln))
		assert.True(t, controlled, "the caller's Control ran")
	})

	t.Run("unix", func(t *testing.T) {
		ln, err := Listen("unix", filepath.Join(t.TempDir(), "s"))
		require.NoError(t, err)
		defer ln.Close()
		_, ok := ln.(*net.UnixListener)
		assert.True(t, ok, "%T", ln)
	})
}
