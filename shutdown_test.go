package mitogen_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// recording starts agents like agent.DefaultTransports and keeps each
// started agent's Conn, whose Wait gives the process's exit status.
type recording struct {
	mu    sync.Mutex
	conns []transport.Conn
}

type recordingTransport struct {
	transport.Transport
	rec *recording
}

func (t recordingTransport) Start(ctx context.Context) (transport.Conn, error) {
	c, err := t.Transport.Start(ctx)
	if err == nil {
		t.rec.mu.Lock()
		t.rec.conns = append(t.rec.conns, c)
		t.rec.mu.Unlock()
	}
	return c, err
}

func (rec *recording) transports(spec transport.Spec, opts map[string]string) (transport.Transport, error) {
	t, err := agent.DefaultTransports(spec, opts)
	if err != nil {
		return nil, err
	}
	return recordingTransport{t, rec}, nil
}

func (rec *recording) last() transport.Conn {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.conns[len(rec.conns)-1]
}

// exitStatus waits (bounded by ctx) for an agent process and returns its
// exit code.
func exitStatus(t *testing.T, ctx context.Context, c transport.Conn) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("waiting for the agent: %v", err)
		}
		return 0
	case <-ctx.Done():
		t.Fatalf("the agent process did not exit: %v", ctx.Err())
		return -1
	}
}

func pingAll(t *testing.T, ctx context.Context, what string, cs ...*core.Context) {
	t.Helper()
	for _, c := range cs {
		if err := c.Agent().Ping(ctx); err != nil {
			t.Fatalf("%s: %s does not answer: %v", what, c, err)
		}
	}
}

func isGone(t *testing.T, ctx context.Context, what string, c *core.Context) {
	t.Helper()
	err := c.Agent().Ping(ctx)
	if !core.IsDead(err) {
		t.Fatalf("%s: %s answered a ping after its shutdown (err %v), want a dead message", what, c, err)
	}
}

// Context.Shutdown ends one context and its subtree, cleanly (its agent
// exits 0, as after SHUTDOWN), while the master's router and every other
// context go on: a leaf first, then the middle of a chain with its child.
func TestContextShutdownLeavesOthers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := core.NewMaster(cfg)
	defer r.Close()
	rec := &recording{}
	d := &agent.Dialer{Transports: rec.transports}
	local := agent.Hop{Spec: transport.Spec{Kind: transport.KindLocal}}

	// master -> a -> c, and master -> b.
	chain, err := d.Dial(ctx, r, []agent.Hop{local, local})
	if err != nil {
		t.Fatal(err)
	}
	a, c := chain[0], chain[1]
	aConn := rec.last()
	bs, err := d.Dial(ctx, r, []agent.Hop{local})
	if err != nil {
		t.Fatal(err)
	}
	b := bs[0]
	bConn := rec.last()
	pingAll(t, ctx, "before", a, b, c)

	// A leaf that is the master's child.
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("shutting down %s: %v", b, err)
	}
	if st := exitStatus(t, ctx, bConn); st != 0 {
		t.Fatalf("%s's agent exited %d after Shutdown, want 0 (SHUTDOWN is the clean end)", b, st)
	}
	isGone(t, ctx, "leaf shut down", b)
	pingAll(t, ctx, "after the leaf's shutdown", a, c)
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("shutting down %s again: %v, want nil (already gone)", b, err)
	}

	// The middle of a chain: its child goes with it.
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutting down %s: %v", a, err)
	}
	if st := exitStatus(t, ctx, aConn); st != 0 {
		t.Fatalf("%s's agent exited %d after Shutdown, want 0", a, st)
	}
	isGone(t, ctx, "middle shut down", a)
	isGone(t, ctx, "child of the middle", c)

	// The router is still up: it starts and reaches a new context.
	select {
	case <-r.Done():
		t.Fatal("the master's router shut down")
	default:
	}
	more, err := d.Dial(ctx, r, []agent.Hop{local, local})
	if err != nil {
		t.Fatalf("dialing after the shutdowns: %v", err)
	}
	pingAll(t, ctx, "new chain", more...)

	// A context deeper in a chain, by its descendant's ID, from the master.
	if err := more[1].Shutdown(ctx); err != nil {
		t.Fatalf("shutting down %s (below %s): %v", more[1], more[0], err)
	}
	isGone(t, ctx, "deep leaf", more[1])
	pingAll(t, ctx, "its parent", more[0])
}

// Shutdown refuses what it cannot do, and a wait is bounded by its ctx.
func TestContextShutdownRefusals(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := core.NewMaster(cfg)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Context(0, "master").Shutdown(ctx); err == nil {
		t.Fatal("Shutdown of the router's own context succeeded")
	}
	if err := r.Context(77, "nobody").Shutdown(ctx); err == nil {
		t.Fatal("Shutdown of a context that is not below the router succeeded")
	}
}
