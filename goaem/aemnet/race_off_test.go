//go:build !race

package aemnet

const raceEnabled = false
