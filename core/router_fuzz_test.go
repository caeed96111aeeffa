package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// FuzzRouter feeds envelopes from hostile peers into live routers and
// checks, after each, that nothing was taken over: no panic, every router
// still answers its parent's ping, no served call came from a context that
// is not the server's parent, memory and goroutines stay bounded.
//
// The world, built once per fuzzing process:
//
//	master(0) ── c1 ── c2          honest agents
//	   │          └── ha           hostile child of a non-master router
//	   └── hm                      hostile child of the master
//	hp(plays 0) ── a ── g          hostile parent of agent a (and of g behind it)
//
// Every agent serves a harmless Agent implementation (no processes, no
// files, no sleeping) that records who called it. Hostile peers that the
// routers cut off, and agents that hp legitimately shuts down, are
// replaced before the next input.
//
// An input is one envelope: which hostile peer sends it (route), its
// dst/src/auth/handle/reply_to (small values pick interesting IDs and
// every well-known handle, others are taken as they are), and its payload:
// one of the valid encodings of every payload type in the IDL (CALLs of
// every Agent method among them) mutated by data, or (route&0x80) data as
// raw bytes on the stream, which the peer then closes.
func FuzzRouter(f *testing.F) {
	w := newFuzzWorld(f)
	f.Cleanup(w.close)
	samples := fuzzSamples()
	for route := uint8(0); route < 3; route++ {
		// Every payload on CALL_FUNCTION, route updates on ADD_ROUTE and
		// DEL_ROUTE, and something on every handle; addressed to the router
		// the peer talks to (dst 1) from the peer itself (src and auth 0),
		// and, mutated, to the next context up or down.
		for kind := range samples {
			f.Add(route, int32(1), int32(0), int32(0), int32(0), int32(2), uint8(kind), []byte(nil))
		}
		for kind := 10; kind <= 14; kind++ {
			f.Add(route, int32(1), int32(0), int32(0), int32(2), int32(0), uint8(kind), []byte(nil))
			f.Add(route, int32(1), int32(0), int32(0), int32(3), int32(0), uint8(kind), []byte(nil))
			f.Add(route, int32(3), int32(0), int32(0), int32(3), int32(0), uint8(kind), []byte{3, 0xff})
		}
		for hi := range fuzzHandles {
			f.Add(route, int32(1), int32(0), int32(0), int32(hi), int32(0), uint8(hi*7), []byte(nil))
			f.Add(route, int32(3), int32(0), int32(0), int32(hi), int32(1), uint8(hi*5), []byte{3, 0xff})
		}
	}
	f.Add(uint8(0x80), int32(1), int32(0), int32(0), int32(0), int32(0), uint8(0), []byte{0, 0, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, route uint8, dst, src, auth, handle, replyTo int32, kind uint8, data []byte) {
		w.tb = t // what the world rebuilds during this input reports here
		p := w.peers[int(route&0x7f)%len(w.peers)]
		if route&0x80 != 0 {
			// Raw bytes may leave a frame unfinished, which keeps that
			// stream waiting for the rest (bounded: see wire.ReadFrame);
			// end it so the router must clean up after a broken stream.
			p.conn.Write(data)
			p.conn.Close()
		} else {
			m := &wire.Message{
				Dst:     w.pickID(p, dst),
				Src:     w.pickID(p, src),
				Auth:    w.pickID(p, auth),
				Handle:  pick(handle, fuzzHandles),
				ReplyTo: pick(replyTo, fuzzReplyTos),
				Data:    mutate(samples[int(kind)%len(samples)], data),
			}
			p.conn.Write(wire.Encode(m))
		}
		w.check(t, p)
	})
}

// fuzzHandles are the handles small handle values pick: every well-known
// one and a few dynamic ones.
var fuzzHandles = []int32{mitogen.CALL_FUNCTION, mitogen.FORWARD_LOG, mitogen.ADD_ROUTE, mitogen.DEL_ROUTE,
	mitogen.ALLOCATE_ID, mitogen.SHUTDOWN, mitogen.BOOTSTRAP, mitogen.IS_DEAD, 0,
	mitogen.FIRST_DYNAMIC_HANDLE, mitogen.FIRST_DYNAMIC_HANDLE + 1, mitogen.FIRST_DYNAMIC_HANDLE + 2,
	mitogen.FIRST_DYNAMIC_HANDLE + 3, mitogen.FIRST_DYNAMIC_HANDLE + 5, mitogen.FIRST_DYNAMIC_HANDLE + 8}

var fuzzReplyTos = []int32{0, mitogen.IS_DEAD, mitogen.FIRST_DYNAMIC_HANDLE, mitogen.FIRST_DYNAMIC_HANDLE + 1, 9000}

// pick maps v in [0, 64) to an entry of table and leaves other values as
// they are.
func pick(v int32, table []int32) int32 {
	if v >= 0 && v < 64 {
		return table[int(v)%len(table)]
	}
	return v
}

// mutate XORs data[1:] into a copy of sample from offset data[0] on,
// appending what goes past its end.
func mutate(sample, data []byte) []byte {
	out := slices.Clone(sample)
	if len(data) == 0 {
		return out
	}
	off := int(data[0])
	for i, b := range data[1:] {
		j := off + i
		if len(out) == 0 || j >= len(out)+len(data) {
			out = append(out, b)
			continue
		}
		if j < len(out) {
			out[j] ^= b
		} else {
			out = append(out, b)
		}
	}
	return out
}

// fuzzSamples returns valid encodings of every payload type of the IDL:
// CALL messages of every Agent method and of FakeSSH.start_slave, REPLY and
// EXCEPTION messages, every struct, and empty.
func fuzzSamples() [][]byte {
	call := func(method string, args thrift.FastCodec) []byte {
		return callMsg(method, 1, thrift.FastMarshal(args))
	}
	spec := &mitogen.ProcessSpec{Argv: []string{"true"}, Command: "true", Env: map[string]string{"A": "b"}, Dir: "/", Origin: "fuzz"}
	se := &mitogen.StreamEnd{ContextId: 1, Handle: 1000, Window: 1 << 40}
	out := [][]byte{
		call(mitogen.AgentPingMethod, &mitogen.AgentPingArgs{}),
		call(mitogen.AgentEchoMethod, &mitogen.AgentEchoArgs{Data: []byte("echo")}),
		call(mitogen.AgentConnectMethod, &mitogen.AgentConnectArgs{Req: &mitogen.ConnectRequest{ContextId: 9, Spec: "local", Name: "n", Options: map[string]string{"k": "v"}}}),
		call(mitogen.AgentStartProcessMethod, &mitogen.AgentStartProcessArgs{Spec: spec}),
		call(mitogen.AgentSleepMethod, &mitogen.AgentSleepArgs{Millis: 1 << 40}),
		call(mitogen.AgentReadFileMethod, &mitogen.AgentReadFileArgs{Path: "/etc/passwd", Max: 1 << 40}),
		call(mitogen.FakeSSHStartSlaveMethod, &mitogen.FakeSSHStartSlaveArgs{Req: &mitogen.StartSlaveRequest{Host: "h", Spec: spec}}),
		callMsg("Agent:nope", 1, []byte{0}),
		callMsg("nocolon", 1, []byte{0}),
		thrift.FastMarshal(&mitogen.LogRecord{Level: 8, Message: "m", Attrs: []*mitogen.LogAttr{{Key: "k", Value: "v"}}}),
		thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: 0, Name: "master", Reason: "fuzz"}),
		thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: 1, Name: "c1"}),
		thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: 2, Name: "c2"}),
		thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: 6, Name: "g"}),
		thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: 12345, Name: "new"}),
		thrift.FastMarshal(&mitogen.AllocateIDRequest{Count: 1 << 16}),
		thrift.FastMarshal(&mitogen.AllocateIDRequest{Count: 1}),
		thrift.FastMarshal(&mitogen.Dead{Reason: mitogen.DeadReason_DISCONNECTED, Message: "x", ContextId: 1}),
		thrift.FastMarshal(&mitogen.Boot{ContextId: 1, ParentId: 0, ParentIds: []int32{0}, Name: "b", MaxFrameSize: 1 << 20}),
		thrift.FastMarshal(&mitogen.Ready{ContextId: 1, Pid: 1, Version: "v"}),
		thrift.FastMarshal(&mitogen.Credit{Bytes: 1 << 30}),
		thrift.FastMarshal(se),
		thrift.FastMarshal(&mitogen.Control{Kind: mitogen.ControlKind_START, Stdout: se, Stderr: se, StdinCredit: se, ControlHandle: 1001}),
		thrift.FastMarshal(&mitogen.ProcessStarted{ControlHandle: 1000, Stdin: se, Pid: 1}),
		thrift.FastMarshal(&mitogen.Envelope{DstId: 1, Handle: 101, Data: []byte{1}}),
		nil,
	}
	reply := func(name string, typ thrift.TMessageType, body thrift.FastCodec) []byte {
		b := make([]byte, thrift.Binary.MessageBeginLength(name))
		thrift.Binary.WriteMessageBegin(b, name, typ, 1)
		return append(b, thrift.FastMarshal(body)...)
	}
	out = append(out,
		reply("ping", thrift.REPLY, &mitogen.AgentPingResult{}),
		reply("ping", thrift.EXCEPTION, thrift.NewApplicationException(thrift.INTERNAL_ERROR, "x")))
	return out
}

// fuzzAgent is a harmless Agent that records calls from contexts that are
// not parents of (or the same as) the context serving them.
type fuzzAgent struct {
	r *core.Router
	w *fuzzWorld
}

func (a *fuzzAgent) check(ctx context.Context, method string) {
	caller, ok := core.CallerID(ctx)
	if !ok || caller != a.r.ID() && !slices.Contains(a.r.ParentIDs(), caller) {
		a.w.violation(fmt.Errorf("context %d served %s for context %d, which is not its parent", a.r.ID(), method, caller))
	}
}

func (a *fuzzAgent) Ping(ctx context.Context) error { a.check(ctx, "ping"); return nil }
func (a *fuzzAgent) Echo(ctx context.Context, d []byte) ([]byte, error) {
	a.check(ctx, "echo")
	return d, nil
}
func (a *fuzzAgent) Connect(ctx context.Context, _ *mitogen.ConnectRequest) (*mitogen.ConnectReply, error) {
	a.check(ctx, "connect")
	return nil, &mitogen.CallError{Message: "not in the fuzzer"}
}
func (a *fuzzAgent) StartProcess(ctx context.Context, _ *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	a.check(ctx, "start_process")
	return nil, &mitogen.CallError{Message: "not in the fuzzer"}
}
func (a *fuzzAgent) StartFakessh(ctx context.Context, _ *mitogen.FakeSSHProgram) (*mitogen.ProcessStarted, error) {
	a.check(ctx, "start_fakessh")
	return nil, &mitogen.CallError{Message: "not in the fuzzer"}
}
func (a *fuzzAgent) Sleep(ctx context.Context, _ int64) error { a.check(ctx, "sleep"); return nil }
func (a *fuzzAgent) ReadFile(ctx context.Context, _ string, _ int64) ([]byte, error) {
	a.check(ctx, "read_file")
	return nil, &mitogen.CallError{Message: "not in the fuzzer"}
}
func (a *fuzzAgent) DialTcp(ctx context.Context, _ *mitogen.DialRequest) (*mitogen.DialReply, error) {
	a.check(ctx, "dial_tcp")
	return nil, &mitogen.CallError{Message: "not in the fuzzer"}
}
func (a *fuzzAgent) ListenTcp(ctx context.Context, _ *mitogen.ListenRequest) (*mitogen.ListenReply, error) {
	a.check(ctx, "listen_tcp")
	return nil, &mitogen.CallError{Message: "not in the fuzzer"}
}

func serveFuzzAgent(w *fuzzWorld) func(*core.Router) {
	return func(r *core.Router) {
		a := &fuzzAgent{r: r, w: w}
		r.Serve("Agent", func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
			return mitogen.DispatchAgent(ctx, a, method, args)
		})
	}
}

// logRing is an io.Writer keeping the last few hundred lines written.
type logRing struct {
	mu    sync.Mutex
	lines [][]byte
}

func (r *logRing) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.lines = append(r.lines, slices.Clone(b))
	if len(r.lines) > 400 {
		r.lines = r.lines[len(r.lines)-300:]
	}
	r.mu.Unlock()
	return len(b), nil
}

func (r *logRing) tail(n int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Join(r.lines[max(0, len(r.lines)-n):], nil)
}

// fuzzLogRing keeps the routers' last log lines, for failure messages.
var fuzzLogRing logRing

// rawPeer is a hostile peer's end of a stream.
type rawPeer struct {
	name   string
	conn   net.Conn
	id     int32        // the ID the peer speaks as
	router *core.Router // the router it talks to
	closed chan struct{}
	frames chan wire.Message // for a hostile parent: what the agent sends up
}

func (p *rawPeer) read() {
	defer close(p.closed)
	for {
		m, err := wire.ReadFrame(p.conn, 1<<24)
		if err != nil {
			return
		}
		if p.frames != nil && m.Handle >= 9000 {
			select {
			case p.frames <- m:
			default:
			}
		}
	}
}

type fuzzWorld struct {
	tb     testing.TB
	cfg    core.Config
	m      *core.Router
	c1, c2 *core.Router
	a, g   *core.Router
	peers  []*rawPeer // hm, ha, hp
	seq    int32

	mu   sync.Mutex
	errs []error
	conn []io.Closer
}

const (
	fuzzA = 5
	fuzzG = 6
	// fuzzWait bounds each wait of an input's checks; the fuzzing engine
	// takes an input running for 10 s in all as a hang.
	fuzzWait = 3 * time.Second
)

func newFuzzWorld(tb testing.TB) *fuzzWorld {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&fuzzLogRing, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := &fuzzWorld{tb: tb, cfg: cfg}
	w.build()
	return w
}

// build makes the world's routers and peers.
func (w *fuzzWorld) build() {
	w.m = core.NewMaster(w.cfg)
	serveFuzzAgent(w)(w.m)
	w.c1 = w.bootAgent(w.m, w.m.AllocateID())
	w.c2 = w.bootAgent(w.c1, w.idFor(w.c1))
	w.peers = []*rawPeer{w.rawChildOf(w.m, "hm"), w.rawChildOf(w.c1, "ha"), nil}
	w.a, w.g = nil, nil
	w.newHostileParent()
	w.waitPing(w.m, w.c2.ID())
}

// idFor allocates an ID for a child of parent: the master's own, or one
// granted to parent's subtree (GRANT_IDS), waiting until parent holds it.
func (w *fuzzWorld) idFor(parent *core.Router) int32 {
	w.tb.Helper()
	if parent == w.m {
		return w.m.AllocateID()
	}
	id, err := w.m.AllocateIDFor(parent.ID())
	if err != nil {
		return -1
	}
	deadline := time.Now().Add(fuzzWait)
	for !parent.HoldsID(id) {
		if time.Now().After(deadline) {
			w.tb.Fatalf("context %d never heard it was granted ID %d", parent.ID(), id)
		}
		time.Sleep(time.Millisecond)
	}
	return id
}

// rebuild replaces the whole world with a new one.
func (w *fuzzWorld) rebuild() {
	w.close()
	w.mu.Lock()
	w.conn = nil
	w.mu.Unlock()
	w.build()
}

func (w *fuzzWorld) violation(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

func (w *fuzzWorld) close() {
	// Streams first, so that no router waits for a child to answer SHUTDOWN.
	w.mu.Lock()
	for _, c := range w.conn {
		c.Close()
	}
	w.mu.Unlock()
	for _, r := range []*core.Router{w.m, w.c1, w.c2, w.a, w.g} {
		if r != nil {
			r.Close()
		}
	}
}

func (w *fuzzWorld) track(c io.Closer) {
	w.mu.Lock()
	w.conn = append(w.conn, c)
	w.mu.Unlock()
}

// bootAgent starts an in-process fuzz agent with id as a child of parent.
func (w *fuzzWorld) bootAgent(parent *core.Router, id int32) *core.Router {
	w.tb.Helper()
	a, b := socketpair(w.tb)
	w.track(a)
	w.track(b)
	ch := make(chan *core.Router, 1)
	go func() {
		r, err := core.Boot(b, w.cfg, serveFuzzAgent(w))
		if err != nil {
			b.Close()
		}
		ch <- r
	}()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
	defer cancel()
	if _, _, err := parent.StartChild(ctx, a, id, fmt.Sprintf("agent %d", id)); err != nil {
		w.tb.Fatalf("starting agent %d under %d: %v", id, parent.ID(), err)
	}
	return <-ch
}

// rawChildOf makes a hostile child of parent with a fresh ID.
func (w *fuzzWorld) rawChildOf(parent *core.Router, name string) *rawPeer {
	w.tb.Helper()
	id := w.idFor(parent)
	if id < 0 {
		w.tb.Fatalf("%s: context IDs exhausted (check handles that)", name)
	}
	a, b := socketpair(w.tb)
	w.track(a)
	w.track(b)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
		defer cancel()
		_, _, err := parent.StartChild(ctx, a, id, name)
		done <- err
	}()
	b.SetReadDeadline(time.Now().Add(fuzzWait))
	boot, err := wire.ReadFrame(b, 1<<20)
	b.SetReadDeadline(time.Time{})
	if err != nil {
		w.tb.Fatalf("%s: reading Boot: %v", name, err)
	}
	b.Write(wire.Encode(&wire.Message{Dst: parent.ID(), Src: id, Auth: id, Handle: boot.ReplyTo, Data: thrift.FastMarshal(&mitogen.Ready{ContextId: id})}))
	if err := <-done; err != nil {
		w.tb.Fatalf("%s: %v\nlast router logs:\n%s", name, err, fuzzLogRing.tail(30))
	}
	p := &rawPeer{name: name, conn: b, id: id, router: parent, closed: make(chan struct{})}
	go p.read()
	if parent != w.m {
		w.waitPing(w.m, parent.ID()) // and the ADD_ROUTE for id has passed parent
	}
	return p
}

// newHostileParent (re)builds hp, a and g.
func (w *fuzzWorld) newHostileParent() {
	w.tb.Helper()
	if w.a != nil {
		w.a.Close()
		w.g.Close()
	}
	a, b := socketpair(w.tb)
	w.track(a)
	w.track(b)
	ch := make(chan *core.Router, 1)
	go func() {
		r, err := core.Boot(b, w.cfg, serveFuzzAgent(w))
		if err != nil {
			b.Close()
		}
		ch <- r
	}()
	boot := &mitogen.Boot{ContextId: fuzzA, ParentId: 0, ParentIds: []int32{0}, Name: "a", LogLevel: 8, MaxFrameSize: 1 << 20}
	a.Write(wire.Encode(&wire.Message{Dst: fuzzA, Handle: mitogen.BOOTSTRAP, ReplyTo: 9000, Data: thrift.FastMarshal(boot)}))
	w.a = <-ch
	if w.a == nil {
		w.tb.Fatal("agent a did not boot")
	}
	p := &rawPeer{name: "hp", conn: a, id: 0, router: w.a, closed: make(chan struct{}), frames: make(chan wire.Message, 64)}
	go p.read()
	w.peers[2] = p
	// The (hostile) parent grants a the ID of its child g, as a master would.
	a.Write(wire.Encode(&wire.Message{Dst: fuzzA, Handle: mitogen.GRANT_IDS,
		Data: thrift.FastMarshal(&mitogen.IDGrant{First: fuzzG, Count: 1, HolderId: fuzzA})}))
	deadline := time.Now().Add(fuzzWait)
	for !w.a.HoldsID(fuzzG) {
		if time.Now().After(deadline) {
			w.tb.Fatal("agent a never took the grant of its child's ID")
		}
		time.Sleep(time.Millisecond)
	}
	w.g = w.bootAgent(w.a, fuzzG)
}

// pickID maps small values to the IDs of the world, seen from peer p.
func (w *fuzzWorld) pickID(p *rawPeer, v int32) int32 {
	return pick(v, []int32{p.id, p.router.ID(), 0, w.c1.ID(), w.c2.ID(), w.peers[0].id, w.peers[1].id, fuzzA, fuzzG, 1 << 30})
}

// waitPing pings id from r until it answers: for set-up only.
func (w *fuzzWorld) waitPing(r *core.Router, id int32) {
	w.tb.Helper()
	var err error
	for deadline := time.Now().Add(fuzzWait); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
		err = r.Context(id, "").Agent().Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.tb.Fatalf("context %d does not answer %d: %v", id, r.ID(), err)
}

// sync waits until the router p talks to has routed everything p sent
// before, or p's stream ended.
func (w *fuzzWorld) sync(t *testing.T, p *rawPeer) (alive bool) {
	rc := p.router.NewReceiver()
	defer rc.Close()
	w.seq++
	marker := []byte(fmt.Sprintf("marker %d", w.seq))
	src := p.id
	p.conn.Write(wire.Encode(&wire.Message{Dst: p.router.ID(), Src: src, Auth: src, Handle: rc.Handle(), Data: marker}))
	ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
	defer cancel()
	go func() {
		select {
		case <-p.closed:
			cancel()
		case <-p.router.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		m, err := rc.Get(ctx)
		if err != nil && ctx.Err() != nil {
			select {
			case <-p.closed:
				return false
			case <-p.router.Done():
				return false
			default:
			}
			t.Fatalf("%s: the router stopped reading its stream: %v", p.name, err)
		}
		if err == nil && bytes.Equal(m.Data, marker) {
			return true
		}
	}
}

// parentPing makes hp call Agent.ping on id (a or g) and waits for the reply.
func (w *fuzzWorld) parentPing(id int32) error {
	p := w.peers[2]
	w.seq++
	// A handle no input names (fuzzReplyTos and small values stay below
	// it), after dropping what earlier inputs left in p.frames.
	h := 1<<30 + w.seq%(1<<20)
	for len(p.frames) > 0 {
		<-p.frames
	}
	p.conn.Write(wire.Encode(&wire.Message{Dst: id, Src: 0, Auth: 0, Handle: mitogen.CALL_FUNCTION, ReplyTo: h,
		Data: callMsg(mitogen.AgentPingMethod, w.seq, []byte{0})}))
	timeout := time.After(fuzzWait)
	for {
		select {
		case m := <-p.frames:
			if m.Handle != h {
				continue
			}
			name, typ, seq, _, err := thrift.Binary.ReadMessageBegin(m.Data)
			if m.IsDead() {
				var d mitogen.Dead
				d.FastRead(m.Data)
				return fmt.Errorf("ping of %d from its hostile parent: dead message %v", id, &d)
			}
			if err != nil || typ != thrift.REPLY || seq != w.seq || name != "ping" {
				return fmt.Errorf("ping of %d from its hostile parent: reply %q type %d seq %d (%v)", id, name, typ, seq, err)
			}
			return nil
		case <-p.closed:
			return fmt.Errorf("agent %d cut its parent stream", id)
		case <-timeout:
			return fmt.Errorf("agent %d does not answer ping from its parent", id)
		}
	}
}

// check runs the invariants after an input from p, replacing what the
// input legitimately ended.
func (w *fuzzWorld) check(t *testing.T, p *rawPeer) {
	alive := w.sync(t, p)
	if p == w.peers[2] {
		err := errors.New("stream ended")
		if alive {
			if err = w.parentPing(fuzzA); err == nil {
				err = w.parentPing(fuzzG)
			}
		}
		if err != nil {
			// hp may shut a or g down (it is their parent), or send what
			// ends the stream; anything else that stops them answering is
			// a bug.
			select {
			case <-w.a.Done():
			case <-w.g.Done():
			case <-p.closed:
			case <-time.After(fuzzWait):
				t.Fatal(err)
			}
			w.newHostileParent()
		}
	} else if !alive {
		if w.m.AllocateID() < 0 {
			// Hostile ALLOCATE_IDs have spent the master's IDs (it now
			// refuses more, as it must): start a new world.
			w.rebuild()
			return
		}
		if p == w.peers[0] {
			w.peers[0] = w.rawChildOf(w.m, "hm")
		} else {
			if _, err := w.m.AllocateIDFor(w.c1.ID()); err != nil {
				// Hostile ALLOCATE_IDs from c1's subtree have spent the
				// quota of c1's stream (IDL: ALLOCATE_ID): start a new world.
				w.rebuild()
				return
			}
			w.peers[1] = w.rawChildOf(w.c1, "ha")
		}
	}
	for _, id := range []int32{w.c1.ID(), w.c2.ID()} {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
		err := w.m.Context(id, "").Agent().Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("master's ping of %d after an input from %s: %v", id, p.name, err)
		}
	}
	for _, r := range []*core.Router{w.m, w.c1, w.c2} {
		select {
		case <-r.Done():
			t.Fatalf("context %d shut down after an input from %s", r.ID(), p.name)
		default:
		}
	}
	w.mu.Lock()
	errs := w.errs
	w.errs = nil
	w.mu.Unlock()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 512<<20 {
		t.Fatalf("heap grew to %d MiB", ms.HeapAlloc>>20)
	}
	if n := runtime.NumGoroutine(); n > 5000 {
		t.Fatalf("%d goroutines", n)
	}
}
