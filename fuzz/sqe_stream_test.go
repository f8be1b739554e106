package fuzz

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/fuzz/internal/rawring"
	"github.com/aem-dev/aem/goaem/abi"
)

const udMagic = 0xAE5E << 48

// sqeRec is what the target wrote into one SQE.
type sqeRec struct {
	op, flags uint8
	slot      uint32
	answers   int
	res       int32
}

// streamChecker follows one ring as its only consumer and checks every CQE
// against what was submitted.
type streamChecker struct {
	t        *testing.T
	r        *rawring.Ring
	recs     []sqeRec
	consumed int // SQEs the core consumed, in order: recs[:consumed]
	tokens   []uint64
	subs     []uint64
	// slot ownership as the user sees it: held (handed out, not returned)
	// or in limbo (named by a writeback whose outcome is not known yet).
	// Both by slot index; held keeps the reference (index and generation)
	// the slot was handed out with, which is what a release names.
	held     map[uint32]uint32
	limbo    map[uint32]int // slot -> rec
	badRel   uint64
	errorRes uint64
	cqes     []abi.CQE
}

func newStreamChecker(t *testing.T, r *rawring.Ring) *streamChecker {
	return &streamChecker{t: t, r: r, held: map[uint32]uint32{}, limbo: map[uint32]int{}, cqes: make([]abi.CQE, 256)}
}

func (c *streamChecker) addToken(id uint64) {
	if id == 0 {
		return
	}
	if len(c.tokens) < 64 {
		c.tokens = append(c.tokens, id)
	} else {
		c.tokens[id%64] = id
	}
}

func (c *streamChecker) heldSlot(pick uint32) (uint32, bool) {
	n := c.r.Params.SendSlots + c.r.Params.SlotCount
	for i := uint32(0); i < n; i++ {
		if ref, ok := c.held[(pick+i)%n]; ok {
			return ref, true
		}
	}
	return 0, false
}

// push writes one SQE from the input; ctl steers fields the fuzzer could
// not guess (see fuzz/c/sqe_stream.c: same bits).
func (c *streamChecker) push(ctl uint8, sqe abi.SQE) {
	p := &c.r.Params
	if ctl&8 != 0 {
		sqe.Opcode %= abi.OpLast
		sqe.Flags &= abi.SQEFlagsAll
		sqe.Prio %= uint8(p.NrClasses)
		sqe.Source %= abi.SrcLast
		if sqe.Opcode != abi.OpCall {
			sqe.Arg = 0
		} else if sqe.Arg > 50 {
			sqe.Arg = 1 + sqe.Arg%50
		}
		if sqe.Flags&abi.SQEFSlot == 0 {
			sqe.Slot = 0
			if sqe.Len > abi.SQEInline {
				sqe.Len %= abi.SQEInline + 1
			}
		}
		if sqe.Opcode == abi.OpSubscribe {
			clear(sqe.Data[8:])
		}
	}
	if ctl&1 != 0 && len(c.tokens) > 0 {
		sqe.Target = c.tokens[sqe.Target%uint64(len(c.tokens))]
	}
	if ctl&2 != 0 && (sqe.Opcode == abi.OpPost || sqe.Opcode == abi.OpCall) {
		sqe.Target = abi.Addr(c.r.ID, uint32(sqe.Target&3))
	}
	if ctl&4 != 0 && sqe.Flags&abi.SQEFSlot != 0 {
		if sqe.Opcode == abi.OpWriteback {
			if s, ok := c.heldSlot(sqe.Slot); ok {
				sqe.Slot = s
			}
		} else if p.SendSlots > 0 {
			sqe.Slot %= p.SendSlots
		}
		if sqe.Len > p.SlotSize {
			sqe.Len %= p.SlotSize + 1
		}
	}
	// A writeback may name a delivery slot whose CQE the user has not read
	// yet: the kernel side rightly takes it, and the user then reads its own
	// overwritten event. That harms only the user and leaves nothing to
	// check, so this user names only slots it holds, or none that exist.
	if ref, ok := c.held[abi.SlotIndex(sqe.Slot)]; sqe.Opcode == abi.OpWriteback && sqe.Flags&abi.SQEFSlot != 0 &&
		(!ok || ref != sqe.Slot) && sqe.Slot >= p.SendSlots && sqe.Slot < p.SendSlots+p.SlotCount {
		sqe.Slot = p.SendSlots + p.SlotCount + sqe.Slot&0xff
	}
	c.pushExact(sqe)
}

func (c *streamChecker) pushExact(sqe abi.SQE) {
	if len(c.recs) >= 1024 {
		return
	}
	sqe.UserData = udMagic | uint64(len(c.recs))
	tracef("sqe %d: op %d flags %#x prio %d src %d len %d target %#x slot %d arg %d", len(c.recs),
		sqe.Opcode, sqe.Flags, sqe.Prio, sqe.Source, sqe.Len, sqe.Target, sqe.Slot, sqe.Arg)
	if c.r.Push(&sqe) != nil {
		return // ring full: the SQE is not written
	}
	// A writeback naming a held slot hands it back unless refused: from
	// now on the user must not release it (that would return it twice).
	if ref, ok := c.held[abi.SlotIndex(sqe.Slot)]; ok && ref == sqe.Slot &&
		sqe.Opcode == abi.OpWriteback && sqe.Flags&abi.SQEFSlot != 0 {
		delete(c.held, abi.SlotIndex(sqe.Slot))
		c.limbo[abi.SlotIndex(sqe.Slot)] = len(c.recs)
	}
	c.recs = append(c.recs, sqeRec{op: sqe.Opcode, flags: sqe.Flags, slot: sqe.Slot})
}

func (c *streamChecker) submit() {
	n, err := c.r.Submit()
	require.NoError(c.t, err)
	tracef("submit: %d", n)
	require.LessOrEqual(c.t, c.consumed+n, len(c.recs), "submit consumed SQEs never written")
	c.consumed += n
}

func (c *streamChecker) takeSlot(cqe *abi.CQE) {
	p := &c.r.Params
	idx := abi.SlotIndex(cqe.Slot)
	require.True(c.t, idx >= p.SendSlots && idx < p.SendSlots+p.SlotCount,
		"CQE names slot %d outside the delivery slots [%d,%d)", idx, p.SendSlots, p.SendSlots+p.SlotCount)
	require.True(c.t, cqe.Res >= 0 && uint32(cqe.Res) <= p.SlotSize, "slot CQE with res %d", cqe.Res)
	_, held := c.held[idx]
	require.False(c.t, held, "slot %d handed out while the user holds it", idx)
	if i, ok := c.limbo[idx]; ok {
		w := &c.recs[i]
		require.False(c.t, w.answers > 0 && w.res < 0,
			"slot %d reissued although the writeback naming it was refused (%d)", idx, w.res)
		delete(c.limbo, idx)
	}
	c.held[idx] = cqe.Slot
}

func (c *streamChecker) onResult(cqe *abi.CQE) {
	require.Equal(c.t, uint64(udMagic), cqe.UserData&(0xFFFF<<48), "result CQE with user_data %#x no SQE carried", cqe.UserData)
	seq := int(cqe.UserData & 0xFFFFFFFF)
	require.Less(c.t, seq, c.consumed, "result for SQE %d, never consumed", seq)
	rec := &c.recs[seq]
	require.Zero(c.t, rec.answers, "SQE %d answered twice (%d, then %d)", seq, rec.res, cqe.Res)
	rec.answers, rec.res = 1, cqe.Res
	if rec.flags&abi.SQEFSilent != 0 {
		require.Negative(c.t, cqe.Res, "SILENT SQE %d answered with success", seq)
	}
	if cqe.Res < 0 && !(rec.op == abi.OpCall && (cqe.Res == -int32(syscall.ETIMEDOUT) || cqe.Res == -int32(syscall.ECONNRESET))) {
		c.errorRes++
	}
	if rec.op == abi.OpSubscribe && cqe.Res >= 0 {
		require.Equal(c.t, uint32(abi.IDKindSub), abi.IDKind(cqe.ID), "subscribe answered with id %#x", cqe.ID)
		c.addToken(cqe.ID)
		c.subs = append(c.subs, cqe.ID)
	}
	for slot, i := range c.limbo {
		if i == seq {
			delete(c.limbo, slot)
			if cqe.Res < 0 { // refused: the slot stays the user's
				c.held[slot] = c.recs[i].slot
			}
		}
	}
}

func (c *streamChecker) reap(cls int, max int) int {
	if max > len(c.cqes) {
		max = len(c.cqes)
	}
	ready, entries := c.r.Ready(cls), c.r.Entries(cls)
	require.LessOrEqual(c.t, ready, entries, "CQ %d: %d CQEs published in a ring of %d", cls, ready, entries)
	n := c.r.Reap(cls, c.cqes[:max])
	for i := range c.cqes[:n] {
		cqe := &c.cqes[i]
		tracef("  cqe class %d: ud %#x id %#x res %d flags %#x slot %d src %d", cls, cqe.UserData, cqe.ID,
			cqe.Res, cqe.Flags, cqe.Slot, cqe.Source)
		require.Zero(c.t, cqe.Flags&^uint32(abi.CQEFResult|abi.CQEFSlot|abi.CQEFCall|abi.CQEFFinal|abi.CQEFTrunc|
			abi.CQEFSender), "CQE with unknown flags %#x", cqe.Flags)
		if cqe.Flags&abi.CQEFSender != 0 {
			// ABI 4: a message event names its sender (beside the CQE).
			require.Equal(c.t, uint8(abi.SrcMsg), cqe.Source, "a sender on an event of source %d", cqe.Source)
			require.Zero(c.t, cqe.Flags&abi.CQEFResult, "a sender on a result")
		}
		require.Equal(c.t, cls == rawring.ResultRing, cqe.Flags&abi.CQEFResult != 0,
			"CQE with flags %#x in CQ %d: results go to the result ring alone", cqe.Flags, cls)
		if cls != rawring.ResultRing {
			require.Equal(c.t, uint8(cls), cqe.Prio, "CQE of class %d in ring %d", cqe.Prio, cls)
		}
		if cqe.Flags&abi.CQEFSlot != 0 {
			c.takeSlot(cqe)
		}
		if cqe.Flags&abi.CQEFResult != 0 {
			c.onResult(cqe)
			continue
		}
		require.GreaterOrEqual(c.t, cqe.Res, int32(0), "event with res %d", cqe.Res)
		if cqe.Flags&abi.CQEFSlot == 0 {
			require.LessOrEqual(c.t, cqe.Res, int32(abi.CQEInline), "inline event of %d bytes", cqe.Res)
		}
		if cqe.Flags&abi.CQEFCall != 0 {
			require.Equal(c.t, uint32(abi.IDKindCall), abi.IDKind(cqe.ID), "call event with id %#x", cqe.ID)
		}
		c.addToken(cqe.ID)
	}
	return n
}

func (c *streamChecker) reapAll() int {
	n := 0
	for _, cls := range c.r.CQs() {
		n += c.reap(cls, 256)
	}
	return n
}

func (c *streamChecker) release(pick uint8) {
	if s, ok := c.heldSlot(uint32(pick)); ok && c.r.Release(s) == nil {
		tracef("release slot %#x", s)
		delete(c.held, abi.SlotIndex(s))
		c.r.Commit()
	}
}

// releaseBad returns a slot that is wrong whenever the core reads it: a
// send slot or one beyond every slot.
func (c *streamChecker) releaseBad(v uint32) {
	p := &c.r.Params
	slot := p.SendSlots + p.SlotCount + v>>1
	if v&1 != 0 && p.SendSlots > 0 {
		slot = (v >> 1) % p.SendSlots
	} else if slot < p.SendSlots+p.SlotCount {
		return // wrapped into range
	}
	if c.r.Release(slot) == nil {
		c.badRel++
		c.r.Commit()
	}
}

// subscribe queues a well-formed subscription, so inputs start with events.
func (c *streamChecker) subscribe(v uint8) {
	sqe := abi.SQE{Opcode: abi.OpSubscribe, Prio: (v >> 2) % uint8(c.r.Params.NrClasses)}
	switch v & 3 {
	case 0, 1:
		sqe.Source = abi.SrcMsg
		sqe.Msg().Channel = uint32(v>>4) & 3
	case 2:
		sqe.Source = abi.SrcTimer
		sqe.Timer().FirstNS = uint64(1+(v>>4)&3) * uint64(time.Millisecond)
		if v&0x40 != 0 {
			sqe.Timer().IntervalNS = uint64(time.Millisecond)
		}
	default:
		sqe.Source = abi.SrcGen
		g := sqe.Gen()
		g.Count = 1 + uint64(v>>4&15)*4
		g.Burst = 1 + uint32(v>>4&3)
		g.PayloadLen = 16
		if v&0x40 != 0 && c.r.Params.SlotSize >= 48 {
			g.PayloadLen = 48
		}
	}
	c.pushExact(sqe)
}

// finish lets everything out and checks that every consumed SQE was
// answered, or refused and counted.
func (c *streamChecker) finish() {
	deadline := time.Now().Add(500 * time.Millisecond)
	for {
		// Done with every event: give back each slot held (slots in limbo
		// stay until their writeback's result says whose they are).
		for idx, ref := range c.held {
			if c.r.Release(ref) == nil {
				delete(c.held, idx)
			}
		}
		c.r.Commit()
		c.submit()
		c.reapAll()
		if c.allAnswered() || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	st := requireAccounting(c.t, c.r, c.subs)
	c.t.Logf("%d SQEs, %d error results, %d bad releases, %d held slots; ring %+v", len(c.recs), c.errorRes, c.badRel, len(c.held), st)
	require.Equal(c.t, len(c.recs), c.consumed, "published SQEs left unconsumed")
	require.Equal(c.t, uint64(c.consumed), st.SQEs, "stats.sqes against what submit returned")

	refused := refusedTotal(st)
	require.GreaterOrEqual(c.t, refused, c.errorRes+c.badRel,
		"refusals counted %d; %d error results + %d bad slot releases", refused, c.errorRes, c.badRel)
	unanswered := uint64(0)
	for i := range c.recs {
		rec := &c.recs[i]
		if rec.op != abi.OpCall && rec.flags&abi.SQEFSilent == 0 && rec.answers == 0 {
			unanswered++
		}
	}
	require.LessOrEqual(c.t, unanswered, refused-c.errorRes-c.badRel,
		"%d SQEs consumed but never answered, and not refused (ring stats %+v)", unanswered, st)
}

func (c *streamChecker) allAnswered() bool {
	if c.consumed < len(c.recs) {
		return false
	}
	for i := range c.recs {
		if rec := &c.recs[i]; rec.op != abi.OpCall && rec.flags&abi.SQEFSilent == 0 && rec.answers == 0 {
			return false
		}
	}
	return true
}

// FuzzSQEStream submits hostile SQE streams through libaem's embedded
// backend: raw 64-byte SQEs (some steered at ids, channels and slots that
// exist), interleaved with submits, reaps, slot releases good and bad, and
// pauses that let the timer and generator threads run. Invariants: no
// crash; every consumed SQE answered at most once, and at least once unless
// SILENT, a CALL, or refused and counted; the core never hands out a slot
// the user holds nor publishes more CQEs than the ring has; ring and
// subscription accounting exact; refusals counted.
func FuzzSQEStream(f *testing.F) {
	cfg := []byte{3, 3, 1, 0, 7, 2, 15} // 16 SQEs, 16 CQEs, 2 classes, 64-byte slots
	seed := func(ops ...[]byte) []byte {
		b := append([]byte(nil), cfg...)
		for _, o := range ops {
			b = append(b, o...)
		}
		return b
	}
	sqeOp := func(ctl uint8, s abi.SQE) []byte { return append([]byte{0, ctl}, rawSQE(s)...) }
	submit, reapAll := []byte{2}, []byte{3, 0, 63, 3, 1, 63}
	post := abi.SQE{Opcode: abi.OpPost, Target: 1, Len: 5}
	copy(post.Data[:], "hello")
	call := abi.SQE{Opcode: abi.OpCall, Target: 1, Len: 3, Arg: 5}
	copy(call.Data[:], "ask")
	bigPost := abi.SQE{Opcode: abi.OpPost, Flags: abi.SQEFSlot, Target: 1, Len: 60}

	f.Add(seed(submit))
	f.Add(seed([]byte{6, 0x10}, submit, reapAll, sqeOp(2|8, post), sqeOp(2|4|8, bigPost), submit, reapAll, []byte{4, 0}, submit))
	f.Add(seed([]byte{6, 0x12}, []byte{6, 0x42 | 4}, submit, []byte{7, 3}, reapAll, []byte{7, 3}, reapAll))
	f.Add(seed([]byte{6, 0x33}, []byte{6, 0x43}, submit, []byte{7, 1}, reapAll, []byte{4, 1, 4, 2}, submit, reapAll))
	f.Add(seed([]byte{6, 0x10}, submit, reapAll, sqeOp(2|8, call), submit, reapAll,
		sqeOp(1|4|8, abi.SQE{Opcode: abi.OpWriteback, Flags: abi.SQEFSlot, Target: 1, Len: 4}), submit, reapAll))
	f.Add(seed(sqeOp(0, abi.SQE{Opcode: 0xEE, Flags: 0xFF, Prio: 9, Source: 77, Len: 1 << 31, Target: 1<<56 | 3, Slot: 1 << 30}),
		sqeOp(0, abi.SQE{Opcode: abi.OpWriteback, Flags: abi.SQEFSlot, Target: 1<<56 | 1, Slot: 5, Len: 9}),
		sqeOp(0, abi.SQE{Opcode: abi.OpNop, Flags: abi.SQEFSilent}), submit, reapAll,
		[]byte{5}, []byte{0xff, 0xff, 0xff, 0xff}, []byte{5, 1, 0, 0, 0}, submit))

	f.Fuzz(sqeStream)
}

func sqeStream(t *testing.T, in []byte) {
	watchdog(t, 10*time.Second, in)
	pr := &prog{b: in}
	r := openRaw(t, pr.smallParams())
	c := newStreamChecker(t, r)
	for step := 0; step < 256 && pr.more(); step++ {
		switch pr.u8() % 8 {
		case 0, 1:
			ctl := pr.u8()
			c.push(ctl, pr.sqe())
		case 2:
			c.submit()
		case 3:
			cqs := r.CQs()
			c.reap(cqs[int(pr.u8())%len(cqs)], 1+int(pr.u8())%64)
		case 4:
			c.release(pr.u8())
		case 5:
			c.releaseBad(pr.u32())
		case 6:
			c.subscribe(pr.u8())
		case 7:
			time.Sleep(time.Duration(pr.u8()%4) * time.Millisecond)
		}
		requireAccounting(t, r, c.subs)
	}
	c.finish()
}
