package conformance

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// persistCLI runs the CLI with the persistent master of dir (and as the
// given credential when not nil).
func persistCLI(t *testing.T, dir string, cred *syscall.Credential, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(mitogenBin, args...)
	cmd.Env = append(os.Environ(), "MITOGEN_PERSIST=", "MITOGEN_PERSIST_DIR="+dir)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("mitogen %q: %v", args, err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("mitogen %q: still running after 3 minutes (stderr %q)", args, errb.String())
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

var masterPIDRe = regexp.MustCompile(`running \(pid (\d+)\)`)

// masterPID is the PID of the master running in dir (0: none).
func masterPID(t *testing.T, dir string) int {
	t.Helper()
	st, out, errs := persistCLI(t, dir, nil, nil, "master", "--check")
	if st != 0 {
		if !strings.Contains(errs, "no persistent master is running") {
			t.Fatalf("master --check: status %d, stderr %q", st, errs)
		}
		return 0
	}
	m := masterPIDRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("master --check printed %q", out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// waitPIDsGone waits (boundedly) until every pid has exited.
func waitPIDsGone(t *testing.T, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, pid := range pids {
		for !processGone(int32(pid)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: process %d still runs", what, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// logins counts the logins sshd accepted so far.
func logins(t *testing.T, s *testhosts.Server) int {
	t.Helper()
	b, err := os.ReadFile(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("Accepted publickey"))
}

// The persistent master over a real sshd on loopback, through the CLI:
// a second `mitogen exec --via ssh:h` reuses the first one's context (no
// new sshd login, the same agent process); stdio and exit statuses are
// those of a command run without it; --stop, the idle timeout and SIGTERM
// end it and its contexts; --no-persist starts none; a dead master's
// socket is replaced; another user is refused.
func TestPersistentMasterOverSSH(t *testing.T) {
	testhosts.Require(t)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	cache := t.TempDir()
	via := append([]string{"--via", s.Spec("root")}, sshFlags(k, cache)...)
	exec := func(extra ...string) []string { return append(append([]string{"exec"}, via...), extra...) }
	// Under a directory others may traverse, so that another user's client
	// meets the master's own directory (and is refused by what it finds).
	base, err := os.MkdirTemp("", "mitogen-persist-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	dir := filepath.Join(base, "p")
	stopAll := func(dir string) {
		if pid := masterPID(t, dir); pid != 0 {
			persistCLI(t, dir, nil, nil, "master", "--stop")
			if !processGone(int32(pid)) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	t.Cleanup(func() { stopAll(dir) })
	agentPID := func(extra ...string) int {
		t.Helper()
		st, out, errs := persistCLI(t, dir, nil, nil, exec(append(extra, "--", "sh", "-c", "echo $PPID")...)...)
		pid, err := strconv.Atoi(strings.TrimSpace(out))
		if st != 0 || err != nil {
			t.Fatalf("echo $PPID: status %d, stdout %q, stderr %q", st, out, errs)
		}
		return pid
	}

	t.Run("second exec reuses the context", func(t *testing.T) {
		before := logins(t, s)
		first := agentPID()
		afterFirst := logins(t, s)
		second := agentPID()
		afterSecond := logins(t, s)
		if afterFirst != before+1 {
			t.Errorf("the first exec made %d sshd logins; want 1", afterFirst-before)
		}
		if afterSecond != afterFirst || second != first {
			t.Errorf("the second exec made %d sshd logins and ran under agent %d (the first: %d); want none and the same agent",
				afterSecond-afterFirst, second, first)
		}
		if masterPID(t, dir) == 0 {
			t.Errorf("no master runs after exec")
		}
		// mitogen run: the program's ssh goes to the same context.
		runArgs := append(append([]string{"run"}, via...), "--", "sh", "-c", `ssh h 'echo $PPID'`)
		st, out, errs := persistCLI(t, dir, nil, nil, runArgs...)
		if pid, _ := strconv.Atoi(strings.TrimSpace(out)); st != 0 || pid != first {
			t.Errorf("mitogen run: status %d, ssh ran under agent %q (exec's: %d), stderr %q; want the same agent", st, out, first, errs)
		}
		if n := logins(t, s); n != afterSecond {
			t.Errorf("mitogen run made %d sshd logins; want none", n-afterSecond)
		}
	})

	t.Run("a dead context is dialed again on next use", func(t *testing.T) {
		old := agentPID()
		before := logins(t, s)
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitPIDsGone(t, "killed agent", old)
		if now := agentPID(); now == old {
			t.Errorf("agent %d after agent %d was killed; want a new one", now, old)
		}
		if n := logins(t, s) - before; n != 1 {
			t.Errorf("%d sshd logins to replace the dead context; want 1", n)
		}
	})

	t.Run("stdio and exit status as without a master", func(t *testing.T) {
		big := make([]byte, 4<<20)
		rand.Read(big)
		for _, c := range []struct {
			stdin  []byte
			script string
		}{
			{[]byte("in put\n"), "cat; echo err >&2; exit 4"},
			{nil, "exit 0"},
			{nil, "printf 'no newline'; printf 'e' >&2; exit 255"},
			{nil, "kill -9 $$"},
			{big, "cat; cat >&2 </dev/null; exit 9"},
			{[]byte("x"), "exec 0<&-; sleep 0.2; echo closed stdin; exit 3"},
		} {
			args := exec("--", "sh", "-c", c.script)
			pst, pout, perr := persistCLI(t, dir, nil, c.stdin, args...)
			nst, nout, nerr := persistCLI(t, dir, nil, c.stdin, append([]string{"exec", "--no-persist"}, args[1:]...)...)
			if pst != nst || pout != nout || perr != nerr {
				t.Errorf("%q: with the master status %d, %d bytes out, stderr %q; without: %d, %d bytes out, stderr %q",
					c.script, pst, len(pout), perr, nst, len(nout), nerr)
			}
		}
		runArgs := append(append([]string{"run"}, via...), "--", "sh", "-c", `ssh h 'cat; echo err >&2; exit 4'; echo "st=$?"; exit 6`)
		pst, pout, perr := persistCLI(t, dir, nil, []byte("in put\n"), runArgs...)
		nst, nout, nerr := persistCLI(t, dir, nil, []byte("in put\n"), append([]string{"run", "--no-persist"}, runArgs[1:]...)...)
		if pst != 6 || pout != "in put\nst=4\n" || perr != "err\n" || pst != nst || pout != nout || perr != nerr {
			t.Errorf("mitogen run: with the master %d %q %q, without %d %q %q; want 6, \"in put\\nst=4\\n\", \"err\\n\"", pst, pout, perr, nst, nout, nerr)
		}
		st, out, errs := persistCLI(t, dir, nil, []byte("in put\n"), exec("--", "sh", "-c", "cat; echo err >&2; exit 4")...)
		if st != 4 || out != "in put\n" || errs != "err\n" {
			t.Errorf("status %d, stdout %q, stderr %q; want 4, the input, err", st, out, errs)
		}
		if st, out, _ := persistCLI(t, dir, nil, big, exec("--", "cat")...); st != 0 || !bytes.Equal([]byte(out), big) {
			t.Errorf("4 MiB through cat: status %d, %d bytes back, identical %v", st, len(out), bytes.Equal([]byte(out), big))
		}
	})

	t.Run("another user is refused", func(t *testing.T) {
		os.Chmod(filepath.Dir(mitogenBin), 0o755) // so that nobody may run the CLI
		st, _, errs := persistCLI(t, dir, &syscall.Credential{Uid: 65534, Gid: 65534}, nil, exec("--", "true")...)
		if st != 255 || !strings.Contains(errs, "owned by uid 0, not by this user (uid 65534)") {
			t.Errorf("exec as nobody with root's master: status %d, stderr %q; want 255 and a refusal", st, errs)
		}
	})

	t.Run("a dead master's socket is replaced", func(t *testing.T) {
		old := masterPID(t, dir)
		oldAgent := agentPID()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitPIDsGone(t, "killed master", old)
		// Its contexts end with their ssh connection.
		waitPIDsGone(t, "the killed master's context", oldAgent)
		if _, err := os.Stat(filepath.Join(dir, "master.sock")); err != nil {
			t.Fatalf("the killed master's socket: %v; want it left behind", err)
		}
		if a := agentPID(); a == oldAgent {
			t.Errorf("agent %d after the master was killed; want a new one", a)
		}
		if now := masterPID(t, dir); now == 0 || now == old {
			t.Errorf("master %d after master %d was killed; want a new one", now, old)
		}
	})

	t.Run("stop ends the master and its contexts", func(t *testing.T) {
		agent := agentPID()
		pid := masterPID(t, dir)
		st, out, errs := persistCLI(t, dir, nil, nil, "master", "--stop")
		if st != 0 || !strings.Contains(out, "stopped") {
			t.Fatalf("master --stop: status %d, %q %q", st, out, errs)
		}
		waitPIDsGone(t, "after --stop", pid, agent)
		if _, err := os.Stat(filepath.Join(dir, "master.sock")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket after --stop: %v", err)
		}
		if st, _, errs := persistCLI(t, dir, nil, nil, "master", "--check"); st != 255 || !strings.Contains(errs, "no persistent master") {
			t.Errorf("master --check after --stop: status %d, %q; want 255", st, errs)
		}
	})

	t.Run("idle timeout ends the master and its contexts", func(t *testing.T) {
		agent := agentPID("--idle-timeout", "1s")
		pid := masterPID(t, dir)
		if pid == 0 {
			t.Fatal("no master")
		}
		waitPIDsGone(t, "after the idle timeout", pid, agent)
	})

	t.Run("SIGTERM ends the master and its contexts", func(t *testing.T) {
		agent := agentPID()
		pid := masterPID(t, dir)
		syscall.Kill(pid, syscall.SIGTERM)
		waitPIDsGone(t, "after SIGTERM", pid, agent)
	})

	t.Run("no-persist starts no master", func(t *testing.T) {
		fresh := filepath.Join(t.TempDir(), "q")
		t.Cleanup(func() { stopAll(fresh) })
		for _, args := range [][]string{append([]string{"exec", "--no-persist"}, via...), append([]string{"ping", "-n", "1", "--no-persist"}, via...)} {
			if args[0] == "exec" {
				args = append(args, "--", "true")
			}
			if st, _, errs := persistCLI(t, fresh, nil, nil, args...); st != 0 {
				t.Fatalf("%q: status %d, %q", args, st, errs)
			}
		}
		if pid := masterPID(t, fresh); pid != 0 {
			t.Errorf("a master (pid %d) runs after --no-persist", pid)
		}
		// The environment says it as well.
		cmd := exec("--", "true")
		c := osexec(mitogenBin, cmd...)
		c.Env = append(os.Environ(), "MITOGEN_PERSIST=no", "MITOGEN_PERSIST_DIR="+fresh)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("MITOGEN_PERSIST=no: %v %s", err, out)
		}
		if pid := masterPID(t, fresh); pid != 0 {
			t.Errorf("a master (pid %d) runs after MITOGEN_PERSIST=no", pid)
		}
	})
}

var osexec = exec.Command
