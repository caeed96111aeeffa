package fakessh

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// lyingAgent is a destination whose start_process reply is forged.
type lyingAgent struct {
	agent.Service
	reply *mitogen.ProcessStarted
}

func (l *lyingAgent) StartProcess(context.Context, *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	return l.reply, nil
}

// The master checks the destination's start_process reply before passing
// it to the ssh context: a reply naming another context (the master, its
// SHUTDOWN handle) or a well-known handle is refused as a failed start.
func TestStartSlaveRefusesForgedReply(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	liar := &lyingAgent{}
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
	for _, reply := range []*mitogen.ProcessStarted{
		{ControlHandle: mitogen.SHUTDOWN, Stdin: &mitogen.StreamEnd{ContextId: mitogen.MASTER_ID, Handle: 5000, Window: 1 << 16}},
		{ControlHandle: 5000, Stdin: &mitogen.StreamEnd{ContextId: mitogen.MASTER_ID, Handle: 5001, Window: 1 << 16}},
		{ControlHandle: mitogen.ADD_ROUTE, Stdin: &mitogen.StreamEnd{ContextId: dest.ID(), Handle: 5001, Window: 1 << 16}},
		{ControlHandle: 5000, Stdin: &mitogen.StreamEnd{ContextId: dest.ID(), Handle: mitogen.SHUTDOWN, Window: 1 << 16}},
		{ControlHandle: 5000},
	} {
		liar.reply = reply
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		got, err := fc.StartSlave(ctx, &mitogen.StartSlaveRequest{Host: "h", Spec: &mitogen.ProcessSpec{Command: "true"}})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "start reply") {
			t.Fatalf("reply %+v: passed on as %+v, %v; want it refused", reply, got, err)
		}
	}
}
