package kitexconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// world is a master and a child context in this process, joined by a
// socket pair: the child's router is at hand, so tests can listen there
// and look at the listener's state.
type world struct {
	master, child *core.Router
	c             *core.Context // the child, seen from the master
}

func newWorld(t testing.TB) *world {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := conn(fds[0]), conn(fds[1])
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	m := core.NewMaster(cfg)
	booted := make(chan *core.Router, 1)
	go func() {
		r, err := core.Boot(b, cfg, nil)
		if err != nil {
			t.Errorf("Boot: %v", err)
		}
		booted <- r
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := m.StartChild(ctx, a, 1, "child")
	if err != nil {
		t.Fatalf("StartChild: %v", err)
	}
	child := <-booted
	if child == nil {
		t.FailNow()
	}
	t.Cleanup(func() { m.Close(); child.Close() })
	return &world{master: m, child: child, c: c}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openConns is how many connections l holds a slot for.
func (l *Listener) openConns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// waitFor polls cond until it holds, failing t after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
	}
}

// Bytes written at either end arrive whole and in order at the other,
// several MiB both ways at once (more than a window, so credit flows),
// and closing ends the peer's reads with EOF.
func TestConnCarriesBothWays(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := Listen(w.child, "echo")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		sc, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		_, err = io.Copy(sc, sc) // echo until the client closes
		sc.Close()
		served <- err
	}()
	c, err := Dial(ctx, w.c, "echo")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 5<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		wrote <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echoed bytes differ")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
	waitFor(t, "the listener to release the connection", func() bool { return l.openConns() == 0 })
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Read(got); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
}

// A connection the server closes reads EOF at the client after every byte
// the server wrote.
func TestServerCloseIsEOF(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := Listen(w.child, "bye")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		sc, err := l.Accept()
		if err == nil {
			sc.Write([]byte("last words"))
			sc.Close()
		}
	}()
	c, err := Dial(ctx, w.c, "bye")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("ReadAll: %q, %v", got, err)
	}
}

// Close while a Read waits and a Write waits for credit (the peer reads
// nothing, and the Write is larger than a window): both return at once,
// the Read with net.ErrClosed, and the peer sees the stream fail rather
// than end cleanly.
func TestCloseDuringReadAndWrite(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := Listen(w.child, "stuck")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		sc, err := l.Accept()
		if err == nil {
			accepted <- sc
		}
	}()
	c, err := Dial(ctx, w.c, "stuck")
	if err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	defer sc.Close()
	read := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); read <- err }()
	wrote := make(chan error, 1)
	go func() { _, err := c.Write(make([]byte, 4*w.child.Config().StreamWindow)); wrote <- err }()
	waitFor(t, "the Write to start", func() bool {
		c.wd.s.mu.Lock()
		defer c.wd.s.mu.Unlock()
		return c.wd.s.waiting
	})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read cut by Close: %v", err)
	}
	if err := <-wrote; err == nil {
		t.Error("a Write larger than the window completed with nobody reading")
	}
	if _, err := io.Copy(io.Discard, sc); err == nil {
		t.Error("the peer read a clean end of a stream cut mid-Write")
	}
}

// A deadline already passed fails a Read at once with a timeout and
// leaves the connection usable; one that passes while a Read waits fails
// that Read with a timeout and the connection for good; moving the
// deadline of a waiting Read takes effect.
func TestDeadlines(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := Listen(w.child, "slow")
	if err != nil {
		t.Fatal(err)
	}
	send := make(chan string)
	go func() {
		sc, err := l.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		for s := range send {
			sc.Write([]byte(s))
		}
	}()
	defer close(send)
	c, err := Dial(ctx, w.c, "slow")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
	}
	buf := make([]byte, 16)

	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(buf); !isTimeout(err) {
		t.Fatalf("Read past its deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	send <- "x"
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "x" {
		t.Fatalf("Read after clearing the deadline: %q, %v", buf[:n], err)
	}
	if !c.IsActive() {
		t.Fatal("a deadline that passed before a Read broke the connection")
	}

	// A waiting Read whose deadline is moved into the past by another
	// goroutine returns.
	done := make(chan error, 1)
	go func() { _, err := c.Read(buf); done <- err }()
	waitFor(t, "the Read to wait", func() bool {
		c.rd.s.mu.Lock()
		defer c.rd.s.mu.Unlock()
		return c.rd.s.waiting
	})
	c.SetReadDeadline(time.Now())
	if err := <-done; !isTimeout(err) {
		t.Fatalf("Read whose deadline passed while waiting: %v", err)
	}
	if c.IsActive() {
		t.Fatal("a connection whose Read timed out is still offered for reuse")
	}
	c.SetReadDeadline(time.Time{})
	if _, err := c.Read(buf); !isTimeout(err) {
		t.Fatalf("Read after a Read timed out: %v", err)
	}
}

// A listener holds at most MaxConns connections and Backlog unaccepted
// ones; dials beyond are refused with an error saying so (after
// AcceptWait for the backlog), and closing a connection frees its slot.
func TestListenerBounds(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := ListenConfig{MaxConns: 2, Backlog: 1, AcceptWait: time.Millisecond}.Listen(w.child, "small")
	if err != nil {
		t.Fatal(err)
	}
	c1, err := Dial(ctx, w.c, "small")
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := Dial(ctx, w.c, "small"); err == nil || !strings.Contains(err.Error(), "waiting to be accepted") {
		t.Fatalf("dial beyond the backlog: %v", err)
	}
	s1, _ := l.Accept()
	c2, err := Dial(ctx, w.c, "small")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s2, _ := l.Accept()
	if _, err := Dial(ctx, w.c, "small"); err == nil || !strings.Contains(err.Error(), "connections open") {
		t.Fatalf("dial beyond MaxConns: %v", err)
	}
	if n := l.openConns(); n != 2 {
		t.Fatalf("%d connections held after refused dials, want 2", n)
	}
	s1.Close()
	c3, err := Dial(ctx, w.c, "small")
	if err != nil {
		t.Fatalf("dial after a connection closed: %v", err)
	}
	c3.Close()
	s2.Close()

	// A closed listener refuses dials and drops what waits for Accept.
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v", err)
	}
	if _, err := Dial(ctx, w.c, "small"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("dial to a closed listener: %v", err)
	}
	waitFor(t, "every slot to be released", func() bool { return l.openConns() == 0 })
}

// A dial that finds the backlog full waits for room rather than failing:
// an accept loop that lags behind a burst of dials loses none of them.
func TestDialWaitsForBacklogRoom(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := ListenConfig{Backlog: 1}.Listen(w.child, "lagging")
	if err != nil {
		t.Fatal(err)
	}
	c1, err := Dial(ctx, w.c, "lagging")
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	second := make(chan error, 1)
	go func() {
		c2, err := Dial(ctx, w.c, "lagging")
		if err == nil {
			c2.Close()
		}
		second <- err
	}()
	waitFor(t, "the second dial to wait for room", func() bool { return l.openConns() == 2 })
	s1, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	if err := <-second; err != nil {
		t.Fatalf("a dial waiting for room in the backlog: %v", err)
	}
}

// Dials that cannot be served fail with an error and leave nothing behind:
// a name nobody listens as, an invalid name, and (from a hostile parent)
// a reader end in another context or with an unusable window.
func TestDialRefusals(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := Listen(w.child, "svc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(ctx, w.c, "nobody"); err == nil || !strings.Contains(err.Error(), "serves no service") {
		t.Fatalf("dial to a name nobody listens as: %v", err)
	}
	if _, err := Dial(ctx, w.c, "a:b"); err == nil || !strings.Contains(err.Error(), "invalid listener name") {
		t.Fatalf("dial with an invalid name: %v", err)
	}
	if _, err := Listen(w.child, ""); err == nil {
		t.Fatal("Listen with an empty name succeeded")
	}
	for _, tc := range []struct {
		end  *mitogen.StreamEnd
		want string
	}{
		{nil, "not in the calling context"},
		{&mitogen.StreamEnd{ContextId: 7, Handle: mitogen.FIRST_DYNAMIC_HANDLE + 5, Window: 1 << 16}, "not in the calling context"},
		{&mitogen.StreamEnd{ContextId: 0, Handle: mitogen.FIRST_DYNAMIC_HANDLE + 5, Window: 3}, "window"},
		{&mitogen.StreamEnd{ContextId: 0, Handle: 1, Window: 1 << 16}, "invalid reader end"},
	} {
		var res dialResult
		err := w.c.CallFunction(ctx, ServicePrefix+"svc:dial", &dialArgs{Reader: tc.end}, &res)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dial with reader end %v: %v (want an error with %q)", tc.end, err, tc.want)
		}
	}
	var res dialResult
	err = w.c.CallFunction(ctx, ServicePrefix+"svc:listen", &dialArgs{}, &res)
	var ae *thrift.ApplicationException
	if !errors.As(err, &ae) || ae.TypeID() != thrift.UNKNOWN_METHOD {
		t.Errorf("unknown method of a listener's service: %v, want UNKNOWN_METHOD", err)
	}
	if n := l.openConns(); n != 0 {
		t.Fatalf("refused dials hold %d connections", n)
	}
}

// The dial messages decode what they encode, and decoding truncated input
// fails without a panic.
func TestDialCodec(t *testing.T) {
	end := &mitogen.StreamEnd{ContextId: 3, Handle: 1234, Window: 1 << 20}
	for _, v := range []interface {
		BLength() int
	}{&dialArgs{Reader: end}, &dialResult{Success: end}, &dialArgs{}, &dialResult{}} {
		var b []byte
		var back interface {
			FastRead([]byte) (int, error)
		}
		switch v := v.(type) {
		case *dialArgs:
			b = make([]byte, v.BLength())
			if n := v.FastWriteNocopy(b, nil); n != len(b) {
				t.Fatalf("wrote %d of %d bytes", n, len(b))
			}
			back = &dialArgs{}
		case *dialResult:
			b = make([]byte, v.BLength())
			if n := v.FastWriteNocopy(b, nil); n != len(b) {
				t.Fatalf("wrote %d of %d bytes", n, len(b))
			}
			back = &dialResult{}
		}
		if n, err := back.FastRead(b); err != nil || n != len(b) {
			t.Fatalf("%T: read %d of %d bytes: %v", v, n, len(b), err)
		}
		for i := 0; i < len(b); i++ {
			if _, err := back.FastRead(b[:i]); err == nil {
				t.Fatalf("%T: %d of %d bytes decoded without an error", v, i, len(b))
			}
		}
	}
}

// Dialing, using and closing connections, and shutting down, leave no
// goroutine running; shutdown closes the connections (net.ErrClosed).
func TestNoGoroutineLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		w := newWorld(t)
		ctx := testCtx(t)
		l, err := Listen(w.child, "echo")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				sc, err := l.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(sc, sc); sc.Close() }()
			}
		}()
		for i := 0; i < 20; i++ {
			c, err := Dial(ctx, w.c, "echo")
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(time.Minute))
			c.Write([]byte("ping"))
			io.ReadFull(c, make([]byte, 4))
			c.Close()
		}
		// One left open, one with a Read waiting: shutdown ends both.
		open, err := Dial(ctx, w.c, "echo")
		if err != nil {
			t.Fatal(err)
		}
		reading := make(chan error, 1)
		go func() { _, err := open.Read(make([]byte, 1)); reading <- err }()
		w.master.Close()
		if err := <-reading; !errors.Is(err, net.ErrClosed) {
			t.Errorf("a Read waiting at shutdown returned %v, want net.ErrClosed", err)
		}
		w.child.Close()
		open.Close()
	}()
	for deadline := time.Now().Add(30 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			var b bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), b.String())
		}
	}
}

// A dial and close between routers in this process: what each connection
// Kitex's pool opens costs.
func BenchmarkDialClose(b *testing.B) {
	w := newWorld(b)
	l, err := Listen(w.child, "bench")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			sc, err := l.Accept()
			if err != nil {
				return
			}
			sc.Close()
		}
	}()
	ctx := b.Context()
	for b.Loop() {
		c, err := Dial(ctx, w.c, "bench")
		if err != nil {
			var buf bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&buf, 1)
			b.Fatal(err, buf.String())
		}
		c.Close()
	}
	w.master.Close()
	w.child.Close()
}
