package fuzz

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/fuzz/internal/rawring"
	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

// FuzzDecode plays a buggy or hostile kernel side against goaem: it writes
// arbitrary CQE bytes (slots out of range, res negative or huge, garbage
// flags, results nobody asked for) into a goaem ring's completion rings and
// publishes tails that claim anything, up to far beyond the ring, then lets
// goaem poll, decode and answer them. goaem must never panic or read out of
// bounds: every payload it hands out is bounded by the slot size (slot) or
// 32 bytes (inline) and by res, and Close still returns. Both hot paths
// (atomic reads and the cgo reaper) are fed.
func FuzzDecode(f *testing.F) {
	cfg := []byte{0, 1, 2, 0, 3, 1, 8}
	cqe := func(c abi.CQE) []byte {
		return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&c)), unsafe.Sizeof(c))...)
	}
	batch := func(cls, k, how uint8, cqes ...[]byte) []byte {
		b := []byte{cls, k, how, 0, 0, 0, 0}
		for _, c := range cqes {
			b = append(b, c...)
		}
		return b
	}
	f.Add(append(append([]byte(nil), cfg...), batch(0, 1, 0, cqe(abi.CQE{Res: 5, Data: [32]byte{1, 2, 3, 4, 5}}))...))
	f.Add(append(append([]byte(nil), cfg...), batch(0, 2, 0,
		cqe(abi.CQE{Res: 64, Flags: abi.CQEFSlot, Slot: 1 << 31}),
		cqe(abi.CQE{Res: -1 << 31, Flags: 0xFFFFFFFF, Slot: 3}))...))
	f.Add(append(append([]byte(nil), cfg...), batch(1, 3, 0x80,
		cqe(abi.CQE{Res: 1 << 30, Flags: abi.CQEFSlot, Slot: 2}),
		cqe(abi.CQE{Res: 16, Flags: abi.CQEFResult, UserData: 1}),
		cqe(abi.CQE{Res: 33, Flags: abi.CQEFCall | abi.CQEFFinal, ID: 2 << 56}))...))
	f.Add(append([]byte{1, 3, 0, 2, 7, 2, 31}, batch(0, 40, 0x81, cqe(abi.CQE{Res: 16, Source: abi.SrcTimer}))...))

	f.Fuzz(func(t *testing.T, in []byte) {
		watchdog(t, 10*time.Second, in)
		pr := &prog{b: in}
		pr.u8() // unused; the committed corpus has a byte here
		p := abi.Params{
			SQEntries: 16,
			CQEntries: 1 << (1 + pr.u8()%4),
			NrClasses: 1 + uint32(pr.u8())%abi.MaxClasses,
			SlotSize:  abi.MinSlotSize << (pr.u8() % 3),
			SlotCount: 1 + uint32(pr.u8())%8,
			SendSlots: uint32(pr.u8()) % 3,
		}
		batchLen := 1 + int(pr.u8())%32
		ring, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded),
			goaem.WithSQEntries(p.SQEntries), goaem.WithCQEntries(p.CQEntries), goaem.WithClasses(int(p.NrClasses)),
			goaem.WithSlotSize(p.SlotSize), goaem.WithSlots(p.SlotCount), goaem.WithSendSlots(p.SendSlots))
		require.NoError(t, err)
		defer func() { require.NoError(t, ring.Close()) }()
		p.Flags = abi.SetupEmbedded
		p, err = rawring.Layout(p)
		require.NoError(t, err)
		prod, err := rawring.FindProducer(p)
		require.NoError(t, err)

		events := make([]goaem.Event, batchLen)
		for step := 0; step < 32 && pr.more(); step++ {
			cls := int(pr.u8()) % int(p.NrClasses)
			k := uint32(pr.u8()) % (2 * p.CQEntries)
			how := pr.u8()
			far := pr.u32()
			tailw := prod.Word(p.CQOff[cls].Tail)
			tail := atomic.LoadUint32(tailw)
			for i := uint32(0); i < k && i < p.CQEntries; i++ {
				raw := pr.bytes(int(unsafe.Sizeof(abi.CQE{})))
				*prod.CQE(cls, tail+i) = *(*abi.CQE)(unsafe.Pointer(&raw[0]))
			}
			next := tail + k
			if how&0x80 != 0 {
				next = tail + far // a tail anywhere: behind the head, or far past the ring
			}
			if how&0x40 != 0 {
				atomic.StoreUint32(prod.Word(p.CQOff[cls].Flags), abi.CQFOverflow)
			}
			atomic.StoreUint32(tailw, next) // publish, as a store-release would

			n, err := ring.Poll(events)
			require.NoError(t, err)
			tracef("class %d: wrote %d CQEs, tail %d -> %d: polled %d", cls, k, tail, next, n)
			require.LessOrEqual(t, n, len(events))
			for i := range events[:n] {
				ev := &events[i]
				c := ev.CQE()
				pl := ev.Payload()
				tracef("  event res %d flags %#x slot %d: payload %d bytes", c.Res, c.Flags, c.Slot, len(pl))
				if c.Res <= 0 {
					require.Empty(t, pl, "payload from a CQE with res %d", c.Res)
				} else {
					require.LessOrEqual(t, len(pl), int(c.Res), "payload longer than res")
				}
				if c.Flags&abi.CQEFSlot != 0 {
					require.LessOrEqual(t, cap(pl), int(p.SlotSize), "slot payload beyond its slot")
				} else {
					require.LessOrEqual(t, len(pl), abi.CQEInline, "inline payload beyond the CQE")
				}
				ev.TimerExpirations()
				ev.GenSeq()
				_ = ev.Tag()
				_ = ev.Subscription()
				_, _, _, _ = ev.Class(), ev.Token(), ev.IsCall(), ev.Final()
				if how&1 != 0 {
					_ = ev.Writeback(pl) // refused by the kernel side, or an error here: never a crash
				} else {
					ev.Release()
				}
			}
		}
		_, _ = ring.Stats()
	})
}
