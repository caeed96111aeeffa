package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// echoAgent is a tiny "agent" that reads one line from its stream and
// says what it got, with its umask.
func echoAgent(t *testing.T) *Agent {
	p := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nread line\necho \"AGENT-RAN $1 $line $(umask)\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Agent{Path: p}
}

// startEcho starts a's script the way a transport does (Start), under
// umask 027, with Memory as given; it returns the agent bytes sent and what
// the agent answered to "hello".
func startEcho(t *testing.T, a *Agent, cache string, memory bool) (int64, string) {
	t.Helper()
	script, err := a.Script(cache)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sent int64
	conn, err := Start(ctx, Command{
		Cmd:    exec.Command("/bin/sh", "-c", `umask 027; exec /bin/sh -c "$0"`, script),
		Agent:  a,
		Sent:   &sent,
		Memory: memory,
	})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "hello\n"); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(conn)
	conn.Wait()
	return sent, string(out)
}

// With Memory the agent runs from a memfd: nothing is sent, no cache is
// made, its stream is the socket (it reads what was written), and it has
// the umask its command was given.
func TestMemoryRunsTheAgentWithoutAFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("memfd is Linux's")
	}
	a := echoAgent(t)
	cache := filepath.Join(t.TempDir(), "cache")
	sent, out := startEcho(t, a, cache, true)
	if sent != 0 || out != "AGENT-RAN agent hello 0027\n" {
		t.Fatalf("sent %d, agent said %q; want nothing sent and the agent run", sent, out)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the cache was made (%v): the agent did not run from memory", err)
	}
	f, err := a.memoryFile()
	if err != nil {
		t.Fatal(err)
	}
	// The memfd is sealed and read-only: no child can change what the next one runs.
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("the agent's memfd is writable")
	}
	if w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY, 0); err == nil {
		_, werr := w.Write([]byte("#!/bin/sh\necho EVIL\n"))
		w.Close()
		if werr == nil {
			t.Fatal("the agent's memfd could be reopened and written")
		}
	}
}

// Without memory (not asked, or not available) the disk cache serves, and
// the agent still gets its command's umask, not the cache's 077.
func TestDiskCacheWhenNoMemory(t *testing.T) {
	a := echoAgent(t)
	size, _ := a.CompressedSize()
	cache := filepath.Join(t.TempDir(), "cache")
	sent, out := startEcho(t, a, cache, false)
	if sent != int64(size) || out != "AGENT-RAN agent hello 0027\n" {
		t.Fatalf("first: sent %d of %d, agent said %q", sent, size, out)
	}
	// Memory asked but not available here: pipes, and the cache (0 bytes).
	b := echoAgent(t)
	b.Path = a.Path
	b.memOnce.Do(func() { b.memErr = errors.New("no memfd here") })
	sent, out = startEcho(t, b, cache, true)
	if sent != 0 || out != "AGENT-RAN agent hello 0027\n" {
		t.Fatalf("fallback: sent %d, agent said %q", sent, out)
	}
	st, err := os.Stat(cache)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v %v", st, err)
	}
	ents, _ := os.ReadDir(cache)
	for _, e := range ents {
		if fi, _ := e.Info(); fi == nil || fi.Mode().Perm() != 0o700 || !strings.HasPrefix(e.Name(), "agent-") {
			t.Fatalf("cache holds %s %v", e.Name(), fi.Mode())
		}
	}
}

// A cache directory that cannot be made (no home, a read-only one) falls
// back to $XDG_RUNTIME_DIR/mitogen-go; with neither, a clear error.
func TestCacheFallsBackToRuntimeDir(t *testing.T) {
	a := echoAgent(t)
	runtimeDir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	unwritable := "/proc/mitogen-no-such-dir/cache" // not even root can make it
	size, _ := a.CompressedSize()
	for i, want := range []int64{int64(size), 0} {
		sent, out := startEcho(t, a, unwritable, false)
		if sent != want || out != "AGENT-RAN agent hello 0027\n" {
			t.Fatalf("run %d: sent %d (want %d), agent said %q", i+1, sent, want, out)
		}
	}
	h, _ := a.Hash()
	if st, err := os.Stat(filepath.Join(runtimeDir, "mitogen-go", "agent-"+h)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("agent not cached in the runtime directory: %v", err)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	script, _ := a.Script(unwritable)
	out, err := exec.Command("/bin/sh", "-c", script).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot create agent cache") {
		t.Fatalf("no usable directory: %v %q", err, out)
	}
}

// A cache directory on a noexec mount is passed over for one that can run
// the agent.
func TestCacheSkipsNoexecMount(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("MITOGEN_CI") != "" {
			t.Fatal("CI must be able to run this test: it needs root (mount)")
		}
		t.Skip("skipping: needs root to mount a noexec tmpfs")
	}
	noexec := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "noexec,size=64m", "mitogen-test", noexec).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", noexec).Run() })
	a := echoAgent(t)
	runtimeDir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	size, _ := a.CompressedSize()
	for i, want := range []int64{int64(size), 0} {
		sent, out := startEcho(t, a, filepath.Join(noexec, "cache"), false)
		if sent != want || out != "AGENT-RAN agent hello 0027\n" {
			t.Fatalf("run %d: sent %d (want %d), agent said %q", i+1, sent, want, out)
		}
	}
	h, _ := a.Hash()
	if _, err := os.Stat(filepath.Join(runtimeDir, "mitogen-go", "agent-"+h)); err != nil {
		t.Fatalf("agent not cached in the runtime directory: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(noexec, "cache")); len(ents) != 0 {
		t.Fatalf("left in the noexec directory: %v", ents)
	}
}
