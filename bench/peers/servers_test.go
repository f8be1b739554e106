package peers_test

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

// forEachServer runs f on every server peer this build has.
func forEachServer(t *testing.T, f func(t *testing.T, sv peers.Serving)) {
	for _, name := range peers.ServerNames() {
		if _, missing := peers.Missing()[name]; missing {
			continue
		}
		t.Run(name, func(t *testing.T) {
			tr, err := peers.New(name)
			require.NoError(t, err)
			defer tr.Close()
			f(t, tr.(peers.Serving))
		})
	}
}

// Every server peer answers every request of a short load, byte for byte,
// pipelined or not, and stops with its connections open.
func TestServersAnswerEveryRequest(t *testing.T) {
	body := []byte(strings.Repeat("hello, aem\n", 20))
	forEachServer(t, func(t *testing.T, sv peers.Serving) {
		for _, kind := range []string{peers.ServeEcho, peers.ServeHTTP} {
			srv, err := sv.Serve(peers.ServerParams{Kind: kind, Body: body, Conns: 32})
			require.NoError(t, err, kind)
			for _, pipe := range []int{1, 8} {
				cfg := load.Config{Addr: srv.Addr(), Kind: load.Echo, Size: 3000, Conns: 32, Pipeline: pipe,
					Duration: 5 * time.Second, MaxRequests: 3000}
				if kind == peers.ServeHTTP {
					cfg.Kind, cfg.Body, cfg.Size = load.HTTP, body, 0
				}
				res, err := load.Run(context.Background(), cfg)
				require.NoError(t, err)
				assert.Zero(t, res.Errors, "%s pipeline %d: %v", kind, pipe, res.FirstError)
				assert.Equal(t, uint64(3000), res.Requests, "%s pipeline %d", kind, pipe)
			}
			// one connection left open: Close still ends the server
			c, err := net.Dial("tcp", srv.Addr())
			require.NoError(t, err)
			require.NoError(t, srv.Close())
			c.Close()
		}
	})
}

// Close ends a server whose accept loop is taking a connection at that
// moment: a connection dequeued just before the listener closed must not
// leave Close waiting for its echo loop.
func TestServerCloseRacesAccept(t *testing.T) {
	const rounds = 200
	forEachServer(t, func(t *testing.T, sv peers.Serving) {
		for i := range rounds {
			srv, err := sv.Serve(peers.ServerParams{Kind: peers.ServeEcho, Conns: 1})
			require.NoError(t, err)
			c, err := net.Dial("tcp", srv.Addr())
			require.NoError(t, err)
			closed := make(chan error, 1)
			go func() { closed <- srv.Close() }()
			select {
			case err := <-closed:
				require.NoError(t, err, "round %d", i)
			case <-time.After(10 * time.Second):
				c.Close()
				require.FailNow(t, "Close still waiting after 10 s with a client connected", "round %d", i)
			}
			c.Close()
		}
	})
}
