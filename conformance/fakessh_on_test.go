package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// envForger makes the conformance test binary the forging program of
// TestFakeSSHOnContextNetns (see forgerMain); its value is the directory
// the forged commands would create files in.
const envForger = "MITOGEN_TEST_FAKESSH_FORGER"

// `mitogen run --on ssh:A --host B=ssh:bastion,ssh:B -- rsync ... B:...`
// in network namespaces: the master reaches A and the bastion, only the
// bastion reaches B, and A reaches neither the bastion nor B. rsync runs
// on A (its own ssh is the fake one there), its remote side on B, the
// bytes go A -> master -> bastion -> B, and arrive identical. Exit codes
// of the program and of its ssh commands are exact. The program on A can
// reach only the hosts it was given: a host name the master did not map
// (the bastion's) is refused as ssh refuses an unknown host, and a program
// that joins the run and forges requests (another host, raw argv, another
// peer, Agent calls to every context ID, the run's join) starts nothing.
func TestFakeSSHOnContextNetns(t *testing.T) {
	testhosts.Require(t, "ip", "rsync")
	k := testhosts.NewKeys(t)
	pid := os.Getpid() % 10000
	nsA, nsX, nsB := fmt.Sprintf("mgoA%d", pid), fmt.Sprintf("mgoX%d", pid), fmt.Sprintf("mgoB%d", pid)
	for _, ns := range []string{nsA, nsX, nsB} {
		testhosts.Netns(t, ns)
	}
	// Subnets of their own, so that parallel runs of other tests do not clash.
	n := 4 * (os.Getpid() % 60)
	sub := func(i int) string { return fmt.Sprintf("10.233.%d", n+i) }
	testhosts.Veth(t, "", sub(0)+".1/24", nsA, sub(0)+".2/24")
	testhosts.Veth(t, "", sub(1)+".1/24", nsX, sub(1)+".2/24")
	testhosts.Veth(t, nsX, sub(2)+".1/24", nsB, sub(2)+".2/24")
	a := testhosts.Start(t, k, sub(0)+".2", nsA)
	x := testhosts.Start(t, k, sub(1)+".2", nsX)
	b := testhosts.Start(t, k, sub(2)+".2", nsB)
	// Neither the master nor A can reach B; A cannot reach the bastion.
	unreachable := func(fromNS string, s *testhosts.Server) {
		t.Helper()
		args := append(s.SSHArgs(), "-o", "ConnectTimeout=2", "-l", "root", s.Addr, "true")
		cmd := exec.Command("ssh", args...)
		if fromNS != "" {
			cmd = exec.Command("ip", append([]string{"netns", "exec", fromNS, "ssh"}, args...)...)
		}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("%s is reachable from %q; the test would prove nothing (%s)", s.Addr, fromNS, out)
		}
	}
	unreachable("", b)
	unreachable(nsA, b)
	unreachable(nsA, x)

	cache := t.TempDir()
	run := func(program ...string) (int, string, string) {
		t.Helper()
		args := append([]string{"run", "--on", a.Spec("root"), "--host", "B=" + x.Spec("root") + "," + b.Spec("root")}, sshFlags(k, cache)...)
		return runCLIWithin(t, 3*time.Minute, append(append(args, "--"), program...)...)
	}

	t.Run("rsync", func(t *testing.T) {
		src, dst, where := t.TempDir(), t.TempDir(), t.TempDir()
		os.MkdirAll(filepath.Join(src, "d e", "sub"), 0o755)
		big := make([]byte, 5<<20+3)
		rand.Read(big)
		os.WriteFile(filepath.Join(src, "d e", "big.bin"), big, 0o640)
		os.WriteFile(filepath.Join(src, "d e", "sub", "empty"), nil, 0o600)
		os.WriteFile(filepath.Join(src, "text"), []byte("hello\n"), 0o644)
		os.Symlink("d e/big.bin", filepath.Join(src, "link"))
		progWhere, remoteWhere := filepath.Join(where, "program"), filepath.Join(where, "remote")
		// The program records the addresses of the host it runs on, and
		// rsync's remote side (through --rsync-path) those of its own.
		st, out, errs := run("sh", "-c", `ip -o -4 addr show > "$1" && exec rsync -a --rsync-path="ip -o -4 addr show > $2; rsync" "$3/" "B:$4/"`,
			"sh", progWhere, remoteWhere, src, dst)
		if st != 0 {
			t.Fatalf("rsync on A to B: status %d, stdout %q, stderr %q", st, out, errs)
		}
		if out, err := exec.Command("diff", "-r", "--no-dereference", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("copy differs: %s", out)
		}
		if got, _ := os.ReadFile(filepath.Join(dst, "d e", "big.bin")); !bytes.Equal(got, big) {
			t.Fatal("big.bin differs")
		}
		ranAt := func(f, want string) {
			t.Helper()
			addrs, err := os.ReadFile(f)
			if err != nil || !strings.Contains(string(addrs), want+"/24") {
				t.Fatalf("%s: addresses %q (%v), want %s's", filepath.Base(f), addrs, err, want)
			}
			for _, other := range []string{a.Addr, x.Addr, b.Addr} {
				if other != want && strings.Contains(string(addrs), other+"/") {
					t.Fatalf("%s ran where %s is: %q", filepath.Base(f), other, addrs)
				}
			}
		}
		ranAt(progWhere, a.Addr)
		ranAt(remoteWhere, b.Addr)
	})

	t.Run("exit codes", func(t *testing.T) {
		st, out, errs := run("sh", "-c", `ssh B 'echo out; echo err >&2; exit 7'; echo "ssh=$?"; exit 9`)
		if st != 9 || out != "out\nssh=7\n" || !strings.Contains(errs, "err\n") {
			t.Fatalf("status %d, stdout %q, stderr %q; want 9, out and ssh=7, err", st, out, errs)
		}
		st, _, errs = run("sh", "-c", `kill -TERM $$`)
		if st != 128+15 {
			t.Fatalf("program killed by SIGTERM: status %d (stderr %q), want %d", st, errs, 128+15)
		}
	})

	t.Run("hostile", func(t *testing.T) {
		marks := t.TempDir()
		os.Chmod(marks, 0o777)
		mark := filepath.Join(marks, "bastion")
		// A host the master holds a context for, but did not give.
		st, out, errs := run("sh", "-c", `ssh bastion "touch '`+mark+`'"; echo "ssh=$?"`)
		if st != 0 || out != "ssh=255\n" || !strings.Contains(errs, "bastion") {
			t.Fatalf("ssh to an unmapped host: status %d, stdout %q, stderr %q; want ssh=255 and a message", st, out, errs)
		}
		// A program that joins the run as our ssh does and forges requests.
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		st, out, errs = run("env", envForger+"="+marks, exe)
		if st != 0 || !strings.Contains(out, "forger: everything refused") {
			t.Fatalf("forger: status %d, stdout %q, stderr %q", st, out, errs)
		}
		t.Logf("forger:\n%s", out)
		if ents, _ := os.ReadDir(marks); len(ents) != 0 {
			t.Fatalf("something ran on the program's behalf: %v\nforger said:\n%s", ents, out)
		}
		// The run's mechanism still serves the program's legitimate ssh.
		st, out, errs = run("ssh", "B", "echo still here")
		if st != 0 || out != "still here\n" {
			t.Fatalf("after the forger: status %d, stdout %q, stderr %q", st, out, errs)
		}
	})
}

// forgerMain is a program run on A under `mitogen run --on`: it joins the
// run through the context's socket as our ssh does, then tries to make the
// master (or any context) run a command that creates a file in dir. It
// prints one line per attempt and "forger: everything refused" when every
// attempt failed; its status is 0 unless it could not join.
func forgerMain(dir string) int {
	handle, err := strconv.Atoi(os.Getenv(fakessh.EnvHandle))
	if err != nil {
		fmt.Println("forger: no handle:", err)
		return 2
	}
	conn, err := net.Dial("unix", os.Getenv(fakessh.EnvSocket))
	if err != nil {
		fmt.Println("forger: dial:", err)
		return 2
	}
	conn.Write([]byte(os.Getenv(fakessh.EnvSecret) + "\n"))
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r, err := core.Boot(conn, cfg, nil)
	if err != nil {
		fmt.Println("forger: boot:", err)
		return 2
	}
	defer r.Close()
	accepted := 0
	try := func(what string, call func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := call(ctx); err != nil {
			fmt.Printf("forger: %s: refused: %v\n", what, err)
			return
		}
		accepted++
		fmt.Printf("forger: %s: ACCEPTED\n", what)
	}
	touch := func(name string) string { return "touch '" + filepath.Join(dir, name) + "'" }
	master := &mitogen.FakeSSHClient{Caller: masterHandle{r: r, handle: int32(handle)}}
	try("start_slave on a host not given", func(ctx context.Context) error {
		_, err := master.StartSlave(ctx, &mitogen.StartSlaveRequest{Host: "bastion", Spec: &mitogen.ProcessSpec{Command: touch("host")}})
		return err
	})
	try("start_slave with raw argv and another peer", func(ctx context.Context) error {
		_, err := master.StartSlave(ctx, &mitogen.StartSlaveRequest{Host: "B", Spec: &mitogen.ProcessSpec{Argv: []string{"touch", filepath.Join(dir, "argv")}, PeerId: mitogen.MASTER_ID}})
		return err
	})
	try("join the run as if it were the context running the program", func(ctx context.Context) error {
		_, err := master.Join(ctx, int32(os.Getpid()))
		return err
	})
	for id := int32(0); id <= 40; id++ {
		if id == r.ID() {
			continue
		}
		c := r.Context(id, fmt.Sprintf("context %d", id))
		try(fmt.Sprintf("Agent.start_process in context %d", id), func(ctx context.Context) error {
			_, err := c.Agent().StartProcess(ctx, &mitogen.ProcessSpec{Command: touch(fmt.Sprintf("start_process.%d", id)), PeerId: r.ID()})
			return err
		})
		try(fmt.Sprintf("Agent.connect in context %d", id), func(ctx context.Context) error {
			_, err := c.Agent().Connect(ctx, &mitogen.ConnectRequest{ContextId: 1000 + id, Spec: "local", Name: "forged"})
			return err
		})
	}
	if accepted > 0 {
		fmt.Printf("forger: %d accepted\n", accepted)
		return 0
	}
	fmt.Println("forger: everything refused")
	return 0
}

// masterHandle makes calls to a service the master serves on a handle.
type masterHandle struct {
	r      *core.Router
	handle int32
}

func (h masterHandle) CallFunction(ctx context.Context, method string, args, result thrift.FastCodec) error {
	return h.r.CallAt(ctx, core.CallTarget{Context: mitogen.MASTER_ID, Handle: h.handle}, method, args, result)
}
