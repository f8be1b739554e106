//go:build cgo

package goaem

/*
#cgo CFLAGS: -I${SRCDIR}/../libaem/include -I${SRCDIR}/../kmod/uapi -I${SRCDIR}/../kmod/core
#cgo CFLAGS: -std=gnu11 -O2 -pthread
#cgo LDFLAGS: -pthread
#include <stdint.h>
#include <stdlib.h>
#include "libaem.h"

// Layout of goaem.Event's head: the CQE copy, then the state word.
struct goaem_ev {
	struct aem_cqe	cqe;
	unsigned	state;
};

struct goaem_reap_res {
	unsigned	n;
	unsigned	flags;		// OR of the CQE flags read: results to route?
	unsigned	overflow;	// OR of the CQ flag words: backlog to flush?
	int		err;		// of the folded submit
};

// Hand SQEs up to @tail to the kernel side.  goaem fills SQEs from Go
// straight into the mapped ring; libaem publishes them and enters.
static int goaem_submit(struct aem_ring *ring, unsigned tail)
{
	int ret;

	ring->sq.sqe_tail = tail;
	ret = aem_submit(ring);
	return ret < 0 ? ret : 0;
}

// HotPathCgo: copy up to @max ready CQEs, class 0 first, into the Event
// array at @dst (@stride bytes apart) and free them with one store-release
// per class.  With @submit, the queued SQEs go first: the whole batch is a
// single crossing.  @dst is Go memory holding no pointers in the bytes
// written, passed as an integer so that the call costs no pointer check.
static struct goaem_reap_res goaem_reap(struct aem_ring *ring, uintptr_t dst, size_t stride,
					unsigned max, unsigned tail, int submit)
{
	struct goaem_reap_res res = { 0 };
	unsigned c, i;

	if (submit)
		res.err = goaem_submit(ring, tail);
	for (c = 0; c < ring->nr_classes && res.n < max; c++) {
		struct aem_cq *cq = &ring->cq[c];
		unsigned head = *cq->khead;
		unsigned avail = aem_load_acquire(cq->ktail) - head;	// pairs with the core's tail release

		res.overflow |= aem_read_once(*cq->kflags);
		if (avail > cq->ring_entries)
			avail = cq->ring_entries;
		if (avail > max - res.n)
			avail = max - res.n;
		for (i = 0; i < avail; i++) {
			const struct aem_cqe *cqe = &cq->cqes[(head + i) & cq->ring_mask];
			struct goaem_ev *ev = (struct goaem_ev *)(dst + (size_t)(res.n + i) * stride);

			ev->cqe = *cqe;
			ev->state = 0;
			res.flags |= cqe->flags;
		}
		if (avail)
			aem_store_release(cq->khead, head + avail);	// pairs with the core's head acquire
		res.n += avail;
	}
	return res;
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
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/aem-dev/aem/goaem/abi"
)

// The Event head must match struct goaem_ev.
var _ = [1]struct{}{}[unsafe.Sizeof(C.struct_goaem_ev{})-unsafe.Sizeof(abi.CQE{})-8]

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
	p := cfg.params
	switch cfg.backend {
	case BackendKernel:
		p.Flags |= abi.SetupKernel
	case BackendEmbedded:
		p.Flags |= abi.SetupEmbedded
	}
	ring := (*C.struct_aem_ring)(C.calloc(1, C.sizeof_struct_aem_ring))
	if ring == nil {
		return nil, fmt.Errorf("goaem: open: %w", syscall.ENOMEM)
	}
	if ret := C.aem_setup((*C.struct_aem_params)(unsafe.Pointer(&p)), ring); ret < 0 {
		C.free(unsafe.Pointer(ring))
		return nil, fmt.Errorf("goaem: open (%s backend): %w", cfg.backend, syscall.Errno(-ret))
	}
	be := &cBackend{ring: ring}
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

func (b *cBackend) reap(dst []Event, tail uint32, submit bool) (int, uint32, uint32, error) {
	if len(dst) == 0 {
		return 0, 0, 0, nil
	}
	sub := C.int(0)
	if submit {
		sub = 1
	}
	res := C.goaem_reap(b.ring, C.uintptr_t(uintptr(unsafe.Pointer(&dst[0]))),
		C.size_t(unsafe.Sizeof(Event{})), C.unsigned(len(dst)), C.unsigned(tail), sub)
	runtime.KeepAlive(dst)
	var err error
	if res.err < 0 {
		err = syscall.Errno(-res.err)
	}
	return int(res.n), uint32(res.flags), uint32(res.overflow), err
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

// close is idempotent: Close and the cleanup backstop may both call it.
func (b *cBackend) close() error {
	b.once.Do(func() {
		C.aem_teardown(b.ring)
		C.free(unsafe.Pointer(b.ring))
		b.ring = nil
	})
	return b.err
}
