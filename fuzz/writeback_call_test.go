package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/fuzz/internal/rawring"
	"github.com/aem-dev/aem/goaem/abi"
)

// callPattern is the byte i of a request (reply: reply=true) of call n:
// every byte names its call, so a reply delivered to the wrong caller, or
// a request to the wrong handler, shows.
func callPattern(n uint64, reply bool, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(n*131 + uint64(i)*7)
		if reply {
			b[i] ^= 0xA5
		}
	}
	if size >= 8 {
		binary.LittleEndian.PutUint64(b, n)
	}
	return b
}

// callRec follows one call from both ends.
type callRec struct {
	async   bool
	reqLen  int
	respCap int
	// the caller's view, when the call has ended
	done  bool
	err   error  // syscall.Errno, or nil
	reply []byte // what the caller got (up to respCap for blocking calls)
	n     int    // reply length the kernel side reported
	// the handler's view
	seen      bool   // the request reached the handler
	wbOK      int    // writebacks the kernel side accepted
	wbReply   []byte // the reply of the accepted writeback
	wbRefused int    // writebacks refused with ENOENT (answered or expired)
	wbPending int    // writebacks whose result is not seen yet
}

// wbRec is one writeback SQE in flight: its call and the reply it carries.
type wbRec struct {
	call  int
	reply []byte
	slot  uint32 // the event's slot, when the writeback named it
	named bool
}

// callFuzz is a handler ring serving calls on channel 1 and a client ring
// making asynchronous ones; blocking calls run in goroutines.
type callFuzz struct {
	t      *testing.T
	srv    *rawring.Ring
	cli    *rawring.Ring
	mu     sync.Mutex
	calls  []*callRec
	wg     sync.WaitGroup
	held   []abi.CQE        // call events the handler holds unanswered
	wbs    map[uint64]wbRec // server writeback SQEs by user_data
	asyncs map[uint64]int   // client SQE user_data -> call number
	cqes   []abi.CQE
	seq    uint64
}

const (
	udWriteback = 0xB0 << 56
	udCall      = 0xCA << 56
	udMisc      = 0xEE << 56
)

func (cf *callFuzz) next() uint64 { cf.seq++; return cf.seq }

// blockingCall runs aem_call in a goroutine; it must end by its timeout.
func (cf *callFuzz) blockingCall(reqLen, respCap int, timeoutMS uint32, channel uint32) {
	cf.mu.Lock()
	n := len(cf.calls)
	rec := &callRec{reqLen: reqLen, respCap: respCap}
	cf.calls = append(cf.calls, rec)
	cf.mu.Unlock()
	req := callPattern(uint64(n), false, reqLen)
	resp := make([]byte, respCap)
	cf.wg.Add(1)
	go func() {
		defer cf.wg.Done()
		start := time.Now()
		got, err := cf.srv.Call(abi.Addr(cf.srv.ID, channel), req, resp, 0, timeoutMS)
		took := time.Since(start)
		cf.mu.Lock()
		defer cf.mu.Unlock()
		rec.done, rec.err, rec.n = true, err, got
		if err == nil {
			rec.reply = append([]byte(nil), resp[:min(got, respCap)]...)
		}
		// A call ends by its deadline; the slack covers a busy machine.
		if took > time.Duration(timeoutMS)*time.Millisecond+2*time.Second {
			cf.t.Errorf("call %d (timeout %d ms) took %v", n, timeoutMS, took)
		}
	}()
}

// asyncCall submits an AEM_OP_CALL from the client ring.
func (cf *callFuzz) asyncCall(reqLen int, timeoutMS uint32, channel uint32) {
	if reqLen > abi.SQEInline {
		reqLen = abi.SQEInline
	}
	cf.mu.Lock()
	n := len(cf.calls)
	cf.calls = append(cf.calls, &callRec{async: true, reqLen: reqLen, respCap: 1 << 30})
	cf.mu.Unlock()
	sqe := abi.SQE{Opcode: abi.OpCall, Target: abi.Addr(cf.srv.ID, channel), Len: uint32(reqLen), Arg: timeoutMS,
		UserData: udCall | uint64(n)}
	copy(sqe.Data[:], callPattern(uint64(n), false, reqLen))
	if cf.cli.Push(&sqe) != nil {
		cf.mu.Lock()
		cf.calls[n].done, cf.calls[n].err = true, syscall.EBUSY
		cf.mu.Unlock()
		return
	}
	cf.asyncs[sqe.UserData] = n
	_, err := cf.cli.Submit()
	require.NoError(cf.t, err)
}

// reapClient reads the asynchronous calls' results.
func (cf *callFuzz) reapClient() {
	for _, cls := range cf.cli.CQs() {
		k := cf.cli.Reap(cls, cf.cqes)
		for i := range cf.cqes[:k] {
			cqe := &cf.cqes[i]
			require.NotZero(cf.t, cqe.Flags&abi.CQEFResult, "client ring: an event it never subscribed to")
			n, ok := cf.asyncs[cqe.UserData]
			require.True(cf.t, ok, "client ring: result for user_data %#x it never sent", cqe.UserData)
			delete(cf.asyncs, cqe.UserData)
			cf.mu.Lock()
			rec := cf.calls[n]
			rec.done = true
			if cqe.Res < 0 {
				rec.err = syscall.Errno(-cqe.Res)
			} else {
				rec.n = int(cqe.Res)
				kind, off, ln := cf.cli.DecodePayload(cqe)
				switch kind {
				case rawring.PayloadInline:
					rec.reply = append([]byte(nil), cqe.Data[:ln]...)
				case rawring.PayloadSlot:
					rec.reply = append([]byte(nil), cf.cli.Payload[off:off+int(ln)]...)
					_ = cf.cli.Release(cqe.Slot)
					cf.cli.Commit()
				default:
					cf.t.Errorf("call %d: result names slot %d outside the ring", n, cqe.Slot)
				}
			}
			cf.mu.Unlock()
		}
	}
}

// reapServer takes call events into held, and writeback results.
func (cf *callFuzz) reapServer() {
	for _, cls := range cf.srv.CQs() {
		k := cf.srv.Reap(cls, cf.cqes)
		for i := range cf.cqes[:k] {
			cqe := cf.cqes[i]
			if cqe.Flags&abi.CQEFResult != 0 {
				cf.onWritebackResult(&cqe)
				continue
			}
			require.NotZero(cf.t, cqe.Flags&abi.CQEFCall, "server: a non-call event (%+v)", cqe)
			require.Equal(cf.t, uint32(abi.IDKindCall), abi.IDKind(cqe.ID), "call event with id %#x", cqe.ID)
			kind, off, ln := cf.srv.DecodePayload(&cqe)
			var req []byte
			switch kind {
			case rawring.PayloadInline:
				req = cqe.Data[:ln]
			case rawring.PayloadSlot:
				req = cf.srv.Payload[off : off+int(ln)]
			default:
				cf.t.Fatalf("call event names slot %d outside the ring", cqe.Slot)
			}
			require.GreaterOrEqual(cf.t, len(req), 8, "call requests carry their number")
			n := int(binary.LittleEndian.Uint64(req))
			cf.mu.Lock()
			require.Less(cf.t, n, len(cf.calls), "request of a call never made")
			rec := cf.calls[n]
			require.False(cf.t, rec.seen, "call %d delivered twice", n)
			rec.seen = true
			want := callPattern(uint64(n), false, rec.reqLen)
			if cqe.Flags&abi.CQEFTrunc == 0 {
				require.Equal(cf.t, want, []byte(req), "call %d: request bytes changed on the way", n)
			} else {
				require.Equal(cf.t, want[:len(req)], []byte(req), "call %d: truncated request changed", n)
			}
			cf.mu.Unlock()
			cf.held = append(cf.held, cqe)
		}
	}
}

func (cf *callFuzz) onWritebackResult(cqe *abi.CQE) {
	wb, ok := cf.wbs[cqe.UserData]
	if !ok {
		return // a misc SQE's answer
	}
	delete(cf.wbs, cqe.UserData)
	n := wb.call
	cf.mu.Lock()
	defer cf.mu.Unlock()
	rec := cf.calls[n]
	rec.wbPending--
	switch {
	case cqe.Res >= 0:
		rec.wbOK++
		rec.wbReply = wb.reply
	case cqe.Res == -int32(syscall.ENOENT):
		rec.wbRefused++
		if wb.named { // a refused writeback leaves the slot with the handler
			_ = cf.srv.Release(wb.slot)
			cf.srv.Commit()
		}
	default:
		cf.t.Errorf("call %d: writeback answered %d", n, cqe.Res)
	}
}

// writeback answers held call event ev with size bytes, through its slot
// (slot=true) or inline.
func (cf *callFuzz) writeback(ev *abi.CQE, size int, slot bool) {
	n := int(binary.LittleEndian.Uint64(cf.reqOf(ev)))
	reply := callPattern(uint64(n), true, size)
	sqe := abi.SQE{Opcode: abi.OpWriteback, Target: ev.ID, Len: uint32(size), UserData: udWriteback | cf.next()}
	if slot && ev.Flags&abi.CQEFSlot != 0 {
		kind, off, _ := cf.srv.DecodePayload(ev)
		require.Equal(cf.t, rawring.PayloadSlot, kind)
		copy(cf.srv.Payload[off:off+int(cf.srv.Params.SlotSize)], reply)
		sqe.Flags, sqe.Slot = abi.SQEFSlot, ev.Slot
	} else {
		copy(sqe.Data[:], reply)
	}
	if cf.srv.Push(&sqe) != nil {
		return
	}
	cf.wbs[sqe.UserData] = wbRec{call: n, reply: reply, slot: sqe.Slot, named: sqe.Flags&abi.SQEFSlot != 0}
	cf.mu.Lock()
	cf.calls[n].wbPending++
	cf.mu.Unlock()
	_, err := cf.srv.Submit()
	require.NoError(cf.t, err)
}

func (cf *callFuzz) reqOf(ev *abi.CQE) []byte {
	kind, off, ln := cf.srv.DecodePayload(ev)
	if kind == rawring.PayloadSlot {
		return cf.srv.Payload[off : off+int(ln)]
	}
	return ev.Data[:ln]
}

// answer handles the oldest held call event as action a says.
func (cf *callFuzz) answer(a uint8, size uint16) {
	if len(cf.held) == 0 {
		return
	}
	ev := cf.held[0]
	cf.held = cf.held[1:]
	slotSize := int(cf.srv.Params.SlotSize)
	release := func() {
		if ev.Flags&abi.CQEFSlot != 0 {
			_ = cf.srv.Release(ev.Slot)
			cf.srv.Commit()
		}
	}
	switch a % 6 {
	case 0: // reply in place, in its slot
		cf.writeback(&ev, int(size)%(slotSize+1), true)
	case 1: // reply inline, then give the slot back
		cf.writeback(&ev, int(size)%(abi.SQEInline+1), false)
		release()
	case 2: // keep it for later (the caller may time out meanwhile)
		cf.held = append(cf.held, ev)
	case 3: // never answer: the caller times out
		release()
	case 4: // answer twice: the second must be refused
		cf.writeback(&ev, int(size)%(abi.SQEInline+1), false)
		cf.writeback(&ev, 8, false)
		release()
	case 5: // a foreign slot first (refused, the slot stays ours), then a proper answer
		bad := abi.SQE{Opcode: abi.OpWriteback, Flags: abi.SQEFSlot, Target: ev.ID,
			Slot: ev.Slot + 1 + uint32(size)%4, Len: 8, UserData: udMisc | cf.next()}
		if cf.srv.Push(&bad) == nil {
			_, err := cf.srv.Submit()
			require.NoError(cf.t, err)
		}
		cf.writeback(&ev, int(size)%(slotSize+1), true)
	}
}

// FuzzWritebackCall drives calls and their writebacks with fuzzed payload
// sizes, reply sizes, reply capacities, timeouts, answer orders and
// mistakes (answering twice, through a foreign slot, late, never). Every
// call must end by its deadline with exactly one outcome that agrees with
// both ends: the caller gets the reply of the one writeback the kernel
// side accepted (byte for byte, cut to its capacity), or an error and no
// writeback was accepted; requests reach the handler intact, once; a
// second or late writeback is refused with ENOENT; accounting stays exact.
func FuzzWritebackCall(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 16, 0, 64, 0, 20, 0, 2, 0, 0, 40, 0})
	f.Add([]byte{1, 8, 10, 2, 1, 3, 0, 2, 0, 1, 4, 0, 5, 0})
	f.Add([]byte{0, 200, 0, 16, 0, 5, 0, 2, 0, 4, 9, 0, 2, 0, 3, 0, 0, 4, 10})
	f.Add([]byte{0, 30, 0, 100, 0, 3, 1, 2, 0, 2, 0, 0, 4, 20, 2, 0, 5, 3, 0})
	f.Add([]byte{1, 20, 3, 0, 2, 0, 5, 6, 0, 3, 2, 1, 0, 2, 0, 1, 200, 0})

	f.Fuzz(func(t *testing.T, in []byte) {
		watchdog(t, 20*time.Second, in)
		pr := &prog{b: in}
		cf := &callFuzz{t: t, wbs: map[uint64]wbRec{}, asyncs: map[uint64]int{}, cqes: make([]abi.CQE, 64)}
		cf.srv = openRaw(t, abi.Params{SQEntries: 32, CQEntries: 32, NrClasses: 1, SlotSize: 128, SlotCount: 8, SendSlots: 2})
		cf.cli = openRaw(t, abi.Params{SQEntries: 16, CQEntries: 32, NrClasses: 1, SlotSize: 128, SlotCount: 8})
		sub := abi.SQE{Opcode: abi.OpSubscribe, Source: abi.SrcMsg, Flags: abi.SQEFSilent}
		sub.Msg().Channel = 1
		require.NoError(t, cf.srv.Push(&sub))
		_, err := cf.srv.Submit()
		require.NoError(t, err)

		for step := 0; step < 64 && pr.more(); step++ {
			switch pr.u8() % 6 {
			case 0:
				if len(cf.calls) < 16 {
					req := 8 + int(pr.u16())%(int(cf.srv.Params.SlotSize)+8)
					capacity := int(pr.u16()) % 200
					timeout := 1 + uint32(pr.u8())%30
					channel := uint32(1)
					if pr.u8()&7 == 7 {
						channel = 9 // nobody listens: ENOENT
					}
					cf.blockingCall(req, capacity, timeout, channel)
				}
			case 1:
				if len(cf.calls) < 16 {
					cf.asyncCall(8+int(pr.u8())%25, 1+uint32(pr.u8())%30, 1)
				}
			case 2:
				cf.reapServer()
			case 3:
				a := pr.u8()
				cf.answer(a, pr.u16())
			case 4:
				time.Sleep(time.Duration(pr.u8()%8) * time.Millisecond)
			case 5:
				cf.reapClient()
			}
		}

		// Answer whatever is held, let every call end, collect every result.
		deadline := time.Now().Add(3 * time.Second)
		for {
			cf.reapServer()
			for len(cf.held) > 0 {
				cf.answer(0, 16)
			}
			cf.reapClient()
			cf.mu.Lock()
			open := len(cf.asyncs) > 0 || len(cf.wbs) > 0
			for _, rec := range cf.calls {
				open = open || !rec.done
			}
			cf.mu.Unlock()
			if !open || time.Now().After(deadline) {
				break
			}
			_, _ = cf.srv.Submit() // flushes backlogs, reclaims slots
			_, _ = cf.cli.Submit()
			time.Sleep(time.Millisecond)
		}
		waited := make(chan struct{})
		go func() { cf.wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			t.Fatal("a blocking call never returned")
		}

		cf.mu.Lock()
		defer cf.mu.Unlock()
		for n, rec := range cf.calls {
			t.Logf("call %d: async %v req %d cap %d: err %v n %d, seen %v, writebacks ok %d refused %d",
				n, rec.async, rec.reqLen, rec.respCap, rec.err, rec.n, rec.seen, rec.wbOK, rec.wbRefused)
			if errors.Is(rec.err, syscall.EBUSY) && rec.async {
				continue // never submitted
			}
			require.True(t, rec.done, "call %d never ended (%+v)", n, rec)
			if rec.wbPending != 0 {
				st, _ := cf.srv.Stats()
				t.Fatalf("call %d: %d writeback results missing; server ring SQ head %d tail %d, stats %+v", n, rec.wbPending,
					cf.srv.Word(cf.srv.Params.SQOff.Head), cf.srv.Word(cf.srv.Params.SQOff.Tail), st)
			}
			require.LessOrEqual(t, rec.wbOK, 1, "call %d: two writebacks accepted", n)
			if rec.err != nil {
				require.Zero(t, rec.wbOK, "call %d: the caller got %v, but a writeback was accepted", n, rec.err)
				if errors.Is(rec.err, syscall.E2BIG) {
					require.Greater(t, rec.reqLen, int(cf.srv.Params.SlotSize), "call %d: E2BIG for a request that fits a slot", n)
					continue
				}
				require.Contains(t, []error{syscall.ETIMEDOUT, syscall.ENOENT, syscall.ENOSPC, syscall.ENOMEM, syscall.EINVAL},
					rec.err, "call %d ended with %v", n, rec.err)
				continue
			}
			require.Equal(t, 1, rec.wbOK, "call %d: the caller got a reply no accepted writeback gave", n)
			require.Equal(t, len(rec.wbReply), rec.n, "call %d: reply length", n)
			want := rec.wbReply
			if len(want) > rec.respCap {
				want = want[:rec.respCap]
			}
			require.True(t, bytes.Equal(want, rec.reply), "call %d: reply %x, the handler wrote %x", n, rec.reply, want)
		}
		requireAccounting(t, cf.srv, nil)
		requireAccounting(t, cf.cli, nil)
	})
}
