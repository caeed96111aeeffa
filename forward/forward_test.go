package forward_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	mitogengo "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/forward"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// The test binary doubles as the agent of the contexts it starts.
func TestMain(m *testing.M) {
	mitogengo.Main()
	os.Exit(m.Run())
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// world is a master and one local context.
func world(t *testing.T) (*core.Router, *core.Context) {
	t.Helper()
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r := core.NewMaster(cfg)
	t.Cleanup(func() { r.Close() })
	c, err := agent.Dial(ctxT(t, 60*time.Second), r, nil, []transport.Spec{{Kind: transport.KindLocal}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, c[0]
}

func dial(ctx context.Context, r *core.Router, dest *core.Context, port int) (*forward.Conn, error) {
	return forward.Open(ctx, ctx, r, dest.ID(), func(ctx context.Context, recv *mitogen.StreamEnd) (*mitogen.DialReply, error) {
		return dest.Agent().DialTcp(ctx, &mitogen.DialRequest{Host: "127.0.0.1", Port: int32(port), Recv: recv})
	})
}

// pipeEnd is one end of a unix socket pair as a half-closable connection.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: dir + "/s", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// Each direction ends on its own: the peer's EOF half-closes the TCP
// connection, and the far side's answer written after it still arrives.
func TestDialHalfClose(t *testing.T) {
	r, dest := world(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c) // until the peer's EOF
		c.Write([]byte("got " + strconv.Itoa(len(got)) + " bytes"))
	}()
	ctx := ctxT(t, 60*time.Second)
	conn, err := dial(ctx, r, dest, ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	local, far := socketPair(t)
	done := make(chan error, 1)
	go func() { done <- conn.Splice(local) }()
	far.Write(make([]byte, 300000))
	far.CloseWrite()
	back, err := io.ReadAll(far)
	if err != nil || string(back) != "got 300000 bytes" {
		t.Fatalf("answer %q, %v", back, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("splice: %v", err)
	}
	wg.Wait()
}

// A context holds at most MAX_DIALS connections; one more is refused
// (EMFILE), and closing one makes room again.
func TestDialLimit(t *testing.T) {
	r, dest := world(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	ctx := ctxT(t, 120*time.Second)
	var conns []*forward.Conn
	for i := 0; i < int(mitogen.MAX_DIALS); i++ {
		c, err := dial(ctx, r, dest, port)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	_, err = dial(ctx, r, dest, port)
	var ce *mitogen.CallError
	if !errors.As(err, &ce) || ce.Code != "EMFILE" {
		t.Fatalf("dial %d: %v; want EMFILE", mitogen.MAX_DIALS+1, err)
	}
	// Ending one connection (the peer's both directions) frees its slot.
	local, far := socketPair(t)
	far.Close()
	conns[0].Splice(local)
	var c *forward.Conn
	for i := 0; ; i++ { // the dialer notices the end asynchronously
		if c, err = dial(ctx, r, dest, port); err == nil || i > 200 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after closing one, dial: %v", err)
	}
	c.Close()
	for _, c := range conns[1:] {
		c.Close()
	}
}
