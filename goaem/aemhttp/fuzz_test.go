package aemhttp

import (
	"bytes"
	"testing"
)

// coreServer is a Server without a ring: its parser and responses, as
// Listen sets them up with the default slots.
func coreServer() *Server {
	return &Server{body: DefaultBody, slot: defaultSlotSize}
}

// responses feeds the pieces to a fresh connection and returns what the
// server answered, without the interim "100 Continue" (sent only while a
// body is still missing), and whether it closed.
func responses(pieces ...[]byte) (out []byte, closing bool) {
	s, c := coreServer(), &conn{}
	for _, p := range pieces {
		if c.closing {
			break
		}
		s.consume(c, p)
		if len(c.in) > 2*(MaxHeaderBytes+maxChunkedBytes)+len(p) {
			panic("kept more than one request's bytes")
		}
	}
	return bytes.ReplaceAll(s.out, []byte("HTTP/1.1 100 Continue\r\n\r\n"), nil), c.closing
}

// However a connection's bytes are split over receives, the server gives
// the same answers; and every answer is a complete status line and head.
func FuzzSplitRequests(f *testing.F) {
	for _, seed := range splitSeeds {
		f.Add([]byte(seed), uint16(len(seed)/2))
	}
	f.Fuzz(checkSplit)
}

// Every cut of every seed, and every seed a byte at a time.
func TestEverySplit(t *testing.T) {
	for _, seed := range splitSeeds {
		for cut := 0; cut <= len(seed); cut++ {
			checkSplit(t, []byte(seed), uint16(cut))
		}
		pieces := make([][]byte, len(seed))
		for i := range pieces {
			pieces[i] = []byte{seed[i]}
		}
		whole, wholeClose := responses([]byte(seed))
		bytewise, bytewiseClose := responses(pieces...)
		if !bytes.Equal(whole, bytewise) || wholeClose != bytewiseClose {
			t.Fatalf("%q a byte at a time answers differently:\n%q\n%q", seed, whole, bytewise)
		}
	}
}

var splitSeeds = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
	"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
	"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
	"\r\n\r\nGET / HTTP/1.1\nHost: x\n\n",
	"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;x\r\nd\r\nA\r\n0123456789\n0\r\n\r\n" +
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nef\r\n0\r\n\r\n",
	"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/9.9\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
	"GET /?a=b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
}

func checkSplit(t *testing.T, data []byte, at uint16) {
	whole, wholeClose := responses(data)
	cut := 0
	if len(data) > 0 {
		cut = int(at) % (len(data) + 1)
	}
	split, splitClose := responses(data[:cut], data[cut:])
	if !bytes.Equal(whole, split) || wholeClose != splitClose {
		t.Fatalf("split at %d answers differently:\nwhole (close %v) %q\nsplit (close %v) %q", cut, wholeClose, whole, splitClose, split)
	}
	if len(whole) > 0 && !bytes.HasPrefix(whole, []byte("HTTP/1.1 ")) {
		t.Fatalf("output does not start with a status line: %q", whole)
	}
}

// Chunks decoded a piece at a time make the body the whole would.
func TestChunkedResume(t *testing.T) {
	raw := "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1;x\r\nd\r\nA\r\n0123456789\n0\r\n\r\n"
	for cut := 0; cut <= len(raw); cut++ {
		out, closing := responses([]byte(raw[:cut]), []byte(raw[cut:]))
		if !bytes.HasSuffix(out, []byte("\r\n\r\nabcd0123456789")) || closing {
			t.Fatalf("cut at %d: %q (closing %v)", cut, out, closing)
		}
	}
}
