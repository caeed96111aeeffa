package core

import (
	"context"
	"math"
	"testing"
)

// TestIDSpaceNeverWraps: once every positive 31-bit ID has been handed out,
// the master hands out no more (IDs are never reused): AllocateID returns
// -1, AllocateIDs and grants fail, where a wrapping counter would go
// negative and then repeat IDs in use.
func TestIDSpaceNeverWraps(t *testing.T) {
	r := NewMaster(DefaultConfig())
	defer r.Close()
	r.nextID = math.MaxInt32 - 2
	if a, b := r.AllocateID(), r.AllocateID(); a != math.MaxInt32-2 || b != math.MaxInt32-1 {
		t.Fatalf("last IDs: %d, %d", a, b)
	}
	for i := 0; i < 3; i++ {
		if id := r.AllocateID(); id != -1 {
			t.Fatalf("AllocateID at the end of the space: %d, want -1", id)
		}
	}
	if _, _, err := r.AllocateIDs(context.Background(), 1); err == nil {
		t.Fatal("AllocateIDs at the end of the space succeeded")
	}
	r.mu.Lock()
	_, err := r.grantIDsLocked(nil, 1)
	r.mu.Unlock()
	if err == nil {
		t.Fatal("a grant at the end of the space succeeded")
	}
}
