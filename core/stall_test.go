package core_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
)

// flood has from send 1 MiB messages to dst until stop is closed or a
// write fails.
func flood(h *hostile, dst int32, stop <-chan struct{}) {
	data := make([]byte, 1<<20)
	for {
		select {
		case <-stop:
			return
		default:
		}
		m := &wire.Message{Dst: dst, Handle: 1000, Src: h.id, Auth: h.id, Data: data}
		if _, err := h.conn.Write(wire.Encode(m)); err != nil {
			return
		}
	}
}

// waitQueueFull waits until the master's queue towards dst holds more than
// half its bound (the flood's next message then has to wait), or until
// dst's stream is gone (-1: the leaf rule cut it already).
func waitQueueFull(t *testing.T, m *core.Router, dst int32) {
	t.Helper()
	ctx := ctxT(t)
	for {
		q := m.QueuedFor(dst)
		if q < 0 || q > m.Config().StreamQueueBytes/2 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the queue towards %d never filled (%d bytes)", dst, q)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A child that stops reading cannot stall its parent: traffic forwarded to
// it fills its queue, the parent's reader of the sending stream waits, and
// after StreamStallTimeout without progress the silent child is cut and
// the sender's traffic flows again. Before the watchdog, the sender's
// barrier never arrived.
func TestChildThatStopsReadingIsCut(t *testing.T) {
	sink := &logSink{}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(sink)
	cfg.StreamStallTimeout = time.Second
	m := core.NewMaster(cfg)
	t.Cleanup(func() { m.Close() })

	silent := bootRaw(t, m, m.AllocateID()) // never reads
	sender := rawChildOf(t, m, m.AllocateID())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); flood(sender, silent.id, stop) }()
	defer func() { close(stop); <-done }()

	// The flood fills the socket buffers and the master's 16 MiB queue for
	// the silent child; then only the watchdog can let this through.
	waitQueueFull(t, m, silent.id)
	sender.barrier(m)
	var gone *core.DeadError
	if err := m.Context(silent.id, "").Agent().Ping(ctxT(t)); !errors.As(err, &gone) {
		t.Fatalf("ping of the cut child: %v, want a dead-message error", err)
	}
	if !sink.contains("stopped reading") {
		t.Errorf("the cut was not logged: %q", sink.recs)
	}
}

// A leaf child (fakessh's) whose queue overflows is cut at once: the
// parent never waits for a leaf.
func TestLeafThatStopsReadingIsCutAtOnce(t *testing.T) {
	sink := &logSink{}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(sink)
	cfg.StreamStallTimeout = time.Hour // only the leaf rule can end the wait
	m := core.NewMaster(cfg)
	t.Cleanup(func() { m.Close() })

	leaf := bootRaw(t, m, m.AllocateID(), core.Leaf())
	sender := rawChildOf(t, m, m.AllocateID())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); flood(sender, leaf.id, stop) }()
	defer func() { close(stop); <-done }()
	ctx := ctxT(t)
	for m.QueuedFor(leaf.id) >= 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("the leaf was never cut (%d bytes queued towards it)", m.QueuedFor(leaf.id))
		case <-time.After(10 * time.Millisecond):
		}
	}
	sender.barrier(m)
	if !sink.contains("leaf context's queue full") {
		t.Errorf("the leaf's cut was not logged: %q", sink.recs)
	}
}

// Closing a router whose child stopped reading (its queue filling) returns
// within the grace: each SHUTDOWN is sent in the background, so one that
// has to wait for room cannot hold up Close, and the grace cuts the child.
func TestCloseWithChildThatStopsReading(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(&logSink{})
	cfg.StreamStallTimeout = time.Hour // only the grace can end it
	cfg.ShutdownGrace = 200 * time.Millisecond
	m := core.NewMaster(cfg)
	silent := bootRaw(t, m, m.AllocateID())
	sender := rawChildOf(t, m, m.AllocateID())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); flood(sender, silent.id, stop) }()
	defer func() { close(stop); <-done }()
	waitQueueFull(t, m, silent.id)
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctxT(t).Done():
		t.Fatal("Close did not return with a child that stopped reading")
	}
}
