//go:build cgo && noliburing

package peers

const uringMissing = "built without liburing (-tags noliburing: install liburing-dev and rebuild to measure them)"
