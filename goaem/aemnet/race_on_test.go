//go:build race

package aemnet

const raceEnabled = true
