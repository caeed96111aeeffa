package pgroup

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func start(t *testing.T, script string, args ...string) *Leader {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", script}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := Watch(cmd)
	t.Cleanup(func() { _ = l.Signal(syscall.SIGKILL); _ = l.Reap() })
	return l
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("gave up waiting for %s", what)
}

// An exited leader stays unreaped (its ID reserved) until Reap; its
// group's other members are seen and can be signalled meanwhile; after
// Reap nothing is signalled.
func TestLeaderLifecycle(t *testing.T) {
	l := start(t, "sleep 1000 & echo $! >/dev/null; exit 3")
	<-l.Exited()
	if _, pg, err := stat(l.Pid()); err != nil || pg != l.Pid() {
		t.Fatalf("the exited leader is not held as a zombie in its group: %v (pgrp %d)", err, pg)
	}
	if !l.MembersAlive() {
		t.Fatal("the background sleep is not seen as a live member")
	}
	if err := l.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("signalling the group of an exited, unreaped leader: %v", err)
	}
	waitFor(t, "the group's members to end", func() bool { return !l.MembersAlive() })
	var ee *exec.ExitError
	if err := l.Reap(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Reap: %v; want exit status 3", err)
	}
	if err := l.Reap(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("second Reap: %v; want the same status", err)
	}
	if err := l.Signal(syscall.SIGKILL); !errors.Is(err, ErrReaped) {
		t.Fatalf("Signal after Reap: %v; want ErrReaped", err)
	}
	if _, _, err := stat(l.Pid()); err == nil {
		t.Fatalf("process %d still exists after Reap", l.Pid())
	}
}

// A command name holding ") Z 1 2 (" does not fool the /proc parsing.
func TestStatParsesOddNames(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	odd := filepath.Join(t.TempDir(), "x) Z 1 2 (y")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	l := start(t, "exec \"$0\" 1000", odd)
	waitFor(t, "the renamed sleep", func() bool {
		st, pg, err := stat(l.Pid())
		return err == nil && st == 'S' && pg == l.Pid()
	})
}
