package mitogen_test

import (
	"context"
	"strings"
	"testing"
	"time"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

func TestRoleOf(t *testing.T) {
	for _, c := range []struct {
		args []string
		want mitogen.Role
	}{
		{nil, mitogen.RoleNone},
		{[]string{"/usr/bin/prog"}, mitogen.RoleNone},
		{[]string{"/usr/bin/prog", "run", "agent"}, mitogen.RoleNone},
		{[]string{"/usr/bin/prog", "agent"}, mitogen.RoleAgent},
		{[]string{"/tmp/mitogen-fakessh-1/ssh", "-p", "22", "host", "agent"}, mitogen.RoleSSH},
		{[]string{"ssh"}, mitogen.RoleSSH},
		{[]string{"/tmp/mitogen-fakessh-1/scp", "-q", "a", "h:b"}, mitogen.RoleWrapper},
		{[]string{"sftp", "h"}, mitogen.RoleWrapper},
		{[]string{"/usr/bin/sftp-server"}, mitogen.RoleNone},
	} {
		if got := mitogen.RoleOf(c.args); got != c.want {
			t.Errorf("RoleOf(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

// An invalid Config is an error, not patched; zero fields are defaults.
func TestNewMasterConfig(t *testing.T) {
	for _, cfg := range []mitogen.Config{
		{Core: core.Config{StreamWindow: 1}},
		{Core: core.Config{MaxFrameSize: -1}},
		{AgentPath: "/nonexistent/agent"},
		{AgentPath: "/"},
	} {
		if m, err := mitogen.NewMaster(cfg); err == nil {
			m.Close()
			t.Errorf("NewMaster(%+v) accepted it", cfg)
		}
	}
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got, want := m.Router().Config().StreamWindow, core.DefaultConfig().StreamWindow; got != want {
		t.Fatalf("zero Config: window %d, want the default %d", got, want)
	}
}

// A chain whose later hop fails leaves nothing running: the contexts
// already started for it are shut down, and the master goes on.
func TestConnectFailureCleansUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Connect(ctx, mitogen.Local(), mitogen.Specs("nosuchmethod:x")[0]); err == nil || !strings.Contains(err.Error(), "hop 2") {
		t.Fatalf("unknown method in hop 2: %v", err)
	}
	if n := len(m.Router().Children()); n != 0 {
		t.Fatalf("a spec error started %d contexts; specs are checked first", n)
	}
	_, err = m.Connect(ctx, mitogen.Local(), mitogen.Sudo("nobody", &sudo.Options{Program: "/nonexistent/sudo"}))
	if err == nil || !strings.Contains(err.Error(), "hop 2") {
		t.Fatalf("failing hop 2: %v", err)
	}
	if n := len(m.Router().Children()); n != 0 {
		t.Fatalf("%d contexts of the failed chain still connected", n)
	}
	c, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().Ping(ctx); err != nil {
		t.Fatal(err)
	}
}
