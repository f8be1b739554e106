package goaem

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// sentinel is an error with goaem's own text that also matches a standard
// error with errors.Is: ErrClosed is os.ErrClosed, ErrNoDevice
// os.ErrNotExist, ErrTooLarge syscall.EINVAL.
type sentinel struct {
	text string
	is   error
}

func (e *sentinel) Error() string { return e.text }
func (e *sentinel) Unwrap() error { return e.is }

// Compare errors with errors.Is: the errors goaem returns wrap these with
// the operation and its details.
var (
	// ErrClosed is returned by every operation on a closed ring, and by
	// Wait, Run and pending calls that Close woke. It matches os.ErrClosed.
	ErrClosed error = &sentinel{"goaem: ring closed", os.ErrClosed}
	// ErrNoDevice is returned by Open when the kernel backend was asked for
	// (WithBackend, AEM_BACKEND=kernel, or /dev/aem present) and the module
	// does not answer. It matches os.ErrNotExist.
	ErrNoDevice error = &sentinel{"goaem: /dev/aem: the aem kernel module is not loaded (docs/KERNEL_MODULE.md says how to install it)", os.ErrNotExist}
	// ErrNoCgo is returned by Open in a build without cgo.
	ErrNoCgo = errors.New("goaem: built without cgo; libaem needs cgo (CGO_ENABLED=1 and a C compiler)")
	// ErrReleased is returned when an event is written back after it was
	// released or written back already.
	ErrReleased = errors.New("goaem: event already released")
	// ErrTooLarge is returned for a payload that does not fit: more than
	// 32 bytes for an inline event or a post without send slots, more
	// than the slot size otherwise. It matches syscall.EINVAL.
	ErrTooLarge error = &sentinel{"goaem: payload too large", syscall.EINVAL}
	// ErrBusy is returned when the submission ring stays full.
	ErrBusy = errors.New("goaem: submission ring full")
	// ErrConcurrentRead is returned by Poll while another goroutine reads
	// the ring's events (Wait or Run): events are read by one goroutine at
	// a time.
	ErrConcurrentRead = errors.New("goaem: another goroutine is reading this ring's events")
	// ErrNoHandler is reported by Run for an event that has no handler:
	// its subscription set none and Run was given nil.
	ErrNoHandler = errors.New("goaem: event has no handler")
)

// invalid is a validation error found on the Go side: it matches
// syscall.EINVAL, as the kernel side's refusal of the same input would, and
// says what was wrong.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, syscall.EINVAL)...)
}

// errno turns a -errno result from the kernel side into an error that
// matches syscall.Errno with errors.Is.
func errno(res int32) error {
	if res >= 0 {
		return nil
	}
	return syscall.Errno(-res)
}
