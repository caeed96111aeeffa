package fakessh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

func TestProgramArgs(t *testing.T) {
	cases := []struct{ in, want []string }{
		{[]string{"rsync", "-a", "x", "h:y"}, []string{"rsync", "-a", "x", "h:y"}},
		{[]string{"scp", "-q", "a", "h:b"}, []string{"scp", "-S", "/s", "-q", "a", "h:b"}},
		{[]string{"scp", "-oStrictHostKeyChecking=no", "a", "h:b"}, []string{"scp", "-S", "/s", "-oStrictHostKeyChecking=no", "a", "h:b"}},
		{[]string{"scp", "-S", "myssh", "a", "h:b"}, []string{"scp", "-S", "myssh", "a", "h:b"}},
		{[]string{"/usr/bin/sftp", "-b", "S", "h"}, []string{"/usr/bin/sftp", "-S", "/s", "-b", "S", "h"}},
		{[]string{"sftp", "-qS", "x", "h"}, []string{"sftp", "-qS", "x", "h"}},
	}
	for _, c := range cases {
		if got := programArgs(c.in, "/s"); !reflect.DeepEqual(got, c.want) {
			t.Errorf("programArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// deadProcess returns the PID and start time of a process that has ended.
func deadProcess(t *testing.T) (int, string) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start, err := procStart(cmd.Process.Pid)
	cmd.Process.Kill()
	cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid, start
}

// A run removes the private directories of dead masters of this user, and
// nothing else.
func TestRemoveStaleDirs(t *testing.T) {
	tmp := t.TempDir()
	mk := func(name, owner string) string {
		t.Helper()
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "master.sock"), nil, 0o600)
		if owner != "" {
			if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(owner), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	deadPID, deadStart := deadProcess(t)
	ns, _ := os.Readlink("/proc/self/ns/pid")
	myStart, _ := procStart(os.Getpid())
	line := func(pid int, start, ns string) string {
		return fmt.Sprintf("pid=%d start=%s pidns=%s\n", pid, start, ns)
	}

	dead := mk(dirPrefix+"dead", line(deadPID, deadStart, ns))
	reused := mk(dirPrefix+"reused", line(os.Getpid(), myStart+"1", ns)) // our PID, another start: the PID was reused
	live := mk(dirPrefix+"live", ownerLine())
	noOwner := mk(dirPrefix+"noowner", "")
	garbled := mk(dirPrefix+"garbled", "pid=x\n")
	otherNS := mk(dirPrefix+"otherns", line(deadPID, deadStart, "pid:[1]"))
	notOurs := mk(dirPrefix+"notours", line(deadPID, deadStart, ns))
	other := mk("unrelated-dir", line(deadPID, deadStart, ns))
	if os.Getuid() == 0 {
		if err := os.Chown(notOurs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	} else {
		notOurs = "" // cannot make one as a plain user
	}
	// A symlink to a dead master's directory is not followed.
	target := mk("target", line(deadPID, deadStart, ns))
	if err := os.Symlink(target, filepath.Join(tmp, dirPrefix+"link")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tmp, dirPrefix+"file"), []byte(line(deadPID, deadStart, ns)), 0o600)

	removeStaleDirs(tmp, slog.New(slog.NewTextHandler(io.Discard, nil)))

	for _, d := range []string{dead, reused} {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s of a dead master was not removed (%v)", filepath.Base(d), err)
		}
	}
	for _, d := range []string{live, noOwner, garbled, otherNS, notOurs, other, target, filepath.Join(tmp, dirPrefix+"link"), filepath.Join(tmp, dirPrefix+"file")} {
		if d == "" {
			continue
		}
		if _, err := os.Lstat(d); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(d), err)
		}
	}
}

// Run removes the directories of dead masters, records its owner in its
// own private directory and removes that at the end.
func TestRunDirOwner(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	pid, start := deadProcess(t)
	ns, _ := os.Readlink("/proc/self/ns/pid")
	stale := filepath.Join(tmp, dirPrefix+"stale")
	os.Mkdir(stale, 0o700)
	os.WriteFile(filepath.Join(stale, ownerFile), []byte(fmt.Sprintf("pid=%d start=%s pidns=%s\n", pid, start, ns)), 0o600)
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	var out bytes.Buffer
	rn := &Runner{Router: r, Default: r.Context(0, "master"), Exe: "/bin/true", Stdout: &out}
	st, err := rn.Run(context.Background(), []string{"sh", "-c", `cat "$(dirname "$` + EnvSocket + `")/owner"`})
	if err != nil || st != 0 {
		t.Fatalf("status %d, %v", st, err)
	}
	if got := out.String(); got != ownerLine() || ownerDead(got) {
		t.Fatalf("owner file %q; want %q", got, ownerLine())
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, dirPrefix+"*")); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}
