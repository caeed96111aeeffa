package fakessh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

func marshal(v thrift.FastCodec) []byte { return thrift.FastMarshal(v) }

// Client states and events.
const (
	ClientRequesting State = "Requesting" // asking for the process to be started
	ClientStarting   State = "Starting"   // have its handles; sending START
	ClientRunning    State = "Running"    // pumping stdio
	ClientDraining   State = "Draining"   // EXIT received; output still arriving
	ClientAwaitExit  State = "AwaitExit"  // output ended; waiting for EXIT
	ClientDone       State = "Done"

	EvStartSent    Event = "start-sent"    // START sent to the slave
	EvOutputsEnded Event = "outputs-ended" // stdout and stderr both ended
)

// ClientTable is the client's transition table.
var ClientTable = Table{
	ClientRequesting: {
		EvStarted:     ClientStarting,
		EvStartFailed: ClientDone,
	},
	ClientStarting: {
		EvStartSent: ClientRunning,
	},
	ClientRunning: {
		EvExit:         ClientDraining,
		EvOutputsEnded: ClientAwaitExit,
		EvPeerGone:     ClientDone,
	},
	ClientDraining: {
		EvOutputsEnded: ClientDone,
		EvPeerGone:     ClientDone,
	},
	ClientAwaitExit: {
		EvExit:     ClientDone,
		EvPeerGone: ClientDone,
	},
}

// Starter asks for spec to be started somewhere and returns the process's
// handles (the destination is ProcessStarted.Stdin.ContextId).
type Starter func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error)

// Stdio is the local end of a relayed process. A nil Stdin is empty.
type Stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Result is how a relayed process ended.
type Result struct {
	// Status is the exit status as ssh reports it: 0-255, 255 for a signal.
	Status int
	// Signal names the signal that killed the process, if one did.
	Signal string
	// Note is a one-line remark for stderr (a signal, a start failure).
	Note string
}

// Relay starts spec through start and relays stdio until the process has
// exited and all its output is delivered. An error means the relay itself
// failed (the process could not start, the destination vanished, ctx
// ended); the caller should then exit 255, as ssh does.
func Relay(ctx context.Context, r *core.Router, start Starter, spec *mitogen.ProcessSpec, stdio Stdio) (Result, *Machine, error) {
	m := NewMachine("client", ClientTable, ClientRequesting)
	res, err := relay(ctx, r, m, start, spec, stdio)
	return res, m, err
}

func relay(ctx context.Context, r *core.Router, m *Machine, start Starter, spec *mitogen.ProcessSpec, stdio Stdio) (Result, error) {
	started, err := start(ctx, spec)
	if err != nil {
		m.Fire(EvStartFailed)
		var ce *mitogen.CallError
		if errors.As(err, &ce) {
			return Result{Status: 255, Note: ce.Message}, err
		}
		return Result{Status: 255}, err
	}
	if started.Stdin == nil || started.ControlHandle == 0 {
		m.Fire(EvStartFailed)
		return Result{Status: 255}, errors.New("fakessh: start reply lacks handles")
	}
	m.Fire(EvStarted)
	dest := started.Stdin.ContextId

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	onlyDest := func(msg *wire.Message, _ *core.Stream) bool { return msg.Src == dest }
	control := r.NewReceiver(core.WithPeer(dest), core.WithPolicy(onlyDest), core.WithQueueLimit(64, 1<<20))
	defer control.Close()
	stdout := r.NewByteReader(ctx, dest)
	defer stdout.Close()
	stderr := r.NewByteReader(ctx, dest)
	defer stderr.Close()
	stdin := r.NewByteWriter(ctx)
	if err := stdin.Connect(started.Stdin); err != nil {
		return Result{Status: 255}, err
	}

	r.Send(&wire.Message{Dst: dest, Handle: started.ControlHandle, Data: marshal(&mitogen.Control{
		Kind: mitogen.ControlKind_START, Stdout: stdout.End(), Stderr: stderr.End(),
		StdinCredit: stdin.CreditEnd(), ControlHandle: control.Handle(),
	})})
	if _, err := m.Fire(EvStartSent); err != nil {
		return Result{Status: 255}, err
	}

	// Pumps.
	go func() {
		if stdio.Stdin != nil {
			_, _ = stdin.ReadFrom(readErrorIsEOF{stdio.Stdin})
		}
		stdin.Close()
	}()
	var outs sync.WaitGroup
	outErrs := make([]error, 2)
	drain := func(i int, br *core.ByteReader, w io.Writer) {
		defer outs.Done()
		if w == nil {
			w = io.Discard
		}
		if _, err := br.WriteTo(w); err != nil {
			outErrs[i] = err
			br.Close()
		}
	}
	outs.Add(2)
	go drain(0, stdout, stdio.Stdout)
	go drain(1, stderr, stdio.Stderr)
	outputsEnded := make(chan struct{})
	go func() { outs.Wait(); close(outputsEnded) }()

	ctlc := make(chan *mitogen.Control, 1)
	ctlErr := make(chan error, 1)
	go func() {
		msg, err := control.Get(ctx)
		if err != nil {
			ctlErr <- err
			return
		}
		var c mitogen.Control
		if _, err := c.FastRead(msg.Data); err != nil {
			ctlErr <- fmt.Errorf("fakessh: malformed control message from context %d: %w", dest, err)
			return
		}
		ctlc <- &c
	}()

	var res Result
	for m.State() != ClientDone {
		select {
		case c := <-ctlc:
			if c.Kind != mitogen.ControlKind_EXIT {
				_, err := m.Fire(Event(c.Kind.String()))
				return Result{Status: 255}, err
			}
			res = Result{Status: int(c.ExitStatus), Signal: c.Signal, Note: c.Note}
			if _, err := m.Fire(EvExit); err != nil {
				return Result{Status: 255}, err
			}
		case err := <-ctlErr:
			m.Fire(EvPeerGone)
			return Result{Status: 255}, fmt.Errorf("fakessh: connection to context %d lost: %w", dest, err)
		case <-outputsEnded:
			outputsEnded = nil
			if _, err := m.Fire(EvOutputsEnded); err != nil {
				return Result{Status: 255}, err
			}
		}
	}
	if err := errors.Join(outErrs...); err != nil && !errors.Is(err, io.EOF) {
		// Local output failed (the program closed its end); the exit status
		// still stands, as with ssh.
		r.Logger().Debug("relay output", "err", err)
	}
	return res, nil
}

// readErrorIsEOF ends the input at a read error, as OpenSSH's client does
// with its stdin (a terminal hung up, a descriptor gone): the remote command
// sees end of input, not a failed stream.
type readErrorIsEOF struct{ r io.Reader }

func (e readErrorIsEOF) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		err = io.EOF
	}
	return n, err
}
