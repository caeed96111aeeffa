package core

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Version is the agent version reported in Ready.
const Version = "mitogen-go/0.1"

// StartChild makes conn, the byte stream of a freshly started agent, a child
// stream of this router: it sends Boot, waits for Ready (or ctx), adds the
// route and, below the master, announces it upward with ADD_ROUTE.
func (r *Router) StartChild(ctx context.Context, conn io.ReadWriteCloser, id int32, name string) (*Context, *mitogen.Ready, error) {
	if id <= mitogen.MASTER_ID {
		conn.Close()
		return nil, nil, fmt.Errorf("starting context %d (%s): not a valid context ID (are context IDs exhausted?)", id, name)
	}
	rc := r.NewReceiver(WithPolicy(r.replyPolicy(id)), WithQueueLimit(1, 4096))
	defer rc.Close()
	// Boot goes on the stream before the stream is known to the router:
	// nothing routed to id (a DEL_ROUTE broadcast, a peer's message) can
	// come first.
	s := newStream(r, conn, nil, id, name, false)
	parents := append([]int32{r.id}, r.parentIDs...)
	boot := &mitogen.Boot{ContextId: id, ParentId: r.id, ParentIds: parents, Name: name,
		LogLevel: int32(logLevel(r)), MaxFrameSize: int32(r.cfg.MaxFrameSize)}
	s.enqueue(false, wire.Encode(&wire.Message{Dst: id, Src: r.id, Auth: r.id, Handle: mitogen.BOOTSTRAP, ReplyTo: rc.Handle(), Data: marshal(boot)}))
	if err := r.addChildStream(s); err != nil {
		conn.Close()
		return nil, nil, err
	}
	r.watch(id, rc)
	s.start()
	m, err := rc.Get(ctx)
	if err != nil {
		s.close(fmt.Errorf("boot of %s failed: %w", name, err))
		<-s.Done()
		return nil, nil, fmt.Errorf("starting context %d (%s): no Ready: %w", id, name, err)
	}
	var ready mitogen.Ready
	if _, err := ready.FastRead(m.Data); err != nil || ready.ContextId != id {
		s.close(fmt.Errorf("bad Ready from %s", name))
		<-s.Done()
		return nil, nil, fmt.Errorf("starting context %d (%s): malformed Ready (%v)", id, name, err)
	}
	r.mu.Lock()
	parent := r.parent
	r.mu.Unlock()
	if parent != nil {
		r.Send(&wire.Message{Dst: parent.remoteID, Handle: mitogen.ADD_ROUTE, Data: marshal(&mitogen.RouteUpdate{TargetId: id, Name: name})})
	}
	r.log.Debug("child started", "id", id, "name", name, "pid", ready.Pid)
	return r.Context(id, name), &ready, nil
}

func logLevel(r *Router) int {
	for _, l := range []int{-4, 0, 4, 8} {
		if r.cfg.Logger.Enabled(context.Background(), levelOf(l)) {
			return l
		}
	}
	return 8
}

// Boot is the agent side of BOOTSTRAP: it reads the Boot frame from conn,
// builds the router of the context it names, with conn as its parent
// stream, and answers Ready. The router runs until its parent stream ends
// or it is told to SHUTDOWN. setup, when not nil, runs before Ready is
// sent, so that the services it registers are there for the first call.
func Boot(conn io.ReadWriteCloser, cfg Config, setup func(*Router)) (*Router, error) {
	cfg = cfg.withDefaults()
	br := bufio.NewReaderSize(conn, 256<<10)
	m, err := wire.ReadFrame(br, cfg.MaxFrameSize)
	if err != nil {
		return nil, fmt.Errorf("reading Boot: %w", err)
	}
	if m.Handle != mitogen.BOOTSTRAP {
		return nil, fmt.Errorf("first frame is for handle %d, not BOOTSTRAP", m.Handle)
	}
	var b mitogen.Boot
	if _, err := b.FastRead(m.Data); err != nil {
		return nil, fmt.Errorf("malformed Boot: %w", err)
	}
	if len(b.ParentIds) == 0 || b.ParentIds[0] != b.ParentId || m.Src != b.ParentId || m.Dst != b.ContextId {
		return nil, fmt.Errorf("inconsistent Boot: %+v from %d to %d", &b, m.Src, m.Dst)
	}
	if b.MaxFrameSize > 0 && int(b.MaxFrameSize) < cfg.MaxFrameSize {
		cfg.MaxFrameSize = int(b.MaxFrameSize)
	}
	r := newRouter(b.ContextId, slices.Clone(b.ParentIds), cfg)
	// From now on the agent's logs go to the master.
	r.log = slog.New(newForwardHandler(r, slog.Level(b.LogLevel)))
	s := newStream(r, conn, br, b.ParentId, fmt.Sprintf("parent %d", b.ParentId), true)
	r.mu.Lock()
	r.parent = s
	r.mu.Unlock()
	if setup != nil {
		setup(r)
	}
	s.start()
	r.Send(&wire.Message{Dst: b.ParentId, Handle: m.ReplyTo, Data: marshal(&mitogen.Ready{ContextId: b.ContextId, Pid: int32(os.Getpid()), Version: Version})})
	return r, nil
}
