//go:build cgo

package goaem

import (
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

func init() {
	testBackends = append(testBackends, testBackend{name: "embedded", open: openEmbedded, timers: true})
	// Where the module is loaded (make vmtest), every shared test runs
	// against it too.
	if _, err := os.Stat("/dev/aem"); err == nil {
		testBackends = append(testBackends, testBackend{name: "kernel", open: openKernel, timers: true})
	}
}

func openKernel(t testing.TB, opts ...Option) *Ring {
	r, err := Open(append([]Option{WithBackend(BackendKernel)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func openEmbedded(t testing.TB, opts ...Option) *Ring {
	r, err := Open(append([]Option{WithBackend(BackendEmbedded)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// An absent module gives ErrNoDevice, naming the device, the document and
// why the kernel backend was chosen; a bogus AEM_BACKEND says so.
func TestOpenErrors(t *testing.T) {
	t.Setenv("AEM_BACKEND", "bogus")
	_, err := Open()
	require.ErrorIs(t, err, syscall.EINVAL)
	require.Contains(t, err.Error(), "bogus")

	t.Setenv("AEM_BACKEND", "kernel")
	r, err := Open()
	if _, statErr := os.Stat(abi.DevicePath); statErr == nil {
		require.NoError(t, err, "the module is loaded")
		require.NoError(t, r.Close())
		return
	}
	require.ErrorIs(t, err, ErrNoDevice)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Contains(t, err.Error(), "/dev/aem")
	require.Contains(t, err.Error(), "docs/KERNEL_MODULE.md")
	require.Contains(t, err.Error(), "AEM_BACKEND=kernel")
}
