package conformance

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// TestSSHConfigHostKeyCheckingApplies: with no --host-key-checking, the
// user's ssh_config decides. A host whose config says
// `StrictHostKeyChecking no` (and keeps no known_hosts) connects; the same
// host with `--host-key-checking enforce` is refused for its unknown key.
func TestSSHConfigHostKeyCheckingApplies(t *testing.T) {
	testhosts.Require(t)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ssh_config")
	conf := "Host cfghost\n  HostName " + s.Addr + "\n  Port " + strconv.Itoa(s.Port) + "\n  User root\n  IdentityFile " + k.UserKey +
		"\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"exec", "--via", "ssh:cfghost", "--ssh-config", cfg, "--agent-cache-dir", t.TempDir()}
	st, out, errs := runCLI(t, nil, append(base, "--", "echo", "connected")...)
	if st != 0 || out != "connected\n" {
		t.Fatalf("ssh_config's StrictHostKeyChecking no was overridden: status %d, stdout %q, stderr %q", st, out, errs)
	}
	st, _, errs = runCLI(t, nil, append(base, "--host-key-checking", "enforce", "--", "echo", "connected")...)
	if st == 0 || !strings.Contains(errs, "host key") {
		t.Fatalf("--host-key-checking enforce with an unknown host key: status %d, stderr %q; want a host key error", st, errs)
	}
}
