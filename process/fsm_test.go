package process

import (
	"errors"
	"strings"
	"testing"
)

// allEvents is every event either machine knows, plus ones neither does.
var allEvents = []Event{EvStarted, EvStartFailed, EvStart, EvSignal, EvExit, EvExited, EvPeerGone,
	EvStartTimeout, EvStartSent, EvOutputsEnded, "START_1", "malformed", "EXIT_AGAIN"}

// checkTable fires every event in every state: the ones in the table move
// the machine to the listed state, every other one is a ProtocolError that
// leaves the state alone.
func checkTable(t *testing.T, name string, table Table, states []State) {
	for _, s := range states {
		for _, ev := range allEvents {
			m := &Machine{name: name, table: table, state: s}
			want, ok := table[s][ev]
			got, err := m.Fire(ev)
			if ok {
				if err != nil || got != want || m.State() != want {
					t.Errorf("%s: %s --%s--> got %s, %v; want %s", name, s, ev, got, err, want)
				}
				continue
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.State != s || pe.Event != ev {
				t.Errorf("%s: %s --%s--> got %s, %v; want a protocol error", name, s, ev, got, err)
			}
			if m.State() != s {
				t.Errorf("%s: a rejected event moved %s to %s", name, s, m.State())
			}
		}
	}
}

func TestSlaveTransitions(t *testing.T) {
	checkTable(t, "slave", SlaveTable, []State{SlaveStarting, SlaveAwaitStart, SlaveRunning, SlaveDone})
}

func TestClientTransitions(t *testing.T) {
	checkTable(t, "client", ClientTable, []State{ClientRequesting, ClientStarting, ClientRunning, ClientDraining, ClientAwaitExit, ClientDone})
}

// The happy paths of the flow in the package doc, as traces.
func TestFlowTraces(t *testing.T) {
	s := NewMachine("slave", SlaveTable, SlaveStarting)
	for _, ev := range []Event{EvStarted, EvStart, EvSignal, EvExited} {
		if _, err := s.Fire(ev); err != nil {
			t.Fatal(err)
		}
	}
	want := []State{SlaveStarting, SlaveAwaitStart, SlaveRunning, SlaveRunning, SlaveDone}
	if got := s.Trace(); !equal(got, want) {
		t.Errorf("slave trace %v, want %v", got, want)
	}
	for _, order := range [][]Event{
		{EvStarted, EvStartSent, EvExit, EvOutputsEnded},
		{EvStarted, EvStartSent, EvOutputsEnded, EvExit},
	} {
		c := NewMachine("client", ClientTable, ClientRequesting)
		for _, ev := range order {
			if _, err := c.Fire(ev); err != nil {
				t.Fatal(err)
			}
		}
		if c.State() != ClientDone {
			t.Errorf("client after %v is %s", order, c.State())
		}
	}
	// Done is final: nothing moves it.
	if _, err := s.Fire(EvStart); err == nil {
		t.Error("START accepted in Done")
	}
}

func TestDescribeListsEveryTransition(t *testing.T) {
	n := 0
	for _, evs := range SlaveTable {
		n += len(evs)
	}
	if got := len(strings.Split(SlaveTable.Describe(), "\n")); got != n {
		t.Fatalf("Describe has %d lines for %d transitions", got, n)
	}
}

func equal(a, b []State) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
