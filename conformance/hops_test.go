package conformance

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

// hopLog records the options each hop was sent.
type hopLog struct {
	mu     sync.Mutex
	master []map[string]string // what the master's own Transports got (hop 1)
	sent   map[int]map[string]string
}

func (l *hopLog) transports(next agent.Transports) agent.Transports {
	return func(spec transport.Spec, opts map[string]string) (transport.Transport, error) {
		l.mu.Lock()
		l.master = append(l.master, maps.Clone(opts))
		l.mu.Unlock()
		return next(spec, opts)
	}
}

func (l *hopLog) record(hop int, _ transport.Spec, opts map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent == nil {
		l.sent = map[int]map[string]string{}
	}
	l.sent[hop] = maps.Clone(opts)
}

// hasSecret says whether any key or value of opts holds secret.
func hasSecret(opts map[string]string, secret string) bool {
	for k, v := range opts {
		if strings.Contains(k, secret) || strings.Contains(v, secret) {
			return true
		}
	}
	return false
}

// uidOf reads the real UID a context runs as.
func uidOf(t *testing.T, ctx context.Context, c *core.Context) string {
	t.Helper()
	b, err := c.Agent().ReadFile(ctx, "/proc/self/status", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid line in %q", b)
	return ""
}

// In a chain ssh -> sudo (real sshd on loopback, real sudo that asks a
// password under requiretty), the sudo password goes only to the sudo
// hop, in the ConnectRequest to the ssh context that runs that sudo; the
// ssh hop, started by the master, is never given it. Checked on what the
// master's own transport builder received and on every hop's options as
// sent, for typed per-hop options and for the older single-map Dial
// (which before gave every hop the whole map).
func TestHopSecretsStayWithTheirHop(t *testing.T) {
	testhosts.Require(t, "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, true)
	k := testhosts.NewKeys(t)
	// sshd reads the authorized keys as the user logging in: let it
	// through the test's temporary directory (which holds no secret).
	os.Chmod(filepath.Dir(k.Dir), 0o755)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	sshSpec, err := transport.ParseSpec(s.Spec(sudoUser))
	if err != nil {
		t.Fatal(err)
	}
	sudoSpec := transport.Spec{Kind: transport.KindSudo, User: "root"}
	reg := agent.NewRegistry(&bootstrap.Agent{Path: mitogenBin})
	sshOpts := &ssh.Options{Identity: k.UserKey, Options: []string{"UserKnownHostsFile=" + k.KnownHosts}}

	check := func(name string, dial func(ctx context.Context, r *core.Router, l *hopLog) ([]*core.Context, error)) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		r := core.NewMaster(core.DefaultConfig())
		defer r.Close()
		l := &hopLog{}
		chain, err := dial(ctx, r, l)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if uid := uidOf(t, ctx, chain[1]); uid != "0" {
			t.Fatalf("%s: the sudo hop runs as uid %s, want 0", name, uid)
		}
		if uid := uidOf(t, ctx, chain[0]); uid == "0" {
			t.Fatalf("%s: the ssh hop runs as root, want %s", name, sudoUser)
		}
		if len(l.master) != 1 || hasSecret(l.master[0], sudoPassword) || l.master[0]["identity"] != k.UserKey {
			t.Errorf("%s: the master's transport builder got %v; want the ssh hop's options only", name, l.master)
		}
		if l.sent != nil {
			if hasSecret(l.sent[0], sudoPassword) || hasSecret(l.sent[0], "password") {
				t.Errorf("%s: ssh hop sent %v", name, l.sent[0])
			}
			if !maps.Equal(l.sent[1], map[string]string{"password": sudoPassword}) {
				t.Errorf("%s: sudo hop sent %v; want its password only", name, l.sent[1])
			}
		}
	}
	check("Dialer", func(ctx context.Context, r *core.Router, l *hopLog) ([]*core.Context, error) {
		d := &agent.Dialer{Transports: l.transports(reg.Transport), Sent: l.record}
		return d.Dial(ctx, r, []agent.Hop{
			{Spec: sshSpec, Options: sshOpts},
			{Spec: sudoSpec, Options: &sudo.Options{Password: sudoPassword}},
		})
	})
	check("legacy Dial", func(ctx context.Context, r *core.Router, l *hopLog) ([]*core.Context, error) {
		return agent.Dial(ctx, r, l.transports(reg.Transport), []transport.Spec{sshSpec, sudoSpec}, map[string]string{
			agent.OptIdentity: k.UserKey, agent.OptSSHOptions: "UserKnownHostsFile=" + k.KnownHosts,
			agent.OptSudoPassword: sudoPassword,
		})
	})

	// Options of the wrong method are refused before anything starts.
	r := core.NewMaster(core.DefaultConfig())
	defer r.Close()
	_, err = (&agent.Dialer{Transports: reg.Transport}).Dial(context.Background(), r, []agent.Hop{{Spec: sshSpec, Options: &sudo.Options{Password: "x"}}})
	if err == nil || !strings.Contains(err.Error(), "*ssh.Options") {
		t.Fatalf("sudo options on an ssh hop: %v", err)
	}

	// The CLI: with -v the master logs each hop's option keys (secrets
	// redacted); the password goes to the sudo hop alone.
	st, out, errs := runCLIWithin(t, 2*time.Minute, "exec", "-v", "--via", s.Spec(sudoUser)+",sudo:root",
		"--identity", k.UserKey, "--ssh-option", "UserKnownHostsFile="+k.KnownHosts,
		"--sudo-password-file", passwordFile(t, sudoPassword), "--", "id", "-un")
	if st != 0 || out != "root\n" {
		t.Fatalf("CLI: status %d stdout %q stderr %q", st, out, errs)
	}
	var hop1, hop2 string
	for _, line := range strings.Split(errs, "\n") {
		switch {
		case strings.Contains(line, "dialing hop") && strings.Contains(line, "hop=1 "):
			hop1 = line
		case strings.Contains(line, "dialing hop") && strings.Contains(line, "hop=2 "):
			hop2 = line
		}
	}
	if hop1 == "" || strings.Contains(hop1, "password") || !strings.Contains(hop2, "password:<secret>") || strings.Contains(errs, sudoPassword) {
		t.Fatalf("CLI hop options:\nhop 1: %s\nhop 2: %s", hop1, hop2)
	}
}
