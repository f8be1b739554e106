//go:build cgo

// libaem compiled into the package: cgo builds every .c file here, so
// `go build` needs nothing but a C compiler.
#include "../libaem/src/lane_remote.c"
