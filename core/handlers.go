package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

func marshal(v thrift.FastCodec) []byte { return thrift.FastMarshal(v) }

// installCoreHandlers binds the well-known handles every router serves.
func (r *Router) installCoreHandlers() {
	r.AddHandler(mitogen.CALL_FUNCTION, r.HasParentAuth, r.serveCall)
	r.AddHandler(mitogen.ADD_ROUTE, fromChildNeighbor, r.onAddRoute)
	r.AddHandler(mitogen.DEL_ROUTE, fromNeighbor, r.onDelRoute)
	r.AddHandler(mitogen.SHUTDOWN, r.HasParentAuth, func(*wire.Message, *Stream) {
		r.log.Debug("SHUTDOWN received")
		go r.Shutdown()
	})
	if r.IsMaster() {
		r.AddHandler(mitogen.ALLOCATE_ID, fromChild, r.onAllocateID)
		r.AddHandler(mitogen.FORWARD_LOG, fromChild, r.onForwardLog)
	}
}

// fromChild accepts messages that arrived on a child stream.
func fromChild(_ *wire.Message, in *Stream) bool { return !in.isParent }

// fromNeighbor accepts messages sent (and vouched for) by the context at
// the other end of the stream they arrived on: ADD_ROUTE and DEL_ROUTE
// travel hop by hop, each router re-announcing them as its own, so one
// forwarded from further away (a sibling's, a grandchild's) is forged.
func fromNeighbor(m *wire.Message, in *Stream) bool {
	return m.Src == in.remoteID && m.Auth == in.remoteID
}

func fromChildNeighbor(m *wire.Message, in *Stream) bool {
	return fromChild(m, in) && fromNeighbor(m, in)
}

func (r *Router) onAddRoute(m *wire.Message, in *Stream) {
	var u mitogen.RouteUpdate
	if _, err := u.FastRead(m.Data); err != nil {
		r.log.Error("malformed ADD_ROUTE", "stream", in.name, "err", err)
		return
	}
	r.mu.Lock()
	if r.IsMaster() && (u.TargetId <= 0 || r.nextID > 0 && u.TargetId >= r.nextID) {
		r.mu.Unlock()
		// A context can only have an ID the master handed out: a claim on
		// a future one would capture the context later started with it.
		r.log.Error("refusing ADD_ROUTE for an ID not allocated", "target", u.TargetId, "stream", in.name)
		return
	}
	if old, ok := r.routes[u.TargetId]; ok || u.TargetId == r.id || u.TargetId == mitogen.MASTER_ID {
		r.mu.Unlock()
		existing := "this context or the master"
		if old != nil {
			existing = old.name // not the *Stream: formatting it races with its counters
		}
		r.log.Error("refusing ADD_ROUTE for a context routed elsewhere", "target", u.TargetId, "stream", in.name, "existing", existing)
		return
	}
	delete(r.gone, u.TargetId)
	r.routes[u.TargetId] = in
	parent := r.parent
	r.mu.Unlock()
	r.log.Debug("route added", "target", u.TargetId, "via", in.name)
	if parent != nil {
		r.Send(&wire.Message{Dst: parent.remoteID, Handle: mitogen.ADD_ROUTE, Data: m.Data})
	}
}

func (r *Router) onDelRoute(m *wire.Message, in *Stream) {
	var u mitogen.RouteUpdate
	if _, err := u.FastRead(m.Data); err != nil {
		r.log.Error("malformed DEL_ROUTE", "err", err)
		return
	}
	r.mu.Lock()
	via, routed := r.routes[u.TargetId]
	r.mu.Unlock()
	// Only the side a context is reached through may say it is gone: the
	// child stream it is routed through, or, for a context not routed below
	// this one (the master, ancestors, their other descendants), the parent.
	// Nobody may declare this context itself or one of its ancestors gone:
	// their end is the end of the parent stream.
	if in != nil && (u.TargetId == r.id || slices.Contains(r.parentIDs, u.TargetId) || routed && via != in || !routed && !in.isParent) {
		r.log.Error("ignoring DEL_ROUTE from the wrong stream", "target", u.TargetId, "stream", in.name)
		return
	}
	r.contextGone(u.TargetId, u.Reason, true)
}

// idBlock is the number of IDs ALLOCATE_ID hands out when asked for none in particular.
const idBlock = 32

// AllocateID returns a fresh context ID (master only), or -1 once all 2^31-1
// IDs have been handed out: IDs are never reused.
func (r *Router) AllocateID() int32 {
	first, n := r.allocateIDs(1)
	if n == 0 {
		return -1
	}
	return first
}

// allocateIDs hands out n IDs (idBlock when n is out of range), fewer when
// fewer remain, none (n == 0) when the space is spent.
func (r *Router) allocateIDs(n int32) (int32, int32) {
	if n <= 0 || n > 1<<16 {
		n = idBlock
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	first := r.nextID
	if first <= 0 { // spent: nextID went past MaxInt32 (kept at -1)
		return 0, 0
	}
	if left := math.MaxInt32 - first + 1; int64(n) > int64(left) {
		n = int32(left)
	}
	if int64(first)+int64(n) > math.MaxInt32 {
		r.nextID = -1
	} else {
		r.nextID = first + n
	}
	return first, n
}

func (r *Router) onAllocateID(m *wire.Message, in *Stream) {
	var req mitogen.AllocateIDRequest
	if _, err := req.FastRead(m.Data); err != nil {
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_MALFORMED, Message: err.Error()})
		return
	}
	first, n := r.allocateIDs(req.Count)
	if n == 0 {
		r.log.Error("context IDs exhausted", "asked by", m.Src)
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_OVERFLOW, Message: "the master has handed out every context ID"})
		return
	}
	r.log.Debug("allocated IDs", "to", m.Src, "first", first, "count", n)
	if m.ReplyTo != 0 {
		go r.Send(&wire.Message{Dst: m.Src, Handle: m.ReplyTo, Data: marshal(&mitogen.AllocateIDReply{First: first, Count: n})})
	}
}

// AllocateIDs asks the master for a block of count context IDs; the master
// answers directly. Used by contexts that start children of their own.
func (r *Router) AllocateIDs(ctx context.Context, count int32) (first, n int32, err error) {
	if r.IsMaster() {
		first, n = r.allocateIDs(count)
		if n == 0 {
			return 0, 0, errors.New("allocating context IDs: every ID has been handed out")
		}
		return first, n, nil
	}
	rc := r.NewReceiver(WithPeer(mitogen.MASTER_ID), WithPolicy(r.replyPolicy(mitogen.MASTER_ID)), WithQueueLimit(1, 1024))
	defer rc.Close()
	r.Send(&wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.ALLOCATE_ID, ReplyTo: rc.Handle(), Data: marshal(&mitogen.AllocateIDRequest{Count: count})})
	m, err := rc.Get(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("allocating context IDs: %w", err)
	}
	var rep mitogen.AllocateIDReply
	if _, err := rep.FastRead(m.Data); err != nil {
		return 0, 0, fmt.Errorf("allocating context IDs: malformed reply: %w", err)
	}
	return rep.First, rep.Count, nil
}

func (r *Router) onForwardLog(m *wire.Message, in *Stream) {
	var rec mitogen.LogRecord
	if _, err := rec.FastRead(m.Data); err != nil {
		r.log.Error("malformed FORWARD_LOG", "from", m.Src, "err", err)
		return
	}
	attrs := make([]slog.Attr, 0, len(rec.Attrs)+1)
	attrs = append(attrs, slog.Int("context", int(m.Src)))
	for _, a := range rec.Attrs {
		if a != nil {
			attrs = append(attrs, slog.String(a.Key, a.Value))
		}
	}
	h := r.cfg.Logger.Handler()
	lvl := slog.Level(rec.Level)
	if !h.Enabled(context.Background(), lvl) {
		return
	}
	record := slog.NewRecord(time.Unix(0, rec.TimeUnixNano), lvl, rec.Message, 0)
	record.AddAttrs(attrs...)
	_ = h.Handle(context.Background(), record)
}
