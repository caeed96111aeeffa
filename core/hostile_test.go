package core_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// hugeCount is the largest container size a binary-protocol header can
// declare.
const hugeCount = 1<<31 - 1

// hugeList returns a struct field of id holding a list header of elemType
// that declares hugeCount elements, followed by a few bytes.
func hugeList(id int16, elemType thrift.TType) []byte {
	b := []byte{byte(thrift.LIST), byte(id >> 8), byte(id), byte(elemType)}
	b = binary.BigEndian.AppendUint32(b, hugeCount)
	return append(b, make([]byte, 8)...)
}

// hugeMap is hugeList for a map<string,string>.
func hugeMap(id int16) []byte {
	b := []byte{byte(thrift.MAP), byte(id >> 8), byte(id), byte(thrift.STRING), byte(thrift.STRING)}
	b = binary.BigEndian.AppendUint32(b, hugeCount)
	return append(b, make([]byte, 8)...)
}

// inStruct wraps a field sequence as struct field id.
func inStruct(id int16, fields []byte) []byte {
	return append([]byte{byte(thrift.STRUCT), byte(id >> 8), byte(id)}, fields...)
}

// callMsg is a CALL message for method with raw argument-struct bytes.
func callMsg(method string, seq int32, args []byte) []byte {
	b := make([]byte, thrift.Binary.MessageBeginLength(method))
	thrift.Binary.WriteMessageBegin(b, method, thrift.CALL, seq)
	return append(b, args...)
}

// rawParent boots an in-process agent whose parent is played by hand, so a
// test can send it frames a real parent would not. It returns the parent's
// end of the stream and the agent's router.
func rawParent(t *testing.T, id int32) (net.Conn, *core.Router) {
	t.Helper()
	a, b := socketpair(t)
	type res struct {
		r   *core.Router
		err error
	}
	ch := make(chan res, 1)
	go func() {
		cfg := core.DefaultConfig()
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		r, err := core.Boot(b, cfg, func(r *core.Router) { (&agent.Service{Router: r}).Serve() })
		ch <- res{r, err}
	}()
	boot := &mitogen.Boot{ContextId: id, ParentId: 0, ParentIds: []int32{0}, Name: "raw-parent", LogLevel: 8, MaxFrameSize: 1 << 20}
	a.Write(wire.Encode(&wire.Message{Dst: id, Handle: mitogen.BOOTSTRAP, ReplyTo: 1000, Data: fastMarshal(boot)}))
	got := <-ch
	if got.err != nil {
		t.Fatalf("Boot: %v", got.err)
	}
	t.Cleanup(func() { got.r.Close(); a.Close() })
	m := readFor(t, a, 1000)
	var ready mitogen.Ready
	if _, err := ready.FastRead(m.Data); err != nil || ready.ContextId != id {
		t.Fatalf("Ready: %v %+v", err, &ready)
	}
	return a, got.r
}

// readFor reads frames from conn until one for handle arrives (the agent
// also sends FORWARD_LOG and the like up its parent stream).
func readFor(t *testing.T, conn net.Conn, handle int32) wire.Message {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for {
		m, err := wire.ReadFrame(conn, 1<<20)
		if err != nil {
			t.Fatalf("waiting for a frame to handle %d: %v", handle, err)
		}
		if m.Handle == handle {
			return m
		}
	}
}

// A child that sends FORWARD_LOG with a LogRecord whose attrs declare
// 2^31-1 elements costs the master nothing: the record is refused as
// malformed, and the master goes on logging and calling.
func TestHostileChildHugeLogAttrs(t *testing.T) {
	m, sink := testMaster(t)
	conn := rawChild(t, m, 7)
	rec := append([]byte{byte(thrift.STRING), 0, 3, 0, 0, 0, 1, 'x'}, hugeList(4, thrift.STRUCT)...)
	for i := 0; i < 3; i++ {
		conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: 7, Auth: 7, Handle: mitogen.FORWARD_LOG, Data: rec}))
	}
	honest := fastMarshal(&mitogen.LogRecord{Level: int32(slog.LevelWarn), Message: "after the hostile records"})
	conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: 7, Auth: 7, Handle: mitogen.FORWARD_LOG, Data: honest}))
	deadline := time.Now().Add(20 * time.Second)
	for !sink.contains("after the hostile records") {
		if time.Now().After(deadline) {
			t.Fatalf("the master stopped taking logs: %v", sink.recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sink.contains("malformed FORWARD_LOG") || !sink.contains("2147483647 elements") {
		t.Errorf("the hostile records were not logged as malformed: %v", sink.recs)
	}
	_, c, _ := startChild(t, m, 1)
	if err := c.Agent().Ping(ctxT(t)); err != nil {
		t.Fatalf("ping after hostile logs: %v", err)
	}
}

// A parent that sends CALL_FUNCTION with arguments declaring 2^31-1
// elements (ProcessSpec.argv, ProcessSpec.env, ConnectRequest.options)
// gets an EXCEPTION reply (PROTOCOL_ERROR), and the agent serves the next
// call.
func TestHostileCallHugeArgs(t *testing.T) {
	conn, _ := rawParent(t, 5)
	cases := []struct {
		method, name string
		args         []byte
	}{
		{mitogen.AgentStartProcessMethod, "argv", inStruct(1, hugeList(1, thrift.STRING))},
		{mitogen.AgentStartProcessMethod, "env", inStruct(1, hugeMap(5))},
		{mitogen.AgentConnectMethod, "options", inStruct(1, hugeMap(4))},
	}
	for i, tc := range cases {
		reply := int32(2000 + i)
		conn.Write(wire.Encode(&wire.Message{Dst: 5, Src: 0, Auth: 0, Handle: mitogen.CALL_FUNCTION, ReplyTo: reply,
			Data: callMsg(tc.method, int32(i+1), tc.args)}))
		m := readFor(t, conn, reply)
		_, typ, seq, n, err := thrift.Binary.ReadMessageBegin(m.Data)
		if err != nil || typ != thrift.EXCEPTION || seq != int32(i+1) {
			t.Fatalf("%s: reply %v type %d seq %d, want an EXCEPTION for seq %d", tc.name, err, typ, seq, i+1)
		}
		ex := thrift.NewApplicationException(0, "")
		if _, err := ex.FastRead(m.Data[n:]); err != nil {
			t.Fatal(err)
		}
		if ex.TypeID() != thrift.PROTOCOL_ERROR || !strings.Contains(ex.Error(), "2147483647 elements") {
			t.Errorf("%s: exception %d %q, want PROTOCOL_ERROR naming the declared size", tc.name, ex.TypeID(), ex.Error())
		}
	}
	// The agent is alive and serves a ping.
	conn.Write(wire.Encode(&wire.Message{Dst: 5, Src: 0, Auth: 0, Handle: mitogen.CALL_FUNCTION, ReplyTo: 3000,
		Data: callMsg(mitogen.AgentPingMethod, 99, []byte{0})}))
	m := readFor(t, conn, 3000)
	if _, typ, seq, _, err := thrift.Binary.ReadMessageBegin(m.Data); err != nil || typ != thrift.REPLY || seq != 99 {
		t.Fatalf("ping after hostile calls: %v type %d seq %d", err, typ, seq)
	}
}

// Found by FuzzRouter: a DEL_ROUTE is believed only from the side the
// context is reached through, only from the neighbor itself (route updates
// travel hop by hop), and never for the receiver or its ancestors. Before,
// a child saying "context 0 is gone" made the master announce its own death
// to every context, which then could not answer it.
func TestDelRouteOnlyFromTheRightNeighbor(t *testing.T) {
	m, _ := testMaster(t)
	c1, _, _ := startChild(t, m, m.AllocateID())
	startChild(t, c1, grantTo(t, m, c1))
	waitRoute(t, m, 2)
	hm := rawChild(t, m, 7)
	del := func(dst, target int32) {
		hm.Write(wire.Encode(&wire.Message{Dst: dst, Src: 7, Auth: 7, Handle: mitogen.DEL_ROUTE,
			Data: fastMarshal(&mitogen.RouteUpdate{TargetId: target, Reason: "forged"})}))
	}
	del(0, 1) // a sibling, routed elsewhere
	del(0, 0) // the master itself
	del(1, 0) // to c1, through the master: not from c1's neighbor
	del(2, 1) // to c2, about its parent
	// The hostile frames are processed in order before this one.
	rc := m.NewReceiver()
	defer rc.Close()
	hm.Write(wire.Encode(&wire.Message{Dst: 0, Src: 7, Auth: 7, Handle: rc.Handle(), Data: []byte("sync")}))
	if _, err := rc.Get(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int32{1, 2} {
		if err := m.Context(id, "").Agent().Ping(ctxT(t)); err != nil {
			t.Fatalf("ping %d after forged DEL_ROUTEs: %v", id, err)
		}
	}

	// A parent may not declare the master (an ancestor) gone either.
	conn, _ := rawParent(t, 5)
	conn.Write(wire.Encode(&wire.Message{Dst: 5, Handle: mitogen.DEL_ROUTE, Data: fastMarshal(&mitogen.RouteUpdate{TargetId: 0})}))
	conn.Write(wire.Encode(&wire.Message{Dst: 5, Handle: mitogen.CALL_FUNCTION, ReplyTo: 3000, Data: callMsg(mitogen.AgentPingMethod, 1, []byte{0})}))
	reply := readFor(t, conn, 3000)
	if _, typ, _, _, err := thrift.Binary.ReadMessageBegin(reply.Data); err != nil || typ != thrift.REPLY {
		t.Fatalf("ping after DEL_ROUTE of the master from the parent: %v type %d dead %v", err, typ, reply.IsDead())
	}
}

// Found by FuzzRouter: ALLOCATE_ID requests of 65536 IDs each used to wrap
// the master's 31-bit ID counter after 32768 of them, handing out negative
// IDs and then IDs already in use (the master's own among them). Now one
// child stream gets at most its quota (see ALLOCATE_ID in the IDL): the
// flood is answered with a dead message, and the counter never wraps (see
// TestIDSpaceNeverWraps for the end of the space itself).
func TestAllocateIDFloodIsRefused(t *testing.T) {
	m, _ := testMaster(t)
	me := m.AllocateID()
	conn := rawChild(t, m, me)
	req := fastMarshal(&mitogen.AllocateIDRequest{Count: 1 << 16})
	var batch []byte
	for i := 0; i < 1<<15; i++ {
		batch = append(batch, wire.Encode(&wire.Message{Dst: 0, Src: me, Auth: me, Handle: mitogen.ALLOCATE_ID, Data: req})...)
	}
	// The last one asks for a reply: the quota is spent by then.
	batch = append(batch, wire.Encode(&wire.Message{Dst: 0, Src: me, Auth: me, Handle: mitogen.ALLOCATE_ID, ReplyTo: 4242, Data: req})...)
	go conn.Write(batch)
	reply := readFor(t, conn, 4242)
	if !reply.IsDead() {
		var rep mitogen.AllocateIDReply
		rep.FastRead(reply.Data)
		t.Fatalf("the master still allocates after 2^31 IDs were asked for: %+v", &rep)
	}
	// The master's own allocation goes on, increasing.
	if a, b := m.AllocateID(), m.AllocateID(); a <= 0 || b != a+1 {
		t.Fatalf("AllocateID after the flood: %d then %d", a, b)
	}
}

// Found by FuzzRouter: a child could claim, with ADD_ROUTE, an ID the master
// had not handed out yet; the context later started with that ID was then
// unreachable (or, worse, its traffic went to the claimant). The master
// takes ADD_ROUTE only for IDs it has allocated.
func TestAddRouteForUnallocatedIDRefused(t *testing.T) {
	m, _ := testMaster(t)
	me := m.AllocateID()
	conn := rawChild(t, m, me)
	future := m.AllocateID() + 3
	rc := m.NewReceiver()
	defer rc.Close()
	conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: me, Auth: me, Handle: mitogen.ADD_ROUTE,
		Data: fastMarshal(&mitogen.RouteUpdate{TargetId: future, Name: "claimed"})}))
	conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: me, Auth: me, Handle: rc.Handle(), Data: []byte("sync")}))
	if _, err := rc.Get(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	for m.AllocateID() < future-1 {
	}
	id := m.AllocateID()
	if id != future {
		t.Fatalf("allocated %d, want %d", id, future)
	}
	_, c, _ := startChild(t, m, id)
	if err := c.Agent().Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// Found by FuzzRouter: a message routed to a new child's ID (a DEL_ROUTE
// broadcast, or a peer's message to that ID) could reach its stream before
// Boot, and the child then refused to boot. Boot is now queued on the
// stream before the stream is known to the router.
func TestNothingBeforeBoot(t *testing.T) {
	m, _ := testMaster(t)
	me := m.AllocateID()
	hm := rawChild(t, m, me)
	// hm floods messages to the ID the next child will have.
	var target atomic.Int32
	target.Store(m.AllocateID())
	stop := make(chan struct{})
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		for {
			select {
			case <-stop:
				return
			default:
			}
			early := wire.Encode(&wire.Message{Dst: target.Load(), Src: me, Auth: me, Handle: 4242, Data: []byte("early")})
			if _, err := hm.Write(bytes.Repeat(early, 64)); err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-flooding }()
	for i := 0; i < 100; i++ {
		a, b := socketpair(t)
		go m.StartChild(ctxT(t), a, target.Load(), "new")
		first, err := wire.ReadFrame(b, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if first.Handle != mitogen.BOOTSTRAP {
			t.Fatalf("try %d: the first frame on a new child stream is %v, not Boot", i, &first)
		}
		b.Close()
		target.Store(m.AllocateID())
	}
}

// A child that sends a well-formed FORWARD_LOG larger than MAX_LOG_RECORD
// has it refused before it is decoded; the master goes on logging.
func TestHostileChildOversizedLog(t *testing.T) {
	m, sink := testMaster(t)
	conn := rawChild(t, m, 7)
	big := fastMarshal(&mitogen.LogRecord{Level: int32(slog.LevelWarn), Message: "oversized " + strings.Repeat("x", mitogen.MAX_LOG_RECORD)})
	conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: 7, Auth: 7, Handle: mitogen.FORWARD_LOG, Data: big}))
	honest := fastMarshal(&mitogen.LogRecord{Level: int32(slog.LevelWarn), Message: "after the oversized record"})
	conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: 7, Auth: 7, Handle: mitogen.FORWARD_LOG, Data: honest}))
	deadline := time.Now().Add(20 * time.Second)
	for !sink.contains("after the oversized record") {
		if time.Now().After(deadline) {
			t.Fatal("the master stopped taking logs")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sink.contains("oversized xxx") {
		t.Error("the master logged a record larger than MAX_LOG_RECORD")
	}
	if !sink.contains("oversized FORWARD_LOG") {
		t.Error("the oversized record was not logged as refused")
	}
}
