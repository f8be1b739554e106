package aemt_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/bench/aemt"
	"github.com/aem-dev/aem/bench/peers"
)

// TestMain lets this test binary serve as its own handler process.
func TestMain(m *testing.M) {
	aemt.ServeHandlers()
	os.Exit(m.Run())
}

// Every handler mode answers each call with the request reversed (cat:
// echoed), checked byte for byte by the transport: no errors, no loss.
func TestHandlerModesAnswerEveryCall(t *testing.T) {
	tr := open(t)
	h, ok := tr.(interface {
		Handler(peers.Params, string) (peers.Result, error)
	})
	require.True(t, ok, "aemt.Transport runs handlers")
	for _, mode := range []string{aemt.HandlerGoroutine, aemt.HandlerProcessPool, aemt.HandlerProcessNew, aemt.HandlerExec} {
		t.Run(mode, func(t *testing.T) {
			res, err := h.Handler(peers.Params{Events: 5, Duration: time.Minute, Payload: 64,
				SampleEvery: 1}, mode)
			require.NoError(t, err)
			assert.EqualValues(t, 5, res.Events)
			assert.Zero(t, res.Errors, "replies that were not the request reversed")
			assert.Len(t, res.Samples, 5)
		})
	}
	_, err := h.Handler(peers.Params{Events: 1, Duration: time.Second, Payload: 64}, "thread")
	assert.Error(t, err)
	assert.False(t, errors.Is(err, peers.ErrUnsupported), "an unknown mode is a usage error, not a skip")
}
