package core

import "testing"

// The record of dead contexts stays bounded however many come and go.
func TestGoneIsBounded(t *testing.T) {
	r := NewMaster(DefaultConfig())
	defer r.Close()
	for id := int32(1); id <= maxGone+100; id++ {
		r.contextGone(id, "test", nil, false)
	}
	r.mu.Lock()
	n := len(r.gone)
	r.mu.Unlock()
	if n > maxGone {
		t.Fatalf("%d dead contexts remembered, bound is %d", n, maxGone)
	}
}
