package core_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// hostile is a child context played by hand, so that it can send any frame.
type hostile struct {
	t      *testing.T
	id     int32
	parent int32
	conn   net.Conn
	in     chan wire.Message // frames it received (dead messages and replies); extra ones dropped
}

// rawChildOf admits a hand-played child of parent with the given ID.
func rawChildOf(t *testing.T, parent *core.Router, id int32, opts ...core.ChildOption) *hostile {
	t.Helper()
	h := bootRaw(t, parent, id, opts...)
	b := h.conn
	// Read whatever the tree sends it (DEL_ROUTE announcements...), so
	// its stream never backs up; keep replies for the test.
	go func() {
		for {
			m, err := wire.ReadFrame(b, 1<<30)
			if err != nil {
				return
			}
			if m.Handle >= mitogen.FIRST_DYNAMIC_HANDLE {
				select {
				case h.in <- m:
				default:
				}
			}
		}
	}()
	return h
}

// bootRaw admits a hand-played child of parent that reads nothing after
// its Boot unless the caller does.
func bootRaw(t *testing.T, parent *core.Router, id int32, opts ...core.ChildOption) *hostile {
	t.Helper()
	a, b := socketpair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := parent.StartChild(ctxT(t), a, id, "hostile", opts...)
		done <- err
	}()
	boot, err := wire.ReadFrame(b, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var bt mitogen.Boot
	if _, err := bt.FastRead(boot.Data); err != nil || bt.ContextId != id {
		t.Fatalf("boot: %v %+v", err, &bt)
	}
	ready := mitogen.Ready{ContextId: id}
	b.Write(wire.Encode(&wire.Message{Dst: parent.ID(), Src: id, Auth: id, Handle: boot.ReplyTo, Data: fastMarshal(&ready)}))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &hostile{t: t, id: id, parent: parent.ID(), conn: b, in: make(chan wire.Message, 64)}
}

func (h *hostile) send(m *wire.Message) {
	h.t.Helper()
	m.Src, m.Auth = h.id, h.id
	if _, err := h.conn.Write(wire.Encode(m)); err != nil {
		h.t.Fatalf("hostile write: %v", err)
	}
}

func (h *hostile) route(dst, handle, target int32) {
	h.send(&wire.Message{Dst: dst, Handle: handle, Data: fastMarshal(&mitogen.RouteUpdate{TargetId: target, Name: "evil", Reason: "forged"})})
}

// barrier sends an honest message to the master through the same hops as
// the attack before it: when it arrives, every hop has handled the attack.
func (h *hostile) barrier(m *core.Router) {
	h.t.Helper()
	rc := m.NewReceiver()
	defer rc.Close()
	h.send(&wire.Message{Dst: mitogen.MASTER_ID, Handle: rc.Handle(), Data: []byte("barrier")})
	msg, err := rc.Get(ctxT(h.t))
	if err != nil || string(msg.Data) != "barrier" {
		h.t.Fatalf("barrier from hostile %d: %v", h.id, err)
	}
}

// reply waits for a frame to the hostile's handle h.
func (h *hostile) reply(handle int32) wire.Message {
	h.t.Helper()
	for {
		select {
		case m := <-h.in:
			if m.Handle == handle {
				return m
			}
		case <-time.After(20 * time.Second):
			h.t.Fatalf("hostile %d: no answer on handle %d", h.id, handle)
		}
	}
}

func pingWithin(c *core.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Agent().Ping(ctx)
}

// A hostile child, directly below the master (as a fakessh context is) or
// deeper, cannot change how anybody else is routed: DEL_ROUTE for the
// master, its own ancestors or a sibling, ADD_ROUTE for IDs never granted
// to it, for a sibling or for the master are refused and logged, and every
// other context, including one started afterwards, stays reachable.
func TestHostileChildCannotReroute(t *testing.T) {
	for _, deep := range []bool{false, true} {
		name := "child-of-master"
		if deep {
			name = "grandchild"
		}
		t.Run(name, func(t *testing.T) {
			m, sink := testMaster(t)
			a, _, _ := startChild(t, m, m.AllocateID())  // 1
			_, cb, _ := startChild(t, m, m.AllocateID()) // 2: a sibling subtree
			var x *hostile
			if deep {
				x = rawChildOf(t, a, grantTo(t, m, a))
			} else {
				x = rawChildOf(t, m, m.AllocateID())
			}
			x.barrier(m)
			check := func(what string) {
				t.Helper()
				x.barrier(m)
				for _, id := range []int32{a.ID(), cb.ID()} {
					if err := pingWithin(m.Context(id, ""), 10*time.Second); err != nil {
						t.Fatalf("after %s: master cannot reach %d: %v", what, id, err)
					}
				}
				// a still routes cb upward (to the master, which refuses
				// sibling calls): not to the hostile, not nowhere.
				if err := pingWithin(a.Context(cb.ID(), ""), 10*time.Second); !errors.Is(err, core.ErrRefused) {
					t.Fatalf("after %s: a's call to its sibling %d: got %v, want refused by it", what, cb.ID(), err)
				}
			}
			// Where the hostile sends: its parent, and the master beyond.
			dsts := []int32{x.parent}
			if deep {
				dsts = append(dsts, mitogen.MASTER_ID)
			}
			next := m.AllocateID() + 1 // IDs the master will allocate next
			ofA := grantTo(t, m, a)    // granted to a itself, not yet used
			for _, dst := range dsts {
				// It cannot grant itself IDs either.
				x.send(&wire.Message{Dst: dst, Handle: mitogen.GRANT_IDS, Data: fastMarshal(&mitogen.IDGrant{First: next, Count: 10, HolderId: x.id})})
				check("GRANT_IDS to " + itoa(dst))
				for _, tgt := range []int32{mitogen.MASTER_ID, a.ID(), cb.ID(), 9999} {
					x.route(dst, mitogen.DEL_ROUTE, tgt)
					check("DEL_ROUTE " + itoa(tgt) + " to " + itoa(dst))
				}
				for _, tgt := range []int32{mitogen.MASTER_ID, a.ID(), cb.ID(), ofA, next, next + 1, next + 2, 9999} {
					x.route(dst, mitogen.ADD_ROUTE, tgt)
					check("ADD_ROUTE " + itoa(tgt) + " to " + itoa(dst))
				}
			}
			// The next context started (the next ssh of a fakessh run) works.
			_, fresh, _ := startChild(t, m, m.AllocateID())
			if err := pingWithin(fresh, 10*time.Second); err != nil {
				t.Fatalf("fresh child: %v", err)
			}
			if deep {
				_, _, _ = startChild(t, a, ofA)
				waitRoute(t, m, ofA)
			}
			if !sink.contains("refusing") || !sink.contains("hostile") {
				t.Errorf("refusals not logged with the stream's name: %q", sink.recs)
			}
		})
	}
}

// A leaf child (a fakessh ssh) may not touch routing at all: ADD_ROUTE,
// DEL_ROUTE and ALLOCATE_ID from it are refused wherever they are
// addressed, and the master will not grant IDs behind it.
func TestLeafChildMayNotRouteOrAllocate(t *testing.T) {
	m, sink := testMaster(t)
	_, c1, _ := startChild(t, m, m.AllocateID())
	leaf := rawChildOf(t, m, m.AllocateID(), core.Leaf())
	next := m.AllocateID() + 1
	// Even an ADD_ROUTE for an ID the master might have granted: a leaf
	// has nothing behind it.
	leaf.route(mitogen.MASTER_ID, mitogen.ADD_ROUTE, next)
	leaf.route(mitogen.MASTER_ID, mitogen.DEL_ROUTE, c1.ID())
	leaf.route(c1.ID(), mitogen.DEL_ROUTE, c1.ID()) // addressed elsewhere: still refused here
	leaf.send(&wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.ALLOCATE_ID, ReplyTo: 1000, Data: fastMarshal(&mitogen.AllocateIDRequest{Count: 5})})
	r := leaf.reply(1000)
	var dead mitogen.Dead
	if _, err := dead.FastRead(r.Data); err != nil || r.ReplyTo != mitogen.IS_DEAD || dead.Reason != mitogen.DeadReason_REFUSED {
		t.Fatalf("ALLOCATE_ID from a leaf: got %v %+v, want Dead{REFUSED}", r.String(), &dead)
	}
	leaf.barrier(m)
	if err := pingWithin(c1, 10*time.Second); err != nil {
		t.Fatalf("sibling of the leaf unreachable: %v", err)
	}
	if _, err := m.AllocateIDFor(leaf.id); err == nil {
		t.Fatal("the master granted an ID behind a leaf")
	}
	_, fresh, _ := startChild(t, m, m.AllocateID())
	if fresh.ID() != next {
		t.Fatalf("fresh child got %d, want %d", fresh.ID(), next)
	}
	if err := pingWithin(fresh, 10*time.Second); err != nil {
		t.Fatalf("fresh child after a leaf's ADD_ROUTE for its ID: %v", err)
	}
	if !sink.contains("leaf") || !sink.contains("stream=hostile") {
		t.Errorf("leaf refusals not logged with the stream: %q", sink.recs)
	}
}

// IDs asked for with ALLOCATE_ID are granted to the asker's subtree: the
// asker starts children with them (their routes are accepted on the way
// up), a sibling subtree cannot claim them, and one subtree cannot take
// more than its bound of IDs.
func TestAllocatedIDsBelongToTheAskersSubtree(t *testing.T) {
	m, _ := testMaster(t)
	a, _, _ := startChild(t, m, m.AllocateID())
	b, _, _ := startChild(t, a, grantTo(t, m, a))
	waitRoute(t, m, b.ID())
	first, n, err := b.AllocateIDs(ctxT(t), 4)
	if err != nil || n != 4 {
		t.Fatalf("AllocateIDs = %d, %d, %v", first, n, err)
	}
	for i := int32(0); i < n; i++ {
		if !b.HoldsID(first + i) {
			t.Fatalf("context %d does not hold ID %d after ALLOCATE_ID's reply", b.ID(), first+i)
		}
	}
	gc, _, _ := startChild(t, b, first)
	waitRoute(t, m, gc.ID())
	// a itself was not granted b's IDs: it may not start a child with one.
	x, y := socketpair(t)
	defer y.Close()
	if _, _, err := a.StartChild(ctxT(t), x, first+1, "thief"); err == nil || !strings.Contains(err.Error(), "grant") {
		t.Fatalf("a started a child with an ID granted to b: %v", err)
	}
	// A sibling subtree claiming b's next ID is refused at the master.
	s := rawChildOf(t, m, m.AllocateID())
	s.route(mitogen.MASTER_ID, mitogen.ADD_ROUTE, first+1)
	s.barrier(m)
	g2, _, _ := startChild(t, b, first+1)
	waitRoute(t, m, g2.ID())

	// Bounded: 2^20 IDs per child stream of the master.
	for i := 0; ; i++ {
		s.send(&wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.ALLOCATE_ID, ReplyTo: 2000, Data: fastMarshal(&mitogen.AllocateIDRequest{Count: 1 << 16})})
		r := s.reply(2000)
		if r.ReplyTo == mitogen.IS_DEAD {
			if i != 16 {
				t.Fatalf("ALLOCATE_ID refused after %d blocks of 65536, want 16", i)
			}
			break
		}
		if i > 16 {
			t.Fatal("ALLOCATE_ID is unbounded")
		}
	}
}

// A frame on the parent stream may not claim the receiving context's own
// ID as src_id or auth_id.
func TestParentStreamMayNotClaimReceiversID(t *testing.T) {
	a, b := socketpair(t)
	got := make(chan *core.Receiver, 1)
	booted := make(chan *core.Router, 1)
	go func() {
		cfg := core.DefaultConfig()
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		r, err := core.Boot(b, cfg, func(r *core.Router) { got <- r.NewReceiver() })
		if err != nil {
			t.Error(err)
		}
		booted <- r
	}()
	const self, parent = 5, 0
	a.Write(wire.Encode(&wire.Message{Dst: self, Src: parent, Auth: parent, Handle: mitogen.BOOTSTRAP, ReplyTo: 1000,
		Data: fastMarshal(&mitogen.Boot{ContextId: self, ParentId: parent, ParentIds: []int32{parent}, Name: "t"})}))
	if _, err := wire.ReadFrame(a, 1<<20); err != nil {
		t.Fatalf("no Ready: %v", err)
	}
	rc := <-got
	r := <-booted
	defer r.Close()
	send := func(src, auth int32, body string) {
		a.Write(wire.Encode(&wire.Message{Dst: self, Src: src, Auth: auth, Handle: rc.Handle(), Data: []byte(body)}))
	}
	send(self, parent, "forged src")
	send(parent, self, "forged auth")
	send(self, self, "forged both")
	send(parent, parent, "honest")
	msg, err := rc.Get(ctxT(t))
	if err != nil || string(msg.Data) != "honest" {
		t.Fatalf("first delivered: %q, %v; want the honest one", msg.Data, err)
	}
	if _, ok := rc.TryGet(); ok {
		t.Fatal("a forged message got through")
	}
}

func itoa(i int32) string {
	if i < 0 {
		return "-" + itoa(-i)
	}
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// grantTo has the master allocate an ID for holder to start a child with,
// and waits until holder has heard of the grant.
func grantTo(t *testing.T, m, holder *core.Router) int32 {
	t.Helper()
	if holder != m {
		waitRoute(t, m, holder.ID())
	}
	id, err := m.AllocateIDFor(holder.ID())
	if err != nil {
		t.Fatalf("AllocateIDFor(%d): %v", holder.ID(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !holder.HoldsID(id) {
		if time.Now().After(deadline) {
			t.Fatalf("context %d never heard it was granted ID %d", holder.ID(), id)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return id
}

// A context sending to its own ADD_ROUTE, ALLOCATE_ID or GRANT_IDS (local
// delivery: no stream, no policy) is refused, neither crashing the
// handler, which acts on the stream a message came in on, nor changing
// any state.
func TestLocalSendToStreamOnlyHandleRefused(t *testing.T) {
	m, _ := testMaster(t)
	a, _, _ := startChild(t, m, m.AllocateID())
	for _, r := range []*core.Router{m, a} {
		for _, c := range []struct {
			handle int32
			body   []byte
		}{
			{mitogen.ADD_ROUTE, fastMarshal(&mitogen.RouteUpdate{TargetId: 4242})},
			{mitogen.ALLOCATE_ID, fastMarshal(&mitogen.AllocateIDRequest{Count: 1})},
			{mitogen.GRANT_IDS, fastMarshal(&mitogen.IDGrant{First: 5000, Count: 10, HolderId: r.ID()})},
		} {
			rc := r.NewReceiver()
			r.Send(&wire.Message{Dst: r.ID(), Handle: c.handle, ReplyTo: rc.Handle(), Data: c.body})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := rc.Get(ctx)
			cancel()
			want := mitogen.DeadReason_REFUSED
			if c.handle == mitogen.ALLOCATE_ID && r != m {
				want = mitogen.DeadReason_UNKNOWN_HANDLE // served by the master only
			}
			var de *core.DeadError
			if !errors.As(err, &de) || de.Reason != want {
				t.Fatalf("context %d sending to its own handle %d: %v, want Dead{REFUSED}", r.ID(), c.handle, err)
			}
			rc.Close()
		}
		if r.HoldsID(5000) {
			t.Fatalf("context %d granted itself IDs", r.ID())
		}
	}
	if err := pingWithin(m.Context(a.ID(), ""), 10*time.Second); err != nil {
		t.Fatalf("the tree broke: %v", err)
	}
}
