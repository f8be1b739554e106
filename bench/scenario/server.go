package scenario

import (
	"context"
	"fmt"

	"github.com/aem-dev/aem/bench/load"
	"github.com/aem-dev/aem/bench/peers"
)

// runServer starts the transport's server for a server scenario, loads it
// with conns connections (an unmeasured warm-up on connections of its own
// first), and turns what the generator measured into a row. Any
// connection that fails — a wrong byte, a reset, a stall past the
// deadline — fails the row.
func runServer(t peers.Transport, cfg Config, family string, conns int) (Row, error) {
	sv, ok := t.(peers.Serving)
	if !ok {
		return Row{}, ErrSkipped
	}
	kind, lkind := peers.ServeEcho, load.Echo
	if family == HTTP {
		kind, lkind = peers.ServeHTTP, load.HTTP
	}
	// the warm-up's connections may still be closing as the measured
	// ones connect: room for both
	srv, err := sv.Serve(peers.ServerParams{Kind: kind, Body: ServerBody, Conns: 2 * conns})
	if err != nil {
		// a server that cannot start fails its row with the reason, even
		// an EOPNOTSUPP (which errors.Is takes for "no such mode")
		return Row{}, fmt.Errorf("start the server: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = srv.Close()
		}
	}()
	lc := load.Config{Addr: srv.Addr(), Kind: lkind, Conns: conns, Pipeline: cfg.Pipeline,
		MaxRequests: MaxServerRequests, Size: cfg.EchoSize, Body: ServerBody}
	if cfg.Warmup > 0 {
		lc.Duration = cfg.Warmup
		res, err := load.Run(context.Background(), lc)
		if err != nil {
			return Row{}, fmt.Errorf("warm-up: %w", err)
		}
		if res.Errors > 0 {
			return Row{}, fmt.Errorf("warm-up: %d of %d connections failed, the first: %w", res.Errors, conns, res.FirstError)
		}
	}
	lc.Duration = cfg.Duration
	res, err := load.Run(context.Background(), lc)
	if err != nil {
		return Row{}, err
	}
	notes := srv.Notes()
	closed = true
	if err := srv.Close(); err != nil {
		return Row{}, err
	}
	if res.Errors > 0 {
		return Row{}, fmt.Errorf("%d of %d connections failed, the first: %w", res.Errors, conns, res.FirstError)
	}
	row := Row{
		Backend:      backendOf(t),
		Events:       res.Requests,
		Seconds:      res.Elapsed.Seconds(),
		EventsPerSec: res.RequestsPerSec(),
		P50:          res.Percentile(50),
		P99:          res.Percentile(99),
		P999:         res.Percentile(99.9),
		BytesChecked: res.BytesChecked,
		Notes:        notes,
	}
	if res.Hist != nil && res.Hist.TotalCount() > 0 {
		row.Max = res.Hist.Max()
	}
	return row, nil
}
