//go:build !cgo

package goaem

import "os"

// payloadFile needs libaem: without cgo there is no ring to share.
func (r *Ring) payloadFile() (*os.File, uint64, error) { return nil, 0, ErrNoCgo }
