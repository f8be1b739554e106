package fuzz

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem"
	"github.com/aem-dev/aem/goaem/abi"
)

// laneMagic marks the well-behaved lane's records.
const laneMagic = 0x600d1a4e

// FuzzLaneScribble: a hostile producer writes anything anywhere in its
// lane (records, lengths, flags, its tail, the consumer's head, the
// flags) between the reader's polls, while a well-behaved lane beside it
// posts numbered records. The reader never panics, never hands out more
// than the batch or a payload past the record size, refuses a writeback
// of a lane event; the good lane's records all arrive, in order, intact.
func FuzzLaneScribble(f *testing.F) {
	f.Add([]byte{3, 20, 0, 1, 2, 0x10, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 1, 4})
	f.Add([]byte{0, 32, 1, 1, 1, 2, 0x00, 0x00, 0x10, 0x00, 0x00, 4, 4, 4})
	f.Add([]byte{7, 1, 2, 0x44, 0x05, 0x00, 0x00, 0x00, 1, 2, 0x48, 0x01, 0, 0, 0, 4, 1, 1, 4})
	f.Fuzz(func(t *testing.T, prog []byte) {
		if len(prog) < 2 {
			return
		}
		r, err := goaem.Open(goaem.WithBackend(goaem.BackendEmbedded), goaem.WithLanes(2))
		require.NoError(t, err)
		defer r.Close()
		sub, err := r.Subscribe(goaem.Msg{Channel: 3}, goaem.SubOptions{})
		require.NoError(t, err)
		recSize := uint32(prog[1])%abi.LaneMaxRecord + 1
		bad, err := r.OpenLane(sub, goaem.LaneOptions{Entries: 1 << (prog[0] % 8), RecordSize: recSize})
		require.NoError(t, err)
		good, err := r.OpenLane(sub, goaem.LaneOptions{Entries: 16, RecordSize: 16})
		require.NoError(t, err)
		mem := bad.Memory()

		var sent, got uint64
		batch := make([]goaem.Event, 8)
		poll := func() {
			n, err := r.Poll(batch)
			require.NoError(t, err)
			require.LessOrEqual(t, n, len(batch))
			for i := range batch[:n] {
				ev := &batch[i]
				p := ev.Payload()
				require.LessOrEqual(t, len(p), abi.LaneMaxRecord, "a lane event is inline")
				if len(p) == 16 && binary.LittleEndian.Uint32(p) == laneMagic && binary.LittleEndian.Uint32(p[4:]) == 16 {
					require.Equal(t, got, binary.LittleEndian.Uint64(p[8:]), "the good lane's records in order")
					got++
				} else {
					require.LessOrEqual(t, uint32(len(p)), recSize, "the hostile lane's payloads within its record size")
				}
				require.Error(t, ev.Writeback(nil), "a lane event takes no writeback")
				ev.Release()
			}
		}
		for pc := 2; pc < len(prog); {
			op := prog[pc]
			pc++
			switch op % 5 {
			case 0, 4:
				poll()
			case 1: // the good producer
				var rec [16]byte
				binary.LittleEndian.PutUint32(rec[:], laneMagic)
				binary.LittleEndian.PutUint32(rec[4:], 16)
				binary.LittleEndian.PutUint64(rec[8:], sent)
				if good.TryPost(rec[:]) == nil {
					sent++
				}
			case 2: // a scribble: an offset, then four bytes
				if pc+6 > len(prog) {
					return
				}
				off := int(binary.LittleEndian.Uint16(prog[pc:])) % (len(mem) - 3)
				copy(mem[off:off+4], prog[pc+2:pc+6])
				pc += 6
			case 3: // the hostile producer posts properly too
				_ = bad.TryPost(prog[pc:min(len(prog), pc+int(recSize))])
			}
		}
		// Whatever the hostile lane says, the good lane's records all arrive.
		for range 64 {
			if got == sent {
				break
			}
			poll()
		}
		require.Equal(t, sent, got, "every record of the good lane arrived")
		require.NoError(t, bad.Close())
		require.NoError(t, good.Close())
	})
}
