package aemhttp

import (
	"errors"
	"io/fs"
	"mime"
	"path"
	"slices"
)

// file appends the response to a request for rel under the root: the
// file's bytes follow its head in the output, flushed to the ring a slot
// at a time. The root is an os.Root: no name, ".." or symbolic link
// reaches outside it.
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
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.reply(404, "text/plain; charset=utf-8", []byte("404 not found\n"), head, keep, minor)
		return
	}
	size := st.Size()
	if !s.fits(c, size, head, keep, minor) {
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	s.status(200, ctype, size, keep, minor)
	if head {
		return
	}
	for left := size; left > 0; {
		if len(s.out) >= s.slot {
			if s.flush(c, false); c.closing {
				return
			}
		}
		s.out = slices.Grow(s.out, s.slot)
		k := int(min(int64(cap(s.out)-len(s.out)), left))
		n, err := f.Read(s.out[len(s.out) : len(s.out)+k])
		s.out = s.out[:len(s.out)+n]
		left -= int64(n)
		if err != nil && left > 0 {
			// The file shrank or failed under us: the length sent is
			// wrong, so the connection ends after what was read.
			c.closing = true
			return
		}
	}
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
