package aemhttp

import (
	"errors"
	"io/fs"
	"mime"
	"path"
)

// file appends the response to a request for rel under the root: its head
// now, and the file's bytes as the connection's send window opens (pump
// reads it a slot at a time), before any later response. The root is an
// os.Root: no name, ".." or symbolic link reaches outside it.
func (s *Server) file(c *conn, rel []byte, head, keep bool, minor int) {
	name, ok := s.cleanPath(rel)
	if !ok {
		s.reply(403, "text/plain; charset=utf-8", []byte("403 forbidden\n"), head, keep, minor)
		return
	}
	f, err := s.root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.reply(404, "text/plain; charset=utf-8", []byte("404 not found\n"), head, keep, minor)
		} else {
			s.reply(403, "text/plain; charset=utf-8", []byte("403 forbidden\n"), head, keep, minor)
		}
		return
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		s.reply(404, "text/plain; charset=utf-8", []byte("404 not found\n"), head, keep, minor)
		return
	}
	size := st.Size()
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	s.status(200, ctype, size, keep, minor)
	if head || size == 0 {
		f.Close()
		return
	}
	// The output so far goes first, in sends: the event's slot may still
	// hold requests not parsed yet, so no writeback. The file follows it,
	// and requests after this one wait until it is out (conn.blocked).
	s.ev = nil
	s.finish(c)
	c.file, c.fileLeft = f, size
	s.pump(c)
}

// cleanPath decodes a path under /files/ and checks it: no "..", no NUL,
// no malformed escape. Empty segments are dropped.
func (s *Server) cleanPath(rel []byte) (string, bool) {
	dec := s.scratch[:0]
	for i := 0; i < len(rel); i++ {
		c := rel[i]
		if c == '%' {
			if i+2 >= len(rel) || unhex(rel[i+1]) < 0 || unhex(rel[i+2]) < 0 {
				return "", false
			}
			c = byte(unhex(rel[i+1])<<4 | unhex(rel[i+2]))
			i += 2
		}
		if c == 0 || c == '\\' {
			return "", false
		}
		dec = append(dec, c)
	}
	s.scratch = dec
	out := make([]byte, 0, len(dec))
	for _, seg := range splitSlash(dec) {
		switch string(seg) {
		case "", ".":
			continue
		case "..":
			return "", false
		}
		if len(out) > 0 {
			out = append(out, '/')
		}
		out = append(out, seg...)
	}
	if len(out) == 0 {
		return "", false
	}
	return string(out), true
}

func splitSlash(b []byte) [][]byte {
	var segs [][]byte
	for {
		i := indexByte(b, '/')
		if i < 0 {
			return append(segs, b)
		}
		segs, b = append(segs, b[:i]), b[i+1:]
	}
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
