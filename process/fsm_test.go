package process

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// These tests drive the real process side (StartProcess) and the real
// client side (Relay) with messages out of order, duplicated, late or
// unknown, sent raw from the other context of a pair.

// rawClient plays the client of a process started on p.master: its
// handles live in p.client, and it sends Control messages by hand.
type rawClient struct {
	p       *pair
	started *mitogen.ProcessStarted
	control *core.Receiver // receives EXIT and bounces
	stdout  *core.ByteReader
	stderr  *core.ByteReader
	credit  *core.Receiver
}

func (p *pair) rawClient(t *testing.T, started *mitogen.ProcessStarted) *rawClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rc := &rawClient{p: p, started: started, control: p.client.NewReceiver(),
		stdout: p.client.NewByteReader(ctx, p.master.ID()), stderr: p.client.NewByteReader(ctx, p.master.ID()),
		credit: p.client.NewReceiver()}
	t.Cleanup(func() { rc.control.Close(); rc.stdout.Close(); rc.stderr.Close(); rc.credit.Close() })
	go rc.stdout.WriteTo(io.Discard)
	go rc.stderr.WriteTo(io.Discard)
	return rc
}

func (rc *rawClient) sendRaw(data []byte) {
	rc.p.client.Send(&wire.Message{Dst: rc.p.master.ID(), Handle: rc.started.ControlHandle, ReplyTo: rc.control.Handle(), Data: data})
}

func (rc *rawClient) send(c *mitogen.Control) { rc.sendRaw(marshal(c)) }

func (rc *rawClient) start() {
	rc.send(&mitogen.Control{Kind: mitogen.ControlKind_START, Stdout: rc.stdout.End(), Stderr: rc.stderr.End(),
		StdinCredit: &mitogen.StreamEnd{ContextId: rc.p.clientID, Handle: rc.credit.Handle()}, ControlHandle: rc.control.Handle()})
}

// next returns the next message on the client's control handle, decoded,
// or the error Get gave (a bounce).
func (rc *rawClient) next(t *testing.T) (*mitogen.Control, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := rc.control.Get(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("nothing arrived on the client's control handle")
	}
	if err != nil {
		return nil, err
	}
	var c mitogen.Control
	if _, err := c.FastRead(m.Data); err != nil {
		t.Fatalf("undecodable control message: %v", err)
	}
	return &c, nil
}

// endedAsProtocolError checks that the process was ended as ENDINGS says
// (hung up: the recorder saw HUP and exited on it) and that no EXIT came:
// the client's control handle only hears, at most, the bounce of a later
// message.
func endedAsProtocolError(t *testing.T, rc *rawClient, rec string) {
	t.Helper()
	waitFor(t, "the process to be ended", func() bool { return gone(rc.started.Pid) })
	if got := readRecord(rec); !strings.Contains(got, "HUP\n") {
		t.Fatalf("the process saw %q; want it hung up", got)
	}
	expectBounce(t, rc, "a SIGNAL after the end", func() {
		rc.send(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: int32(syscall.SIGTERM)})
	})
}

// expectBounce sends a probe (with the client's control handle as
// reply_to) to a process side that is gone, or going: the control handle
// must receive a dead bounce and nothing before it (no EXIT). A probe that
// reaches the process's handle just before it closes is dropped
// unanswered: it is sent again.
func expectBounce(t *testing.T, rc *rawClient, what string, probe func()) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		probe()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m, err := rc.control.Get(ctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			continue
		case err == nil:
			t.Fatalf("%s: the client's control handle received %q; want nothing but a bounce", what, m.Data)
		case !core.IsDead(err):
			t.Fatalf("%s: %v; want a dead bounce", what, err)
		}
		return
	}
	t.Fatalf("%s: no bounce", what)
}

func TestSlaveProtocolErrors(t *testing.T) {
	p := newPair(t)
	cases := map[string]func(rc *rawClient){
		"two STARTs": func(rc *rawClient) { rc.start(); rc.start() },
		"SIGNAL before START": func(rc *rawClient) {
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: int32(syscall.SIGUSR1)})
		},
		"EXIT before START": func(rc *rawClient) { rc.send(&mitogen.Control{Kind: mitogen.ControlKind_EXIT}) },
		"EXIT after START": func(rc *rawClient) {
			rc.start()
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_EXIT})
		},
		"unknown kind before START": func(rc *rawClient) { rc.send(&mitogen.Control{Kind: 77}) },
		"unknown kind after START": func(rc *rawClient) {
			rc.start()
			rc.send(&mitogen.Control{Kind: 77})
		},
		"undecodable before START": func(rc *rawClient) { rc.sendRaw([]byte{0xff, 0xff, 0xff}) },
		"undecodable after START": func(rc *rawClient) {
			rc.start()
			rc.sendRaw([]byte{0xff, 0xff, 0xff})
		},
		"SIGNAL 0 after START": func(rc *rawClient) {
			rc.start()
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL})
		},
		"SIGNAL 999 after START": func(rc *rawClient) {
			rc.start()
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: 999})
		},
		"WINDOW_CHANGE before START": func(rc *rawClient) {
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_WINDOW_CHANGE, Window: &mitogen.WindowSize{Rows: 24, Cols: 80}})
		},
		"WINDOW_CHANGE without window": func(rc *rawClient) {
			rc.start()
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_WINDOW_CHANGE})
		},
		"WINDOW_CHANGE rows 65536": func(rc *rawClient) {
			rc.start()
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_WINDOW_CHANGE, Window: &mitogen.WindowSize{Rows: 65536, Cols: 80}})
		},
		"WINDOW_CHANGE cols -1": func(rc *rawClient) {
			rc.start()
			rc.send(&mitogen.Control{Kind: mitogen.ControlKind_WINDOW_CHANGE, Window: &mitogen.WindowSize{Rows: 24, Cols: -1}})
		},
	}
	for name, send := range cases {
		t.Run(name, func(t *testing.T) {
			started, rec := p.startRecorder(t, DefaultConfig(), "HUP")
			rc := p.rawClient(t, started)
			send(rc)
			endedAsProtocolError(t, rc, rec)
		})
	}
}

// SIGNAL after START reaches the process; the EXIT that follows says how
// it ended. (The counterpart of the cases above: the same messages, in
// order, are obeyed.)
func TestSlaveSignalAfterStart(t *testing.T) {
	p := newPair(t)
	started, rec := p.startRecorder(t, DefaultConfig(), "TERM")
	rc := p.rawClient(t, started)
	rc.start()
	rc.send(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: int32(syscall.SIGTERM)})
	p.client.SendDead(p.master.ID(), started.Stdin.Handle, &core.DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED})
	c, err := rc.next(t)
	if err != nil || c.Kind != mitogen.ControlKind_EXIT || c.ExitStatus != 3 {
		t.Fatalf("got %v (%v); want EXIT status 3 (the recorder's exit on TERM); it saw %q", c, err, readRecord(rec))
	}
}

// No START within the start timeout: the process is ended; a START that
// comes later bounces to its reply_to, and nothing reaches the ends it
// names.
func TestSlaveStartTimeout(t *testing.T) {
	p := newPair(t)
	// The timeout runs from the start, before the recorder has installed
	// its handlers: it must leave a loaded machine time to get there, or
	// the HUP would find the default action (or an inherited SIG_IGN).
	started, rec := p.startRecorder(t, Config{StartTimeout: 5 * time.Second}, "HUP")
	waitFor(t, "the process to be ended", func() bool { return gone(started.Pid) })
	if got := readRecord(rec); !strings.Contains(got, "HUP\n") {
		t.Fatalf("the process saw %q; want it hung up", got)
	}
	rc := p.rawClient(t, started)
	expectBounce(t, rc, "a START after the timeout", rc.start)
}

// Data after the end: once EXIT is sent, stdin data and control messages
// bounce; the process side is gone, not confused.
func TestSlaveDataAfterEnd(t *testing.T) {
	p := newPair(t)
	started, err := StartProcess(context.Background(), p.master, &mitogen.ProcessSpec{Argv: []string{"true"}, PeerId: p.clientID})
	if err != nil {
		t.Fatal(err)
	}
	rc := p.rawClient(t, started)
	rc.start()
	p.client.SendDead(p.master.ID(), started.Stdin.Handle, &core.DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED})
	if c, err := rc.next(t); err != nil || c.Kind != mitogen.ControlKind_EXIT || c.ExitStatus != 0 {
		t.Fatalf("got %v (%v); want EXIT 0", c, err)
	}
	expectBounce(t, rc, "stdin data after the end", func() {
		p.client.Send(&wire.Message{Dst: p.master.ID(), Handle: started.Stdin.Handle, ReplyTo: rc.control.Handle(), Data: []byte("late")})
	})
	expectBounce(t, rc, "a START after the end", rc.start)
}

// rawProcess plays the process side for a real client running on
// p.client: the Starter hands out handles of p.master, and the test sends
// what it likes.
type rawProcess struct {
	control *core.Receiver // receives START
	stdin   *core.ByteReader
}

// relayAgainst runs Relay on p.client against a raw process side; script
// gets the START and sends the rest. It returns Relay's result.
func relayAgainst(t *testing.T, p *pair, script func(start *mitogen.Control)) (Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rp := &rawProcess{control: p.master.NewReceiver(), stdin: p.master.NewByteReader(ctx, p.clientID)}
	defer rp.control.Close()
	defer rp.stdin.Close()
	go rp.stdin.WriteTo(io.Discard)
	starter := func(context.Context, *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		return &mitogen.ProcessStarted{ControlHandle: rp.control.Handle(), Stdin: rp.stdin.End(), Pid: 1}, nil
	}
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := Relay(ctx, p.client, p.master.ID(), starter, &mitogen.ProcessSpec{Argv: []string{"x"}}, Stdio{})
		done <- result{res, err}
	}()
	m, err := rp.control.Get(ctx)
	if err != nil {
		t.Fatalf("no START: %v", err)
	}
	var start mitogen.Control
	if _, err := start.FastRead(m.Data); err != nil || start.Kind != mitogen.ControlKind_START {
		t.Fatalf("first control message %v (%v); want START", &start, err)
	}
	script(&start)
	select {
	case r := <-done:
		return r.res, r.err
	case <-ctx.Done():
		t.Fatal("the relay did not end")
	}
	return Result{}, nil
}

func toClient(p *pair, start *mitogen.Control, c *mitogen.Control) {
	p.master.Send(&wire.Message{Dst: p.clientID, Handle: start.ControlHandle, Data: marshal(c)})
}

func toClientRaw(p *pair, start *mitogen.Control, data []byte) {
	p.master.Send(&wire.Message{Dst: p.clientID, Handle: start.ControlHandle, Data: data})
}

// endOutputs writes s to stdout and ends both outputs.
func endOutputs(t *testing.T, p *pair, start *mitogen.Control) {
	for _, end := range []*mitogen.StreamEnd{start.Stdout, start.Stderr} {
		w := p.master.NewByteWriter(context.Background())
		if err := w.Connect(end); err != nil {
			t.Error(err)
			return
		}
		w.Write([]byte("x"))
		w.Close()
	}
}

func exitMsg(status int32) *mitogen.Control {
	return &mitogen.Control{Kind: mitogen.ControlKind_EXIT, ExitStatus: status}
}

func TestClientOrders(t *testing.T) {
	p := newPair(t)
	// EXIT before the outputs end (Draining), and after (AwaitExit): both
	// give the status.
	for name, script := range map[string]func(*mitogen.Control){
		"EXIT then outputs": func(s *mitogen.Control) { toClient(p, s, exitMsg(7)); endOutputs(t, p, s) },
		"outputs then EXIT": func(s *mitogen.Control) { endOutputs(t, p, s); toClient(p, s, exitMsg(7)) },
	} {
		t.Run(name, func(t *testing.T) {
			res, err := relayAgainst(t, p, script)
			if err != nil || res.Status != 7 {
				t.Fatalf("got %+v, %v; want status 7", res, err)
			}
		})
	}
}

func TestClientProtocolErrors(t *testing.T) {
	p := newPair(t)
	cases := map[string]func(*mitogen.Control){
		"a second EXIT": func(s *mitogen.Control) { toClient(p, s, exitMsg(0)); toClient(p, s, exitMsg(1)) },
		"START":         func(s *mitogen.Control) { toClient(p, s, &mitogen.Control{Kind: mitogen.ControlKind_START}) },
		"SIGNAL": func(s *mitogen.Control) {
			toClient(p, s, &mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: 1})
		},
		"unknown kind": func(s *mitogen.Control) { toClient(p, s, &mitogen.Control{Kind: 77}) },
		"undecodable":  func(s *mitogen.Control) { toClientRaw(p, s, []byte{0xff, 0xff}) },
		"unknown kind after the outputs ended": func(s *mitogen.Control) {
			endOutputs(t, p, s)
			toClient(p, s, &mitogen.Control{Kind: 77})
		},
	}
	for name, script := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := relayAgainst(t, p, script)
			var pe *ProtocolError
			if !errors.As(err, &pe) || res.Status != 255 {
				t.Fatalf("got %+v, %v; want status 255 and a protocol error", res, err)
			}
		})
	}
}

// A START that finds the process side gone (its start timed out) bounces,
// and the relay ends with an error instead of waiting for an EXIT that
// cannot come.
func TestClientStartBounces(t *testing.T) {
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gone := p.master.NewReceiver()
	stdin := p.master.NewByteReader(ctx, p.clientID)
	defer stdin.Close()
	gone.Close()
	starter := func(context.Context, *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		return &mitogen.ProcessStarted{ControlHandle: gone.Handle(), Stdin: stdin.End(), Pid: 1}, nil
	}
	res, err := Relay(ctx, p.client, p.master.ID(), starter, &mitogen.ProcessSpec{Argv: []string{"x"}}, Stdio{})
	if err == nil || !core.IsDead(err) || res.Status != 255 {
		t.Fatalf("got %+v, %v; want status 255 and the bounce", res, err)
	}
}

// The destination's departure ends the relay with an error, in every state.
func TestClientPeerGone(t *testing.T) {
	p := newPair(t)
	res, err := relayAgainst(t, p, func(s *mitogen.Control) { toClient(p, s, exitMsg(0)); p.cut() })
	if err == nil || res.Status != 255 {
		t.Fatalf("got %+v, %v; want status 255 and an error", res, err)
	}
}

// An output stream that fails (rather than ending) fails the relay, even
// after EXIT and with the control handle still open: the output is not
// all delivered. (The departure of the destination shows up as such a
// failure as often as not before the control handle's end.)
func TestClientOutputFails(t *testing.T) {
	p := newPair(t)
	for _, order := range []string{"EXIT first", "EXIT after"} {
		t.Run(order, func(t *testing.T) {
			res, err := relayAgainst(t, p, func(s *mitogen.Control) {
				if order == "EXIT first" {
					toClient(p, s, exitMsg(0))
				}
				p.master.SendDead(p.clientID, s.Stdout.Handle, &core.DeadError{Reason: mitogen.DeadReason_DISCONNECTED})
				p.master.SendDead(p.clientID, s.Stderr.Handle, &core.DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED})
				if order == "EXIT after" {
					toClient(p, s, exitMsg(0))
				}
			})
			if err == nil || !core.IsDead(err) || res.Status != 255 {
				t.Fatalf("got %+v, %v; want status 255 and the stream's failure", res, err)
			}
		})
	}
}

// A start reply is checked before anything is sent: it must name the
// context that was asked, and dynamic handles. A hostile destination
// naming the client's own context and its SHUTDOWN (or ADD_ROUTE) handle
// would otherwise have START delivered locally, past every policy.
func TestClientRefusesHostileStartReply(t *testing.T) {
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stdin := p.master.NewByteReader(ctx, p.clientID)
	defer stdin.Close()
	self := &mitogen.StreamEnd{ContextId: p.clientID, Handle: stdin.End().Handle, Window: stdin.End().Window}
	for _, c := range []struct {
		name    string
		started *mitogen.ProcessStarted
	}{
		{"own SHUTDOWN", &mitogen.ProcessStarted{ControlHandle: mitogen.SHUTDOWN, Stdin: self}},
		{"own ADD_ROUTE", &mitogen.ProcessStarted{ControlHandle: mitogen.ADD_ROUTE, Stdin: self}},
		{"own ALLOCATE_ID", &mitogen.ProcessStarted{ControlHandle: mitogen.ALLOCATE_ID, Stdin: self}},
		{"asked context, well-known handle", &mitogen.ProcessStarted{ControlHandle: mitogen.SHUTDOWN, Stdin: stdin.End()}},
		{"asked context, IS_DEAD", &mitogen.ProcessStarted{ControlHandle: mitogen.IS_DEAD, Stdin: stdin.End()}},
		{"well-known stdin handle", &mitogen.ProcessStarted{ControlHandle: 5000, Stdin: &mitogen.StreamEnd{ContextId: p.master.ID(), Handle: mitogen.SHUTDOWN, Window: 1 << 16}}},
	} {
		starter := func(context.Context, *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) { return c.started, nil }
		res, err := Relay(ctx, p.client, p.master.ID(), starter, &mitogen.ProcessSpec{Argv: []string{"x"}}, Stdio{})
		if err == nil || res.Status != 255 || !strings.Contains(err.Error(), "start reply") {
			t.Fatalf("%s: got %+v, %v; want the reply refused", c.name, res, err)
		}
		// AnyDestination still refuses the relaying context itself.
		if _, err := Relay(ctx, p.client, AnyDestination, starter, &mitogen.ProcessSpec{Argv: []string{"x"}}, Stdio{}); err == nil {
			t.Fatalf("%s: AnyDestination took the reply", c.name)
		}
	}
	// A round trip, then neither end has begun to shut down.
	rc := p.client.NewReceiver()
	defer rc.Close()
	p.master.Send(&wire.Message{Dst: p.clientID, Handle: rc.Handle(), Data: []byte("still here")})
	if _, err := rc.Get(ctx); err != nil {
		t.Fatalf("client unreachable after the hostile replies: %v", err)
	}
	select {
	case <-p.client.Done():
		t.Fatal("the client context shut down")
	case <-p.master.Done():
		t.Fatal("the master shut down")
	default:
	}
}

// A START bounced by a router on the way to the destination (not by the
// destination itself) still ends the relay: the control handle takes dead
// messages that come back on the stream toward the destination.
func TestClientStartBouncedOnTheWay(t *testing.T) {
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const nowhere = 4242 // the master has no route to it
	starter := func(context.Context, *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		return &mitogen.ProcessStarted{ControlHandle: 5000, Stdin: &mitogen.StreamEnd{ContextId: nowhere, Handle: 5001, Window: 1 << 16}, Pid: 1}, nil
	}
	res, err := Relay(ctx, p.client, nowhere, starter, &mitogen.ProcessSpec{Argv: []string{"x"}}, Stdio{})
	if err == nil || !core.IsDead(err) || errors.Is(err, context.DeadlineExceeded) || res.Status != 255 {
		t.Fatalf("got %+v, %v; want status 255 and the master's bounce", res, err)
	}
}
