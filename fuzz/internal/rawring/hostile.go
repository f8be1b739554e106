//go:build cgo

package rawring

/*
#include <linux/types.h>
#include "aem.h"

// The core's own layout function (linked from goaem's copy of the core);
// struct aem_layout stays opaque here: 256 bytes hold it.
int aem_core_layout(struct aem_params *p, __u32 host_features, void *l);

static int rr_layout(struct aem_params *p)
{
	unsigned long long l[32];

	return aem_core_layout(p, 0, l);
}
*/
import "C"

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/aem-dev/aem/goaem/abi"
)

// Layout runs the core's setup validation on p and returns the parameters
// setup would hand back: offsets, region sizes, rounded sizes.
func Layout(p abi.Params) (abi.Params, error) {
	if ret := C.rr_layout((*C.struct_aem_params)(unsafe.Pointer(&p))); ret != 0 {
		return p, fmt.Errorf("aem_core_layout: %w", syscall.Errno(-ret))
	}
	return p, nil
}

// Producer writes a ring's CQEs and CQ indices as the kernel side would,
// but whatever it is told: a buggy or hostile producer. It reaches an
// embedded ring opened elsewhere (by goaem) through the core's own
// read-write mapping of the ring's memfd, found in /proc/self/maps; the
// application's CQES view is read-only.
type Producer struct {
	P     abi.Params
	Rings []byte // the RINGS region
	CQEs  []byte // the CQES region
}

type mapping struct {
	start, end, off uint64
	perms           string
}

// FindProducer finds the one embedded ring alive in the process whose
// regions have p's sizes (p as Layout returns it).
func FindProducer(p abi.Params) (*Producer, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("find producer: %w", err)
	}
	defer f.Close()
	byInode := map[string][]mapping{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || !strings.HasPrefix(fs[5], "/memfd:aem") {
			continue
		}
		se := strings.SplitN(fs[0], "-", 2)
		start, err1 := strconv.ParseUint(se[0], 16, 64)
		end, err2 := strconv.ParseUint(se[1], 16, 64)
		off, err3 := strconv.ParseUint(fs[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		byInode[fs[4]] = append(byInode[fs[4]], mapping{start, end, off, fs[1]})
	}
	var total uint64
	var off [abi.NrRegions]uint64
	for i, sz := range p.RegionSize {
		off[i] = total
		total += sz
	}
	var found *Producer
	for inode, ms := range byInode {
		var core *mapping
		view := false
		for i := range ms {
			m := &ms[i]
			if m.perms == "r--s" && m.off == off[abi.RegionCQEs] {
				view = true
			}
			if m.perms == "rw-s" && m.off == 0 && m.end-m.start >= total && (core == nil || m.end-m.start > core.end-core.start) {
				core = m
			}
		}
		if !view || core == nil {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("find producer: two embedded rings of that layout (inode %s too)", inode)
		}
		// C memory the Go runtime does not manage: the address read from
		// /proc/self/maps stands for the mapping itself.
		addr := uintptr(core.start)
		base := *(*unsafe.Pointer)(unsafe.Pointer(&addr))
		found = &Producer{
			P:     p,
			Rings: unsafe.Slice((*byte)(unsafe.Add(base, off[abi.RegionRings])), p.RegionSize[abi.RegionRings]),
			CQEs:  unsafe.Slice((*byte)(unsafe.Add(base, off[abi.RegionCQEs])), p.RegionSize[abi.RegionCQEs]),
		}
	}
	if found == nil {
		return nil, fmt.Errorf("find producer: no embedded ring with that layout in /proc/self/maps")
	}
	return found, nil
}

// CQE is entry i (masked) of class cls's completion ring.
func (pr *Producer) CQE(cls int, i uint32) *abi.CQE {
	o := pr.P.CQOff[cls]
	idx := uintptr(i & (pr.P.CQEntries - 1))
	return (*abi.CQE)(unsafe.Pointer(&pr.CQEs[uintptr(o.Array)+idx*unsafe.Sizeof(abi.CQE{})]))
}

// Word is the RINGS word at off, for atomic access.
func (pr *Producer) Word(off uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&pr.Rings[off&^3]))
}
