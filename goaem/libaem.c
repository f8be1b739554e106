//go:build cgo

// The libaem sources are compiled into the package by the libaem_*.c files
// once they exist.
