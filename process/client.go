package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

func marshal(v thrift.FastCodec) []byte { return thrift.FastMarshal(v) }

// Starter asks for spec to be started somewhere and returns the process's
// handles (the destination is ProcessStarted.Stdin.ContextId). A Starter
// calling Agent.start_process sets spec.PeerId to the calling context.
type Starter func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error)

// Stdio is the local end of a relayed process. A nil Stdin is empty; a nil
// Stdout or Stderr discards.
type Stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// WindowChanges, if not nil, carries the new sizes of the client's
	// terminal, each sent to the process as a WINDOW_CHANGE (for a
	// process on a pty, ProcessSpec.pty). Relay stops reading it when it
	// returns.
	WindowChanges <-chan mitogen.WindowSize
}

// Result is how a relayed process ended, as its EXIT says.
type Result struct {
	// Status is the exit status as ssh reports it: 0-255, 255 for a signal.
	Status int
	// Signal names the signal that killed the process ("KILL"), if one did.
	Signal string
	// Note is a one-line remark for stderr (a signal, a start failure).
	Note string
}

// AnyDestination, as Relay's dest, takes the destination the Starter's
// reply names, which must not be the relaying context itself: for a
// Starter that asks a trusted context (fakessh's master) to pick it.
const AnyDestination int32 = -1

// CheckStarted applies the rule of ProcessStarted (idl/mitogen.thrift) to a
// reply to start_process asked of context dest: its stdin must be in dest
// and its control and stdin handles must be dynamic handles.
func CheckStarted(started *mitogen.ProcessStarted, dest int32) error {
	switch {
	case started == nil || started.Stdin == nil:
		return errors.New("process: start reply lacks handles")
	case started.Stdin.ContextId != dest:
		return fmt.Errorf("process: start reply names context %d, not %d, which was asked", started.Stdin.ContextId, dest)
	case !dynamicHandle(started.ControlHandle):
		return fmt.Errorf("process: start reply's control handle %d is not a dynamic handle", started.ControlHandle)
	case !dynamicHandle(started.Stdin.Handle):
		return fmt.Errorf("process: start reply's stdin handle %d is not a dynamic handle", started.Stdin.Handle)
	}
	return nil
}

func dynamicHandle(h int32) bool { return h >= mitogen.FIRST_DYNAMIC_HANDLE && h != mitogen.IS_DEAD }

// Relay starts spec through start in context dest (the one start asks;
// or AnyDestination) and relays stdio until the process has exited and
// all its output is delivered. The reply of start must pass CheckStarted
// for dest. An error means the relay itself failed (the process could not
// start, the destination vanished or broke the protocol, ctx ended); the
// caller should then exit 255, as ssh does.
func Relay(ctx context.Context, r *core.Router, dest int32, start Starter, spec *mitogen.ProcessSpec, stdio Stdio) (Result, error) {
	c := &client{r: r, dest: dest}
	if err := c.start(ctx, start, spec, stdio); err != nil {
		return c.res, err
	}
	return c.wait()
}

// client is the client side of one relayed process.
type client struct {
	r       *core.Router
	dest    int32
	started *mitogen.ProcessStarted
	ctx     context.Context
	cancel  context.CancelFunc

	control        *core.Receiver
	stdout, stderr *core.ByteReader
	ctl            chan ctlEvent
	outputsEnded   chan struct{}
	outErrs        []error // local write failures (the output is discarded after)
	streamErrs     []error // output streams that failed rather than ended

	res Result // valid once EXIT arrived (or the start failed)
	err error  // the relay's failure
}

// start is Requesting and Starting: it asks for the process, connects the
// streams and sends START. On error everything it made is released.
func (c *client) start(ctx context.Context, start Starter, spec *mitogen.ProcessSpec, stdio Stdio) error {
	started, err := start(ctx, spec)
	if err != nil {
		c.res = Result{Status: 255}
		var ce *mitogen.CallError
		if errors.As(err, &ce) {
			c.res.Note = ce.Message
		}
		return err
	}
	want := c.dest
	if want == AnyDestination && started != nil && started.Stdin != nil {
		want = started.Stdin.ContextId
		if want == c.r.ID() {
			c.res = Result{Status: 255}
			return fmt.Errorf("process: start reply names this context %d itself", want)
		}
	}
	if err := CheckStarted(started, want); err != nil {
		c.res = Result{Status: 255}
		return err
	}
	// Starting.
	c.started = started
	c.dest = want
	dest := c.dest
	c.ctx, c.cancel = context.WithCancel(ctx)
	// EXIT comes from dest; a bounce of START or SIGNAL from dest or from
	// a router on the way to it.
	c.control = c.r.NewReceiver(core.WithPeer(dest), core.WithPolicy(c.r.ReplyPolicy(dest)), core.WithQueueLimit(64, 1<<20))
	c.stdout = c.r.NewByteReader(c.ctx, dest)
	c.stderr = c.r.NewByteReader(c.ctx, dest)
	stdin := c.r.NewByteWriter(c.ctx)
	if err := stdin.Connect(started.Stdin); err != nil {
		c.release()
		c.res = Result{Status: 255}
		return err
	}
	// START's reply_to is the control handle: should the process be gone
	// (its start timed out), the bounce ends the relay instead of a wait
	// for an EXIT that cannot come.
	c.r.Send(&wire.Message{Dst: dest, Handle: started.ControlHandle, ReplyTo: c.control.Handle(), Data: marshal(&mitogen.Control{
		Kind: mitogen.ControlKind_START, Stdout: c.stdout.End(), Stderr: c.stderr.End(),
		StdinCredit: stdin.CreditEnd(), ControlHandle: c.control.Handle(),
	})})

	// Pumps.
	go func() {
		if stdio.Stdin != nil {
			_, _ = stdin.ReadFrom(readErrorIsEOF{stdio.Stdin})
		}
		stdin.Close()
	}()
	var outs sync.WaitGroup
	c.outErrs = make([]error, 2)
	c.streamErrs = make([]error, 2)
	drain := func(i int, br *core.ByteReader, w io.Writer) {
		defer outs.Done()
		if w == nil {
			w = io.Discard
		}
		lw := &localWriter{w: w}
		if _, err := br.WriteTo(lw); err != nil {
			if lw.err != nil {
				// The local end failed: the rest is refused (the process
				// side's writes fail), and the exit status still stands.
				c.outErrs[i] = err
			} else {
				// The stream failed: not every byte arrived.
				c.streamErrs[i] = err
			}
			br.Close()
		}
	}
	outs.Add(2)
	go drain(0, c.stdout, stdio.Stdout)
	go drain(1, c.stderr, stdio.Stderr)
	c.outputsEnded = make(chan struct{})
	go func() { outs.Wait(); close(c.outputsEnded) }()
	c.ctl = make(chan ctlEvent, 1)
	go c.readControl()
	if stdio.WindowChanges != nil {
		go c.windowChanges(stdio.WindowChanges)
	}
	return nil
}

// windowChanges sends each new window size as a WINDOW_CHANGE, until the
// relay is over.
func (c *client) windowChanges(sizes <-chan mitogen.WindowSize) {
	for {
		select {
		case w, ok := <-sizes:
			if !ok {
				return
			}
			c.r.Send(&wire.Message{Dst: c.dest, Handle: c.started.ControlHandle,
				Data: marshal(&mitogen.Control{Kind: mitogen.ControlKind_WINDOW_CHANGE, Window: &w})})
		case <-c.ctx.Done():
			return
		}
	}
}

// readControl turns the control handle's messages into events, in order,
// until the handle ends or the relay is over.
func (c *client) readControl() {
	for {
		m, err := c.control.Get(c.ctx)
		ev := ctlEvent{gone: err}
		if err == nil {
			ev.c = &mitogen.Control{}
			if _, derr := ev.c.FastRead(m.Data); derr != nil {
				ev = ctlEvent{err: fmt.Errorf("undecodable Control from context %d: %w", c.dest, derr)}
			}
		}
		select {
		case c.ctl <- ev:
		case <-c.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *client) release() {
	c.cancel()
	c.control.Close()
	c.stdout.Close()
	c.stderr.Close()
}

// signal asks the process's side to deliver sig to the process group.
func (c *client) signal(sig syscall.Signal) {
	c.r.Send(&wire.Message{Dst: c.dest, Handle: c.started.ControlHandle, ReplyTo: c.control.Handle(),
		Data: marshal(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: int32(sig)})})
}

// wait drives the client's state machine from Running to Done: one
// handler per state, each returning the next.
func (c *client) wait() (Result, error) {
	defer c.release()
	for st := ClientRunning; st != ClientDone; {
		switch st {
		case ClientRunning:
			st = c.running()
		case ClientDraining:
			st = c.draining()
		case ClientAwaitExit:
			st = c.awaitExit()
		default:
			panic(fmt.Sprintf("process: no client handler for state %v", st)) // not reached
		}
	}
	if c.err != nil {
		return Result{Status: 255}, c.err
	}
	if err := errors.Join(c.outErrs...); err != nil && !errors.Is(err, io.EOF) {
		// Local output failed (the program closed its end); the exit status
		// still stands, as with ssh.
		c.r.Logger().Debug("relay output", "err", err)
	}
	return c.res, nil
}

// running is the handler of Running: EXIT or the end of both outputs.
func (c *client) running() ClientState {
	select {
	case ev := <-c.ctl:
		return c.onControl(ClientRunning, ev, ClientDraining)
	case <-c.outputsEnded:
		if c.outputFailed() {
			return ClientDone
		}
		return ClientAwaitExit
	case <-c.ctx.Done():
		return c.onControl(ClientRunning, ctlEvent{gone: c.ctx.Err()}, ClientDone)
	}
}

// draining is the handler of Draining: EXIT came; the outputs end.
func (c *client) draining() ClientState {
	select {
	case ev := <-c.ctl:
		return c.onControl(ClientDraining, ev, ClientDone) // any message is an error here
	case <-c.outputsEnded:
		c.outputFailed()
		return ClientDone
	case <-c.ctx.Done():
		return c.onControl(ClientDraining, ctlEvent{gone: c.ctx.Err()}, ClientDone)
	}
}

// awaitExit is the handler of AwaitExit: the outputs ended; EXIT comes.
func (c *client) awaitExit() ClientState {
	select {
	case ev := <-c.ctl:
		return c.onControl(ClientAwaitExit, ev, ClientDone)
	case <-c.ctx.Done():
		return c.onControl(ClientAwaitExit, ctlEvent{gone: c.ctx.Err()}, ClientDone)
	}
}

// onControl acts on a control event in state st: the first EXIT moves to
// afterExit; the end of the handle and anything else end the relay.
func (c *client) onControl(st ClientState, ev ctlEvent, afterExit ClientState) ClientState {
	switch {
	case ev.gone != nil:
		c.err = fmt.Errorf("process: connection to context %d lost: %w", c.dest, ev.gone)
	case ev.err != nil:
		c.err = &ProtocolError{Side: "client", State: st, Event: "Control", Err: ev.err}
	case ev.c.Kind != mitogen.ControlKind_EXIT || st == ClientDraining:
		c.err = &ProtocolError{Side: "client", State: st, Event: "Control " + ev.c.Kind.String()}
	default:
		c.res = Result{Status: int(ev.c.ExitStatus), Signal: ev.c.Signal, Note: ev.c.Note}
		return afterExit
	}
	return ClientDone
}

// outputFailed, once both outputs ended, records an output stream's
// failure as the relay's (the output was not all delivered, whatever EXIT
// says) and reports whether there was one.
func (c *client) outputFailed() bool {
	if err := errors.Join(c.streamErrs...); err != nil {
		c.err = fmt.Errorf("process: output from context %d lost: %w", c.dest, err)
		return true
	}
	return false
}

// localWriter records the error of the local output it writes to, to tell
// it from the stream's own failure.
type localWriter struct {
	w   io.Writer
	err error
}

func (l *localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		l.err = err
	}
	return n, err
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
