package core

import (
	"context"
	"fmt"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Shutdown ends one context below this router, and with it the contexts
// it started, without ending anything else: it sends the context SHUTDOWN
// (idl: SHUTDOWN, the clean end: its agent exits with status 0) and waits
// until its route is gone, that is until its stream has ended or a
// DEL_ROUTE for it has arrived. It returns nil then, or at once if the
// context is already known to be gone.
//
// The wait is bounded by ctx only: a context that does not obey keeps its
// route until ctx ends, and Shutdown returns ctx's error (the caller may
// then close the stream or shut the router down). The context must be
// below this router (a child or a descendant): SHUTDOWN is accepted only
// from a context's ancestors. Shutting down this router's own context is
// Router.Shutdown.
func (c *Context) Shutdown(ctx context.Context) error {
	r := c.r
	r.mu.Lock()
	_, gone := r.gone[c.id]
	_, routed := r.routes[c.id]
	reserved := r.reservedLocked(c.id)
	closing := r.closing
	r.mu.Unlock()
	switch {
	case reserved:
		return fmt.Errorf("shutting down %s: it is this context or one of its ancestors (use Router.Shutdown)", c)
	case gone:
		return nil
	case closing:
		return fmt.Errorf("shutting down %s: %w", c, ErrShutdown)
	case !routed:
		return fmt.Errorf("shutting down %s: it is not below context %d", c, r.id)
	}
	// The watch is in place before SHUTDOWN leaves, so the route's end
	// cannot be missed. The receiver accepts no message: it only waits.
	rc := r.NewReceiver(WithPeer(c.id), WithQueueLimit(1, 1),
		WithPolicy(func(*wire.Message, *Stream) bool { return false }))
	defer rc.Close()
	r.Send(&wire.Message{Dst: c.id, Handle: mitogen.SHUTDOWN})
	routedNow := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.routes[c.id]
		return ok
	}
	for routedNow() {
		if _, err := rc.Get(ctx); err != nil && routedNow() {
			return fmt.Errorf("shutting down %s: %w", c, err)
		}
	}
	return nil
}
