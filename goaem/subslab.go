package goaem

import (
	"sync/atomic"
	"unsafe"
)

// Subscriptions live in slabs: a head with the pointers its Subscriptions
// share (their ring, and the exts of the few that have one), then the
// Subscriptions, which hold no pointer. The garbage collector reads a
// slab's head and nothing else of it, so a million idle subscriptions cost
// it their table's slots, not 48 bytes each to scan: setting up 100 k at a
// time in a new process spends its largest share in the collector
// otherwise. A Subscription finds its head from its place in the slab
// (Subscription.pos), which is pointer arithmetic within one object.
type subSlabHead struct {
	r    *Ring
	exts atomic.Pointer[[]atomic.Pointer[subExt]] // made at the first ext, one per Subscription
	n    uint32                                   // Subscriptions in the slab
}

// subSlab is a slab of the array type A ([N]Subscription). Every size has
// its Subscriptions at the same offset, subsOffset.
type subSlab[A any] struct {
	head subSlabHead
	subs A
}

const (
	subsOffset = unsafe.Offsetof(subSlab[[1]Subscription]{}.subs)
	subSize    = unsafe.Sizeof(Subscription{})
)

// The slab sizes newSubSlab makes must all place their Subscriptions at
// subsOffset (a compile-time check: a negative array length fails).
var _ [int(subsOffset) - int(unsafe.Offsetof(subSlab[[subSlabMax]Subscription]{}.subs))]struct{}
var _ [int(unsafe.Offsetof(subSlab[[subSlabMax]Subscription]{}.subs)) - int(subsOffset)]struct{}

// newSubSlab returns n zero Subscriptions of r (n rounded up to a slab
// size: 1, or a power of two from 16 to subSlabMax).
func newSubSlab(r *Ring, n int) []Subscription {
	var head *subSlabHead
	switch {
	case n <= 1:
		head, n = &new(subSlab[[1]Subscription]).head, 1
	case n <= 16:
		head, n = &new(subSlab[[16]Subscription]).head, 16
	case n <= 32:
		head, n = &new(subSlab[[32]Subscription]).head, 32
	case n <= 64:
		head, n = &new(subSlab[[64]Subscription]).head, 64
	case n <= 128:
		head, n = &new(subSlab[[128]Subscription]).head, 128
	case n <= 256:
		head, n = &new(subSlab[[256]Subscription]).head, 256
	case n <= 512:
		head, n = &new(subSlab[[512]Subscription]).head, 512
	default:
		head, n = &new(subSlab[[subSlabMax]Subscription]).head, subSlabMax
	}
	head.r, head.n = r, uint32(n)
	subs := unsafe.Slice((*Subscription)(unsafe.Add(unsafe.Pointer(head), subsOffset)), n)
	for i := range subs {
		subs[i].pos = uint16(i + 1)
	}
	return subs
}

// head is s's slab head; nil for a Subscription made outside a slab (a
// zero value), which belongs to no ring.
func (s *Subscription) head() *subSlabHead {
	if s.pos == 0 {
		return nil
	}
	return (*subSlabHead)(unsafe.Add(unsafe.Pointer(s), -int(subsOffset+uintptr(s.pos-1)*subSize)))
}

// ring is the ring s belongs to (nil outside a slab).
func (s *Subscription) ring() *Ring {
	if h := s.head(); h != nil {
		return h.r
	}
	return nil
}

// loadExt is s's ext, nil for most.
func (s *Subscription) loadExt() *subExt {
	h := s.head()
	if h == nil {
		return nil
	}
	xs := h.exts.Load()
	if xs == nil {
		return nil
	}
	return (*xs)[s.pos-1].Load()
}

// extSlot is where s's ext is kept, made with its slab's first ext.
func (s *Subscription) extSlot() *atomic.Pointer[subExt] {
	h := s.head()
	if h.exts.Load() == nil {
		made := make([]atomic.Pointer[subExt], h.n)
		h.exts.CompareAndSwap(nil, &made) // or another's, made meanwhile
	}
	return &(*h.exts.Load())[s.pos-1]
}
