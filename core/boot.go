package core

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Version is the agent version reported in Ready.
const Version = "mitogen-go/0.1"

// StartChild makes conn, the byte stream of a freshly started agent, a child
// stream of this router: it sends Boot, waits for Ready (or ctx), adds the
// route and, below the master, announces it upward with ADD_ROUTE. Below the
// master, id must have been granted to this context (Router.AllocateIDFor at
// the master, or AllocateIDs here).
func (r *Router) StartChild(ctx context.Context, conn io.ReadWriteCloser, id int32, name string, opts ...ChildOption) (*Context, *mitogen.Ready, error) {
	if id <= mitogen.MASTER_ID {
		conn.Close()
		return nil, nil, fmt.Errorf("starting context %d (%s): not a valid context ID (are context IDs exhausted?)", id, name)
	}
	var o childOptions
	for _, f := range opts {
		f(&o)
	}
	s := newStream(r, conn, nil, nil, id, name, false)
	s.leaf = o.leaf
	// Below the master, the new route is announced (ADD_ROUTE) as the
	// child's Ready is delivered, on the stream's own goroutine, so that
	// it goes up before anything the child sends after Ready is forwarded
	// (the master would drop such a frame as forged).
	var announced atomic.Bool
	announce := func(m *wire.Message) {
		var ready mitogen.Ready
		if m.IsDead() || announced.Load() {
			return
		}
		if _, err := ready.FastRead(m.Data); err != nil || ready.ContextId != id || !announced.CompareAndSwap(false, true) {
			return
		}
		r.mu.Lock()
		parent := r.parent
		r.mu.Unlock()
		if parent != nil {
			r.Send(&wire.Message{Dst: parent.remoteID, Handle: mitogen.ADD_ROUTE, Data: marshal(&mitogen.RouteUpdate{TargetId: id, Name: name})})
		}
	}
	rc := r.NewReceiver(WithPolicy(r.replyPolicy(id)), WithQueueLimit(1, 4096), withBeforeQueue(announce))
	defer rc.Close()
	parents := append([]int32{r.id}, r.parentIDs...)
	boot := &mitogen.Boot{ContextId: id, ParentId: r.id, ParentIds: parents, Name: name,
		LogLevel: int32(logLevel(r)), MaxFrameSize: int32(r.cfg.MaxFrameSize)}
	// Boot is queued on the new stream before the router can see the
	// stream, so that nothing the router broadcasts to its children
	// (DEL_ROUTE, SHUTDOWN) can reach the child before it.
	bootFrame := wire.Encode(&wire.Message{Dst: id, Src: r.id, Auth: r.id, Handle: mitogen.BOOTSTRAP, ReplyTo: rc.Handle(), Data: marshal(boot)})
	if err := s.enqueue(false, bootFrame); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("starting context %d (%s): %w", id, name, err)
	}
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
//
// An invalid cfg (see Config.Validate) is an error before anything is read.
func Boot(conn io.ReadWriteCloser, cfg Config, setup func(*Router)) (*Router, error) {
	return BootWith(conn, cfg, func(r *Router) error {
		if setup != nil {
			setup(r)
		}
		return nil
	})
}

// BootWith is Boot with a setup that can fail: when it returns an error,
// the context never tells its parent it is ready (the parent's StartChild
// fails when the stream ends) and BootWith returns that error with the
// connection closed.
func BootWith(conn io.ReadWriteCloser, cfg Config, setup func(*Router) error) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sio := newStreamIO(conn, cfg.ReadSpin)
	br := bufio.NewReaderSize(sio, streamReadBuffer)
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
	if err := checkBoot(&m, &b); err != nil {
		return nil, fmt.Errorf("refusing Boot: %w", err)
	}
	if b.MaxFrameSize > 0 && int(b.MaxFrameSize) < cfg.MaxFrameSize {
		cfg.MaxFrameSize = int(b.MaxFrameSize)
	}
	r := newRouter(b.ContextId, slices.Clone(b.ParentIds), cfg)
	// From now on the agent's logs go to the master.
	r.log = slog.New(newForwardHandler(r, slog.Level(b.LogLevel)))
	s := newStream(r, conn, sio, br, b.ParentId, fmt.Sprintf("parent %d", b.ParentId), true)
	r.mu.Lock()
	r.parent = s
	r.mu.Unlock()
	if setup != nil {
		if err := setup(r); err != nil {
			conn.Close()
			return nil, err
		}
	}
	s.start()
	r.Send(&wire.Message{Dst: b.ParentId, Handle: m.ReplyTo, Data: marshal(&mitogen.Ready{ContextId: b.ContextId, Pid: int32(os.Getpid()), Version: Version})})
	return r, nil
}

// checkBoot applies the rules of BOOTSTRAP (idl/mitogen.thrift) to a Boot
// frame: the IDs it names must describe a possible place in the tree.
func checkBoot(m *wire.Message, b *mitogen.Boot) error {
	switch {
	case m.Dst != b.ContextId:
		return fmt.Errorf("frame is addressed to context %d but Boot.context_id is %d", m.Dst, b.ContextId)
	case m.Src != b.ParentId || m.Auth != b.ParentId:
		return fmt.Errorf("frame comes from context %d (vouched for by %d) but Boot.parent_id is %d", m.Src, m.Auth, b.ParentId)
	case m.ReplyTo == 0 || m.ReplyTo == mitogen.IS_DEAD:
		return fmt.Errorf("frame has reply_to %d: nowhere to send Ready", m.ReplyTo)
	case b.ContextId == mitogen.MASTER_ID:
		return fmt.Errorf("context_id is MASTER_ID (%d): the master is never booted", mitogen.MASTER_ID)
	case b.ContextId == b.ParentId:
		return fmt.Errorf("context_id %d equals parent_id", b.ContextId)
	case len(b.ParentIds) == 0:
		return errors.New("parent_ids is empty")
	case b.ParentIds[0] != b.ParentId:
		return fmt.Errorf("parent_ids %v does not start with parent_id %d", b.ParentIds, b.ParentId)
	case b.ParentIds[len(b.ParentIds)-1] != mitogen.MASTER_ID:
		return fmt.Errorf("parent_ids %v does not end with MASTER_ID (%d)", b.ParentIds, mitogen.MASTER_ID)
	case slices.Contains(b.ParentIds, b.ContextId):
		return fmt.Errorf("context_id %d is among its own parent_ids %v", b.ContextId, b.ParentIds)
	case b.MaxFrameSize < 0:
		return fmt.Errorf("max_frame_size %d is negative", b.MaxFrameSize)
	}
	seen := make(map[int32]bool, len(b.ParentIds))
	for _, p := range b.ParentIds {
		if seen[p] {
			return fmt.Errorf("parent_ids %v holds %d twice", b.ParentIds, p)
		}
		seen[p] = true
	}
	return nil
}
