//go:build cgo

package goaem

/*
#cgo CFLAGS: -I${SRCDIR}/../libaem/include -I${SRCDIR}/../kmod/uapi
#include <string.h>
#include "libaem.h"
*/
import "C"

import (
	"fmt"
	"syscall"

	"github.com/aem-dev/aem/goaem/abi"
)

// ProbeSource is one loaded implementation of an event source: its id
// (abi.Src*), name, the source API version it implements, its
// implementation version (SubOptions.Impl names it), the ABI versions it
// serves (bit 1<<v), the opcodes (bit 1<<abi.Op*) its subscriptions
// answer, and whether it is being unloaded. A source id may have several.
type ProbeSource struct {
	Source      uint8
	Name        string
	Version     uint32
	Impl        uint32
	APIVersions uint32
	Ops         uint32
	Closing     bool
}

// Probe is what a backend serves: the ABI versions setup accepts, the
// features of its rings, the opcodes and SQE flags the core knows, and
// the sources loaded now.
type Probe struct {
	APIVersion, APIMin uint32
	Features           uint32
	Ops, SQEFlags      uint32
	SetupFlags         uint32
	Sources            []ProbeSource
}

func probeFrom(c *C.struct_aem_probe) Probe {
	p := Probe{
		APIVersion: uint32(c.api_version), APIMin: uint32(c.api_min),
		Features: uint32(c.features), Ops: uint32(c.ops), SQEFlags: uint32(c.sqe_flags),
		SetupFlags: uint32(c.setup_flags),
	}
	for i := 0; i < int(c.nr_sources) && i < len(c.sources); i++ {
		s := &c.sources[i]
		p.Sources = append(p.Sources, ProbeSource{
			Source: uint8(s.source), Name: C.GoString(&s.name[0]), Version: uint32(s.version),
			Impl: uint32(s.impl), APIVersions: uint32(s.api_versions),
			Ops: uint32(s.ops), Closing: s.flags&C.AEM_PROBE_SRC_CLOSING != 0,
		})
	}
	return p
}

// Probe asks the ring's backend what it serves now (io_uring's probe for AEM).
func (r *Ring) Probe() (Probe, error) {
	be, ok := r.be.(*cBackend)
	if !ok {
		return Probe{}, fmt.Errorf("goaem: probe: %w", syscall.ENOTSUP)
	}
	var c C.struct_aem_probe
	if ret := C.aem_probe(be.ring, 0, &c); ret < 0 {
		return Probe{}, fmt.Errorf("goaem: probe: %w", syscall.Errno(-ret))
	}
	return probeFrom(&c), nil
}

// ProbeBackend asks a backend without a ring: BackendKernel (-ENODEV
// without /dev/aem) or BackendEmbedded; BackendAuto as Open would choose.
func ProbeBackend(b Backend) (Probe, error) {
	var flags C.unsigned
	switch b {
	case BackendKernel:
		flags = abi.SetupKernel
	case BackendEmbedded:
		flags = abi.SetupEmbedded
	}
	var c C.struct_aem_probe
	if ret := C.aem_probe(nil, flags, &c); ret < 0 {
		return Probe{}, fmt.Errorf("goaem: probe (%s backend): %w", b, syscall.Errno(-ret))
	}
	return probeFrom(&c), nil
}

// versionError explains a setup refused for its ABI version: which one this
// program speaks and which ones the backend serves.  It matches
// syscall.ENOTSUP (== EOPNOTSUPP).
func versionError(b Backend) error {
	served := "an unknown range"
	if p, err := ProbeBackend(b); err == nil {
		served = fmt.Sprintf("%d..%d", p.APIMin, p.APIVersion)
	}
	return fmt.Errorf("goaem: open: this program speaks AEM ABI version %d, the %s backend serves %s: %w",
		abi.APIVersion, b, served, syscall.ENOTSUP)
}
