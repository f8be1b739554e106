package goaem

import (
	"fmt"

	"github.com/aem-dev/aem/goaem/abi"
)

// AnyUser names every user in Grant and Revoke. It is not a uid Linux
// gives anyone ((uid_t)-1 is the kernel's invalid uid).
const AnyUser = ^uint32(0)

// Grant lets the user uid (as the caller's user namespace names it) post
// and call into this ring; AnyUser lets everyone in. By default only rings
// and callers of the ring owner's user may (the user who opened the ring:
// same euid, same user namespace); another user's post or call is refused
// with syscall.EACCES. A ring lets in at most abi.MaxGrants uids besides
// its owner's (syscall.ENOSPC past them); granting a uid twice is a no-op.
// On the embedded backend every sender is the process's own user, so
// grants are kept but never needed.
func (r *Ring) Grant(uid uint32) error {
	return r.grant(uid, 0)
}

// Revoke takes back a grant of uid (AnyUser: the grant to everyone).
// Posts and calls already delivered stay; the next ones are refused.
// Revoking what was never granted is syscall.ENOENT.
func (r *Ring) Revoke(uid uint32) error {
	return r.grant(uid, abi.GrantRevoke)
}

func (r *Ring) grant(uid, flags uint32) error {
	who := fmt.Sprint(uid)
	if uid == AnyUser {
		uid, flags, who = 0, flags|abi.GrantAny, "any user"
	}
	if !r.life.acquire() {
		return ErrClosed
	}
	defer r.life.release()
	if err := r.be.grant(uid, flags); err != nil {
		op := "grant"
		if flags&abi.GrantRevoke != 0 {
			op = "revoke"
		}
		return fmt.Errorf("goaem: %s %s: %w", op, who, err)
	}
	return nil
}
