package core_test

import (
	"context"
	"errors"
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
}

// rawChildOf admits a hand-played child of parent with the given ID.
func rawChildOf(t *testing.T, parent *core.Router, id int32, opts ...core.ChildOption) *hostile {
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
	// Drain whatever the tree sends it (DEL_ROUTE announcements...), so
	// its stream never backs up.
	go func() {
		for {
			if _, err := wire.ReadFrame(b, 1<<30); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { b.Close() })
	return &hostile{t: t, id: id, parent: parent.ID(), conn: b}
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
			for _, dst := range dsts {
				for _, tgt := range []int32{mitogen.MASTER_ID, a.ID(), cb.ID(), 9999} {
					x.route(dst, mitogen.DEL_ROUTE, tgt)
					check("DEL_ROUTE " + itoa(tgt) + " to " + itoa(dst))
				}
				for _, tgt := range []int32{mitogen.MASTER_ID, a.ID(), cb.ID(), next, next + 1, next + 2, 9999} {
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
				_, _, _ = startChild(t, a, grantTo(t, m, a))
			}
			if !sink.contains("refusing") || !sink.contains("hostile") {
				t.Errorf("refusals not logged with the stream's name: %q", sink.recs)
			}
		})
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

var _ = strings.Contains

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
