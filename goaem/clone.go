package goaem

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"github.com/aem-dev/aem/goaem/abi"
)

// Errors of ModeClone handlers, matched with errors.Is.
var (
	ErrCloneExit    = errors.New("goaem: clone command failed")
	ErrCloneTimeout = errors.New("goaem: clone command timed out")
	ErrCloneOutput  = errors.New("goaem: clone command wrote too much")
)

// Cloner runs a new process per event (ModeClone): the event's payload on
// its stdin; what it writes to stdout is written back when the event is a
// call (or always, with WritebackAlways). A command that exits non-zero,
// outlives Timeout or writes more than MaxOutput bytes is killed and
// reported to the error handler; a call then gets no reply. To run the
// program's own handler in another process, with the payload shared
// rather than piped, use a ProcessHandler.
type Cloner struct {
	Path            string        // the program; found in $PATH when it has no slash
	Args            []string      // arguments after the program name
	Env             []string      // nil: this process's environment
	Dir             string        // working directory; "" for the current one
	Timeout         time.Duration // 0: 10s
	MaxOutput       int           // stdout bytes accepted; 0: what a writeback of the event can carry
	WritebackAlways bool          // write stdout back for non-call events too
}

// handle runs the command for ev.
func (c *Cloner) handle(ctx context.Context, ev *Event) error {
	limit := c.MaxOutput
	if limit <= 0 {
		limit = 32
		if p := ev.r.pay.slot(ev.cqe.Slot, 0); p != nil && ev.cqe.Flags&abi.CQEFSlot != 0 {
			limit = cap(p)
		}
	}
	out, err := c.Run(ctx, ev.Payload(), limit)
	if err != nil {
		return err
	}
	if ev.IsCall() || c.WritebackAlways {
		return ev.Writeback(out)
	}
	return nil
}

// Run runs the command once with stdin as its input and returns its
// stdout, at most limit bytes. It is what ModeClone does per event.
func (c *Cloner) Run(ctx context.Context, stdin []byte, limit int) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env, cmd.Dir = c.Env, c.Dir
	cmd.Stdin = bytes.NewReader(stdin)
	stdout := &capWriter{limit: limit, over: cancel}
	stderr := &capWriter{limit: 512}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A grandchild holding the pipes open must not hold us past the kill.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case stdout.overflowed():
		return nil, fmt.Errorf("%w: %s: more than %d bytes on stdout", ErrCloneOutput, c.Path, limit)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("%w: %s: still running after %v, killed", ErrCloneTimeout, c.Path, timeout)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%w: %s: %v: %s", ErrCloneExit, c.Path, ee, bytes.TrimSpace(stderr.bytes()))
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrCloneExit, c.Path, err)
	}
	return stdout.bytes(), nil
}

// capWriter keeps at most limit bytes. Past that it calls over (which kills
// the command) and fails the write, which stops the copy; without over it
// drops the rest silently (stderr, kept for the error message only).
type capWriter struct {
	mu    sync.Mutex
	buf   []byte
	limit int
	over  func()
	extra bool
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.limit - len(w.buf)
	if len(p) <= room {
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	w.buf = append(w.buf, p[:max(room, 0)]...)
	if w.over == nil {
		return len(p), nil
	}
	w.extra = true
	w.over()
	return 0, ErrCloneOutput
}

func (w *capWriter) overflowed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.extra
}

func (w *capWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf
}
