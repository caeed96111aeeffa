package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
)

func dial(t *testing.T, r *core.Router, hops int) []*core.Context {
	t.Helper()
	ts := func(spec transport.Spec, _ map[string]string) (transport.Transport, error) {
		return &fd.Local{Exe: mitogenBin}, nil
	}
	specs := make([]transport.Spec, hops)
	for i := range specs {
		specs[i] = transport.Spec{Kind: transport.KindLocal}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, r, ts, specs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pidOf asks a context for its own process ID.
func pidOf(t *testing.T, c *core.Context) int {
	t.Helper()
	b, err := c.Agent().ReadFile(context.Background(), "/proc/self/stat", 64)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	return pid
}

func TestSIGKILLedContextFailsPendingCallsAtOnce(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r := core.NewMaster(cfg)
	defer r.Close()
	victim := dial(t, r, 1)[0]
	chain := dial(t, r, 2) // another chain that must carry on
	behind := dial(t, r, 1)[0]

	ctx := context.Background()
	var pending []<-chan error
	for i := 0; i < 5; i++ {
		pending = append(pending, victim.Go(ctx, mitogen.AgentSleepMethod, &mitogen.AgentSleepArgs{Millis: 600000}, &mitogen.AgentSleepResult{}))
	}
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(pidOf(t, victim), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for i, p := range pending {
		select {
		case err := <-p:
			if !errors.Is(err, core.ErrDisconnected) || !strings.Contains(err.Error(), "disconnected") {
				t.Errorf("call %d: %v; want an error saying the context disconnected", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("call %d still pending 10 s after SIGKILL", i)
		}
	}
	t.Logf("all %d pending calls failed %v after SIGKILL", len(pending), time.Since(t0))
	for _, c := range append(chain, behind) {
		if err := c.Agent().Ping(ctx); err != nil {
			t.Fatalf("%s after another context died: %v", c, err)
		}
	}
}

func TestKilledMiddleHopFailsCallsBeyondIt(t *testing.T) {
	r := core.NewMaster(core.DefaultConfig())
	defer r.Close()
	chain := dial(t, r, 3)
	ctx := context.Background()
	p := chain[2].Go(ctx, mitogen.AgentSleepMethod, &mitogen.AgentSleepArgs{Millis: 600000}, &mitogen.AgentSleepResult{})
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(pidOf(t, chain[1]), syscall.SIGKILL)
	select {
	case err := <-p:
		if !errors.Is(err, core.ErrDisconnected) {
			t.Fatalf("call beyond the dead hop: %v", err)
		}
		t.Logf("error: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("call beyond a dead hop still pending after 10 s")
	}
	if err := chain[0].Agent().Ping(ctx); err != nil {
		t.Fatalf("first hop: %v", err)
	}
}
