package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
)

// sshFlags are the CLI options that reach test servers made with keys k.
func sshFlags(k *testhosts.Keys, cache string) []string {
	return []string{"--identity", k.UserKey, "--ssh-option", "UserKnownHostsFile=" + k.KnownHosts, "--agent-cache-dir", cache}
}

// runCLI runs the CLI and returns its status, stdout and stderr.
func runCLI(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(mitogenBin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("mitogen %q: %v", args, err)
	return 0, "", ""
}

func TestSSHHopRunsCommandWithStatus(t *testing.T) {
	testhosts.Require(t)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	args := append([]string{"exec", "--via", s.Spec("root")}, sshFlags(k, t.TempDir())...)
	st, out, errs := runCLI(t, []byte("input\n"), append(args, "--", "sh", "-c", "cat; echo err >&2; exit 4")...)
	if st != 4 || out != "input\n" || errs != "err\n" {
		t.Fatalf("status %d stdout %q stderr %q", st, out, errs)
	}
}

func TestSecondConnectionSendsNoAgentBytes(t *testing.T) {
	testhosts.Require(t)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	a := &bootstrap.Agent{Path: mitogenBin}
	cache := t.TempDir()
	size, _ := a.CompressedSize()
	r := core.NewMaster(core.DefaultConfig())
	defer r.Close()
	for i, want := range []string{"all", "none"} {
		tr := &ssh.Transport{Spec: transport.Spec{Kind: transport.KindSSH, User: "root", Host: s.Addr, Port: s.Port}, Agent: a,
			Opts: ssh.Options{Identity: k.UserKey, Options: []string{"UserKnownHostsFile=" + k.KnownHosts}, CacheDir: cache}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := tr.Start(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		c, _, err := r.StartChild(ctx, conn, int32(10+i), "ssh")
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := c.Agent().Ping(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		t.Logf("connection %d sent %d agent bytes (compressed agent: %d bytes)", i+1, tr.AgentBytesSent, size)
		if want == "all" && tr.AgentBytesSent != int64(size) {
			t.Fatalf("first connection sent %d agent bytes, want %d", tr.AgentBytesSent, size)
		}
		if want == "none" && tr.AgentBytesSent != 0 {
			t.Fatalf("second connection sent %d agent bytes, want 0", tr.AgentBytesSent)
		}
	}
	// The cache is private.
	st, err := os.Stat(cache)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("agent cache mode %v, %v; want 0700", st.Mode(), err)
	}
}

func TestSSHErrorsSayWhatFailed(t *testing.T) {
	testhosts.Require(t)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	other := testhosts.NewKeys(t)
	cache := t.TempDir()
	cases := []struct {
		name, want string
		args       []string
	}{
		{"unreachable", "unreachable", append([]string{"--via", "ssh:root@127.0.0.1:1"}, sshFlags(k, cache)...)},
		{"authentication", "authentication failed", append([]string{"--via", s.Spec("root")}, sshFlags(&testhosts.Keys{UserKey: other.UserKey, KnownHosts: k.KnownHosts}, cache)...)},
		{"host key", "host key", append([]string{"--via", s.Spec("root")}, sshFlags(&testhosts.Keys{UserKey: k.UserKey, KnownHosts: other.KnownHosts}, cache)...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, _, errs := runCLI(t, nil, append(append([]string{"exec"}, c.args...), "--", "true")...)
			if st == 0 || !strings.Contains(errs, c.want) {
				t.Fatalf("status %d, stderr %q; want it to say %q", st, errs, c.want)
			}
		})
	}
}

// Host B is reachable only from host A, each in its own network namespace:
// rsync through --via ssh:A --via ssh:B copies a tree identically.
func TestRsyncThroughNetnsBastion(t *testing.T) {
	testhosts.Require(t, "ip", "rsync")
	k := testhosts.NewKeys(t)
	nsA, nsB := fmt.Sprintf("mgA%d", os.Getpid()%10000), fmt.Sprintf("mgB%d", os.Getpid()%10000)
	testhosts.Netns(t, nsA)
	testhosts.Netns(t, nsB)
	testhosts.Veth(t, "", "10.231.1.1/24", nsA, "10.231.1.2/24")
	testhosts.Veth(t, nsA, "10.231.2.1/24", nsB, "10.231.2.2/24")
	a := testhosts.Start(t, k, "10.231.1.2", nsA)
	b := testhosts.Start(t, k, "10.231.2.2", nsB)
	// B is not reachable from here.
	if out, err := exec.Command("ssh", append(b.SSHArgs(), "-o", "ConnectTimeout=2", "-l", "root", b.Addr, "true")...).CombinedOutput(); err == nil {
		t.Fatalf("host B is reachable directly; the test would prove nothing (%s)", out)
	}
	src, dst := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(src, "d e"), 0o755)
	os.WriteFile(filepath.Join(src, "d e", "f"), bytes.Repeat([]byte("z"), 300000), 0o644)
	os.Symlink("d e/f", filepath.Join(src, "l"))
	args := append([]string{"run", "--via", a.Spec("root"), "--via", b.Spec("root")}, sshFlags(k, t.TempDir())...)
	st, _, errs := runCLI(t, nil, append(args, "--", "rsync", "-a", src+"/", "anyhost:"+dst+"/")...)
	if st != 0 {
		t.Fatalf("rsync via A and B: status %d: %s", st, errs)
	}
	if out, err := exec.Command("diff", "-r", "--no-dereference", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy differs: %s", out)
	}
	// The command really ran on B: its address is B's.
	st, out, errs := runCLI(t, nil, append(append([]string{"exec", "--via", a.Spec("root"), "--via", b.Spec("root")}, sshFlags(k, t.TempDir())...), "--", "ip", "-o", "-4", "addr", "show")...)
	if st != 0 || !strings.Contains(out, "10.231.2.2") || strings.Contains(out, "10.231.1.2") {
		t.Fatalf("ran where? status %d %q %s", st, out, errs)
	}
}
