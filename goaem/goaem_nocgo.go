//go:build !cgo

package goaem

// Open needs libaem, which is C: without cgo it fails with ErrNoCgo.
func Open(opts ...Option) (*Ring, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return nil, ErrNoCgo
}
