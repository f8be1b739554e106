package aemhttp

import (
	"bytes"
	"strings"
)

// Limits of one request. A request past them is answered with an error
// status and its connection closed.
const (
	// MaxHeaderBytes bounds a request's line and header fields, blank line
	// included (431 past it).
	MaxHeaderBytes = 8 << 10
	// MaxBodyBytes bounds a request body, decoded (413 past it).
	MaxBodyBytes = 1 << 20
	// maxChunkLine bounds a chunk-size line with its extensions.
	maxChunkLine = 1 << 10
	// maxChunkedBytes bounds where a chunked body's last chunk or trailer
	// field may begin, framing included: tiny chunks with long extensions,
	// or endless trailer fields, would otherwise make the server keep many
	// times MaxBodyBytes.
	maxChunkedBytes = 2 * MaxBodyBytes
)

// request is the parsed head of one request. Its byte slices point into
// the bytes it was parsed from.
type request struct {
	method  []byte
	target  []byte
	minor   int  // HTTP/1.minor
	close   bool // Connection: close
	keep    bool // Connection: keep-alive
	chunked bool
	hasLen  bool
	length  int64
	expect  bool // Expect: 100-continue
	hosts   int
	teCount int
	badTE   bool
}

// httpError is a status the server answers a request with before closing
// its connection, and why.
type httpError struct {
	status int
	reason string
}

var (
	errBadLine      = &httpError{400, "malformed request line"}
	errBadHeader    = &httpError{400, "malformed header field"}
	errBadLength    = &httpError{400, "invalid Content-Length"}
	errLenAndTE     = &httpError{400, "both Content-Length and Transfer-Encoding"}
	errNoHost       = &httpError{400, "HTTP/1.1 request without exactly one Host"}
	errBadChunk     = &httpError{400, "malformed chunked body"}
	errBodyTooLarge = &httpError{413, "request body larger than the server takes"}
	errHeadTooLarge = &httpError{431, "request header larger than the server takes"}
	errTE           = &httpError{501, "transfer coding not supported (only chunked)"}
	errMethod       = &httpError{501, "method not implemented"}
	errVersion      = &httpError{505, "HTTP version not supported"}
)

// headEnd finds the end of a request head in b: the index just after the
// blank line that ends it, or -1 when b does not hold all of it yet. The
// search starts at from, which must not be past the first '\n' of the
// terminator.
func headEnd(b []byte, from int) int {
	i := from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i >= len(b):
			return -1
		case b[i] == '\n':
			return i + 1
		case b[i] == '\r':
			if i+1 >= len(b) {
				return -1
			}
			if b[i+1] == '\n' {
				return i + 2
			}
		}
	}
}

// nextLine splits the first line off b, without its CRLF or LF.
func nextLine(b []byte) (line, rest []byte) {
	j := bytes.IndexByte(b, '\n')
	if j < 0 {
		return b, nil
	}
	line, rest = b[:j], b[j+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parseHead parses a complete head (request line, fields, blank line) into
// rq.
func parseHead(head []byte, rq *request) *httpError {
	*rq = request{}
	line, rest := nextLine(head)
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return errBadLine
	}
	rq.method, rq.target = line[:sp1], line[sp1+1:sp2]
	for _, c := range rq.method {
		if !isTokenChar(c) {
			return errBadLine
		}
	}
	for _, c := range rq.target {
		if c <= ' ' || c == 0x7f {
			return errBadLine
		}
	}
	v := line[sp2+1:]
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return errBadLine
	}
	if v[5] != '1' {
		return errVersion
	}
	rq.minor = int(v[7] - '0')
	for {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break
		}
		if err := rq.field(line); err != nil {
			return err
		}
	}
	switch {
	case rq.minor >= 1 && rq.hosts != 1:
		return errNoHost
	case rq.badTE || rq.teCount > 1:
		return errTE
	case rq.chunked && rq.hasLen:
		return errLenAndTE
	}
	return nil
}

// field takes one header field line.
func (rq *request) field(line []byte) *httpError {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return errBadHeader
	}
	name, value := line[:colon], trimOWS(line[colon+1:])
	for _, c := range name {
		if !isTokenChar(c) { // also refuses obsolete line folding and a space before ':'
			return errBadHeader
		}
	}
	for _, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return errBadHeader
		}
	}
	switch {
	case equalFold(name, "content-length"):
		n, ok := parseDecimal(value)
		if !ok || (rq.hasLen && n != rq.length) {
			return errBadLength
		}
		rq.hasLen, rq.length = true, n
	case equalFold(name, "transfer-encoding"):
		rq.teCount++
		if equalFold(value, "chunked") {
			rq.chunked = true
		} else {
			rq.badTE = true
		}
	case equalFold(name, "connection"):
		for len(value) > 0 {
			var tok []byte
			if k := bytes.IndexByte(value, ','); k >= 0 {
				tok, value = trimOWS(value[:k]), value[k+1:]
			} else {
				tok, value = trimOWS(value), nil
			}
			if equalFold(tok, "close") {
				rq.close = true
			} else if equalFold(tok, "keep-alive") {
				rq.keep = true
			}
		}
	case equalFold(name, "expect"):
		rq.expect = equalFold(value, "100-continue")
	case equalFold(name, "host"):
		rq.hosts++
	}
	return nil
}

// keepAlive says whether the connection stays open after the response.
func (rq *request) keepAlive() bool {
	if rq.minor == 0 {
		return rq.keep && !rq.close
	}
	return !rq.close
}

// Results of decodeChunked.
const (
	chunkDone = iota
	chunkMore // b ends inside the body
	chunkBad
	chunkTooLarge
)

// decodeChunked decodes a chunked body at the start of b, appending to
// dst, at most limit bytes in all. It resumes at from, where an earlier
// call stopped (0 and an empty dst the first time). It returns the bytes
// of b the body took (trailer fields included) and the decoded body; with
// chunkMore, where to resume when more of b has come, and the body decoded
// up to there.
func decodeChunked(b, dst []byte, from, limit int) (n int, body []byte, st int) {
	i := from
	for {
		start, keep := i, len(dst)
		line, next, st := lineAt(b, i, maxChunkLine)
		if st != chunkDone {
			return start, dst[:keep], st
		}
		i = next
		size, ok := parseChunkSize(line)
		if !ok {
			return 0, dst, chunkBad
		}
		if size == 0 {
			// Trailer fields, each read and ignored, up to the blank line.
			for {
				line, next, st := lineAt(b, i, MaxHeaderBytes)
				if st != chunkDone {
					return start, dst[:keep], st
				}
				i = next
				if len(line) == 0 {
					return i, dst, chunkDone
				}
			}
		}
		if size > int64(limit-len(dst)) {
			return 0, dst, chunkTooLarge
		}
		if int64(len(b)-i) < size {
			return start, dst[:keep], chunkMore
		}
		dst = append(dst, b[i:i+int(size)]...)
		i += int(size)
		switch {
		case i >= len(b):
			return start, dst[:keep], chunkMore
		case b[i] == '\n':
			i++
		case b[i] == '\r':
			if i+1 >= len(b) {
				return start, dst[:keep], chunkMore
			}
			if b[i+1] != '\n' {
				return 0, dst, chunkBad
			}
			i += 2
		default:
			return 0, dst, chunkBad
		}
	}
}

// lineAt takes the line of a chunked body that starts at b[i], without
// its CRLF or LF, and the index after it. st is chunkMore when b ends
// first, chunkBad when the line is longer than limit (whether or not it
// has ended, so that the answer does not depend on how bytes arrive),
// chunkTooLarge when it begins past maxChunkedBytes.
func lineAt(b []byte, i, limit int) (line []byte, next, st int) {
	if i > maxChunkedBytes {
		return nil, i, chunkTooLarge
	}
	j := bytes.IndexByte(b[i:], '\n')
	switch {
	case j > limit || (j < 0 && len(b)-i > limit):
		return nil, i, chunkBad
	case j < 0:
		return nil, i, chunkMore
	}
	line = b[i : i+j]
	if k := len(line); k > 0 && line[k-1] == '\r' {
		line = line[:k-1]
	}
	return line, i + j + 1, chunkDone
}

// parseChunkSize reads a chunk-size line: hex digits, then optional
// whitespace and extensions, which are ignored.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == ' ' || c == '\t':
			return n, digits > 0
		default:
			return 0, false
		}
		if digits++; digits > 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, digits > 0
}

// parseDecimal reads a Content-Length value: 1 to 18 decimal digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b to the lower-case ASCII s, ignoring b's case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTokenChar says whether c may appear in a method or field name (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
