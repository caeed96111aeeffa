package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

func marshal(v thrift.FastCodec) []byte { return thrift.FastMarshal(v) }

// installCoreHandlers binds the well-known handles every router serves.
func (r *Router) installCoreHandlers() {
	r.AddHandler(mitogen.CALL_FUNCTION, r.HasParentAuth, r.serveCall)
	r.addStreamHandler(mitogen.ADD_ROUTE, fromChildNeighbor, r.onAddRoute)
	r.AddHandler(mitogen.DEL_ROUTE, fromNeighbor, r.onDelRoute)
	r.addStreamHandler(mitogen.GRANT_IDS, fromParent, r.onGrantIDs)
	r.AddHandler(mitogen.SHUTDOWN, r.HasParentAuth, func(*wire.Message, *Stream) {
		r.log.Debug("SHUTDOWN received")
		// Recorded before the next frame is read: a parent that closes
		// the stream right after SHUTDOWN has ended it cleanly.
		r.mu.Lock()
		r.stopAsked = true
		r.mu.Unlock()
		go r.Shutdown()
	})
	if r.IsMaster() {
		r.addStreamHandler(mitogen.ALLOCATE_ID, fromChild, r.onAllocateID)
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

// onAddRoute applies the rules of ADD_ROUTE (idl/mitogen.thrift).
func (r *Router) onAddRoute(m *wire.Message, in *Stream) {
	var u mitogen.RouteUpdate
	if _, err := u.FastRead(m.Data); err != nil {
		r.log.Error("refusing malformed ADD_ROUTE", "stream", in.name, "err", err)
		return
	}
	t := u.TargetId
	r.mu.Lock()
	var why string
	switch old, routed := r.routes[t]; {
	case in.isParent || in.leaf:
		why = "not from a child that may have children"
	case r.reservedLocked(t):
		why = "the target is this context, an ancestor or the master"
	case routed:
		why = "the target is already routed via " + old.name
	case !r.grantedLocked(in, t):
		why = "the target's ID was not granted to this stream's subtree"
	default:
		delete(r.gone, t)
		r.routes[t] = in
	}
	parent := r.parent
	r.mu.Unlock()
	if why != "" {
		r.log.Error("refusing ADD_ROUTE", "stream", in.name, "target", t, "why", why)
		return
	}
	r.log.Debug("route added", "target", t, "via", in.name)
	if parent != nil {
		r.Send(&wire.Message{Dst: parent.remoteID, Handle: mitogen.ADD_ROUTE, Data: m.Data})
	}
}

// onDelRoute applies the rules of DEL_ROUTE (idl/mitogen.thrift).
func (r *Router) onDelRoute(m *wire.Message, in *Stream) {
	var u mitogen.RouteUpdate
	if _, err := u.FastRead(m.Data); err != nil {
		r.log.Error("refusing malformed DEL_ROUTE", "stream", streamName(in), "err", err)
		return
	}
	t := u.TargetId
	// Checked and applied in one step, so no route added meanwhile is lost.
	why := r.contextGoneIf(t, u.Reason, in, true, func() string {
		via, routed := r.routes[t]
		switch {
		case r.reservedLocked(t):
			return "the target is this context, an ancestor or the master"
		case in == nil:
		case in.isParent:
			if routed {
				return "the target is routed via child " + via.name
			}
		case in.leaf:
			return "a leaf has nothing behind it"
		case t == in.remoteID:
			return "a context's own end is its stream ending"
		case !routed || via != in:
			return "the target is not routed via this stream"
		}
		return ""
	})
	if why != "" {
		r.log.Error("refusing DEL_ROUTE", "stream", streamName(in), "target", t, "why", why)
	}
}

func streamName(s *Stream) string {
	if s == nil {
		return "local"
	}
	return s.name
}

// defaultIDBlock is the number of IDs ALLOCATE_ID hands out when asked for none in particular.
const defaultIDBlock = 32

// AllocateID returns a fresh context ID for a child of the master itself
// (master only), or -1 once every ID has been handed out (IDs are never
// reused). For a child started by another context, see AllocateIDFor.
func (r *Router) AllocateID() int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextID
	if id <= 0 || id == math.MaxInt32 { // spent: IDs are never reused
		r.nextID = -1
		return -1
	}
	r.nextID++
	return id
}

// onAllocateID serves ALLOCATE_ID (master only): the block goes to the
// child stream the request came on; GRANT_IDS then the reply follow it down.
func (r *Router) onAllocateID(m *wire.Message, in *Stream) {
	var req mitogen.AllocateIDRequest
	if _, err := req.FastRead(m.Data); err != nil {
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_MALFORMED, Message: err.Error()})
		return
	}
	r.mu.Lock()
	b, err := r.grantIDsLocked(in, req.Count)
	r.mu.Unlock()
	if err != nil {
		r.log.Error("refusing ALLOCATE_ID", "stream", in.name, "from", m.Src, "err", err)
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_REFUSED, Message: fmt.Sprintf("allocating IDs for context %d: %v", m.Src, err)})
		return
	}
	r.log.Debug("allocated IDs", "to", m.Src, "via", in.name, "first", b.first, "count", b.count)
	grant := &wire.Message{Dst: in.remoteID, Handle: mitogen.GRANT_IDS, Data: marshal(&mitogen.IDGrant{First: b.first, Count: b.count, HolderId: m.Src})}
	var reply *wire.Message
	if m.ReplyTo != 0 {
		reply = &wire.Message{Dst: m.Src, Handle: m.ReplyTo, Data: marshal(&mitogen.AllocateIDReply{First: b.first, Count: b.count})}
	}
	// Not on this stream's reader: the writes go back down the same stream.
	// In this order, so that every hop knows the grant before the reply.
	go func() {
		r.Send(grant)
		if reply != nil {
			r.Send(reply)
		}
	}()
}

// AllocateIDs asks the master for a block of count context IDs; the master
// answers directly. Used by contexts that start children of their own.
func (r *Router) AllocateIDs(ctx context.Context, count int32) (first, n int32, err error) {
	if r.IsMaster() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if count <= 0 || count > maxGrantCount {
			count = defaultIDBlock
		}
		if r.nextID <= 0 || int64(r.nextID)+int64(count)-1 > int64(^uint32(0)>>1) {
			return 0, 0, errors.New("allocating context IDs: exhausted")
		}
		first = r.nextID
		r.nextID += count
		return first, count, nil
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
	if len(m.Data) > mitogen.MAX_LOG_RECORD {
		r.log.Error("oversized FORWARD_LOG refused", "from", m.Src, "bytes", len(m.Data), "limit", mitogen.MAX_LOG_RECORD)
		return
	}
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
