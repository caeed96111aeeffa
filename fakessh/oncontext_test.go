package fakessh_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// runOn runs argv in context on under fakessh, ssh destinations served by
// hosts (and no default).
func runOn(t *testing.T, on *core.Context, hosts map[string]*core.Context, argv ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	rn := &fakessh.Runner{Router: on.Router(), On: on, Hosts: hosts, Stdout: &out, Stderr: &errb}
	st, err := rn.Run(ctxT(t, 120*time.Second), argv)
	if err != nil {
		t.Fatalf("Run %q on %s: %v (stderr %s)", argv, on, err, errb.String())
	}
	return st, out.String(), errb.String()
}

// A program run in a context (Runner.On) has its ssh commands served by
// another context of the master: rsync copies byte-identically between
// them, ssh's exit status and the program's come back exact, and a host
// name the run was not given is refused as ssh refuses an unknown host.
func TestRunOnContext(t *testing.T) {
	testhosts.Need(t, "rsync")
	r, on := chain(t, 2)
	dest := chainOn(t, r, 1)
	hosts := map[string]*core.Context{"web2": dest}

	src, dst := t.TempDir(), t.TempDir()
	data := make([]byte, 2<<20+5)
	rand.Read(data)
	os.WriteFile(filepath.Join(src, "f.bin"), data, 0o644)
	os.Symlink("f.bin", filepath.Join(src, "l"))
	st, out, errs := runOn(t, on, hosts, "rsync", "-a", src+"/", "web2:"+dst+"/")
	if st != 0 {
		t.Fatalf("rsync: status %d, stdout %q, stderr %q", st, out, errs)
	}
	if o, err := exec.Command("diff", "-r", "--no-dereference", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy differs: %s", o)
	}

	st, out, errs = runOn(t, on, hosts, "sh", "-c", `ssh web2 'echo out; echo err >&2; exit 7'; echo "ssh=$?"; exit 9`)
	if st != 9 || out != "out\nssh=7\n" || errs != "err\n" {
		t.Fatalf("exit codes: status %d, stdout %q, stderr %q", st, out, errs)
	}
	st, out, _ = runOn(t, on, hosts, "ssh", "web2", "echo direct")
	if st != 0 || out != "direct\n" {
		t.Fatalf("ssh as the program: status %d, stdout %q", st, out)
	}
	mark := filepath.Join(t.TempDir(), "mark")
	st, out, errs = runOn(t, on, hosts, "sh", "-c", `ssh other "touch '`+mark+`'"; echo "ssh=$?"`)
	if st != 0 || out != "ssh=255\n" || !strings.Contains(errs, "Could not resolve hostname other") {
		t.Fatalf("unknown host: status %d, stdout %q, stderr %q", st, out, errs)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the unknown host's command ran")
	}
	rn := &fakessh.Runner{Router: on.Router(), On: on}
	if st, err := rn.Run(ctxT(t, 60*time.Second), []string{"no-such-program-here"}); st != 127 || err == nil {
		t.Fatalf("a program not found: status %d, %v; want 127 and an error", st, err)
	}
	st, _, _ = runOn(t, on, hosts, "sh", "-c", "kill -TERM $$")
	if st != 143 {
		t.Fatalf("program killed by SIGTERM: status %d, want 143", st)
	}
	// The run's private directory in the context is gone once the
	// program is done (the context removes it after EXIT).
	st, out, _ = runOn(t, on, hosts, "sh", "-c", `dirname "$`+fakessh.EnvSocket+`"`)
	dir := strings.TrimSpace(out)
	if st != 0 || !strings.Contains(dir, "mitogen-fakessh-") {
		t.Fatalf("private directory: status %d, %q", st, out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%s still there after the run (%v)", dir, err)
		}
	}
}

// Agent.start_fakessh refuses a program that is not argv, and a handle
// that is not a dynamic one; FakeSSH.join is refused to anyone but the
// context running the program.
func TestStartFakesshRefusals(t *testing.T) {
	_, on := chain(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, prog := range []*mitogen.FakeSSHProgram{
		{Spec: &mitogen.ProcessSpec{Command: "true"}, Handle: 5000},
		{Spec: &mitogen.ProcessSpec{}, Handle: 5000},
		{Spec: &mitogen.ProcessSpec{Argv: []string{"true"}}, Handle: mitogen.SHUTDOWN},
		{Spec: &mitogen.ProcessSpec{Argv: []string{"true"}}, Handle: mitogen.IS_DEAD},
		{Handle: 5000},
	} {
		if _, err := on.Agent().StartFakessh(ctx, prog); err == nil {
			t.Errorf("start_fakessh %+v accepted", prog)
		}
	}
}

// lineNotifier passes the first line written to it to a channel.
type lineNotifier struct {
	buf  bytes.Buffer
	line chan string
}

func (l *lineNotifier) Write(p []byte) (int, error) {
	l.buf.Write(p)
	if i := bytes.IndexByte(l.buf.Bytes(), '\n'); i >= 0 && l.line != nil {
		l.line <- string(l.buf.Bytes()[:i])
		l.line = nil
	}
	return len(p), nil
}

// When Run's ctx ends (the user's ^C), the program in the context gets
// SIGTERM (then SIGKILL), as a local run's program does: it is gone when
// Run returns 128+15.
func TestRunOnContextCancelEndsProgram(t *testing.T) {
	_, on := chain(t, 1)
	lines := make(chan string, 1)
	out := &lineNotifier{line: lines}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		st  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		rn := &fakessh.Runner{Router: on.Router(), On: on, Stdout: out, Stderr: os.Stderr}
		st, err := rn.Run(ctx, []string{"sh", "-c", "sleep 1000 & echo $!; wait"})
		done <- result{st, err}
	}()
	var pid int
	select {
	case line := <-lines:
		pid, _ = strconv.Atoi(strings.TrimSpace(line))
	case <-time.After(60 * time.Second):
		t.Fatal("the program never started")
	}
	if pid <= 0 {
		t.Fatal("no pid")
	}
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after its ctx ended")
	}
	if res.st != 128+15 {
		t.Errorf("status %d (%v), want %d", res.st, res.err, 128+15)
	}
	for deadline := time.Now().Add(30 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the program's sleep (pid %d) still runs after Run returned", pid)
		}
	}
}
