//go:build !race

package goaem

const raceEnabled = false
