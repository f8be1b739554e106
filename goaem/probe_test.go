//go:build cgo

package goaem_test

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

// The probe names the versions served, the core's opcodes and the loaded
// sources, the same through a ring as without one.
func TestProbeEmbedded(t *testing.T) {
	bare, err := goaem.ProbeBackend(goaem.BackendEmbedded)
	require.NoError(t, err)
	assert.Equal(t, uint32(abi.APIVersion), bare.APIVersion)
	assert.LessOrEqual(t, bare.APIMin, bare.APIVersion)
	assert.Equal(t, uint32(1)<<abi.OpLast-1, bare.Ops)
	names := map[string]goaem.ProbeSource{}
	for _, s := range bare.Sources {
		names[s.Name] = s
	}
	require.Contains(t, names, "timer")
	require.Contains(t, names, "gen")
	require.Contains(t, names, "msg")
	assert.NotZero(t, names["timer"].Ops&(1<<abi.OpTimerSet))
	assert.NotZero(t, names["gen"].Ops&(1<<abi.OpGenSet))

	r, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded))
	require.NoError(t, err)
	defer r.Close()
	with, err := r.Probe()
	require.NoError(t, err)
	assert.Equal(t, bare.Sources, with.Sources)
	assert.Zero(t, with.Features&abi.FeatKernel)
}

// The kernel probe answers for the module (the VM suite runs it there);
// without /dev/aem it says so as Open does.
func TestProbeKernel(t *testing.T) {
	p, err := goaem.ProbeBackend(goaem.BackendKernel)
	if err != nil {
		assert.ErrorIs(t, err, syscall.ENODEV)
		return
	}
	assert.NotZero(t, p.Features&abi.FeatKernel)
	assert.Equal(t, uint32(abi.APIVersion), p.APIVersion)
	r, err := goaem.Open(goaem.WithBackend(goaem.BackendKernel))
	require.NoError(t, err)
	defer r.Close()
	with, err := r.Probe()
	require.NoError(t, err)
	assert.Equal(t, p.Sources, with.Sources)
	var msg bool
	for _, s := range with.Sources {
		msg = msg || s.Name == "msg"
	}
	assert.True(t, msg, "the module's own msg source is not in %+v", with.Sources)
}
