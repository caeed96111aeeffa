// Package fakessh runs unmodified programs that shell out to ssh (rsync,
// scp, sftp, git) against contexts the master already holds: a private `ssh`
// first on the program's PATH turns each invocation into a context of its
// own, which asks the master to start the command in the destination
// context and relays stdio both ways with flow control and the exact exit
// status.
//
// Both ends of a relayed process are explicit state machines. The slave
// (the process in the destination context, see slave.go) and the client
// (the side holding the local stdio, see client.go) each follow a
// transition table; an event that does not fit the current state is a
// protocol error that ends the relay, never a hang. The flow:
//
//  1. Run prepares a private directory with our ssh first on PATH and a
//     private socket back to the master (run.go).
//  2. The program runs and executes ssh from PATH.
//  3. Our ssh connects back, proves it belongs to the run, and boots as a
//     child context of the master (sshmain.go).
//  4. It parses the ssh command line and asks the master, on the run's
//     FakeSSH handle, to start the command (client: Requesting).
//  5. The master calls Agent.start_process in the destination on its own
//     authority; the slave starts the command with its stdio on pipes and
//     replies with its control and stdin handles (slave: Starting ->
//     AwaitStart; client: Requesting -> Starting).
//  6. The client sends START with its stdout/stderr ends (client: Starting
//     -> Running; slave: AwaitStart -> Running); both pump until the
//     outputs end and the process exits; the slave sends EXIT (slave:
//     Running -> Done); the client exits with it once every byte of output
//     is out (client: Running -> Draining -> Done).
package fakessh

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// State is a named state of a relay machine.
type State string

// Event is what moves a machine from one state to the next.
type Event string

// Table maps state -> event -> next state.
type Table map[State]map[Event]State

// ProtocolError is returned for an event the current state does not accept.
type ProtocolError struct {
	Machine string
	State   State
	Event   Event
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("fakessh %s: protocol error: %q is not valid in state %q", e.Machine, e.Event, e.State)
}

// Machine is a state machine driven by a Table. It is safe for concurrent use.
type Machine struct {
	name  string
	table Table

	mu    sync.Mutex
	state State
	trace []State
}

// NewMachine starts a machine in state start.
func NewMachine(name string, table Table, start State) *Machine {
	return &Machine{name: name, table: table, state: start, trace: []State{start}}
}

// State is the current state.
func (m *Machine) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Trace lists the states visited, in order.
func (m *Machine) Trace() []State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]State(nil), m.trace...)
}

// Fire applies ev. It returns the new state, or a *ProtocolError and
// leaves the state unchanged when ev does not fit.
func (m *Machine) Fire(ev Event) (State, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, ok := m.table[m.state][ev]
	if !ok {
		return m.state, &ProtocolError{Machine: m.name, State: m.state, Event: ev}
	}
	m.state = next
	m.trace = append(m.trace, next)
	return next, nil
}

// Describe renders a table as text, one transition per line, sorted.
func (t Table) Describe() string {
	var lines []string
	for s, evs := range t {
		for e, n := range evs {
			lines = append(lines, fmt.Sprintf("%s --%s--> %s", s, e, n))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
