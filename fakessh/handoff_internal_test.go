package fakessh

import (
	"bytes"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// The master's decision on an offer: only for a run on this machine, only
// a well-formed offer, with the pid its own socket reported for the
// caller (never one the ssh claims) and its own boot id.
func TestHandoffDecision(t *testing.T) {
	boot, err := process.BootID()
	if err != nil {
		t.Skipf("no boot id: %v", err)
	}
	offer := &mitogen.FdHandoff{Socket: "mitogen-fd-0123456789abcdef", Token: bytes.Repeat([]byte{1}, 32), Fds: 3, PeerPid: 1, BootId: "claimed"}
	r := core.NewMaster(core.Config{})
	defer r.Close()
	r.SetOnThisMachine(7)
	here, far := r.Context(7, "local"), r.Context(8, "ssh:far")
	st := &run{Runner: &Runner{Router: r}, pids: map[int32]int32{5: 4242}}
	h := st.handoffFor(5, here, offer)
	if h == nil || h.PeerPid != 4242 || h.BootId != boot || h.Socket != offer.Socket || !bytes.Equal(h.Token, offer.Token) || h.Fds != 3 {
		t.Fatalf("handoff %v; want the offer with pid 4242 and this boot id", h)
	}
	if h := st.handoffFor(5, far, offer); h != nil {
		t.Errorf("a destination not known to be on this machine got a handoff: %v", h)
	}
	if h := st.handoffFor(6, here, offer); h != nil {
		t.Errorf("a caller with no recorded pid got a handoff: %v", h)
	}
	bad := *offer
	bad.Fds = 2
	if h := st.handoffFor(5, here, &bad); h != nil {
		t.Errorf("a malformed offer got a handoff: %v", h)
	}
	on := &run{Runner: &Runner{Router: r, On: &core.Context{}}, pids: map[int32]int32{5: 4242}}
	if h := on.handoffFor(5, here, offer); h != nil {
		t.Errorf("a run on a context got a handoff: %v", h)
	}
	if h := st.handoffFor(5, here, nil); h != nil {
		t.Errorf("no offer got a handoff: %v", h)
	}
}

// A destination may claim only handed-off fds the master asked for.
func TestCheckHandedOff(t *testing.T) {
	asked := &mitogen.FdHandoff{Fds: 3}
	for _, c := range []struct {
		handed int32
		asked  *mitogen.FdHandoff
		ok     bool
	}{{0, nil, true}, {0, asked, true}, {3, asked, true}, {3, nil, false}, {7, asked, false}, {4, asked, false}} {
		err := checkHandedOff(&mitogen.ProcessStarted{HandedOff: c.handed}, c.asked)
		if (err == nil) != c.ok {
			t.Errorf("handed_off %d, asked %v: err %v; want ok=%v", c.handed, c.asked, err, c.ok)
		}
	}
}
