//go:build cgo

package goaem

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aem-dev/aem/goaem/abi"
)

// Grant and Revoke on libaem's backends: bounded, idempotent where said,
// clear errors, and the owner's own user always gets through. Refusals of
// another user's posts are the module's (tests/vm/acl.c).
func TestGrantRevoke(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b testBackend) {
		if b.name == "heap" {
			t.Skip("the heap kernel keeps no grants")
		}
		r := b.open(t)
		ctx := testCtx(t)
		_, err := r.Subscribe(Msg{Channel: 4}, SubOptions{})
		require.NoError(t, err)

		require.NoError(t, r.Grant(60000))
		require.NoError(t, r.Grant(60000), "granting twice is a no-op")
		for uid := uint32(60001); uid < 60000+abi.MaxGrants; uid++ {
			require.NoError(t, r.Grant(uid))
		}
		err = r.Grant(70000)
		assert.ErrorIs(t, err, syscall.ENOSPC, "more than abi.MaxGrants uids")
		assert.ErrorContains(t, err, "grant 70000")
		require.NoError(t, r.Grant(AnyUser))
		require.NoError(t, r.Revoke(AnyUser))
		assert.ErrorIs(t, r.Revoke(AnyUser), syscall.ENOENT)
		require.NoError(t, r.Revoke(60000))
		err = r.Revoke(60000)
		assert.ErrorIs(t, err, syscall.ENOENT, "revoking what is not granted")
		assert.ErrorContains(t, err, "revoke 60000")

		// The owner's user needs no grant.
		require.NoError(t, r.Post(r.Addr(4), []byte("mine"), 0))
		waitN(t, ctx, r, 1, func(ev *Event) { assert.Equal(t, "mine", string(ev.Payload())) })

		require.NoError(t, r.Close())
		assert.ErrorIs(t, r.Grant(1), ErrClosed)
	})
}
