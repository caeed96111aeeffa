package fakessh

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

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
	secret := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
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
