package aemt_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/bench/load"
	"github.com/aem-dev/aem/bench/peers"
)

// AEM's servers answer every request of a short load byte for byte, small
// echoes (inline events) and large ones (slots), pipelined or not, and
// close with connections still open.
func TestServeAnswersEveryRequest(t *testing.T) {
	body := []byte(strings.Repeat("aem ", 50))
	cases := []struct {
		kind string
		cfg  load.Config
	}{
		{peers.ServeEcho, load.Config{Kind: load.Echo, Size: 16, Conns: 16, Pipeline: 1}},
		{peers.ServeEcho, load.Config{Kind: load.Echo, Size: 5000, Conns: 16, Pipeline: 4}},
		{peers.ServeHTTP, load.Config{Kind: load.HTTP, Body: body, Conns: 16, Pipeline: 4}},
	}
	for _, tc := range cases {
		srv, err := open(t).(peers.Serving).Serve(peers.ServerParams{Kind: tc.kind, Body: body, Conns: 16})
		require.NoError(t, err)
		cfg := tc.cfg
		cfg.Addr, cfg.Duration, cfg.MaxRequests = srv.Addr(), 10*time.Second, 2000
		res, err := load.Run(context.Background(), cfg)
		require.NoError(t, err)
		assert.Zero(t, res.Errors, "%s %d bytes: %v", tc.kind, cfg.Size, res.FirstError)
		assert.Equal(t, uint64(2000), res.Requests)
		assert.Contains(t, srv.Notes(), "/enter")
		c, err := net.Dial("tcp", srv.Addr())
		require.NoError(t, err)
		require.NoError(t, srv.Close())
		c.Close()
	}
}
