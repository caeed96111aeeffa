package process

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/internal/testproc"
)

// pair is a master and one child context, both in this process, joined by
// a pipe that the test can cut (the child "dies").
type pair struct {
	master, client *core.Router
	clientID       int32
	cut            func()
}

func newPair(t *testing.T) *pair {
	t.Helper()
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m := core.NewMaster(cfg)
	t.Cleanup(func() { m.Close() })
	a, b := net.Pipe()
	booted := make(chan *core.Router, 1)
	go func() {
		r, err := core.Boot(b, cfg, nil)
		if err != nil {
			t.Error(err)
		}
		booted <- r
	}()
	id := m.AllocateID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := m.StartChild(ctx, a, id, "client"); err != nil {
		t.Fatal(err)
	}
	c := <-booted
	t.Cleanup(func() { c.Close() })
	return &pair{master: m, client: c, clientID: id, cut: func() { a.Close(); b.Close() }}
}

// startRecorder starts the signal-recording test process on the master,
// driven by the client, with cfg; it returns its handles and its record
// file.
func (p *pair) startRecorder(t *testing.T, cfg Config, exitOn string) (*mitogen.ProcessStarted, string) {
	t.Helper()
	rec := filepath.Join(t.TempDir(), "record")
	spec := &mitogen.ProcessSpec{Argv: []string{os.Args[0]}, PeerId: p.clientID,
		Env: map[string]string{testproc.EnvSignalRecorder: rec, testproc.EnvSignalRecorderExitOn: exitOn}}
	started, err := cfg.StartProcess(context.Background(), p.master, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the process to be ready", func() bool { return strings.Contains(readRecord(rec), "ready") })
	return started, rec
}

func readRecord(f string) string {
	b, _ := os.ReadFile(f)
	return string(b)
}

// waitFor polls cond (bounded) and fails the test if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("gave up waiting for %s", what)
}

func gone(pid int32) bool { return syscall.Kill(int(pid), 0) == syscall.ESRCH }

// shortGrace has shorter ending steps (long enough for the recorder to
// note a signal on a loaded machine before the next one).
var shortGrace = Config{HangupGrace: time.Second, ShutdownGrace: time.Second}

// relayFromClient drives started from the client as fakessh's ssh does,
// with a stdin that stays open; it returns once START is sent.
func (p *pair) relayFromClient(t *testing.T, started *mitogen.ProcessStarted) {
	t.Helper()
	p.relayFromClientTo(t, started, io.Discard)
}

// relayFromClientTo is relayFromClient with the process's stdout going
// to stdout.
func (p *pair) relayFromClientTo(t *testing.T, started *mitogen.ProcessStarted, stdout io.Writer) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inW.Close(); inR.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		start := func(context.Context, *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) { return started, nil }
		_, _ = Relay(context.Background(), p.client, started.Stdin.ContextId, start, &mitogen.ProcessSpec{}, Stdio{Stdin: inR, Stdout: stdout, Stderr: io.Discard})
	}()
}

// When the client driving a process disappears, the process gets SIGHUP
// (after stdin EOF), as under sshd; one that exits on SIGHUP is not killed.
func TestPeerGoneHangsUp(t *testing.T) {
	p := newPair(t)
	started, rec := p.startRecorder(t, DefaultConfig(), "HUP")
	p.relayFromClient(t, started)
	p.cut()
	waitFor(t, "the process to end", func() bool { return gone(started.Pid) })
	if got := readRecord(rec); !strings.Contains(got, "HUP\n") {
		t.Fatalf("the process saw %q; want SIGHUP before it ended", got)
	}
}

// A process that ignores SIGHUP and SIGTERM gets both, then SIGKILL after
// the grace.
func TestPeerGoneEscalates(t *testing.T) {
	p := newPair(t)
	started, rec := p.startRecorder(t, shortGrace, "")
	p.relayFromClient(t, started)
	p.cut()
	waitFor(t, "the process to be killed", func() bool { return gone(started.Pid) })
	if got := readRecord(rec); !strings.Contains(got, "EOF\n") || !strings.Contains(got, "HUP\n") || !strings.Contains(got, "TERM\n") {
		t.Fatalf("the process saw %q; want EOF, HUP and TERM before SIGKILL", got)
	}
}

// A client that never sends START and vanishes: same ending.
func TestPeerGoneBeforeStart(t *testing.T) {
	p := newPair(t)
	started, rec := p.startRecorder(t, shortGrace, "")
	p.cut()
	waitFor(t, "the process to be killed", func() bool { return gone(started.Pid) })
	if got := readRecord(rec); !strings.Contains(got, "HUP\n") || !strings.Contains(got, "TERM\n") {
		t.Fatalf("the process saw %q; want HUP and TERM before SIGKILL", got)
	}
}

// A context that shuts down ends its processes the same way, within the
// time its parent allows (the steps are ShutdownGrace, at the default).
func TestShutdownEscalates(t *testing.T) {
	d := DefaultConfig().ShutdownGrace
	if 2*d+shutdownSlack >= core.ChildShutdownGrace {
		t.Fatalf("ending on shutdown (%v) does not fit in core.ChildShutdownGrace (%v)", 2*d+shutdownSlack, core.ChildShutdownGrace)
	}
	p := newPair(t)
	started, rec := p.startRecorder(t, DefaultConfig(), "")
	p.relayFromClient(t, started)
	p.master.Close()
	// Close returned: the process must already be reaped.
	if !gone(started.Pid) {
		t.Fatalf("process %d outlived its context's shutdown", started.Pid)
	}
	if got := readRecord(rec); !strings.Contains(got, "HUP\n") || !strings.Contains(got, "TERM\n") {
		t.Fatalf("the process saw %q; want HUP and TERM before SIGKILL", got)
	}
}

// A START that aims the process's output or EXIT anywhere but at dynamic
// handles of the client itself is a protocol error: the process is ended,
// nothing reaches the named handle, and no EXIT is sent.
func TestHostileStart(t *testing.T) {
	p := newPair(t)
	// A handle on the destination (here the master) that a hostile client
	// would like the process's output to reach.
	victim := p.master.NewReceiver()
	defer victim.Close()
	exits := p.client.NewReceiver()
	defer exits.Close()
	own := func(h int32) *mitogen.StreamEnd {
		return &mitogen.StreamEnd{ContextId: p.clientID, Handle: h, Window: 1 << 20}
	}
	good := func() *mitogen.Control {
		return &mitogen.Control{Kind: mitogen.ControlKind_START, Stdout: own(exits.Handle() + 100), Stderr: own(exits.Handle() + 101),
			StdinCredit: own(exits.Handle() + 102), ControlHandle: exits.Handle()}
	}
	cases := map[string]func(c *mitogen.Control){
		"stdout at the destination": func(c *mitogen.Control) {
			c.Stdout = &mitogen.StreamEnd{ContextId: p.master.ID(), Handle: victim.Handle(), Window: 1 << 20}
		},
		"stderr at the destination's CALL_FUNCTION": func(c *mitogen.Control) {
			c.Stderr = &mitogen.StreamEnd{ContextId: p.master.ID(), Handle: mitogen.CALL_FUNCTION, Window: 1 << 20}
		},
		"stdout at the client's CALL_FUNCTION": func(c *mitogen.Control) { c.Stdout = own(mitogen.CALL_FUNCTION) },
		"stderr at IS_DEAD":                    func(c *mitogen.Control) { c.Stderr = own(mitogen.IS_DEAD) },
		"control at CALL_FUNCTION":             func(c *mitogen.Control) { c.ControlHandle = mitogen.CALL_FUNCTION },
		"stdin credit elsewhere": func(c *mitogen.Control) {
			c.StdinCredit = &mitogen.StreamEnd{ContextId: p.master.ID(), Handle: victim.Handle()}
		},
		"no stdout": func(c *mitogen.Control) { c.Stdout = nil },
		"no window": func(c *mitogen.Control) { c.Stderr.Window = 0 },
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			started, rec := p.startRecorder(t, DefaultConfig(), "HUP")
			c := good()
			spoil(c)
			p.client.Send(&wire.Message{Dst: p.master.ID(), Handle: started.ControlHandle, Data: marshal(c)})
			waitFor(t, "the process to be ended", func() bool { return gone(started.Pid) })
			if got := readRecord(rec); !strings.Contains(got, "HUP\n") {
				t.Errorf("the process saw %q; want it hung up", got)
			}
			if m, ok := victim.TryGet(); ok {
				t.Errorf("the victim handle received %q", m.Data)
			}
			if m, ok := exits.TryGet(); ok {
				t.Errorf("the client's control handle received %q", m.Data)
			}
		})
	}
}

// startOrphaner starts, for the client, a shell that leaves the recorder
// running in the background (holding the shell's stdout and stderr open)
// and exits at once, as `ssh host 'daemon &'` does. It returns the handles,
// the record file and the recorder's PID, once the shell (the group's
// leader) has exited.
func (p *pair) startOrphaner(t *testing.T, cfg Config, exitOn string) (*mitogen.ProcessStarted, string, int) {
	t.Helper()
	dir := t.TempDir()
	rec, pidFile := filepath.Join(dir, "record"), filepath.Join(dir, "pid")
	spec := &mitogen.ProcessSpec{Argv: []string{"/bin/sh", "-c", `"$0" & echo $! >"$1"; exit 0`, os.Args[0], pidFile},
		PeerId: p.clientID, Env: map[string]string{testproc.EnvSignalRecorder: rec, testproc.EnvSignalRecorderExitOn: exitOn}}
	started, err := cfg.StartProcess(context.Background(), p.master, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the background process to be ready", func() bool { return strings.Contains(readRecord(rec), "ready") })
	var member int
	waitFor(t, "the background process's PID", func() bool {
		b, _ := os.ReadFile(pidFile)
		member, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return started, rec, member
}

// relayStarted relays started from the client and returns once its
// stdout reached the client (so the process side is Running).
func (p *pair) relayStarted(t *testing.T, started *mitogen.ProcessStarted) {
	t.Helper()
	out := &notifyWriter{seen: make(chan struct{})}
	p.relayFromClientTo(t, started, out)
	select {
	case <-out.seen:
	case <-time.After(60 * time.Second):
		t.Fatal("no output reached the client")
	}
}

// notifyWriter discards what it is given, closing seen on the first byte.
type notifyWriter struct {
	once sync.Once
	seen chan struct{}
}

func (w *notifyWriter) Write(b []byte) (int, error) {
	if len(b) > 0 {
		w.once.Do(func() { close(w.seen) })
	}
	return len(b), nil
}

// A member of the group that outlives its leader while holding the
// outputs open is still ended when the client goes away (ENDINGS: SIGHUP),
// and the leader is reaped.
func TestPeerGoneAfterLeaderExitHangsUpGroup(t *testing.T) {
	p := newPair(t)
	started, rec, member := p.startOrphaner(t, shortGrace, "HUP")
	p.relayStarted(t, started)
	waitFor(t, "the leader to exit", func() bool { return exitedOrGone(int(started.Pid)) })
	p.cut()
	waitFor(t, "the background process to end", func() bool { return exitedOrGone(member) })
	if got := readRecord(rec); !strings.Contains(got, "HUP\n") {
		t.Fatalf("the background process saw %q; want SIGHUP before it ended", got)
	}
	waitFor(t, "the leader to be reaped", func() bool { return gone(started.Pid) })
}

// The same on this context's shutdown: the group gets the ending's
// signals in ShutdownGrace steps, not only the last SIGKILL.
func TestShutdownAfterLeaderExitEscalates(t *testing.T) {
	p := newPair(t)
	started, rec, member := p.startOrphaner(t, DefaultConfig(), "")
	p.relayStarted(t, started)
	waitFor(t, "the leader to exit", func() bool { return exitedOrGone(int(started.Pid)) })
	p.master.Close()
	waitFor(t, "the background process to end", func() bool { return exitedOrGone(member) })
	// The reap follows the group's end (the ending returns, then reaps).
	waitFor(t, "the leader to be reaped after its context's shutdown", func() bool { return gone(started.Pid) })
	if got := readRecord(rec); !strings.Contains(got, "HUP\n") || !strings.Contains(got, "TERM\n") {
		t.Fatalf("the background process saw %q; want HUP and TERM before SIGKILL", got)
	}
}

// A START granting an output a window below MIN_STREAM_WINDOW is a
// protocol error like any bad START: the process is hung up and nothing
// reaches the handles it names.
func TestStartWindowBelowMinimum(t *testing.T) {
	p := newPair(t)
	for _, w := range []int64{1, mitogen.MIN_STREAM_WINDOW - 1} {
		for _, which := range []string{"stdout", "stderr"} {
			t.Run(fmt.Sprintf("%s window %d", which, w), func(t *testing.T) {
				out, errR, credit, ctl := p.client.NewReceiver(), p.client.NewReceiver(), p.client.NewReceiver(), p.client.NewReceiver()
				for _, r := range []*core.Receiver{out, errR, credit, ctl} {
					defer r.Close()
				}
				end := func(r *core.Receiver, w int64) *mitogen.StreamEnd {
					return &mitogen.StreamEnd{ContextId: p.clientID, Handle: r.Handle(), Window: w}
				}
				c := &mitogen.Control{Kind: mitogen.ControlKind_START, Stdout: end(out, 1<<20), Stderr: end(errR, 1<<20),
					StdinCredit: end(credit, 0), ControlHandle: ctl.Handle()}
				if which == "stdout" {
					c.Stdout.Window = w
				} else {
					c.Stderr.Window = w
				}
				if err := checkStart(c, p.clientID); err == nil {
					t.Errorf("checkStart accepted a %s window of %d", which, w)
				}
				started, rec := p.startRecorder(t, DefaultConfig(), "HUP")
				p.client.Send(&wire.Message{Dst: p.master.ID(), Handle: started.ControlHandle, Data: marshal(c)})
				waitFor(t, "the process to be ended", func() bool { return gone(started.Pid) })
				if got := readRecord(rec); !strings.Contains(got, "HUP\n") {
					t.Errorf("the process saw %q; want it hung up", got)
				}
				// A message sent after the process ended, to the client's
				// own handle, arrives after anything the process side sent.
				p.master.Send(&wire.Message{Dst: p.clientID, Handle: ctl.Handle(), Data: []byte("marker")})
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				if m, err := ctl.Get(ctx); err != nil || string(m.Data) != "marker" {
					t.Fatalf("the control handle got %v, %v; want only the marker", m, err)
				}
				for name, r := range map[string]*core.Receiver{"stdout": out, "stderr": errR, "stdin_credit": credit} {
					if m, ok := r.TryGet(); ok {
						t.Errorf("the %s handle received %+v", name, m)
					}
				}
			})
		}
	}
}
