//go:build race

package goaem

// raceEnabled scales the million-event tests down: the race detector
// makes each event some ten times dearer.
const raceEnabled = true
