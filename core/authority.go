package core

import (
	"fmt"
	"slices"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Route authority (ROUTE AUTHORITY, ADD_ROUTE, DEL_ROUTE, ALLOCATE_ID and
// GRANT_IDS in idl/mitogen.thrift): a child stream may only speak for the
// IDs granted to the subtree behind it. The master records every block it
// grants per child stream and sends GRANT_IDS down, hop by hop, so every
// router on the way records its share and can check ADD_ROUTE itself.

// Limits on what one child stream (or a context itself) may be granted.
const (
	maxGrantBlocks = 4096
	maxGrantIDs    = 1 << 20
	maxGrantCount  = 1 << 16 // IDs in one block
)

// idBlock is the IDs first .. first+count-1.
type idBlock struct{ first, count int32 }

func (b idBlock) contains(id int32) bool {
	return id >= b.first && int64(id) < int64(b.first)+int64(b.count)
}

// grantSet is the blocks granted to one stream's subtree.
type grantSet struct {
	blocks []idBlock
	total  int64
}

// ChildOption changes how StartChild admits a child.
type ChildOption func(*childOptions)

type childOptions struct{ leaf bool }

// Leaf admits the child as a leaf: a context that may have no children of
// its own (a fakessh `ssh`). Nothing but the leaf itself is ever routed
// through its stream, and it may not send ADD_ROUTE, DEL_ROUTE,
// ALLOCATE_ID or GRANT_IDS: those are refused wherever they are addressed.
func Leaf() ChildOption { return func(o *childOptions) { o.leaf = true } }

// IsLeaf reports whether the stream leads to a child admitted with Leaf.
func (s *Stream) IsLeaf() bool { return s.leaf }

// isRouteHandle reports whether h is one of the handles that change routing
// state, which a leaf may not send.
func isRouteHandle(h int32) bool {
	switch h {
	case mitogen.ADD_ROUTE, mitogen.DEL_ROUTE, mitogen.ALLOCATE_ID, mitogen.GRANT_IDS:
		return true
	}
	return false
}

// reservedLocked reports whether id is this context, one of its ancestors
// or the master: IDs no route update may ever concern.
func (r *Router) reservedLocked(id int32) bool {
	return id == r.id || id == mitogen.MASTER_ID || slices.Contains(r.parentIDs, id)
}

// grantedLocked reports whether id lies in a block granted to s's subtree
// (s nil: to this context itself).
func (r *Router) grantedLocked(s *Stream, id int32) bool {
	g := r.grants[s]
	if g == nil {
		return false
	}
	for _, b := range g.blocks {
		if b.contains(id) {
			return true
		}
	}
	return false
}

// checkBlock says what is wrong with a block offered as a grant ("" for
// nothing).
func (r *Router) checkBlockLocked(b idBlock) string {
	if b.count < 1 || b.count > maxGrantCount {
		return fmt.Sprintf("count %d is not in 1..%d", b.count, maxGrantCount)
	}
	if b.first <= 0 || int64(b.first)+int64(b.count)-1 > int64(^uint32(0)>>1) {
		return fmt.Sprintf("block %d+%d is not within 1..2^31-1", b.first, b.count)
	}
	if b.contains(r.id) {
		return fmt.Sprintf("block %d+%d holds this context's own ID", b.first, b.count)
	}
	for _, p := range r.parentIDs {
		if b.contains(p) {
			return fmt.Sprintf("block %d+%d holds ancestor %d", b.first, b.count, p)
		}
	}
	return ""
}

// addGrantLocked records b as granted to s (nil: this context), within the
// per-stream bounds; it says why not when it cannot.
func (r *Router) addGrantLocked(s *Stream, b idBlock) string {
	g := r.grants[s]
	if g == nil {
		g = &grantSet{}
		r.grants[s] = g
	}
	if g.total+int64(b.count) > maxGrantIDs {
		return fmt.Sprintf("the subtree already holds %d IDs (at most %d)", g.total, maxGrantIDs)
	}
	if n := len(g.blocks); n > 0 {
		if last := &g.blocks[n-1]; int64(last.first)+int64(last.count) == int64(b.first) && int64(last.count)+int64(b.count) <= maxGrantIDs {
			last.count += b.count
			g.total += int64(b.count)
			return ""
		}
	}
	if len(g.blocks) >= maxGrantBlocks {
		return fmt.Sprintf("the subtree already holds %d blocks of IDs (at most %d)", len(g.blocks), maxGrantBlocks)
	}
	g.blocks = append(g.blocks, b)
	g.total += int64(b.count)
	return ""
}

// grantIDsLocked allocates n fresh IDs (the master's job) and grants them to s.
func (r *Router) grantIDsLocked(s *Stream, n int32) (idBlock, error) {
	if n <= 0 || n > maxGrantCount {
		n = defaultIDBlock
	}
	if r.nextID <= 0 || int64(r.nextID)+int64(n)-1 > int64(^uint32(0)>>1) {
		return idBlock{}, fmt.Errorf("context IDs exhausted")
	}
	b := idBlock{first: r.nextID, count: n}
	if why := r.addGrantLocked(s, b); why != "" {
		return idBlock{}, fmt.Errorf("no more IDs for %s: %s", s.name, why)
	}
	r.nextID += n
	return b, nil
}

// AllocateIDFor allocates a fresh context ID for holder to start a child
// with (master only): it is granted to holder's subtree, and GRANT_IDS tells
// every router between the master and holder before any message the caller
// sends holder afterwards (such as Agent.connect) arrives there. For holder
// the master itself it is AllocateID.
func (r *Router) AllocateIDFor(holder int32) (int32, error) {
	if !r.IsMaster() {
		return 0, fmt.Errorf("context %d is not the master: only the master allocates IDs", r.id)
	}
	if holder == r.id {
		return r.AllocateID(), nil
	}
	r.mu.Lock()
	s := r.routes[holder]
	if s == nil {
		r.mu.Unlock()
		return 0, fmt.Errorf("allocating an ID for context %d: no route to it", holder)
	}
	if s.leaf {
		r.mu.Unlock()
		return 0, fmt.Errorf("allocating an ID for context %d: it is behind leaf %s, which may have no children", holder, s.name)
	}
	b, err := r.grantIDsLocked(s, 1)
	r.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("allocating an ID for context %d: %w", holder, err)
	}
	r.Send(&wire.Message{Dst: s.remoteID, Handle: mitogen.GRANT_IDS, Data: marshal(&mitogen.IDGrant{First: b.first, Count: b.count, HolderId: holder})})
	return b.first, nil
}

// fromParent accepts messages sent by the parent itself on the parent stream.
func fromParent(m *wire.Message, in *Stream) bool {
	return in.isParent && m.Src == in.remoteID && m.Auth == in.remoteID
}

func (r *Router) onGrantIDs(m *wire.Message, in *Stream) {
	var g mitogen.IDGrant
	if _, err := g.FastRead(m.Data); err != nil {
		r.log.Error("refusing malformed GRANT_IDS", "stream", in.name, "err", err)
		return
	}
	b := idBlock{first: g.First, count: g.Count}
	var next *Stream
	r.mu.Lock()
	why := r.checkBlockLocked(b)
	if why == "" {
		if g.HolderId == r.id {
			why = r.addGrantLocked(nil, b)
		} else if s := r.routes[g.HolderId]; s == nil {
			why = fmt.Sprintf("holder %d is not routed through a child", g.HolderId)
		} else if s.leaf {
			why = fmt.Sprintf("holder %d is behind leaf %s", g.HolderId, s.name)
		} else if why = r.addGrantLocked(s, b); why == "" {
			next = s
		}
	}
	r.mu.Unlock()
	if why != "" {
		r.log.Error("refusing GRANT_IDS", "stream", in.name, "first", g.First, "count", g.Count, "holder", g.HolderId, "why", why)
		return
	}
	if next != nil {
		r.Send(&wire.Message{Dst: next.remoteID, Handle: mitogen.GRANT_IDS, Data: m.Data})
	}
}
