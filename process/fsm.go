// Package process runs a command in any context with its stdio relayed,
// the way os/exec runs one locally: Command (or a Cmd with a Starter) names
// what to run and where, Start/Wait/Run/Output drive it, and a non-zero
// exit or a signal comes back as an *ExitError.
//
// It holds both ends of the relay (idl/mitogen.thrift: ProcessSpec,
// Control, BYTE STREAMS). The process side (slave.go) is Agent.start_process:
// StartProcess starts the command in its own process group with its stdio on
// pipes, waits for the client's START, pumps stdio with flow control and
// sends EXIT; it ends the process the way sshd ends a session's command when
// the client goes away or breaks the protocol. The client side (client.go)
// asks a Starter for the process, sends START and relays local stdio until
// EXIT has arrived and every byte of output is out. fakessh and `mitogen
// exec` are both clients; every agent serves StartProcess.
//
// Each side is a state machine of typed states with one handler per state:
// the handler waits for the next event that can arrive in its state, acts on
// it and returns the next state. An event its state does not expect (a
// second START, SIGNAL before START, EXIT sent to the process, a second
// EXIT, a Control of unknown kind, an undecodable one) is a *ProtocolError
// that is acted on: the process side ends the process (see ENDINGS in the
// IDL) and sends no EXIT; the client side ends the relay with the error.
//
// Process side:
//
//	AwaitStart --START (valid)------------> Running
//	AwaitStart --peer gone, start timeout-> Done (process ended)
//	Running    --SIGNAL-------------------> Running
//	Running    --exited, outputs ended----> Done (EXIT sent)
//	Running    --peer gone----------------> Done (process ended)
//	any        --anything else------------> Done (protocol error; process ended)
//
// Client side (Requesting and Starting are the Starter call and START):
//
//	Running   --EXIT----------> Draining
//	Running   --outputs ended-> AwaitExit
//	Draining  --outputs ended-> Done
//	AwaitExit --EXIT----------> Done
//	any       --peer gone-----> Done (relay error)
//	any       --an output failed (not ended)-> Done (relay error)
//	any       --anything else-> Done (protocol error)
package process

import "fmt"

// SlaveState is a state of the process side of a relay.
type SlaveState int

// The process side's states.
const (
	SlaveAwaitStart SlaveState = iota // started, replied, waiting for START
	SlaveRunning                      // pumping stdio
	SlaveDone                         // EXIT sent, or the process ended
)

func (s SlaveState) String() string {
	switch s {
	case SlaveAwaitStart:
		return "AwaitStart"
	case SlaveRunning:
		return "Running"
	case SlaveDone:
		return "Done"
	}
	return fmt.Sprintf("SlaveState(%d)", int(s))
}

// ClientState is a state of the client side of a relay.
type ClientState int

// The client side's states.
const (
	ClientRequesting ClientState = iota // asking for the process to be started
	ClientStarting                      // have its handles; sending START
	ClientRunning                       // pumping stdio
	ClientDraining                      // EXIT received; output still arriving
	ClientAwaitExit                     // output ended; waiting for EXIT
	ClientDone
)

func (s ClientState) String() string {
	switch s {
	case ClientRequesting:
		return "Requesting"
	case ClientStarting:
		return "Starting"
	case ClientRunning:
		return "Running"
	case ClientDraining:
		return "Draining"
	case ClientAwaitExit:
		return "AwaitExit"
	case ClientDone:
		return "Done"
	}
	return fmt.Sprintf("ClientState(%d)", int(s))
}

// ProtocolError is an event a relay end did not expect in its state.
type ProtocolError struct {
	Side  string       // "process" or "client"
	State fmt.Stringer // a SlaveState or a ClientState
	Event string       // what arrived, e.g. "Control START"
	Err   error        // why it is wrong, when more than "not expected"
}

func (e *ProtocolError) Error() string {
	msg := fmt.Sprintf("%s side: protocol error: %s in state %s", e.Side, e.Event, e.State)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ProtocolError) Unwrap() error { return e.Err }
