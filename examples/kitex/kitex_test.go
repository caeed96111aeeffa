package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// The user and password the ssh hop logs in as (sudo asks for it).
const sshUser, sshUserPassword = "mitogenkitex", "kitex-pw-1"

// buildExample builds this example's binary, as a user would.
func buildExample(t *testing.T) string {
	t.Helper()
	testhosts.Need(t, "go")
	bin := filepath.Join(t.TempDir(), "kitex-example")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The example's Kitex client, in the master, calls its Kitex server in a
// context two hops away: ssh to a real sshd on loopback as a plain user,
// then sudo to root. The bootstrap ships the example's binary to each hop;
// no port is opened but sshd's.
func TestKitexOverSSHAndSudo(t *testing.T) {
	testhosts.Require(t, "sudo")
	testhosts.SudoUser(t, sshUser, sshUserPassword, false)
	bin := buildExample(t)
	k := testhosts.NewKeys(t)
	// sshd reads the authorized keys as the user logging in.
	os.Chmod(filepath.Dir(k.Dir), 0o755)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(sshUserPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-via", s.Spec(sshUser)+",sudo:root",
		"-identity", k.UserKey, "-ssh-option", "UserKnownHostsFile="+k.KnownHosts,
		"-sudo-password-file", pwFile, "-message", "hello through two hops")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("example: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "hello through two hops (uid 0, pid ") || !strings.Contains(out, "uid=0 ") {
		t.Fatalf("the reply did not come from root's context two hops away:\n%s\nstderr:\n%s", out, stderr.String())
	}
}

// The example's generated code is what its generator makes from
// echo.thrift today (go generate would change nothing).
func TestGeneratedCodeIsCurrent(t *testing.T) {
	testhosts.Need(t, "go")
	if testing.Short() {
		t.Skip("runs Kitex's generator; skipped in -short")
	}
	dir := t.TempDir()
	for _, f := range []string{"echo.thrift"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	// The generator runs in dir, a copy of the IDL outside the module, so
	// it is told the import path that dir stands for.
	gen := exec.Command("go", "run", "./internal/kitexgen", "-dir", dir,
		"-module", "github.com/seed-a176d0ab/mitogen-go/examples/kitex")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, out)
	}
	diff := exec.Command("diff", "-r", "kitex_gen", filepath.Join(dir, "kitex_gen"))
	if out, err := diff.CombinedOutput(); err != nil {
		t.Fatalf("kitex_gen/ differs from a fresh generation (run go generate ./examples/kitex):\n%s", out)
	}
}
