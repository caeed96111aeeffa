package core

import "testing"

// The same-machine record is this router's own: set only by
// SetOnThisMachine, gone with the context, never for a context already
// gone.
func TestOnThisMachine(t *testing.T) {
	r := NewMaster(Config{})
	defer r.Close()
	if !r.OnThisMachine(r.ID()) {
		t.Fatal("the master is not on its own machine")
	}
	if r.OnThisMachine(7) {
		t.Fatal("context 7 is on this machine before anyone said so")
	}
	r.SetOnThisMachine(7)
	if !r.OnThisMachine(7) {
		t.Fatal("context 7 is not on this machine after SetOnThisMachine")
	}
	r.contextGone(7, "test", nil, false)
	if r.OnThisMachine(7) {
		t.Fatal("a gone context is still on this machine")
	}
	r.SetOnThisMachine(7)
	if r.OnThisMachine(7) {
		t.Fatal("a context already gone was recorded")
	}
}
