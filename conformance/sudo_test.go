package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

const sudoUser, sudoPassword = "mitogentest", "s3cret-pw"

func passwordFile(t *testing.T, pw string) string {
	f := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(f, []byte(pw+"\n"), 0o600)
	return f
}

// root -> sudo:mitogentest (no password: root) -> sudo:root, where the
// unprivileged user's sudo asks a password and requires a tty.
func TestSudoWithPasswordAndRequiretty(t *testing.T) {
	testhosts.Require(t, "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, true)
	st, out, errs := runCLI(t, nil, "exec", "--via", "sudo:"+sudoUser, "--via", "sudo:root",
		"--sudo-password-file", passwordFile(t, sudoPassword), "--", "sh", "-c", "id -un; echo $HOME")
	if st != 0 || out != "root\n/root\n" {
		t.Fatalf("status %d stdout %q stderr %q", st, out, errs)
	}
	st, out, _ = runCLI(t, nil, "exec", "--via", "sudo:"+sudoUser, "--", "id", "-un")
	if st != 0 || out != sudoUser+"\n" {
		t.Fatalf("root to %s: status %d %q", sudoUser, st, out)
	}
}

func TestSudoWrongPasswordFailsFast(t *testing.T) {
	testhosts.Require(t, "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, true)
	t0 := time.Now()
	st, _, errs := runCLI(t, nil, "exec", "--via", "sudo:"+sudoUser, "--via", "sudo:root",
		"--sudo-password-file", passwordFile(t, "wrong"), "--", "true")
	t.Logf("failed after %v", time.Since(t0))
	if st == 0 || !strings.Contains(errs, "wrong password") {
		t.Fatalf("status %d stderr %q; want a wrong-password error", st, errs)
	}
	st, _, errs = runCLI(t, nil, "exec", "--via", "sudo:"+sudoUser, "--via", "sudo:root", "--", "true")
	if st == 0 || !strings.Contains(errs, "password") {
		t.Fatalf("no password given: status %d stderr %q", st, errs)
	}
}

// An ssh password is answered on ssh's terminal; a wrong one is a clear error.
func TestSSHPasswordOnPTY(t *testing.T) {
	testhosts.Require(t, "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, false)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	flags := []string{"--ssh-option", "UserKnownHostsFile=" + k.KnownHosts, "--ssh-option", "PubkeyAuthentication=no"}
	args := append([]string{"exec", "--via", s.Spec(sudoUser), "--ssh-password-file", passwordFile(t, sudoPassword)}, flags...)
	st, out, errs := runCLI(t, nil, append(args, "--", "id", "-un")...)
	if st != 0 || out != sudoUser+"\n" {
		t.Fatalf("status %d out %q err %q", st, out, errs)
	}
	if strings.Contains(errs, sudoPassword) {
		t.Fatal("the password appears in the output")
	}
	args = append([]string{"exec", "--via", s.Spec(sudoUser), "--ssh-password-file", passwordFile(t, "nope")}, flags...)
	st, _, errs = runCLI(t, nil, append(args, "--", "true")...)
	if st == 0 || !strings.Contains(errs, "authentication failed") || strings.Contains(errs, "nope") {
		t.Fatalf("wrong password: status %d stderr %q", st, errs)
	}
}
