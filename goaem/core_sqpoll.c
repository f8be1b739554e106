//go:build cgo

// The ring core, compiled into libaem's embedded backend.
#include "../kmod/core/sqpoll.c"
