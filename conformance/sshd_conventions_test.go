package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// Remote commands get what sshd gives them (issue 10): the far user's
// umask, sshd's environment and no other, and the ssh user honoured or
// refused; and an agent reaches accounts with no writable home (it runs
// from memory).

// runAs runs the CLI with umask 022 (a usual login's) and env added to
// this process's environment, failing the test rather than hang.
func runAs(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `umask 022; exec "$0" "$@"`, mitogenBin}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mitogen %q did not end within 3m; stderr %q", args, errb.String())
	}
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

// noPasswordSudoer makes a user with no home directory who may run anything
// as anyone through sudo without a password; the user and the sudoers file
// go when the test ends.
func noPasswordSudoer(t *testing.T, name string) {
	t.Helper()
	testhosts.Require(t, "sudo", "useradd", "userdel", "visudo")
	if exec.Command("id", name).Run() != nil {
		if out, err := exec.Command("useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("userdel", name).Run() })
	}
	file := "/etc/sudoers.d/mitogen-test-" + name
	if err := os.WriteFile(file, []byte(name+" ALL=(ALL:ALL) NOPASSWD: ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(file) })
	if out, err := exec.Command("visudo", "-c", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("sudoers rule rejected: %v %s", err, out)
	}
}

// nobody's home (/nonexistent) does not exist and cannot be made: the
// agent runs from memory, for mitogen exec and for fakessh's ssh.
func TestViaSudoNobody(t *testing.T) {
	testhosts.Require(t, "sudo")
	home, err := exec.Command("sh", "-c", "getent passwd nobody | cut -d: -f6").Output()
	if err != nil || strings.TrimSpace(string(home)) == "" {
		t.Skip("no user nobody")
	}
	if _, err := os.Stat(strings.TrimSpace(string(home))); err == nil {
		t.Skipf("nobody's home %s exists here; the test would prove nothing", home)
	}
	st, out, errs := runAs(t, nil, "exec", "--via", "sudo:nobody", "--", "id", "-un")
	if st != 0 || out != "nobody\n" {
		t.Fatalf("exec --via sudo:nobody: status %d stdout %q stderr %q", st, out, errs)
	}
	// The agent's memfd (and anything else it inherited) is not passed on.
	st, out, errs = runAs(t, nil, "exec", "--via", "sudo:nobody", "--", "sh", "-c", "ls /proc/$$/fd")
	if st != 0 || out != "0\n1\n2\n" {
		t.Fatalf("descriptors of a command: status %d stdout %q stderr %q; want only 0 1 2", st, out, errs)
	}
	st, out, errs = runAs(t, nil, "run", "--via", "sudo:nobody", "--", "ssh", "h", "id -un; pwd")
	if st != 0 || out != "nobody\n/\n" {
		t.Fatalf("run --via sudo:nobody -- ssh: status %d stdout %q stderr %q", st, out, errs)
	}
	// Chained: root -> nobody -> (no password) user.
	noPasswordSudoer(t, "mitogennp")
	st, out, errs = runAs(t, nil, "exec", "--via", "sudo:mitogennp,sudo:nobody", "--", "id", "-un")
	if st != 0 || out != "nobody\n" {
		t.Fatalf("exec --via sudo:mitogennp,sudo:nobody: status %d stdout %q stderr %q", st, out, errs)
	}
}

// The ssh user names the account: a different one than the context's is a
// sudo hop from that context when it may sudo without a password, and
// otherwise an ssh-style refusal, never a command run as the wrong user.
func TestSSHUserThroughSudoHop(t *testing.T) {
	noPasswordSudoer(t, "mitogennp")
	for _, args := range [][]string{
		{"ssh", "root@h", "id -un"},
		{"ssh", "-o", "User=root", "h", "id -un"},
		{"ssh", "-l", "root", "h", "id -un"},
	} {
		st, out, errs := runAs(t, nil, append([]string{"run", "--via", "sudo:mitogennp", "--"}, args...)...)
		if st != 0 || out != "root\n" {
			t.Fatalf("%q through sudo:mitogennp: status %d stdout %q stderr %q; want it run as root", args, st, out, errs)
		}
	}
	// The context's own user: no hop.
	st, out, errs := runAs(t, nil, "run", "--via", "sudo:mitogennp", "--", "ssh", "mitogennp@h", "id -un")
	if st != 0 || out != "mitogennp\n" {
		t.Fatalf("mitogennp@h: status %d stdout %q stderr %q", st, out, errs)
	}
	// A user who may not sudo: refused the way ssh refuses, naming the user.
	st, out, errs = runAs(t, nil, "run", "--via", "sudo:nobody", "--", "ssh", "root@h", "id -un")
	if st != 255 || out != "" || !strings.Contains(errs, "Permission denied") || !strings.Contains(errs, "root") {
		t.Fatalf("root@h through sudo:nobody: status %d stdout %q stderr %q; want 255 and Permission denied naming root", st, out, errs)
	}
}

// A remote command's umask is the far user's (022 here), not the 077 the
// agent's bootstrap uses for its own files, through ssh and sudo hops, for
// mitogen exec and fakessh's ssh alike.
func TestRemoteUmaskIsTheUsers(t *testing.T) {
	testhosts.Require(t, "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, false)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	dir, err := os.MkdirTemp("/tmp", "mitogen-umask-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	for i, via := range [][]string{
		append([]string{"--via", s.Spec("root")}, sshFlags(k, t.TempDir())...),
		{"--via", "sudo:" + sudoUser},
	} {
		f := fmt.Sprintf("%s/f%d", dir, i)
		script := fmt.Sprintf("umask; rm -f %[1]s; touch %[1]s; stat -c %%a %[1]s; mkdir %[1]s.d; stat -c %%a %[1]s.d", f)
		st, out, errs := runAs(t, nil, append(append([]string{"exec"}, via...), "--", "sh", "-c", script)...)
		if st != 0 || out != "0022\n644\n755\n" {
			t.Errorf("exec %s: status %d stdout %q stderr %q; want umask 0022, a 644 file and a 755 directory", via[1], st, out, errs)
		}
		f += "ssh"
		script = fmt.Sprintf("umask; touch %[1]s; stat -c %%a %[1]s", f)
		st, out, errs = runAs(t, nil, append(append([]string{"run"}, via...), "--", "ssh", "h", script)...)
		if st != 0 || out != "0022\n644\n" {
			t.Errorf("run %s -- ssh: status %d stdout %q stderr %q; want umask 0022 and a 644 file", via[1], st, out, errs)
		}
	}
}

// envOf parses env(1) output.
func envOf(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// A fakessh remote command sees sshd's environment: SSH_CONNECTION and
// SSH_CLIENT as sshd sets them, the user's USER, LOGNAME, HOME, SHELL, PATH,
// MAIL; nothing of the master's or agent's own environment; and of what
// the client sends (SendEnv, SetEnv) only what sshd's default AcceptEnv
// (LANG LC_*) lets in.
func TestRemoteEnvironmentIsSSHDs(t *testing.T) {
	testhosts.Require(t, "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, false)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	env := []string{"MITOGEN_TEST_MARKER=leaked", "LANG=C.UTF-8", "LC_TIME=C", "NOTACCEPTED=x"}
	ssh := []string{"--", "ssh", "-o", "SendEnv=LANG LC_* NOTACCEPTED", "-o", "SetEnv=ALSONOT=y LC_PAPER=C", "h", "env"}
	for _, c := range []struct {
		name, user, serverPort string
		via                    []string
	}{
		{"local", "root", "22", []string{"--via", "local"}},
		{"sudo", sudoUser, "22", []string{"--via", "sudo:" + sudoUser}},
		{"ssh", "root", fmt.Sprint(s.Port), append([]string{"--via", s.Spec("root")}, sshFlags(k, t.TempDir())...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out, errs := runAs(t, env, append(append([]string{"run"}, c.via...), ssh...)...)
			if st != 0 {
				t.Fatalf("status %d stderr %q", st, errs)
			}
			e := envOf(out)
			for _, bad := range []string{"MITOGEN_TEST_MARKER", "NOTACCEPTED", "ALSONOT", "MITOGEN_FAKESSH_SOCKET", "MITOGEN_FAKESSH_SECRET"} {
				if v, ok := e[bad]; ok {
					t.Errorf("%s=%s reached the remote command", bad, v)
				}
			}
			if e["LANG"] != "C.UTF-8" || e["LC_TIME"] != "C" || e["LC_PAPER"] != "C" {
				t.Errorf("accepted variables LANG=%q LC_TIME=%q LC_PAPER=%q; want them sent", e["LANG"], e["LC_TIME"], e["LC_PAPER"])
			}
			home, _ := exec.Command("sh", "-c", "getent passwd "+c.user+" | cut -d: -f6").Output()
			if e["USER"] != c.user || e["LOGNAME"] != c.user || e["HOME"] != strings.TrimSpace(string(home)) || e["SHELL"] == "" ||
				e["PATH"] == "" || e["MAIL"] != "/var/mail/"+c.user {
				t.Errorf("USER %q LOGNAME %q HOME %q SHELL %q PATH %q MAIL %q; want the %s account's", e["USER"], e["LOGNAME"], e["HOME"], e["SHELL"], e["PATH"], e["MAIL"], c.user)
			}
			conn := strings.Fields(e["SSH_CONNECTION"])
			client := strings.Fields(e["SSH_CLIENT"])
			if len(conn) != 4 || conn[0] != "127.0.0.1" || conn[2] != "127.0.0.1" || conn[3] != c.serverPort ||
				len(client) != 3 || client[0] != conn[0] || client[1] != conn[1] || client[2] != conn[3] {
				t.Errorf("SSH_CONNECTION %q SSH_CLIENT %q; want loopback addresses as sshd sets them, server port %s", e["SSH_CONNECTION"], e["SSH_CLIENT"], c.serverPort)
			}
		})
	}
}
