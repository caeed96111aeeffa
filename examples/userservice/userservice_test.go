package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/examples/userservice/gen/userservice"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// The sudo user of this test: its own, so that its sudoers rule never
// races with the conformance suite's.
const exUser, exPassword = "mitogenex", "ex-s3cret-pw"

// The example binary, built by the test and run as a user would: it
// reaches a real sshd on loopback as exUser, then real sudo to root
// (password asked, requiretty), each hop bootstrapping the example binary
// itself; its own service answers in both contexts through the generated
// client: the ssh context (not root) gets the declared exception reading a
// root-only file, the sudo context reads it; an undeclared method gives
// UNKNOWN_METHOD.
func TestUserServiceOverSSHAndSudo(t *testing.T) {
	testhosts.Require(t, "sudo", "go")
	testhosts.SudoUser(t, exUser, exPassword, true)
	k := testhosts.NewKeys(t)
	// sshd reads the authorized keys as the user logging in.
	os.Chmod(filepath.Dir(k.Dir), 0o755)
	s := testhosts.Start(t, k, "127.0.0.1", "")

	dir := t.TempDir() // 0700, root's: exUser cannot read in it
	bin := filepath.Join(dir, "userservice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("only root reads this\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(exPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-via", s.Spec(exUser)+",sudo:root", "-identity", k.UserKey,
		"-known-hosts", k.KnownHosts, "-sudo-password-file", pw, "-path", secret, "-timeout", "3m")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("userservice: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	out := stdout.String()
	t.Logf("userservice output:\n%s", out)
	for _, re := range []string{
		// The ssh context runs as exUser: the declared exception.
		`(?m)^context 1 \(ssh:` + exUser + `@127\.0\.0\.1:\d+\): unreadable ` + regexp.QuoteMeta(secret) + `: .*permission denied$`,
		// The sudo context runs as root and reads the file.
		`(?m)^context 2 \(sudo:root\): uid=0 user=root host=\S+ pid=\d+ greeting="hello, from root on \S+"$`,
		`(?m)^context 2: line "only root reads this"\ncontext 2: line "second line"$`,
		// The undeclared method.
		`(?m)^context 2: HostInfo:reboot: UNKNOWN_METHOD \(unknown method HostInfo:reboot\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s", re)
		}
	}
	if strings.Contains(stderr.String(), exPassword) {
		t.Errorf("the sudo password shows on stderr:\n%s", &stderr)
	}
}

// MAX_LINES is a plain constant of the example's IDL, not a handle.
func TestConstantIsNotAHandle(t *testing.T) {
	if userservice.MAX_LINES != 100 {
		t.Fatalf("MAX_LINES = %d", userservice.MAX_LINES)
	}
	if hs := userservice.WellKnownHandles(); len(hs) != 0 {
		t.Fatalf("WellKnownHandles() = %v, want none", hs)
	}
}
