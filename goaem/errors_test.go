package goaem

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

func TestSentinels(t *testing.T) {
	assert.Equal(t, "goaem: ring closed", ErrClosed.Error())
	assert.ErrorIs(t, ErrClosed, os.ErrClosed)
	assert.ErrorIs(t, ErrNoDevice, os.ErrNotExist)
	assert.Contains(t, ErrNoDevice.Error(), abi.DevicePath)
	assert.Contains(t, ErrNoDevice.Error(), "docs/KERNEL_MODULE.md")
	assert.ErrorIs(t, ErrTooLarge, syscall.EINVAL)
}

func TestChooseBackend(t *testing.T) {
	_, devErr := os.Stat(abi.DevicePath)
	for _, tc := range []struct {
		backend Backend
		env     string
		want    Backend
		why     string
	}{
		{BackendEmbedded, "kernel", BackendEmbedded, "by WithBackend"},
		{BackendKernel, "", BackendKernel, "by WithBackend"},
		{BackendAuto, "kernel", BackendKernel, "by AEM_BACKEND=kernel"},
		{BackendAuto, "embedded", BackendEmbedded, "by AEM_BACKEND=embedded"},
	} {
		t.Setenv("AEM_BACKEND", tc.env)
		cfg := config{backend: tc.backend}
		b, why, err := cfg.chooseBackend()
		require.NoError(t, err)
		assert.Equal(t, tc.want, b, "%v with AEM_BACKEND=%q", tc.backend, tc.env)
		assert.Equal(t, tc.why, why)
	}
	t.Setenv("AEM_BACKEND", "")
	b, why, err := (&config{}).chooseBackend()
	require.NoError(t, err)
	if devErr == nil {
		assert.Equal(t, BackendKernel, b, why)
	} else {
		assert.Equal(t, BackendEmbedded, b, why)
	}
	t.Setenv("AEM_BACKEND", "bogus")
	_, _, err = (&config{}).chooseBackend()
	assert.ErrorIs(t, err, syscall.EINVAL)
	assert.Contains(t, err.Error(), `AEM_BACKEND="bogus"`)
}

// Validation on the Go side matches EINVAL, as the kernel side's refusal of
// the same input would, and says what was wrong.
func TestValidationErrors(t *testing.T) {
	r, _ := newHeapRing(t, WithClasses(2))
	for name, err := range map[string]error{
		"class":      func() error { _, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Class: 2}); return err }(),
		"nil":        func() error { _, err := r.Subscribe(nil, SubOptions{}); return err }(),
		"timer":      func() error { _, err := r.Subscribe(Timer{}, SubOptions{}); return err }(),
		"mode":       func() error { _, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Mode: ModeClone}); return err }(),
		"post":       r.Post(r.Addr(1), nil, abi.MaxClasses),
		"too large":  r.Post(r.Addr(1), make([]byte, 1<<20), 0),
		"call":       func() error { _, err := r.CallClass(testCtx(t), r.Addr(1), nil, -1); return err }(),
		"op timeout": func() error { _, err := Open(WithOpTimeout(-time.Second)); return err }(),
	} {
		assert.ErrorIs(t, err, syscall.EINVAL, name)
		assert.Greater(t, len(err.Error()), len("goaem: invalid argument"), "%s: %v says what was wrong", name, err)
	}
}
