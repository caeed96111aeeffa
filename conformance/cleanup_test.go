package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGINT to `mitogen run` removes its private directory and socket, and
// neither the program nor the remote command outlives it.
func TestRunCleansUpOnSIGINT(t *testing.T) {
	tmp := t.TempDir()
	pidFile := filepath.Join(tmp, "remote.pid")
	cmd := exec.Command(mitogenBin, "run", "--via", "local", "--", "sh", "-c", "ssh h 'echo $$ > "+pidFile+"; exec sleep 300'")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var remote int
	for i := 0; i < 1000 && remote == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		remote, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if remote == 0 {
		cmd.Process.Kill()
		t.Fatal("remote command did not start")
	}
	private, _ := filepath.Glob(filepath.Join(tmp, "mitogen-fakessh-*"))
	if len(private) != 1 {
		t.Fatalf("private directories while running: %v", private)
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("mitogen run did not end after SIGINT")
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "mitogen-fakessh-*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	for i := 0; i < 500; i++ {
		if syscall.Kill(remote, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("remote command %d outlived mitogen run", remote)
}
