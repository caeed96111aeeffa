//go:build race

package core_test

// raceEnabled: the race detector is on (sync.Pool then drops a quarter of
// what it is given, so pooled buffers are reallocated that often).
const raceEnabled = true
