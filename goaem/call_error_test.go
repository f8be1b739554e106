package goaem

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A handler that fails on a call without answering sends an error reply:
// the caller's Call returns the handler's errno (EIO when it has none),
// inline and spawned alike, instead of waiting for its timeout.
func TestCallHandlerErrorReply(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		for _, mode := range []HandlerMode{ModeInline, ModeSpawn} {
			t.Run(fmt.Sprint(mode), func(t *testing.T) {
				r := b.open(t, WithErrorHandler(func(*Event, error) {}))
				_, err := r.Subscribe(Msg{Channel: 1}, SubOptions{Mode: mode, Handler: func(ev *Event) error {
					switch string(ev.Payload()) {
					case "errno":
						return fmt.Errorf("refused: %w", syscall.EACCES)
					case "explicit":
						return ev.ReplyError(syscall.EPERM)
					}
					return fmt.Errorf("no errno")
				}})
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(testCtx(t))
				done := make(chan error, 1)
				go func() { done <- r.Run(ctx, nil) }()

				for req, want := range map[string]syscall.Errno{
					"errno": syscall.EACCES, "explicit": syscall.EPERM, "plain": syscall.EIO,
				} {
					_, err := r.Call(testCtx(t), r.Addr(1), []byte(req))
					assert.ErrorIs(t, err, want, "call %q", req)
				}
				cancel()
				assert.ErrorIs(t, <-done, context.Canceled)
			})
		}
	})
}
