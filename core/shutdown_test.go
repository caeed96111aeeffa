package core_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Context.Shutdown of an in-process child: the child's router ends
// cleanly (Err nil: it was told to SHUTDOWN), the master's stays up and
// its other child keeps answering.
func TestContextShutdownInProcess(t *testing.T) {
	m, _ := testMaster(t)
	r1, c1, _ := startChild(t, m, 1)
	_, c2, _ := startChild(t, m, 2)
	if err := c1.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r1.Done():
	case <-ctxT(t).Done():
		t.Fatal("the child's router did not stop")
	}
	if err := r1.Err(); err != nil {
		t.Fatalf("child's end: %v, want a clean end", err)
	}
	if err := c2.Agent().Ping(ctxT(t)); err != nil {
		t.Fatalf("the other child: %v", err)
	}
	if err := c1.Agent().Ping(ctxT(t)); !core.IsDead(err) {
		t.Fatalf("ping of the shut down child: %v, want dead", err)
	}
}

// A context that ignores SHUTDOWN keeps its route: Shutdown returns when
// its ctx ends, with ctx's error, and succeeds once the stream is gone.
func TestContextShutdownBoundedByCtx(t *testing.T) {
	m, _ := testMaster(t)
	r1, c1, conn := startChild(t, m, 1)
	asked := make(chan struct{}, 1)
	r1.AddHandler(mitogen.SHUTDOWN, nil, func(*wire.Message, *core.Stream) {
		select {
		case asked <- struct{}{}:
		default:
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c1.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown of a disobedient context: %v, want the deadline", err)
	}
	select {
	case <-asked:
	case <-ctxT(t).Done():
		t.Fatal("SHUTDOWN never reached the child")
	}
	if err := c1.Agent().Ping(ctxT(t)); err != nil {
		t.Fatalf("the disobedient child lost its route: %v", err)
	}
	conn.Close()
	if err := c1.Shutdown(ctxT(t)); err != nil {
		t.Fatalf("Shutdown after the stream ended: %v", err)
	}
}
