//go:build cgo

// libaem compiled into the package: cgo builds every .c file here, so
// `go build` needs nothing but a C compiler.
#include "../libaem/src/embedded.c"

/*
 * goaem_emb_arm re-arms an embedded ring's pollable fd without reading
 * the eventfd: goaem waits on it through Go's netpoller, which is
 * edge-triggered, and every eventfd write is an edge whether or not the
 * counter was read, so the read that aem_ring_fd_drain() makes is a
 * system call per sleep and per wake-up that buys nothing there.  The
 * counter cannot overflow in practice (2^64 - 2 writes).  libaem has no
 * public form of this yet (an aem_ring_fd_arm() would be one).
 */
int goaem_emb_arm(void *priv)
{
	struct __aem_emb *e = priv;

	aem_core_poll_arm(e->core);	/* then the caller re-checks the rings and polls */
	return 0;
}
