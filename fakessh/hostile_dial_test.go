package fakessh

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// dialLiar is a destination whose dial_tcp reply is forged, and which
// counts the dials it was asked for.
type dialLiar struct {
	lyingAgent
	dialReply *mitogen.DialReply
	dials     atomic.Int32
}

func (l *dialLiar) DialTcp(context.Context, *mitogen.DialRequest) (*mitogen.DialReply, error) {
	l.dials.Add(1)
	return l.dialReply, nil
}

// FakeSSH.dial: the master refuses a recv end that is not the caller's own
// (before asking the destination anything), and checks the destination's
// reply as dial_tcp's asker must: a send end naming another context or a
// well-known handle is a failed dial, never passed on to the ssh.
func TestDialRefusesForgedEnds(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	liar := &dialLiar{}
	a, b := net.Pipe()
	booted := make(chan *core.Router, 1)
	go func() {
		cr, err := core.Boot(b, cfg, func(cr *core.Router) {
			liar.Router = cr
			cr.Serve("Agent", func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
				return mitogen.DispatchAgent(ctx, liar, method, args)
			})
		})
		if err != nil {
			t.Error(err)
		}
		booted <- cr
	}()
	dest, _, err := r.StartChild(context.Background(), a, r.AllocateID(), "dest")
	if err != nil {
		t.Fatal(err)
	}
	if cr := <-booted; cr != nil {
		defer cr.Close()
	}
	st := &run{Runner: &Runner{Router: r, Default: dest}, members: map[int32]bool{}}
	h := r.ServeOn(nil, func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchFakeSSH(ctx, st, method, args)
	})
	fc := &mitogen.FakeSSHClient{Caller: handleCaller{r: r, handle: h}}
	dial := func(recv *mitogen.StreamEnd) (*mitogen.DialReply, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return fc.Dial(ctx, &mitogen.FakeDialRequest{Host: "h", Dial: &mitogen.DialRequest{Host: "127.0.0.1", Port: 22, Recv: recv}})
	}
	own := &mitogen.StreamEnd{ContextId: r.ID(), Handle: 5000, Window: 1 << 16}
	for _, recv := range []*mitogen.StreamEnd{
		{ContextId: dest.ID(), Handle: 5000, Window: 1 << 16},
		{ContextId: r.ID(), Handle: mitogen.SHUTDOWN, Window: 1 << 16},
		{ContextId: r.ID(), Handle: 5000, Window: 1},
		nil,
	} {
		if got, err := dial(recv); err == nil {
			t.Fatalf("recv %+v: dialled (%+v); want it refused", recv, got)
		}
	}
	if n := liar.dials.Load(); n != 0 {
		t.Fatalf("the destination was asked to dial %d times for refused requests", n)
	}
	for _, reply := range []*mitogen.DialReply{
		{Send: &mitogen.StreamEnd{ContextId: mitogen.MASTER_ID, Handle: 5001, Window: 1 << 16}},
		{Send: &mitogen.StreamEnd{ContextId: dest.ID(), Handle: mitogen.SHUTDOWN, Window: 1 << 16}},
		{Send: &mitogen.StreamEnd{ContextId: dest.ID(), Handle: mitogen.IS_DEAD, Window: 1 << 16}},
		{Send: &mitogen.StreamEnd{ContextId: dest.ID(), Handle: 5001, Window: 3}},
		{},
	} {
		liar.dialReply = reply
		got, err := dial(own)
		if err == nil || !strings.Contains(err.Error(), "reply") {
			t.Fatalf("reply %+v: passed on as %+v, %v; want it refused", reply, got, err)
		}
	}
}
