package core_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// logSink collects log records for assertions.
type logSink struct {
	mu   sync.Mutex
	recs []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	var b bytes.Buffer
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logSink) WithAttrs(as []slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler         { return l }
func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if bytes.Contains([]byte(r), []byte(s)) {
			return true
		}
	}
	return false
}

func socketpair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "sp")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

func testMaster(t *testing.T) (*core.Router, *logSink) {
	sink := &logSink{}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(sink)
	r := core.NewMaster(cfg)
	t.Cleanup(func() { r.Close() })
	return r, sink
}

// startChild boots an in-process agent as a child of parent. The child's
// end of the stream is returned so tests can cut it.
func startChild(t *testing.T, parent *core.Router, id int32) (*core.Router, *core.Context, net.Conn) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := parent.StartChild(ctx, a, id, "test")
	if err != nil {
		t.Fatalf("StartChild: %v", err)
	}
	got := <-ch
	if got.err != nil {
		t.Fatalf("Boot: %v", got.err)
	}
	t.Cleanup(func() { got.r.Close() })
	return got.r, c, b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCallAndEcho(t *testing.T) {
	m, _ := testMaster(t)
	_, c, _ := startChild(t, m, 1)
	if err := c.Agent().Ping(ctxT(t)); err != nil {
		t.Fatalf("ping: %v", err)
	}
	data := bytes.Repeat([]byte("x\x00y"), 100000)
	got, err := c.Agent().Echo(ctxT(t), data)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo: %v (len %d)", err, len(got))
	}
}

func TestChainRoutesThroughMiddleHops(t *testing.T) {
	m, _ := testMaster(t)
	a, ca, _ := startChild(t, m, m.AllocateID())
	b, _, _ := startChild(t, a, grantTo(t, m, a))
	_, _, _ = startChild(t, b, grantTo(t, m, b))
	waitRoute(t, m, 3)
	// The master reaches 2 and 3 only through 1.
	for _, id := range []int32{1, 2, 3} {
		if err := m.Context(id, "").Agent().Ping(ctxT(t)); err != nil {
			t.Fatalf("ping %d: %v", id, err)
		}
	}
	// A call to a context nobody knows comes back as NO_ROUTE from the top.
	err := m.Context(42, "").Agent().Ping(ctxT(t))
	if !errors.Is(err, core.ErrNoRoute) {
		t.Fatalf("ping 42: got %v, want no route", err)
	}
	_ = ca
}

func TestChildMayNotCallParent(t *testing.T) {
	m, sink := testMaster(t)
	(&agent.Service{Router: m}).Serve()
	child, _, _ := startChild(t, m, m.AllocateID())
	err := child.Context(mitogen.MASTER_ID, "master").Agent().Ping(ctxT(t))
	if !errors.Is(err, core.ErrRefused) {
		t.Fatalf("child's CALL_FUNCTION to master: got %v, want refused", err)
	}
	if !sink.contains("refused") {
		t.Errorf("refusal not logged: %v", sink.recs)
	}
	// A grandchild may not call its parent either.
	gc, _, _ := startChild(t, child, grantTo(t, m, child))
	if err := gc.Context(1, "").Agent().Ping(ctxT(t)); !errors.Is(err, core.ErrRefused) {
		t.Fatalf("grandchild to parent: got %v, want refused", err)
	}
	// But the master may call the grandchild.
	waitRoute(t, m, 2)
	if err := m.Context(2, "").Agent().Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// rawChild plays a child context by hand so it can send forged frames.
func rawChild(t *testing.T, m *core.Router, id int32) net.Conn {
	t.Helper()
	a, b := socketpair(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := m.StartChild(ctxT(t), a, id, "raw")
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
	b.Write(wire.Encode(&wire.Message{Dst: 0, Src: id, Auth: id, Handle: boot.ReplyTo, Data: fastMarshal(&ready)}))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestForgedSourceIsDropped(t *testing.T) {
	m, sink := testMaster(t)
	rc := m.NewReceiver()
	defer rc.Close()
	conn := rawChild(t, m, 7)
	send := func(src, auth int32, body string) {
		conn.Write(wire.Encode(&wire.Message{Dst: 0, Src: src, Auth: auth, Handle: rc.Handle(), Data: []byte(body)}))
	}
	send(7, 0, "forged auth: claims the master vouches")
	send(99, 7, "forged src: a context not behind this stream")
	send(0, 0, "forged both")
	send(7, 7, "honest")
	msg, err := rc.Get(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "honest" {
		t.Fatalf("first message delivered is %q; forged messages got through", msg.Data)
	}
	if _, ok := rc.TryGet(); ok {
		t.Fatal("more messages than the honest one")
	}
	if !sink.contains("forged") {
		t.Errorf("forgery not logged")
	}
}

func TestMalformedFrameEndsStreamNamingPeer(t *testing.T) {
	m, sink := testMaster(t)
	conn := rawChild(t, m, 8)
	pending := m.Context(8, "").Go(ctxT(t), mitogen.AgentPingMethod, &mitogen.AgentPingArgs{}, &mitogen.AgentPingResult{})
	// The call is on its way (pending on the stream) before the stream
	// breaks: a call made after the context is gone fails otherwise (no
	// route), which is not what this test is about.
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		f, err := wire.ReadFrame(conn, 1<<20)
		if err != nil {
			t.Fatalf("waiting for the call to reach the child: %v", err)
		}
		if f.Handle == mitogen.CALL_FUNCTION {
			break
		}
	}
	conn.Write([]byte{0, 0, 0, 3, 0x42, 0x42, 0x42})
	err := <-pending
	if !errors.Is(err, core.ErrDisconnected) {
		t.Fatalf("pending call: got %v, want disconnected", err)
	}
	if !sink.contains("raw") {
		t.Errorf("log does not name the stream: %v", sink.recs)
	}
}

func TestKilledContextFailsEveryWaiter(t *testing.T) {
	m, _ := testMaster(t)
	child, c, conn := startChild(t, m, m.AllocateID())
	grandchild, _, _ := startChild(t, child, grantTo(t, m, child))
	waitRoute(t, m, 2)
	// Calls pending on the child and on the grandchild behind it.
	var pend []<-chan error
	for _, id := range []int32{1, 1, 2} {
		pend = append(pend, m.Context(id, "").Go(ctxT(t), mitogen.AgentSleepMethod, &mitogen.AgentSleepArgs{Millis: 60000}, &mitogen.AgentSleepResult{}))
	}
	// A plain receiver that has heard from the child.
	rc := m.NewReceiver()
	defer rc.Close()
	child.Send(&wire.Message{Dst: 0, Handle: rc.Handle(), Data: []byte("hi")})
	if _, err := rc.Get(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// The calls are being served (a call made after the stream died would
	// fail with no route instead).
	for wait := time.Now().Add(time.Minute); child.ServingCalls() < 2 || grandchild.ServingCalls() < 1; time.Sleep(time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatalf("calls served after a minute: %d by the child, %d by the grandchild; want 2 and 1", child.ServingCalls(), grandchild.ServingCalls())
		}
	}
	conn.Close() // the child's end of the stream dies
	deadline := time.After(5 * time.Second)
	for i, p := range pend {
		select {
		case err := <-p:
			if !errors.Is(err, core.ErrDisconnected) {
				t.Errorf("call %d: got %v, want disconnected", i, err)
			}
		case <-deadline:
			t.Fatalf("call %d still pending after the context died", i)
		}
	}
	if _, err := rc.Get(ctxT(t)); !errors.Is(err, core.ErrDisconnected) {
		t.Errorf("plain receiver: got %v, want disconnected", err)
	}
	// The master carries on with other contexts.
	_, c2, _ := startChild(t, m, m.AllocateID())
	if err := c2.Agent().Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	_ = c
}

func TestCallCancelledByContext(t *testing.T) {
	m, _ := testMaster(t)
	_, c, _ := startChild(t, m, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Agent().Sleep(ctx, 60000)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
}

func TestUnknownHandleAndMethod(t *testing.T) {
	m, _ := testMaster(t)
	_, c, _ := startChild(t, m, 1)
	err := m.CallAt(ctxT(t), core.CallTarget{Context: 1, Handle: 4242}, mitogen.AgentPingMethod, &mitogen.AgentPingArgs{}, &mitogen.AgentPingResult{})
	if !errors.Is(err, core.ErrUnknownHandle) {
		t.Fatalf("got %v, want unknown handle", err)
	}
	err = c.CallFunction(ctxT(t), "Agent:nope", &mitogen.AgentPingArgs{}, &mitogen.AgentPingResult{})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("nope")) {
		t.Fatalf("unknown method: got %v", err)
	}
	err = c.CallFunction(ctxT(t), "Nothing:ping", &mitogen.AgentPingArgs{}, &mitogen.AgentPingResult{})
	if err == nil {
		t.Fatal("unknown service: no error")
	}
}

func TestAllocateIDsFromChild(t *testing.T) {
	m, _ := testMaster(t)
	child, _, _ := startChild(t, m, m.AllocateID())
	first, n, err := child.AllocateIDs(ctxT(t), 10)
	if err != nil || n != 10 || first < 2 {
		t.Fatalf("AllocateIDs = %d, %d, %v", first, n, err)
	}
	next := m.AllocateID()
	if next < first+n {
		t.Fatalf("master reused an ID of the block: %d in [%d,%d)", next, first, first+n)
	}
}

func TestForwardLog(t *testing.T) {
	m, sink := testMaster(t)
	child, _, _ := startChild(t, m, 1)
	child.Logger().Warn("hello from the child", "k", "v")
	deadline := time.Now().Add(5 * time.Second)
	for !sink.contains("hello from the child") {
		if time.Now().After(deadline) {
			t.Fatalf("log not forwarded: %v", sink.recs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sink.contains("context=1") {
		t.Errorf("forwarded record lacks the context ID: %v", sink.recs)
	}
}

func TestReceiverOverflowIsBoundedAndReported(t *testing.T) {
	m, _ := testMaster(t)
	child, _, _ := startChild(t, m, 1)
	rc := m.NewReceiver(core.WithQueueLimit(2, 1<<20))
	defer rc.Close()
	reply := child.NewReceiver()
	defer reply.Close()
	for i := 0; i < 5; i++ {
		child.Send(&wire.Message{Dst: 0, Handle: rc.Handle(), ReplyTo: reply.Handle(), Data: []byte{byte(i)}})
	}
	_, err := reply.Get(ctxT(t))
	if !errors.Is(err, core.ErrOverflow) {
		t.Fatalf("sender got %v, want overflow", err)
	}
}

// waitRoute waits until the master has learned (by ADD_ROUTE, which travels
// separately from StartChild's return in these in-process chains) the route to id.
func waitRoute(t *testing.T, m *core.Router, id int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := m.Context(id, "").Agent().Ping(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no route to %d: %v", id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A context may not make a sibling run anything either: only parents may.
func TestSiblingMayNotCallSibling(t *testing.T) {
	m, _ := testMaster(t)
	a, _, _ := startChild(t, m, 1)
	_, _, _ = startChild(t, m, 2)
	err := a.Context(2, "sibling").Agent().Ping(ctxT(t))
	if !errors.Is(err, core.ErrRefused) {
		t.Fatalf("sibling call: got %v, want refused", err)
	}
}

// Shutdown waits a bounded time for children that do not answer SHUTDOWN,
// however many there are.
func TestShutdownWithUnresponsiveChildrenEnds(t *testing.T) {
	m, _ := testMaster(t)
	rawChild(t, m, 7)
	rawChild(t, m, 8)
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3*core.ChildShutdownGrace + 5*time.Second):
		t.Fatal("Close hangs on children that ignore SHUTDOWN")
	}
}

// Agent.echo's argument is borrowed (mitogen.borrow): decoded in place in
// the frame the call came in, and replied from there. Many large echoes at
// once, each of its own bytes, come back intact: no frame is read into
// again before the reply taken from it is written.
func TestConcurrentBorrowedEchoes(t *testing.T) {
	m, _ := testMaster(t)
	_, c, _ := startChild(t, m, 1)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				data := bytes.Repeat([]byte{byte(g), byte(i)}, (16<<10)+(g*i*4099)%(512<<10))
				got, err := c.Agent().Echo(ctx, data)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("goroutine %d call %d: %d bytes came back different", g, i, len(data))
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
