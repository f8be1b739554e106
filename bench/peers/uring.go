//go:build cgo && !noliburing

package peers

// The io_uring peers link liburing (Debian's liburing-dev). Build with
// -tags noliburing where its headers are absent: those peers are then left
// out (see Missing) and everything else builds with gcc alone.

/*
#cgo CFLAGS: -DBP_HAVE_URING
#cgo LDFLAGS: -luring
*/
import "C"

// uringMissing is why the io_uring peers are absent; empty: they are built.
const uringMissing = ""
