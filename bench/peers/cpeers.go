//go:build cgo

package peers

/*
#cgo CFLAGS: -O2 -Wall -std=gnu11
#cgo LDFLAGS: -lpthread
#include <stdlib.h>
#include "bp.h"

// One crossing per run: the whole measured loop runs, and the counts come
// back in *r.
static int bp_go_run(int stream, int kind, const struct bp_params *p,
		     struct bp_result *r)
{
	return stream ? bp_stream_run(kind, p, r) : bp_call_run(kind, p, r);
}
*/
import "C"

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// cPeer is a peer whose loops are in C.
type cPeer struct {
	Unsupported
	name   string
	stream C.int // bp_stream_run kind, 0: none
	block  C.int // bp_call_run kind when blocking, 0: none
	busy   C.int // bp_call_run kind when busy-polling, 0: none
}

func newCPeer(name string) (Transport, error) {
	p := &cPeer{name: name}
	switch name {
	case NameSPSCRing:
		p.stream, p.busy = C.BP_SPSC, C.BP_CALL_SPSC
	case NameEventfdShm:
		p.stream, p.block = C.BP_EVENTFD_SHM, C.BP_CALL_EVENTFD
	case NamePipe:
		p.stream, p.block = C.BP_PIPE, C.BP_CALL_PIPE
	case NameUnixDgram:
		p.stream, p.block = C.BP_UNIX_DGRAM, C.BP_CALL_UNIX
	case NameURingMsgRing:
		p.stream, p.block, p.busy = C.BP_URING_MSG, C.BP_CALL_URING, C.BP_CALL_URING
	case NameURingNop:
		p.stream = C.BP_URING_NOP
	case NameFutexPong:
		p.block = C.BP_CALL_FUTEX
	case NameSpinPong:
		p.busy = C.BP_CALL_SPIN
	default:
		return nil, fmt.Errorf("unknown C peer %q", name)
	}
	return p, nil
}

func (p *cPeer) Name() string { return p.name }

func (p *cPeer) Stream(par Params) (Result, error) {
	if p.stream == 0 {
		return Result{}, ErrUnsupported
	}
	if par.Producers > 1 && p.stream == C.BP_URING_NOP {
		return Result{}, ErrUnsupported
	}
	return runC(1, p.stream, par)
}

func (p *cPeer) Call(par Params) (Result, error) {
	kind := p.block
	if par.Busy {
		kind = p.busy
	}
	if kind == 0 {
		return Result{}, ErrUnsupported
	}
	return runC(0, kind, par)
}

func runC(stream int, kind C.int, par Params) (Result, error) {
	par, err := par.Normalized()
	if err != nil {
		return Result{}, err
	}
	cp := C.struct_bp_params{
		max_events:   C.uint64_t(par.Events),
		batch:        C.uint32_t(par.Batch),
		payload:      C.uint32_t(par.Payload),
		producers:    C.uint32_t(par.Producers),
		rate:         C.double(par.Rate),
		sample_every: C.uint32_t(par.SampleEvery),
		duration_ns:  C.uint64_t(par.Duration.Nanoseconds()),
	}
	if par.Busy {
		cp.busy = 1
	}
	if par.SampleEvery > 0 {
		// C memory: the consumer thread writes it during the call.
		buf := C.malloc(C.size_t(par.MaxSamples) * 8)
		if buf == nil {
			return Result{}, fmt.Errorf("samples: %w", syscall.ENOMEM)
		}
		defer C.free(buf)
		cp.samples = (*C.uint64_t)(buf)
		cp.max_samples = C.uint64_t(par.MaxSamples)
	}
	var cr C.struct_bp_result
	ret := C.bp_go_run(C.int(stream), kind, &cp, &cr)
	res := Result{
		Events:   uint64(cr.events),
		Produced: uint64(cr.produced),
		Dropped:  uint64(cr.dropped),
		Errors:   uint64(cr.errors),
		Elapsed:  time.Duration(cr.elapsed_ns),
	}
	if n := int(cr.nsamples); n > 0 {
		src := unsafe.Slice((*int64)(unsafe.Pointer(cp.samples)), n)
		res.Samples = append([]int64(nil), src...)
	}
	if ret < 0 {
		errno := syscall.Errno(-ret)
		if errno == syscall.EOPNOTSUPP {
			return res, ErrUnsupported
		}
		return res, fmt.Errorf("%s run: %w", kindName(stream, kind), errno)
	}
	return res, nil
}

func kindName(stream int, kind C.int) string {
	if stream == 1 {
		return fmt.Sprintf("stream kind %d", int(kind))
	}
	return fmt.Sprintf("call kind %d", int(kind))
}
