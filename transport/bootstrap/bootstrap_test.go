package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeAgent is a tiny "agent" that proves it ran.
func fakeAgent(t *testing.T) *Agent {
	p := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho AGENT-RAN \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Agent{Path: p}
}

// runScript runs the bootstrap script with /bin/sh as a transport would on
// the far side, and returns the agent bytes sent and what the agent printed.
func runScript(t *testing.T, a *Agent, cache string) (int64, string) {
	t.Helper()
	script, err := a.Script(cache)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	br := bufio.NewReader(stdout)
	sent, err := Handshake(ctx, br, stdin, a)
	if err != nil {
		t.Fatalf("handshake: %v (stderr %s)", err, stderr.String())
	}
	rest, _ := io.ReadAll(br)
	cmd.Wait()
	return sent, string(rest)
}

func TestInstallThenCached(t *testing.T) {
	a := fakeAgent(t)
	cache := filepath.Join(t.TempDir(), "cache")
	size, _ := a.CompressedSize()
	sent, out := runScript(t, a, cache)
	if sent != int64(size) || out != "AGENT-RAN agent\n" {
		t.Fatalf("first run: sent %d of %d, agent said %q", sent, size, out)
	}
	st, err := os.Stat(cache)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v %v", st.Mode(), err)
	}
	sent, out = runScript(t, a, cache)
	if sent != 0 || out != "AGENT-RAN agent\n" {
		t.Fatalf("second run: sent %d, agent said %q", sent, out)
	}
}

func TestTamperedCacheIsReinstalled(t *testing.T) {
	a := fakeAgent(t)
	cache := t.TempDir()
	runScript(t, a, cache)
	h, _ := a.Hash()
	cached := filepath.Join(cache, "agent-"+h)
	if err := os.WriteFile(cached, []byte("#!/bin/sh\necho EVIL\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	sent, out := runScript(t, a, cache)
	if sent == 0 || out != "AGENT-RAN agent\n" {
		t.Fatalf("a tampered cache was run or not replaced: sent %d, output %q", sent, out)
	}
}

func TestPlatformMismatchSendsNothing(t *testing.T) {
	a := fakeAgent(t)
	var w bytes.Buffer
	_, err := Handshake(context.Background(), bufio.NewReader(strings.NewReader("MITOGEN0 need Plan9 mips\n")), &w, a)
	var pe *PlatformError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "Plan9 mips") {
		t.Fatalf("got %v, want a platform error quoting uname -sm", err)
	}
	if w.Len() != 0 {
		t.Fatalf("sent %d bytes to an incompatible host", w.Len())
	}
}

func TestUnexpectedOutputIsAnError(t *testing.T) {
	a := fakeAgent(t)
	_, err := Handshake(context.Background(), bufio.NewReader(strings.NewReader("Welcome to my server!\n")), io.Discard, a)
	if err == nil || !strings.Contains(err.Error(), "Welcome") {
		t.Fatalf("got %v", err)
	}
}

func TestShellQuote(t *testing.T) {
	out, err := exec.Command("/bin/sh", "-c", "printf %s "+ShellQuote("a 'b' $c \\d")).Output()
	if err != nil || string(out) != "a 'b' $c \\d" {
		t.Fatalf("%q %v", out, err)
	}
}
