package conformance

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExecRelaysStdioAndStatusThroughChain(t *testing.T) {
	cmd := exec.Command(mitogenBin, "exec", "--via", "local", "--via", "local", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v (stderr %q)", err, errb.String())
	}
	if out.String() != "out\n" || errb.String() != "err\n" {
		t.Fatalf("stdout %q stderr %q", out.String(), errb.String())
	}
}

func TestExec100MBRandomIdentical(t *testing.T) {
	const size = 100 << 20
	src := io.LimitReader(rand.New(rand.NewSource(1)), size)
	want := sha256.New()
	cmd := exec.Command(mitogenBin, "exec", "--via", "local", "--", "cat")
	cmd.Stdin = io.TeeReader(src, want)
	got := sha256.New()
	n := &countWriter{w: got}
	cmd.Stdout = n
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if n.n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("got %d bytes back, digest match %v", n.n, bytes.Equal(got.Sum(nil), want.Sum(nil)))
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

func TestExecErrorsSayWhatToDo(t *testing.T) {
	for _, args := range [][]string{
		{"exec"},
		{"exec", "--via", "bogus", "--", "true"},
		{"frobnicate"},
	} {
		out, err := exec.Command(mitogenBin, args...).CombinedOutput()
		if err == nil || len(out) == 0 {
			t.Errorf("mitogen %q: %v, output %q; want an error message", args, err, out)
		}
	}
	out, err := exec.Command(mitogenBin, "exec", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "usage: mitogen exec") {
		t.Errorf("--help: %v %q", err, out)
	}
}

// Relaying 1 GiB to a consumer slower than the producer keeps the master's
// peak RSS bounded: flow control holds each hop to a window.
func TestRelay1GiBBoundsMasterMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	script := `head -c 1073741824 /dev/zero | ssh somehost 'cat' | (sleep 1; cat > /dev/null)`
	cmd := exec.Command(mitogenBin, "run", "--via", "local", "--", "sh", "-c", script)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The master's own high-water mark (wait4's rusage would include its
	// descendants), read until it exits.
	peakKiB := 0
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%v: %s", err, errb.String())
			}
			running = false
		case <-time.After(5 * time.Millisecond):
			if kib := vmHWM(cmd.Process.Pid); kib > peakKiB {
				peakKiB = kib
			}
		}
	}
	peakMiB := int64(peakKiB / 1024)
	t.Logf("master peak RSS while relaying 1 GiB: %d MiB", peakMiB)
	if peakMiB >= 64 {
		t.Fatalf("master peak RSS %d MiB, want < 64 MiB", peakMiB)
	}
}

// vmHWM is a process's peak resident set size in KiB (0 if unknown).
func vmHWM(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return 0
}
