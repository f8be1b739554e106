//go:build cgo

// The ring core, compiled into libaem's embedded backend.
#include "../kmod/core/post_hold.c"
