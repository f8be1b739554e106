package fuzz

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/fuzz/internal/rawring"
	"github.com/aem-dev/aem/goaem/abi"
)

// goodRing is a well-behaved ring beside a hostile one: it posts numbered
// messages to its own channel and checks that every one arrives, in order,
// intact, and that every post is answered.
type goodRing struct {
	t       *testing.T
	r       *rawring.Ring
	sent    uint64 // posts submitted
	got     uint64 // messages received
	results uint64
	cqes    []abi.CQE
}

func newGoodRing(t *testing.T) *goodRing {
	r := openRaw(t, abi.Params{SQEntries: 16, CQEntries: 64, NrClasses: 2, SlotSize: 128, SlotCount: 16, BacklogLimit: 64})
	g := &goodRing{t: t, r: r, cqes: make([]abi.CQE, 64)}
	sub := abi.SQE{Opcode: abi.OpSubscribe, Source: abi.SrcMsg, Prio: 1, Flags: abi.SQEFSilent, UserData: 7}
	sub.Msg().Channel = 1
	require.NoError(t, r.Push(&sub))
	n, err := r.Submit()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	return g
}

// step posts n messages (n small enough that the rings never overflow),
// submits, and drains everything, checking as it goes.
func (g *goodRing) step(n int) {
	for i := 0; i < n; i++ {
		sqe := abi.SQE{Opcode: abi.OpPost, Target: abi.Addr(g.r.ID, 1), Prio: 1, Len: 8, UserData: 1 << 40}
		binary.LittleEndian.PutUint64(sqe.Data[:], g.sent)
		require.NoError(g.t, g.r.Push(&sqe))
		g.sent++
	}
	_, err := g.r.Submit()
	require.NoError(g.t, err)
	for _, cls := range g.r.CQs() {
		k := g.r.Reap(cls, g.cqes)
		for i := range g.cqes[:k] {
			cqe := &g.cqes[i]
			if cqe.Flags&abi.CQEFResult != 0 {
				require.Equal(g.t, int32(0), cqe.Res, "good ring: post answered %d", cqe.Res)
				g.results++
				continue
			}
			require.Equal(g.t, uint8(abi.SrcMsg), cqe.Source, "good ring: event from source %d", cqe.Source)
			require.Equal(g.t, int32(8), cqe.Res, "good ring: message of %d bytes", cqe.Res)
			seq := binary.LittleEndian.Uint64(cqe.Data[:])
			require.Equal(g.t, g.got, seq, "good ring: message %d arrived out of order or was lost", g.got)
			g.got++
		}
	}
	require.Equal(g.t, g.sent, g.got, "good ring: every message arrives in the same batch")
	require.Equal(g.t, g.sent, g.results, "good ring: every post answered")
	st := requireAccounting(g.t, g.r, nil)
	require.Zero(g.t, st.Dropped+st.Backlog, "good ring: nothing dropped or waiting")
	require.Zero(g.t, refusedTotal(st), "good ring: nothing refused")
}

// FuzzRingScribble overwrites words of a ring's mapped RINGS region (head,
// tail, mask, entries, flags, dropped, slot-ring entries, anything) and
// its SQEs between batches, and drives it with absurd submit counts, while
// a second, well-behaved ring in the same process runs beside it. The
// hostile ring must survive, refuse and count (accounting exact, backlog
// bounded, submit never beyond one ring); the good ring must be
// unaffected: every message in order, nothing dropped or refused.
func FuzzRingScribble(f *testing.F) {
	cfg := []byte{3, 3, 1, 0, 7, 2, 15}
	seed := func(ops ...[]byte) []byte {
		b := append([]byte(nil), cfg...)
		for _, o := range ops {
			b = append(b, o...)
		}
		return b
	}
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	// field picks: (ring << 3) | field; ring 0 SQ, 1 slot ring, 2.. CQ classes
	field := func(ring, fld uint8, v uint32) []byte { return append([]byte{0, ring<<3 | fld}, u32(v)...) }

	f.Add(seed([]byte{7, 3}, []byte{6}, []byte{7, 5}))
	f.Add(seed(field(0, 1, 0x7fffffff), []byte{2, 0xff}, []byte{7, 2}, field(0, 1, 1), []byte{2, 4}, []byte{7, 1}))
	f.Add(seed(field(0, 0, 0xffffffff), field(0, 2, 0), field(0, 3, 1<<31), []byte{2, 3}, []byte{7, 4}))
	f.Add(seed([]byte{6}, []byte{6}, field(2, 0, 0x80000000), []byte{6}, []byte{3, 0}, field(2, 1, 5), []byte{7, 2}))
	f.Add(seed(field(1, 1, 3), append([]byte{1, 0}, u32(0xffffffff)...), append([]byte{1, 1}, u32(2)...), []byte{2, 1}, []byte{7, 1}))
	f.Add(seed(append([]byte{4, 0}, rawSQE(abi.SQE{Opcode: abi.OpPost, Target: 1, Len: 40})...), []byte{2, 1}, []byte{7, 1}))

	f.Fuzz(func(t *testing.T, in []byte) {
		watchdog(t, 10*time.Second, in)
		pr := &prog{b: in}
		bad := openRaw(t, pr.smallParams())
		good := newGoodRing(t)
		p := &bad.Params
		rb := uint32(len(bad.Rings))
		// a generator on the hostile ring keeps its CQ rings busy
		gen := abi.SQE{Opcode: abi.OpSubscribe, Source: abi.SrcGen, Flags: abi.SQEFSilent}
		gen.Gen().Count, gen.Gen().Burst, gen.Gen().PayloadLen = 64, 4, 16
		_ = bad.Push(&gen)
		_, err := bad.Submit()
		require.NoError(t, err)

		for step := 0; step < 256 && pr.more(); step++ {
			switch pr.u8() % 8 {
			case 0: // a ring field
				pick := pr.u8()
				o := p.SQOff
				switch c := int(pick>>3) % (int(p.NrClasses) + 3); c {
				case 0:
				case 1:
					o = p.SlotOff
				case 2:
					o = p.ResOff
				default:
					o = p.CQOff[c-3]
				}
				offs := [...]uint32{o.Head, o.Tail, o.RingMask, o.RingEntries, o.Flags, o.Dropped}
				off := offs[int(pick&7)%len(offs)]
				v := pr.u32()
				if pick&0x80 != 0 { // near the old value
					v = bad.Word(off) + uint32(int32(int8(v)))
				}
				bad.SetWord(off, v)
			case 1: // any word of RINGS, or a slot-ring entry
				where := pr.u8()
				off := pr.u32() % rb
				if where&1 != 0 && p.SlotOff.Array < rb {
					off = p.SlotOff.Array + 4*(off%64)
				}
				if off+4 <= rb {
					bad.SetWord(off, pr.u32())
				}
			case 2: // submit whatever the tail now says, or an absurd count
				n := pr.u8()
				if n&1 != 0 {
					bad.SetSQTail(bad.Word(p.SQOff.Head) + uint32(n)<<20)
				}
				before, err := bad.Stats()
				require.NoError(t, err)
				k, err := bad.Submit()
				require.NoError(t, err)
				require.LessOrEqual(t, k, int(p.SQEntries), "hostile ring: submit consumed more than one ring")
				after, err := bad.Stats()
				require.NoError(t, err)
				require.Equal(t, uint64(k), after.SQEs-before.SQEs, "hostile ring: sqes counter against submit")
			case 3: // read whatever the tail claims; libaem clamps nothing here
				cqes := make([]abi.CQE, 64)
				cqs := bad.CQs()
				bad.Reap(cqs[int(pr.u8())%len(cqs)], cqes)
			case 4: // raw bytes into an SQE slot of the ring
				idx := pr.u8()
				sqe := pr.sqe()
				if sqe.Opcode%abi.OpLast == abi.OpPost || sqe.Opcode%abi.OpLast == abi.OpCall {
					// at this ring's channels, or the good ring's unused one
					sqe.Opcode %= abi.OpLast
					sqe.Arg %= 20
					sqe.Target = abi.Addr(bad.ID, uint32(sqe.Target&3))
					if sqe.Target&4 != 0 {
						sqe.Target = abi.Addr(good.r.ID, 9)
					}
				}
				bad.SQEs[int(idx)%len(bad.SQEs)] = sqe
			case 5:
				_ = bad.Release(pr.u32())
				bad.Commit()
			case 6:
				good.step(1 + int(pr.u8())%8)
			case 7:
				time.Sleep(time.Duration(pr.u8()%4) * 250 * time.Microsecond)
			}
			requireAccounting(t, bad, nil)
		}
		good.step(3)
		bad.Close()
		good.step(3)
	})
}
