package fakessh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

const testSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// A process that does not know the run's secret gets its connection closed
// and becomes no context.
func TestStrangerIsRefused(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	st := &run{Runner: &Runner{Router: r}, members: map[int32]bool{}}
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secret := testSecret
	go st.accept(ctx, ln, secret)
	for _, attempt := range []string{
		"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n", // wrong secret
		secret + "x", // right secret, bad terminator
		"short\n",    // too short, then EOF
	} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(attempt))
		c.(*net.UnixConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if n != 0 || err != io.EOF {
			t.Fatalf("attempt %q: read %d, %v; want the connection closed", attempt, n, err)
		}
		c.Close()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.members) != 0 || st.count != 0 {
		t.Fatalf("a stranger became a member: %v", st.members)
	}
}

// Connections that present no secret are capped: over the cap
// (RunConfig.PreauthLimit, the default's and a configured one), a new one
// is told busy and closed at once; those within the cap stay until their
// deadline; a legitimate ssh gets in once a slot frees.
func TestPreauthCap(t *testing.T) {
	for _, limit := range []int{0, 5} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) { testPreauthCap(t, limit) })
	}
}

func testPreauthCap(t *testing.T, limit int) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	// Only the cap acts in this test, not the deadline.
	st := &run{Runner: &Runner{Router: r, Config: RunConfig{PreauthLimit: limit}}, members: map[int32]bool{}, preauth: 10 * time.Minute}
	maxPreauth := limit
	if limit == 0 {
		maxPreauth = DefaultRunConfig().PreauthLimit
	}
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	accepting := make(chan struct{})
	go func() { defer close(accepting); st.accept(ctx, ln, testSecret) }()
	defer func() { cancel(); ln.Close(); <-accepting; st.wg.Wait() }()

	const extra = 16
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < maxPreauth+extra; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// The extra ones: "busy", then closed.
	for i, c := range idle[maxPreauth:] {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		b, err := io.ReadAll(c)
		if string(b) != busyLine || err != nil {
			t.Fatalf("extra connection %d: read %q, %v; want %q and EOF", i, b, err, busyLine)
		}
	}
	// The others are still waiting for their secret.
	for i, c := range idle[:maxPreauth] {
		c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d within the cap: read %d, %v; want it still open", i, n, err)
		}
	}
	// A legitimate ssh retries while the master is busy, and gets in once
	// one of the idle connections goes.
	type result struct {
		r   *core.Router
		err error
	}
	joined := make(chan result, 1)
	go func() {
		conn, err := dialMaster(sock, testSecret, 120*time.Second)
		if err != nil {
			joined <- result{nil, err}
			return
		}
		cr, err := core.Boot(conn, cfg, nil)
		joined <- result{cr, err}
	}()
	idle[0].Close()
	res := <-joined
	if res.err != nil {
		t.Fatalf("legitimate ssh: %v", res.err)
	}
	res.r.Close()
}

// Sessions past the secret are capped too (RunConfig.MaxSessions): with
// the cap reached, an ssh that presents the right secret is told busy and
// closed; once a session ends, its place is free again (members are
// forgotten when their stream ends).
func TestMaxSessionsCap(t *testing.T) {
	const limit = 2
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	st := &run{Runner: &Runner{Router: r, Config: RunConfig{MaxSessions: limit}}, members: map[int32]bool{}}
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	accepting := make(chan struct{})
	go func() { defer close(accepting); st.accept(ctx, ln, testSecret) }()
	defer func() { cancel(); ln.Close(); <-accepting; st.wg.Wait() }()

	join := func() *core.Router {
		t.Helper()
		conn, err := dialMaster(sock, testSecret, 120*time.Second)
		if err != nil {
			t.Fatalf("legitimate ssh: %v", err)
		}
		cr, err := core.Boot(conn, cfg, nil)
		if err != nil {
			t.Fatalf("legitimate ssh: boot: %v", err)
		}
		return cr
	}
	var sessions []*core.Router
	for i := 0; i < limit; i++ {
		sessions = append(sessions, join())
	}
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(testSecret + "\n"))
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	b, err := io.ReadAll(c)
	c.Close()
	if string(b) != busyLine || err != nil {
		t.Fatalf("session over the cap: read %q, %v; want %q and EOF", b, err, busyLine)
	}
	sessions[0].Close()
	<-sessions[0].Done()
	sessions[0] = join()
}
