package process

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// A client that overruns the stdin window of a process: the process does
// not get to exit successfully on the truncated input; the client's EXIT
// says what happened.
func TestStdinOverrunIsNotSuccess(t *testing.T) {
	r := newPair(t).master // the master is both the slave's context and its client
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The process reads nothing until it gets SIGUSR1.
	started, err := StartProcess(ctx, r, &mitogen.ProcessSpec{
		Argv: []string{"sh", "-c", `trap 'wc -c; exit 0' USR1; while :; do sleep 0.05; done`}, PeerId: r.ID()})
	if err != nil {
		t.Fatal(err)
	}
	control := r.NewReceiver()
	defer control.Close()
	stdout := r.NewByteReader(ctx, r.ID())
	defer stdout.Close()
	stderr := r.NewByteReader(ctx, r.ID())
	defer stderr.Close()
	credit := r.NewReceiver()
	defer credit.Close()
	r.Send(&wire.Message{Dst: started.Stdin.ContextId, Handle: started.ControlHandle, Data: thrift.FastMarshal(&mitogen.Control{
		Kind: mitogen.ControlKind_START, Stdout: stdout.End(), Stderr: stderr.End(), ControlHandle: control.Handle(),
		StdinCredit: &mitogen.StreamEnd{ContextId: r.ID(), Handle: credit.Handle()}})})

	// Flood stdin ignoring credit: six chunks, of which four fit the window.
	end := started.Stdin
	chunk := int(end.Window/4) - 100
	for i := range 6 {
		r.Send(&wire.Message{Dst: end.ContextId, Handle: end.Handle, ReplyTo: credit.Handle(), Data: bytes.Repeat([]byte{byte('a' + i)}, chunk)})
	}
	for { // credit for what the stdin pump took, then the overrun
		if _, err := credit.Get(ctx); err != nil {
			if !errors.Is(err, core.ErrOverflow) {
				t.Fatalf("flooding writer got %v, want Dead{OVERFLOW}", err)
			}
			break
		}
	}
	r.SendDead(end.ContextId, end.Handle, &core.DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "end"})
	// Let the process read its stdin, unless it is gone.
	r.Send(&wire.Message{Dst: started.Stdin.ContextId, Handle: started.ControlHandle,
		Data: thrift.FastMarshal(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: int32(syscall.SIGUSR1)})})

	var out bytes.Buffer
	go stdout.WriteTo(&out)
	go stderr.WriteTo(&bytes.Buffer{})
	m, err := control.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var c mitogen.Control
	if _, err := c.FastRead(m.Data); err != nil || c.Kind != mitogen.ControlKind_EXIT {
		t.Fatalf("control message %v (%v), want EXIT", &c, err)
	}
	if c.ExitStatus == 0 || !strings.Contains(c.Note, "overrun") {
		t.Fatalf("EXIT status %d note %q (stdout %q); want a failure naming the overrun", c.ExitStatus, c.Note, out.String())
	}
}
