package fuzz

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/fuzz/internal/rawring"
	"github.com/aem-dev/aem/goaem/abi"
)

// prog reads a fuzz input as a little program; exhausted input reads as
// zeros, so every prefix of an input is a complete program.
type prog struct{ b []byte }

func (p *prog) more() bool { return len(p.b) > 0 }

func (p *prog) bytes(n int) []byte {
	out := make([]byte, n)
	k := copy(out, p.b)
	p.b = p.b[k:]
	return out
}

func (p *prog) u8() uint8   { return p.bytes(1)[0] }
func (p *prog) u16() uint16 { return binary.LittleEndian.Uint16(p.bytes(2)) }
func (p *prog) u32() uint32 { return binary.LittleEndian.Uint32(p.bytes(4)) }
func (p *prog) u64() uint64 { return binary.LittleEndian.Uint64(p.bytes(8)) }

// sqe reads 64 raw bytes as an SQE.
func (p *prog) sqe() abi.SQE {
	var s abi.SQE
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&s)), unsafe.Sizeof(s)), p.bytes(int(unsafe.Sizeof(s))))
	return s
}

// smallParams sizes a ring from 7 input bytes: rings small enough to fill,
// overflow and wrap within one input. Same encoding as the C harnesses.
func (p *prog) smallParams() abi.Params {
	return abi.Params{
		SQEntries:    1 << (1 + p.u8()%5),
		CQEntries:    1 << (1 + p.u8()%5),
		NrClasses:    1 + uint32(p.u8())%abi.MaxClasses,
		SlotSize:     abi.MinSlotSize << (p.u8() % 3),
		SlotCount:    1 + uint32(p.u8())%16,
		SendSlots:    uint32(p.u8()) % 5,
		BacklogLimit: 1 + uint32(p.u8())%32,
	}
}

// rawSQE is the 64 bytes of s, for seeds.
func rawSQE(s abi.SQE) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&s)), unsafe.Sizeof(s))...)
}

// openRaw opens an embedded ring or skips the input when setup refuses it.
func openRaw(t *testing.T, p abi.Params) *rawring.Ring {
	t.Helper()
	r, err := rawring.Open(p)
	if err != nil {
		require.ErrorIs(t, err, syscall.EINVAL, "setup may refuse parameters, only with EINVAL")
		t.Skip("setup refused the parameters")
	}
	t.Cleanup(r.Close)
	return r
}

// requireAccounting: produced == delivered + backlog + dropped, for the ring
// and each listed live subscription, and the backlog within its bound
// (events: backlog_limit; results may add a second one plus an SQ ring).
func requireAccounting(t *testing.T, r *rawring.Ring, subs []uint64) abi.RingStats {
	t.Helper()
	st, err := r.Stats()
	require.NoError(t, err)
	require.Equal(t, st.Produced, st.Delivered+st.Backlog+st.Dropped,
		"ring: produced != delivered + backlog + dropped (%+v)", st)
	bound := 2*uint64(r.Params.BacklogLimit) + uint64(r.Params.SQEntries)
	require.LessOrEqual(t, st.Backlog, bound, "ring backlog beyond its bound")
	require.LessOrEqual(t, st.SlotsFree, uint64(r.Params.SlotCount), "more free slots than slots")
	for _, id := range subs {
		ss, err := r.SubStats(id)
		if err != nil {
			require.ErrorIs(t, err, syscall.ENOENT, "sub stats of %#x", id)
			continue
		}
		require.Equal(t, ss.Produced, ss.Delivered+ss.Backlog+ss.Dropped,
			"sub %#x: produced != delivered + backlog + dropped (%+v)", id, ss)
	}
	return st
}

func refusedTotal(st abi.RingStats) uint64 {
	var n uint64
	for _, v := range st.Refused {
		n += v
	}
	return n
}

// watchdog fails loudly when one input runs longer than d: the fuzzing
// engine reports a crashed worker and keeps the input, where a silent hang
// would only stall it. The goroutine dump names where Go waits; the C
// threads' stacks (gdb, where installed) and the input go to a file in
// the temporary directory, since a worker's own output may be lost.
func watchdog(t *testing.T, d time.Duration, in []byte) {
	t.Helper()
	tm := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		report := fmt.Sprintf("fuzz: %s still running after %v: hung\ninput: %q\n%s\n", t.Name(), d, in, buf[:n])
		if gdb, err := exec.LookPath("gdb"); err == nil {
			out, _ := exec.Command(gdb, "-p", strconv.Itoa(os.Getpid()), "-batch", "-ex", "thread apply all bt").CombinedOutput()
			report += string(out)
		}
		fmt.Fprint(os.Stderr, report)
		_ = os.WriteFile(filepath.Join(os.TempDir(), fmt.Sprintf("aem-fuzz-hang-%d.txt", os.Getpid())), []byte(report), 0o644)
		panic(fmt.Sprintf("%s hung for %v", t.Name(), d))
	})
	t.Cleanup(func() { tm.Stop() })
}

// FZ_TRACE=1 logs every step of a target to stderr: for reading a crasher.
var traceOn = os.Getenv("FZ_TRACE") != ""

func tracef(format string, args ...any) {
	if traceOn {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}
