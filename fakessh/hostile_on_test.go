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

// inProcessChild boots an in-process agent as a child of the master r.
func inProcessChild(t *testing.T, r *core.Router, cfg core.Config) (*core.Context, *core.Router) {
	t.Helper()
	a, b := net.Pipe()
	booted := make(chan *core.Router, 1)
	go func() {
		cr, err := core.Boot(b, cfg, func(cr *core.Router) { (&agent.Service{Router: cr}).Serve() })
		if err != nil {
			t.Error(err)
		}
		booted <- cr
	}()
	c, _, err := r.StartChild(context.Background(), a, r.AllocateID(), "child")
	if err != nil {
		t.Fatal(err)
	}
	cr := <-booted
	t.Cleanup(func() { cr.Close() })
	return c, cr
}

// The master's handle of a run on a context: only that context may join
// fake ssh contexts, and only while the run lasts; the context itself may
// not start slaves (only the fake ssh contexts it joined may), and a
// sibling context may do neither.
func TestRunOnHandleAuthority(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	on, onR := inProcessChild(t, r, cfg)
	dest, sibR := inProcessChild(t, r, cfg)
	st := &run{Runner: &Runner{Router: r, On: on, Hosts: map[string]*core.Context{"h": dest}}, members: map[int32]bool{}}
	h := r.ServeOn(st.isMember, func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchFakeSSH(ctx, st, method, args)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fromOn := &mitogen.FakeSSHClient{Caller: handleCaller{r: onR, handle: h}}
	fromSibling := &mitogen.FakeSSHClient{Caller: handleCaller{r: sibR, handle: h}}
	req := &mitogen.StartSlaveRequest{Host: "h", Spec: &mitogen.ProcessSpec{Command: "true"}}

	if _, err := fromOn.StartSlave(ctx, req); err == nil || !strings.Contains(err.Error(), "not a fake ssh of this run") {
		t.Fatalf("start_slave from the context running the program: %v; want refused", err)
	}
	if _, err := fromSibling.StartSlave(ctx, req); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("start_slave from a sibling: %v; want refused by the handle's policy", err)
	}
	if _, err := fromSibling.Join(ctx, 1); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("join from a sibling: %v; want refused by the handle's policy", err)
	}
	j, err := fromOn.Join(ctx, 1)
	if err != nil || j.ContextId <= on.ID() || !st.member(j.ContextId) {
		t.Fatalf("join from the context running the program: %+v, %v", j, err)
	}
	st.mu.Lock()
	st.ended = true
	st.mu.Unlock()
	if _, err := fromOn.Join(ctx, 1); err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("join after the run: %v; want refused", err)
	}
	// A local run (no On) has no join at all.
	local := &run{Runner: &Runner{Router: r, Default: dest}, members: map[int32]bool{on.ID(): true}}
	h2 := r.ServeOn(local.isMember, func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchFakeSSH(ctx, local, method, args)
	})
	if _, err := (&mitogen.FakeSSHClient{Caller: handleCaller{r: onR, handle: h2}}).Join(ctx, 1); err == nil {
		t.Fatal("join on a local run accepted")
	}
}
