package forward_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/forward"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// listen_tcp's protocol, driven by the master as the peer: each accepted
// connection is offered on the notify handle; an ANSWER whose recv end is
// not the peer's closes that connection, a proper one relays it both
// ways, and CLOSE ends the listener.
func TestListenProtocol(t *testing.T) {
	r, dest := world(t)
	ctx := ctxT(t, 120*time.Second)
	notify := r.NewReceiver(core.WithPeer(dest.ID()))
	defer notify.Close()
	rep, err := dest.Agent().ListenTcp(ctx, &mitogen.ListenRequest{BindHost: "127.0.0.1", NotifyHandle: notify.Handle()})
	if err != nil {
		t.Fatal(err)
	}
	if err := forward.CheckListenReply(rep); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(rep.Port)))
	send := func(c *mitogen.ListenControl) {
		r.Send(&wire.Message{Dst: dest.ID(), Handle: rep.ControlHandle, Data: thrift.FastMarshal(c)})
	}
	offer := func() (net.Conn, *mitogen.Accepted) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		m, err := notify.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var acc mitogen.Accepted
		if _, err := acc.FastRead(m.Data); err != nil {
			t.Fatal(err)
		}
		if err := forward.CheckReply(&mitogen.DialReply{Send: acc.Send}, dest.ID()); err != nil {
			t.Fatal(err)
		}
		return c, &acc
	}

	// An answer naming another context's handle: the connection is closed.
	c, acc := offer()
	send(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_ANSWER, ConnId: acc.ConnId,
		Recv: &mitogen.StreamEnd{ContextId: dest.ID(), Handle: 5000, Window: 1 << 16}})
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("connection answered with another context's end: read %d, %v; want it closed", n, err)
	}
	c.Close()

	// A refusal (no recv): closed too.
	c, acc = offer()
	send(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_ANSWER, ConnId: acc.ConnId})
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("refused connection: read %d, %v; want it closed", n, err)
	}
	c.Close()

	// A proper answer: bytes both ways.
	c, acc = offer()
	conn, err := forward.Open(ctx, ctx, r, dest.ID(), func(_ context.Context, recv *mitogen.StreamEnd) (*mitogen.DialReply, error) {
		send(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_ANSWER, ConnId: acc.ConnId, Recv: recv})
		return &mitogen.DialReply{Send: acc.Send}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	local, far := socketPair(t)
	done := make(chan error, 1)
	go func() { done <- conn.Splice(local) }()
	go func() { io.Copy(far, far); far.CloseWrite() }() // echo on our side
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo through the listener: %q, %v", got, err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatalf("splice: %v", err)
	}

	// CLOSE: the port stops accepting (the listener closes asynchronously).
	send(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_CLOSE})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			var op *net.OpError
			if !errors.As(err, &op) {
				t.Fatal(err)
			}
			break
		}
		c.Close()
		if i > 400 {
			t.Fatal("the listener still accepts after CLOSE")
		}
		time.Sleep(25 * time.Millisecond)
	}
}
