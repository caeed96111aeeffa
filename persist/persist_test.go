package persist_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/persist"
	"github.com/seed-a176d0ab/mitogen-go/process"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// master runs a Server in this process until the test ends; done is
// closed when Serve has returned.
func master(t *testing.T, s *persist.Server) (done <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan error, 1)
	d := make(chan struct{})
	go func() {
		defer close(d)
		if err := s.Serve(ctx, func(err error) { ready <- err }); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	if err := <-ready; err != nil {
		cancel()
		<-d
		t.Fatalf("master did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-d:
		case <-time.After(time.Minute):
			t.Errorf("master did not end within a minute of its cancel")
		}
	})
	return d
}

func newDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "p")
}

// localChain is a chain of n local hops, in the wire form of requests.
func localChain(t *testing.T, n int) *mitogen.PersistChain {
	t.Helper()
	hops := make([]agent.Hop, n)
	for i := range hops {
		hops[i] = agent.Hop{Spec: transport.Spec{Kind: transport.KindLocal}}
	}
	pc, err := persist.EncodeChain(hops, true)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func dial(t *testing.T, dir string) *persist.Client {
	t.Helper()
	c, err := persist.Dial(dir, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run relays argv in pc's last context through the master.
func run(t *testing.T, c *persist.Client, pc *mitogen.PersistChain, stdin string, argv ...string) (int, string, string, error) {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	start := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		return c.Service().StartProcess(ctx, pc, spec)
	}
	var out, errb bytes.Buffer
	res, err := process.Relay(ctx, c.Router(), process.AnyDestination, start, &mitogen.ProcessSpec{Argv: argv},
		process.Stdio{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	return res.Status, out.String(), errb.String(), err
}

// agentPID is the PID of pc's last context's agent: the parent of a
// command started there.
func agentPID(t *testing.T, c *persist.Client, pc *mitogen.PersistChain) int {
	t.Helper()
	st, out, errs, err := run(t, c, pc, "", "sh", "-c", "echo $PPID")
	if err != nil || st != 0 {
		t.Fatalf("echo $PPID: status %d, %v, stderr %q", st, err, errs)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("echo $PPID printed %q", out)
	}
	return pid
}

// processGone tells whether pid has exited (a zombie counts: it only
// waits for its reaper).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] == "Z"
}

// waitGone waits (boundedly) until every pid has exited.
func waitGone(t *testing.T, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: process %d still runs a minute later", what, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Exit statuses and every byte of stdin, stdout and stderr go through the
// master's chain as through a chain of the client's own; later clients get
// the same context.
func TestRelayAndReuse(t *testing.T) {
	dir := newDir(t)
	master(t, &persist.Server{Dir: dir})
	pc := localChain(t, 2)
	c := dial(t, dir)
	first := agentPID(t, c, pc)
	for _, code := range []int{0, 1, 7, 255} {
		st, out, errs, err := run(t, c, pc, "in put\n", "sh", "-c", fmt.Sprintf("cat; echo err >&2; exit %d", code))
		if err != nil || st != code || out != "in put\n" || errs != "err\n" {
			t.Errorf("exit %d: got status %d (%v), stdout %q, stderr %q", code, st, err, out, errs)
		}
	}
	st, _, _, err := run(t, c, pc, "", "sh", "-c", "kill -9 $$")
	if err != nil || st != 255 {
		t.Errorf("killed by a signal: status %d (%v), want 255", st, err)
	}
	c2 := dial(t, dir)
	if again := agentPID(t, c2, pc); again != first {
		t.Errorf("a second client got agent %d, the first %d: the chain was not reused", again, first)
	}
	status, err := c2.Service().Status(ctxT(t, time.Minute))
	if err != nil || len(status.Chains) != 1 || status.Clients != 2 {
		t.Errorf("status %+v (%v): want one chain, two clients", status, err)
	}
}

// A chain the master does not hold is dialed only when the request says
// so; otherwise the client is told ENOTCONN (and may ask for passwords).
func TestNotHeldWithoutDial(t *testing.T) {
	dir := newDir(t)
	master(t, &persist.Server{Dir: dir})
	c := dial(t, dir)
	pc := localChain(t, 1)
	pc.Dial = false
	err := c.Service().Ping(ctxT(t, time.Minute), pc)
	var ce *mitogen.CallError
	if !errors.As(err, &ce) || ce.Code != "ENOTCONN" {
		t.Fatalf("ping of a chain not held, without dial: %v; want CallError ENOTCONN", err)
	}
	bad := &mitogen.PersistChain{Dial: true, Hops: []*mitogen.PersistHop{{Spec: "frobnicate:x"}}}
	if err := c.Service().Ping(ctxT(t, time.Minute), bad); !errors.As(err, &ce) || ce.Code != "EINVAL" {
		t.Fatalf("ping of a bad chain: %v; want CallError EINVAL", err)
	}
	bad = &mitogen.PersistChain{Dial: true, Hops: []*mitogen.PersistHop{{Spec: "local", Options: map[string]string{"password": "x"}}}}
	if err := c.Service().Ping(ctxT(t, time.Minute), bad); !errors.As(err, &ce) || ce.Code != "EINVAL" {
		t.Fatalf("ping of a chain with options its method does not take: %v; want CallError EINVAL", err)
	}
}

// A master holds at most MaxChains chains; a request for one more is
// refused with EBUSY and the ones held still serve.
func TestChainCap(t *testing.T) {
	dir := newDir(t)
	master(t, &persist.Server{Dir: dir, MaxChains: 2})
	c := dial(t, dir)
	ctx := ctxT(t, time.Minute)
	for n := 1; n <= 2; n++ {
		if err := c.Service().Ping(ctx, localChain(t, n)); err != nil {
			t.Fatalf("chain %d: %v", n, err)
		}
	}
	var ce *mitogen.CallError
	if err := c.Service().Ping(ctx, localChain(t, 3)); !errors.As(err, &ce) || ce.Code != "EBUSY" {
		t.Fatalf("a third chain: %v; want CallError EBUSY", err)
	}
	if err := c.Service().Ping(ctx, localChain(t, 1)); err != nil {
		t.Fatalf("chain 1 after the refusal: %v", err)
	}
}

// When a context of the held chain dies, the next request dials the
// chain again.
func TestDeadContextIsRedialed(t *testing.T) {
	dir := newDir(t)
	master(t, &persist.Server{Dir: dir})
	c := dial(t, dir)
	for _, hops := range []int{1, 2} {
		pc := localChain(t, hops)
		first := agentPID(t, c, pc)
		if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitGone(t, "killed agent", first)
		st, out, errs, err := run(t, c, pc, "", "sh", "-c", "echo $PPID")
		if err != nil || st != 0 {
			t.Fatalf("hops=%d: the request after the agent died: status %d, %v, %q", hops, st, err, errs)
		}
		if again, _ := strconv.Atoi(strings.TrimSpace(out)); again == first || again == 0 {
			t.Fatalf("hops=%d: agent %q after agent %d was killed; want a new one", hops, out, first)
		}
	}
}

// Several clients at once share one dial of the chain.
func TestConcurrentClients(t *testing.T) {
	dir := newDir(t)
	master(t, &persist.Server{Dir: dir})
	pc := localChain(t, 1)
	const n = 8
	pids := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := persist.Dial(dir, nil)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			defer c.Close()
			st, out, errs, err := run(t, c, pc, strings.Repeat("x", 100000), "sh", "-c", "wc -c; echo $PPID >&2")
			if err != nil || st != 0 || strings.TrimSpace(out) != "100000" {
				t.Errorf("client %d: status %d, %v, stdout %q, stderr %q", i, st, err, out, errs)
				return
			}
			pids[i], _ = strconv.Atoi(strings.TrimSpace(errs))
		}()
	}
	wg.Wait()
	for i := range pids {
		if pids[i] != pids[0] {
			t.Fatalf("clients ran in agents %v; want one agent", pids)
		}
	}
}

// Stop ends the master, and every context it holds, and removes its socket.
func TestStopEndsMasterAndContexts(t *testing.T) {
	dir := newDir(t)
	done := master(t, &persist.Server{Dir: dir})
	c := dial(t, dir)
	pids := []int{agentPID(t, c, localChain(t, 1)), agentPID(t, c, localChain(t, 2))}
	if err := c.Stop(ctxT(t, time.Minute)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return after stop")
	}
	waitGone(t, "agents after stop", pids...)
	if _, err := os.Stat(filepath.Join(dir, persist.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v; want it removed", err)
	}
	if _, err := persist.Dial(dir, nil); !errors.Is(err, persist.ErrNoMaster) {
		t.Errorf("Dial after stop: %v; want ErrNoMaster", err)
	}
}

// The master ends on its own once no client has been connected for the
// idle timeout, not while one is.
func TestIdleTimeoutEndsMaster(t *testing.T) {
	dir := newDir(t)
	done := master(t, &persist.Server{Dir: dir, IdleTimeout: 300 * time.Millisecond})
	c := dial(t, dir)
	pid := agentPID(t, c, localChain(t, 1))
	// A connected client keeps it: a command that outlasts the timeout
	// several times over completes.
	if st, out, _, err := run(t, c, localChain(t, 1), "", "sh", "-c", "sleep 1.5; echo still"); err != nil || st != 0 || out != "still\n" {
		t.Fatalf("a long command under a short idle timeout: status %d, %v, %q", st, err, out)
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("master still runs a minute after its last client left (idle timeout 300ms)")
	}
	waitGone(t, "agent after the idle timeout", pid)
}

// A socket left by a master that died is removed by the next client,
// which starts a new master; concurrent clients start one between them.
func TestStaleSocketAndOneStart(t *testing.T) {
	dir := newDir(t)
	if err := persist.PrepareDir(dir); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, persist.SocketName)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close() // the socket file stays, nobody listens: a dead master's
	if _, err := persist.Dial(dir, nil); !errors.Is(err, persist.ErrNoMaster) {
		t.Fatalf("Dial to a dead master's socket: %v; want ErrNoMaster", err)
	}
	var mu sync.Mutex
	starts := 0
	ctx, cancel := context.WithCancel(context.Background())
	var served sync.WaitGroup
	defer func() { cancel(); served.Wait() }()
	start := func(context.Context) error {
		mu.Lock()
		starts++
		mu.Unlock()
		ready := make(chan error, 1)
		served.Add(1)
		go func() {
			defer served.Done()
			(&persist.Server{Dir: dir}).Serve(ctx, func(err error) { ready <- err })
		}()
		return <-ready
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := persist.Ensure(ctxT(t, time.Minute), dir, nil, start)
			if err != nil {
				t.Errorf("Ensure %d: %v", i, err)
				return
			}
			defer c.Close()
			if err := c.Service().Ping(ctxT(t, time.Minute), localChain(t, 1)); err != nil {
				t.Errorf("ping %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if starts != 1 {
		t.Errorf("%d masters started; want 1", starts)
	}
	// A second master in the same directory refuses to start.
	err = (&persist.Server{Dir: dir}).Serve(context.Background(), nil)
	if !errors.Is(err, persist.ErrRunning) {
		t.Errorf("a second master: %v; want ErrRunning", err)
	}
}

// A master that dies as a client connects is no master: its listener
// closes with the client's connection still queued (the client then
// reads ECONNRESET), or it closes an accepted connection before its
// greeting (EOF). Dial says ErrNoMaster, and Ensure starts a new master.
// (A SIGKILLed master's socket outlives its main thread for a moment:
// the stress run's TestPersistentMasterOverSSH met the reset so.)
func TestDyingMasterIsNoMaster(t *testing.T) {
	for _, c := range []struct {
		name string
		die  func(l *net.UnixListener) error
	}{
		{"listener closed with the connection queued", func(l *net.UnixListener) error {
			raw, err := l.SyscallConn()
			if err != nil {
				return err
			}
			var perr error
			err = raw.Control(func(fd uintptr) {
				// A listener is readable once a connection waits in its
				// backlog.
				for {
					_, perr = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
					if perr != unix.EINTR {
						return
					}
				}
			})
			if err == nil {
				err = perr
			}
			l.Close()
			return err
		}},
		{"connection closed before the greeting", func(l *net.UnixListener) error {
			conn, err := l.Accept()
			l.Close()
			if err != nil {
				return err
			}
			return conn.Close()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := newDir(t)
			if err := persist.PrepareDir(dir); err != nil {
				t.Fatal(err)
			}
			dying := func() <-chan error {
				l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, persist.SocketName), Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				l.SetUnlinkOnClose(false)
				done := make(chan error, 1)
				go func() { done <- c.die(l) }()
				return done
			}
			done := dying()
			if c, err := persist.Dial(dir, nil); !errors.Is(err, persist.ErrNoMaster) {
				if c != nil {
					c.Close()
				}
				t.Errorf("Dial to a master dying as it connects: %v; want ErrNoMaster", err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(dir, persist.SocketName))
			done = dying()
			ctx, cancel := context.WithCancel(context.Background())
			var served sync.WaitGroup
			defer func() { cancel(); served.Wait() }()
			starts := 0
			start := func(context.Context) error {
				starts++
				if err := <-done; err != nil { // the dying one is gone
					return err
				}
				ready := make(chan error, 1)
				served.Add(1)
				go func() {
					defer served.Done()
					(&persist.Server{Dir: dir}).Serve(ctx, func(err error) { ready <- err })
				}()
				return <-ready
			}
			cl, err := persist.Ensure(ctxT(t, time.Minute), dir, nil, start)
			if err != nil {
				t.Fatalf("Ensure with a master dying as it connects: %v; want a new master", err)
			}
			defer cl.Close()
			if starts != 1 {
				t.Errorf("%d masters started; want 1", starts)
			}
			if err := cl.Service().Ping(ctxT(t, time.Minute), localChain(t, 1)); err != nil {
				t.Errorf("ping through the new master: %v", err)
			}
		})
	}
}

// The directory must be the user's own and closed to others.
func TestDirChecks(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if err := persist.PrepareDir(open); err == nil || !strings.Contains(err.Error(), "must be 0700") {
		t.Errorf("a 0755 directory: %v; want refused", err)
	}
	link := filepath.Join(base, "link")
	own := filepath.Join(base, "own")
	os.Mkdir(own, 0o700)
	os.Symlink(own, link)
	if err := persist.CheckDir(link); err == nil {
		t.Errorf("a symlink: accepted; want refused")
	}
	if err := (&persist.Server{Dir: open}).Serve(context.Background(), nil); err == nil {
		t.Errorf("a master in a 0755 directory started")
	}
	if os.Getuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		os.Chown(other, 65534, 65534)
		if err := persist.CheckDir(other); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("a directory of another user: %v; want refused", err)
		}
	}
}

// requireRoot skips outside CI when not root; in CI (MITOGEN_CI=1) it fails.
func requireRoot(t *testing.T) {
	if os.Getuid() == 0 {
		return
	}
	if os.Getenv("MITOGEN_CI") == "1" {
		t.Fatal("this test needs root (to run a client as another user) and MITOGEN_CI=1 says it must run")
	}
	t.Skip("needs root to run a client as another user; skipping outside CI")
}

// Even with the directory and the socket opened to everyone, the master
// refuses a peer of another uid (SO_PEERCRED) and says why.
func TestRefusesAnotherUser(t *testing.T) {
	requireRoot(t)
	base, err := os.MkdirTemp("", "persist-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	dir := filepath.Join(base, "p")
	master(t, &persist.Server{Dir: dir})
	// A copy of this binary that user nobody may run.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "client")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, persist.SocketName)
	asNobody := func() (string, error) {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), envRawDial+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// As the master made them: nobody cannot even reach the socket.
	if out, _ := asNobody(); !strings.Contains(out, "permission denied") {
		t.Errorf("nobody, directory 0700: %q; want permission denied", out)
	}
	// The layers of the file system removed: the master itself refuses.
	os.Chmod(dir, 0o711)
	os.Chmod(sock, 0o777)
	out, err := asNobody()
	want := "mitogen-persist refused: peer uid 65534 is not the master's uid 0\n"
	if err != nil || out != want {
		t.Errorf("nobody, socket open to all: %q (%v); want %q", out, err, want)
	}
	// And our own uid still gets in.
	os.Chmod(dir, 0o700)
	c := dial(t, dir)
	if err := c.Service().Ping(ctxT(t, time.Minute), localChain(t, 1)); err != nil {
		t.Errorf("the master's own user after the refusals: %v", err)
	}
}

// open_run serves the ssh invocations of a program the client runs with
// the master's chains (by host name, else the default chain), with the
// exit statuses and stdio of fakessh; the run ends with the client.
func TestRunThroughMaster(t *testing.T) {
	dir := newDir(t)
	master(t, &persist.Server{Dir: dir})
	c := dial(t, dir)
	ctx := ctxT(t, 2*time.Minute)
	def, other := localChain(t, 1), localChain(t, 2)
	defPID, otherPID := agentPID(t, c, def), agentPID(t, c, other)
	run, err := c.Service().OpenRun(ctx, def, map[string]*mitogen.PersistChain{"other": other})
	if err != nil {
		t.Fatalf("open_run: %v", err)
	}
	var ce *mitogen.CallError
	if _, err := c.Service().OpenRun(ctx, def, nil); !errors.As(err, &ce) || ce.Code != "EBUSY" {
		t.Errorf("a second open_run of one client: %v; want EBUSY", err)
	}
	var out, errb bytes.Buffer
	rn := &fakessh.Runner{Stdin: strings.NewReader("in put\n"), Stdout: &out, Stderr: &errb}
	script := `ssh anyhost 'echo $PPID; cat; echo err >&2; exit 5'; echo "st=$?"; ssh other 'echo $PPID' </dev/null; exit 3`
	st, err := rn.RunProgram(ctx, run.Dir, run.Env, []string{"sh", "-c", script})
	want := fmt.Sprintf("%d\nin put\nst=5\n%d\n", defPID, otherPID)
	if err != nil || st != 3 || out.String() != want || errb.String() != "err\n" {
		t.Errorf("program: status %d (%v), stdout %q, stderr %q; want 3, %q, \"err\\n\"", st, err, out.String(), errb.String(), want)
	}
	c.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(run.Dir); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run's directory %s is still there a minute after its client left", run.Dir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
