package goaem

import (
	"errors"
	"os"
	"syscall"
)

var (
	// ErrClosed is returned by every operation on a closed ring, and by
	// Wait, Run and pending calls that Close woke.
	ErrClosed = os.ErrClosed
	// ErrNoCgo is returned by Open in a build without cgo.
	ErrNoCgo = errors.New("goaem: built without cgo; libaem needs cgo (CGO_ENABLED=1 and a C compiler)")
	// ErrReleased is returned when an event is written back after it was
	// released or written back already.
	ErrReleased = errors.New("goaem: event already released")
	// ErrTooLarge is returned for a payload that does not fit: more than
	// 32 bytes for an inline event or a post without send slots, more
	// than the slot size otherwise.
	ErrTooLarge = errors.New("goaem: payload too large")
	// ErrBusy is returned when the submission ring stays full.
	ErrBusy = errors.New("goaem: submission ring full")
	// ErrNoHandler is reported by Run for an event that has no handler:
	// its subscription set none and Run was given nil.
	ErrNoHandler = errors.New("goaem: event has no handler")
)

// errno turns a -errno result from the kernel side into an error that
// matches syscall.Errno with errors.Is.
func errno(res int32) error {
	if res >= 0 {
		return nil
	}
	return syscall.Errno(-res)
}
