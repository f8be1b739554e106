//go:build cgo

// Package rawring gives the fuzz targets what no application should use:
// byte-level access to an embedded AEM ring. SQEs are copied in raw, ring
// words of the mapped RINGS region are read and overwritten at will, and
// libaem does only setup, submit, statistics and calls, so the kernel side
// (the ring core under libaem's embedded host) sees exactly the bytes a
// hostile or buggy application would leave there.
//
// libaem itself is not compiled here: goaem compiles it into its package,
// and rawring imports goaem so that one copy of libaem and the core links
// into the binary (two copies would clash, and the fuzz package links
// goaem anyway).
package rawring

/*
#cgo CFLAGS: -I${SRCDIR}/../../../libaem/include -I${SRCDIR}/../../../kmod/uapi
#cgo CFLAGS: -std=gnu11 -O1
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "libaem.h"

static int rr_open(struct aem_params *p, struct aem_ring **out)
{
	struct aem_ring *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	p->flags |= AEM_SETUP_EMBEDDED;
	ret = aem_setup(p, r);
	if (ret) {
		free(r);
		return ret;
	}
	*out = r;
	return 0;
}

static void rr_close(struct aem_ring *r)
{
	aem_teardown(r);
	free(r);
}

// Queue one raw SQE; -EBUSY when the SQ ring is full.
static int rr_push(struct aem_ring *r, const void *raw)
{
	struct aem_sqe *sqe = aem_get_sqe(r);

	if (!sqe)
		return -EBUSY;
	memcpy(sqe, raw, sizeof(*sqe));
	return 0;
}

// Class @cls's completion ring, the result ring for AEM_MAX_CLASSES, else NULL.
static struct aem_cq *rr_cq(struct aem_ring *r, unsigned cls)
{
	if (cls == AEM_MAX_CLASSES)
		return &r->res;
	return cls < r->nr_classes ? &r->cq[cls] : NULL;
}

// Copy up to @max CQEs of ring @cls (rr_cq) out and free them: one crossing.
static unsigned rr_reap(struct aem_ring *r, unsigned cls, struct aem_cqe *out, unsigned max)
{
	struct aem_cq *cq = rr_cq(r, cls);
	unsigned n, i, head;

	if (!cq)
		return 0;
	n = __aem_cqv_peek(cq, &head);
	if (n > max)
		n = max;
	for (i = 0; i < n; i++)
		out[i] = cq->cqes[(head + i) & cq->ring_mask];
	__aem_cqv_advance(cq, n);
	return n;
}

// CQEs the tail claims in ring @cls (rr_cq), as libaem computes it (unclamped).
static unsigned rr_ready(struct aem_ring *r, unsigned cls)
{
	struct aem_cq *cq = rr_cq(r, cls);
	unsigned head;

	return cq ? __aem_cqv_peek(cq, &head) : 0;
}

static int rr_release(struct aem_ring *r, unsigned slot)
{
	return aem_release_slot(r, slot);
}

static void rr_commit(struct aem_ring *r)
{
	aem_release_commit(r);
}

// libaem's decoding of a CQE's payload: offset into the PAYLOAD region,
// -1 for the CQE's inline bytes, -2 for a refused (out of range) CQE.
static long rr_payload(struct aem_ring *r, const struct aem_cqe *cqe, unsigned *len)
{
	void *p = aem_cqe_payload(r, cqe, len);

	if (!p)
		return -2;
	if (p == (void *)cqe->data)
		return -1;
	return (long)((unsigned char *)p - r->payload);
}

// Move libaem's private SQ tail, so the next submit publishes @tail as is.
static void rr_set_sq_tail(struct aem_ring *r, unsigned tail)
{
	r->sq.sqe_head = tail;
	r->sq.sqe_tail = tail;
}

static void *rr_region(struct aem_ring *r, int i) { return r->region[i]; }
static size_t rr_region_size(struct aem_ring *r, int i) { return r->region_size[i]; }
static unsigned rr_ring_id(struct aem_ring *r) { return r->ring_id; }
*/
import "C"

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	_ "github.com/aem-dev/aem/goaem" // links libaem and the ring core
	"github.com/aem-dev/aem/goaem/abi"
)

// ResultRing names the result ring where Ready and Reap take a class.
const ResultRing = abi.MaxClasses

// Ring is one embedded ring opened through libaem, seen as raw memory.
type Ring struct {
	c       *C.struct_aem_ring
	Params  abi.Params // as setup returned them
	ID      uint32
	Rings   []byte // RINGS region: every index, flag word and the slot ring (read-write)
	SQEs    []abi.SQE
	Payload []byte
}

// Open sets up an embedded ring with p (zero fields take libaem's defaults).
func Open(p abi.Params) (*Ring, error) {
	var cr *C.struct_aem_ring
	cp := (*C.struct_aem_params)(unsafe.Pointer(&p))
	if ret := C.rr_open(cp, &cr); ret != 0 {
		return nil, fmt.Errorf("aem_setup: %w", syscall.Errno(-ret))
	}
	r := &Ring{c: cr, Params: p, ID: uint32(C.rr_ring_id(cr))}
	region := func(i int) []byte {
		base := C.rr_region(cr, C.int(i))
		return unsafe.Slice((*byte)(base), int(C.rr_region_size(cr, C.int(i))))
	}
	r.Rings = region(abi.RegionRings)
	r.Payload = region(abi.RegionPayload)
	sqes := region(abi.RegionSQEs)
	r.SQEs = unsafe.Slice((*abi.SQE)(unsafe.Pointer(&sqes[p.SQOff.Array])), p.SQEntries)
	return r, nil
}

// Close tears the ring down. Idempotent.
func (r *Ring) Close() {
	if r.c != nil {
		C.rr_close(r.c)
		r.c = nil
	}
}

// ErrFull is Push on a full submission ring.
var ErrFull = errors.New("rawring: submission ring full")

// Push queues sqe as raw bytes; Submit publishes it.
func (r *Ring) Push(sqe *abi.SQE) error {
	if C.rr_push(r.c, unsafe.Pointer(sqe)) != 0 {
		return ErrFull
	}
	return nil
}

// Submit publishes queued SQEs and has the core consume them.
func (r *Ring) Submit() (int, error) {
	n := C.aem_submit(r.c)
	if n < 0 {
		return 0, fmt.Errorf("aem_submit: %w", syscall.Errno(-n))
	}
	return int(n), nil
}

// Ready is what libaem's aem_cq_ready says for class cls: tail - head as
// read from shared memory, unclamped.
func (r *Ring) Ready(cls int) uint32 { return uint32(C.rr_ready(r.c, C.uint(cls))) }

// Reap copies up to len(dst) CQEs of class cls (or the ResultRing) and frees them.
func (r *Ring) Reap(cls int, dst []abi.CQE) int {
	if len(dst) == 0 {
		return 0
	}
	return int(C.rr_reap(r.c, C.uint(cls), (*C.struct_aem_cqe)(unsafe.Pointer(&dst[0])), C.uint(len(dst))))
}

// Release queues a delivery slot for return; Commit publishes the batch.
func (r *Ring) Release(slot uint32) error {
	if ret := C.rr_release(r.c, C.uint(slot)); ret != 0 {
		return syscall.Errno(-ret)
	}
	return nil
}

// Commit publishes queued slot releases.
func (r *Ring) Commit() { C.rr_commit(r.c) }

// SetSQTail makes libaem's private SQ tail t: the next Submit publishes t
// (whatever the head) and asks the core for t - head SQEs.
func (r *Ring) SetSQTail(t uint32) { C.rr_set_sq_tail(r.c, C.uint(t)) }

// Stats is aem_ring_stats.
func (r *Ring) Stats() (abi.RingStats, error) {
	var st abi.RingStats
	if ret := C.aem_ring_stats(r.c, (*C.struct_aem_ring_stats)(unsafe.Pointer(&st))); ret != 0 {
		return st, fmt.Errorf("aem_ring_stats: %w", syscall.Errno(-ret))
	}
	return st, nil
}

// SubStats is aem_sub_stats; syscall.ENOENT for a dead id.
func (r *Ring) SubStats(id uint64) (abi.SubStats, error) {
	var st abi.SubStats
	if ret := C.aem_sub_stats(r.c, C.uint64_t(id), (*C.struct_aem_sub_stats)(unsafe.Pointer(&st))); ret != 0 {
		return st, syscall.Errno(-ret)
	}
	return st, nil
}

// CQs lists what Ready and Reap take: the ResultRing, then the classes,
// most urgent first (the order a reader drains them in).
func (r *Ring) CQs() []int {
	cqs := []int{ResultRing}
	for c := 0; c < int(r.Params.NrClasses); c++ {
		cqs = append(cqs, c)
	}
	return cqs
}

// Entries is the size of completion ring cls (a class or the ResultRing), as published.
func (r *Ring) Entries(cls int) uint32 {
	if cls == ResultRing {
		return r.Word(r.Params.ResOff.RingEntries)
	}
	return r.Word(r.Params.CQOff[cls].RingEntries)
}

// Word reads the u32 at byte offset off of the RINGS region.
func (r *Ring) Word(off uint32) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.Rings[off&^3])))
}

// SetWord overwrites the u32 at byte offset off of the RINGS region.
func (r *Ring) SetWord(off, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.Rings[off&^3])), v)
}

// PayloadKind says where libaem's aem_cqe_payload found a CQE's bytes.
type PayloadKind int

const (
	PayloadRefused PayloadKind = iota // slot or length out of range: no bytes
	PayloadInline                     // the CQE's own data
	PayloadSlot                       // a slot in the PAYLOAD region
)

// DecodePayload runs libaem's aem_cqe_payload on cqe: where the bytes are
// (offset into Payload for a slot) and how many.
func (r *Ring) DecodePayload(cqe *abi.CQE) (kind PayloadKind, off int, n uint32) {
	var ln C.uint
	o := C.rr_payload(r.c, (*C.struct_aem_cqe)(unsafe.Pointer(cqe)), &ln)
	switch {
	case o == -2:
		return PayloadRefused, 0, uint32(ln)
	case o == -1:
		return PayloadInline, 0, uint32(ln)
	}
	return PayloadSlot, int(o), uint32(ln)
}

// Call is aem_call: a blocking call to the AEM_SRC_MSG subscriber at addr.
// It returns the reply length the callee wrote (which may exceed
// len(resp): truncated) or the error.
func (r *Ring) Call(addr uint64, req, resp []byte, prio, timeoutMS uint32) (int, error) {
	var reqp, respp unsafe.Pointer
	if len(req) > 0 {
		reqp = C.CBytes(req)
		defer C.free(reqp)
	}
	if len(resp) > 0 {
		respp = C.malloc(C.size_t(len(resp)))
		defer C.free(respp)
	}
	n := C.aem_call(r.c, C.uint64_t(addr), reqp, C.uint(len(req)), respp, C.uint(len(resp)),
		C.uint(prio), C.uint(timeoutMS))
	if n < 0 {
		return 0, syscall.Errno(-n)
	}
	if len(resp) > 0 {
		copy(resp, unsafe.Slice((*byte)(respp), len(resp)))
	}
	return int(n), nil
}
