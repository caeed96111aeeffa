package conformance

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// runCLIEnv runs the CLI with extra environment, stdin from a pipe and
// stdout to the given file; it returns the status and stderr.
func runCLIEnv(t *testing.T, env []string, stdout *os.File, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(mitogenBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader("")
	cmd.Stdout = stdout
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), errb.String()
	}
	t.Fatalf("mitogen %q: %v", args, err)
	return 0, ""
}

// runWithStdoutPipe runs the CLI with its stdout a pipe whose inode it
// knows: it returns the status, what came out, "pipe:[inode]\n" (what
// readlink /proc/self/fd/1 prints for that very pipe) and stderr.
func runWithStdoutPipe(t *testing.T, args ...string) (status int, out, own, errs string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(w.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	outc := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		b.ReadFrom(r)
		r.Close()
		outc <- b.String()
	}()
	status, errs = runCLIEnv(t, nil, w, args...)
	w.Close()
	return status, <-outc, fmt.Sprintf("pipe:[%d]\n", st.Ino), errs
}

// FD HANDOFF, end to end through the CLI, to a local and a sudo
// destination: the remote command's stdout is the program's own pipe (no
// byte relayed), exit status and stderr are exact, and rsync --whole-file
// of a large file arrives byte-identical with the remote rsync reading the
// rsync client's own socket (a relayed command reads a pipe, which is what
// MITOGEN_FAKESSH_HANDOFF=0 shows).
func TestFakeSSHHandoff(t *testing.T) {
	testhosts.Require(t, "rsync")
	vias := []string{"local"}
	if os.Getuid() == 0 {
		testhosts.SudoUser(t, sudoUser, sudoPassword, true)
		vias = append(vias, "sudo:"+sudoUser)
	} else if os.Getenv("MITOGEN_CI") != "" {
		t.Fatal("CI must run this test as root (the sudo destination)")
	}
	src := t.TempDir()
	os.Chmod(src, 0o755)
	data := make([]byte, 96<<20+13)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, via := range vias {
		t.Run(via, func(t *testing.T) {
			status, out, want, errs := runWithStdoutPipe(t, "run", "--via", via, "--", "ssh", "h",
				"readlink /proc/self/fd/1; echo err >&2; exit 44")
			if status != 44 || out != want || errs != "err\n" {
				t.Fatalf("status %d, stdout %q, stderr %q; want 44, %q (the program's own pipe), \"err\\n\"", status, out, errs, want)
			}

			remote, err := os.MkdirTemp("/tmp", "mitogen-handoff-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(remote) })
			if strings.HasPrefix(via, "sudo:") {
				u, _ := exec.Command("id", "-u", sudoUser).Output()
				uid, _ := strconv.Atoi(strings.TrimSpace(string(u)))
				os.Chown(remote, uid, uid)
			}
			rsync := func(env []string, name string) string {
				t.Helper()
				status, errs := runCLIEnv(t, env, nil, "run", "--via", via, "--", "rsync", "--whole-file",
					"--rsync-path", "readlink /proc/self/fd/0 >&2; rsync", filepath.Join(src, "big.bin"), "h:"+remote+"/"+name)
				if status != 0 {
					t.Fatalf("rsync: status %d, stderr %q", status, errs)
				}
				got, err := os.ReadFile(filepath.Join(remote, name))
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("rsync copy differs (%d of %d bytes, %v)", len(got), len(data), err)
				}
				return errs
			}
			if errs := rsync(nil, "a"); !strings.HasPrefix(errs, "socket:[") {
				t.Fatalf("the remote rsync's stdin is %q; want the rsync client's socket (handed off)", errs)
			}
			if errs := rsync([]string{"MITOGEN_FAKESSH_HANDOFF=0"}, "b"); !strings.HasPrefix(errs, "pipe:[") {
				t.Fatalf("relayed: the remote rsync's stdin is %q; want a pipe", errs)
			}
		})
	}
}

// FD HANDOFF never goes past a hop that leaves the machine: through an ssh
// hop (here to an sshd on loopback, so the far side shares this kernel and
// boot ID and would take the descriptors if it saw the offer) the master
// keeps the offer to itself and the session is relayed. A compromised far
// host must not learn the socket and token. The same ssh destination one
// sudo hop further is still relayed: a same-machine hop from a context
// elsewhere is elsewhere.
func TestFakeSSHHandoffStopsAtSSH(t *testing.T) {
	testhosts.Require(t)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	ssh := []string{"--identity", k.UserKey, "--ssh-option", "UserKnownHostsFile=" + k.KnownHosts}
	for _, via := range [][]string{{"--via", s.Spec("root")}, {"--via", s.Spec("root"), "--via", "sudo:root"}} {
		t.Run(strings.Join(via, " "), func(t *testing.T) {
			args := append(append([]string{"run"}, via...), ssh...)
			args = append(args, "--", "ssh", "h", "readlink /proc/self/fd/1; exit 45")
			status, out, own, errs := runWithStdoutPipe(t, args...)
			if status != 45 || !strings.HasPrefix(out, "pipe:[") || out == own {
				t.Fatalf("status %d, stdout %q (the program's own pipe is %q), stderr %q; want 45 and another pipe (relayed)", status, out, own, errs)
			}
		})
	}
}
