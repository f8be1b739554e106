//go:build cgo

package goaem

/*
#cgo CFLAGS: -I${SRCDIR}/../libaem/include -I${SRCDIR}/../kmod/uapi -I${SRCDIR}/../kmod/core
#cgo CFLAGS: -std=gnu11 -O2 -pthread
#cgo LDFLAGS: -pthread
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include "libaem.h"

// Hand SQEs up to @tail to the kernel side.  goaem fills SQEs from Go
// straight into the mapped ring; libaem publishes them and enters.
static int goaem_submit(struct aem_ring *ring, unsigned tail)
{
	int ret;

	ring->sq.sqe_tail = tail;
	ret = aem_submit(ring);
	return ret < 0 ? ret : 0;
}

// Re-arm the ring fd before the last look and the sleep, without reading
// the embedded backend's eventfd: the netpoller is edge-triggered (see
// aem_ring_fd_arm).
static int goaem_arm(struct aem_ring *ring) { return aem_ring_fd_arm(ring); }

static int goaem_ring_fd(struct aem_ring *ring) { return aem_ring_fd(ring); }
static void *goaem_region(struct aem_ring *ring, int i) { return ring->region[i]; }
static size_t goaem_region_size(struct aem_ring *ring, int i) { return ring->region_size[i]; }
*/
import "C"

import (
	"fmt"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/aem-dev/aem/goaem/abi"
)

// cBackend is a libaem ring, embedded or kernel. The aem_ring lives in C
// memory: libaem keeps pointers in it, so it must not be Go memory.
type cBackend struct {
	ring *C.struct_aem_ring
	once sync.Once
	err  error
}

// Open sets up a ring. Options choose the backend, ring sizes, classes and
// slot size; zero values take libaem's defaults.
func Open(opts ...Option) (*Ring, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	backend, why, err := cfg.chooseBackend()
	if err != nil {
		return nil, err
	}
	p := cfg.params
	p.APIVersion = abi.APIVersion // the version goaem's view reads
	if backend == BackendKernel {
		p.Flags |= abi.SetupKernel
	} else {
		p.Flags |= abi.SetupEmbedded
	}
	ring := (*C.struct_aem_ring)(C.calloc(1, C.sizeof_struct_aem_ring))
	if ring == nil {
		return nil, fmt.Errorf("goaem: open: %w", syscall.ENOMEM)
	}
	if ret := C.aem_setup((*C.struct_aem_params)(unsafe.Pointer(&p)), ring); ret < 0 {
		C.free(unsafe.Pointer(ring))
		errno := syscall.Errno(-ret)
		if errno == syscall.ENODEV && backend == BackendKernel {
			return nil, fmt.Errorf("%w; the kernel backend was chosen %s", ErrNoDevice, why)
		}
		if errno == syscall.EOPNOTSUPP {
			return nil, versionError(backend)
		}
		return nil, fmt.Errorf("goaem: open (%s backend, chosen %s): %w", backend, why, errno)
	}
	be := &cBackend{ring: ring}
	// libaem refuses another version already; goaem's view reads these too.
	const needs = abi.FeatCQEInline | abi.FeatSlotRing | abi.FeatSender
	if p.APIVersion != abi.APIVersion || p.Features&needs != needs {
		be.close()
		return nil, versionError(backend)
	}
	var regions [abi.NrRegions]unsafe.Pointer
	for i := range regions {
		regions[i] = C.goaem_region(ring, C.int(i))
		p.RegionSize[i] = uint64(C.goaem_region_size(ring, C.int(i)))
	}
	r, err := newRing(cfg, be, &p, regions)
	if err != nil {
		be.close()
		return nil, err
	}
	r.setCleanup()
	return r, nil
}

func (b *cBackend) name() string { return C.GoString(C.aem_backend_name(b.ring)) }

func (b *cBackend) pollFD() int { return int(C.goaem_ring_fd(b.ring)) }

func (b *cBackend) arm() error {
	if ret := C.goaem_arm(b.ring); ret < 0 {
		return syscall.Errno(-ret)
	}
	return nil
}

func (b *cBackend) submit(tail uint32) error {
	if ret := C.goaem_submit(b.ring, C.unsigned(tail)); ret < 0 {
		return syscall.Errno(-ret)
	}
	return nil
}

// call makes a blocking call (blockingCaller): one crossing, in which
// the kernel side delivers req, sleeps until the reply is copied into resp
// or timeoutMS passes, and forgets the call before it returns.
func (b *cBackend) call(addr uint64, req, resp []byte, class uint8, timeoutMS uint32) (int, syscall.Errno) {
	ret := C.aem_call(b.ring, C.uint64_t(addr), unsafe.Pointer(unsafe.SliceData(req)), C.unsigned(len(req)),
		unsafe.Pointer(unsafe.SliceData(resp)), C.unsigned(len(resp)), C.unsigned(class), C.unsigned(timeoutMS))
	if ret < 0 {
		return 0, syscall.Errno(-ret)
	}
	return int(ret), 0
}

// wait sleeps in the kernel side until an event or a result is ready
// (kernelWaiter); one crossing.
func (b *cBackend) wait(timeout time.Duration) error {
	ret := C.aem_wait(b.ring, 1, C.int64_t(timeout))
	if ret < 0 && ret != -C.ETIME && ret != -C.EINTR { // the runtime's signals interrupt the embedded backend's futex
		return syscall.Errno(-ret)
	}
	return nil
}

func (b *cBackend) subStats(st *abi.SubStats) error {
	if ret := C.aem_sub_stats(b.ring, C.uint64_t(st.ID), (*C.struct_aem_sub_stats)(unsafe.Pointer(st))); ret < 0 {
		return syscall.Errno(-ret)
	}
	return nil
}

func (b *cBackend) ringStats(st *abi.RingStats) error {
	if ret := C.aem_ring_stats(b.ring, (*C.struct_aem_ring_stats)(unsafe.Pointer(st))); ret < 0 {
		return syscall.Errno(-ret)
	}
	return nil
}

func (b *cBackend) grant(uid, flags uint32) error {
	if ret := C.aem_grant(b.ring, C.uint32_t(uid), C.uint32_t(flags)); ret < 0 {
		return syscall.Errno(-ret)
	}
	return nil
}

// close is idempotent: Close and the cleanup backstop may both call it.
func (b *cBackend) close() error {
	b.once.Do(func() {
		C.aem_teardown(b.ring)
		C.free(unsafe.Pointer(b.ring))
		b.ring = nil
	})
	return b.err
}
