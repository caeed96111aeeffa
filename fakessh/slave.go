package fakessh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Slave states and events.
const (
	SlaveStarting   State = "Starting"   // process being started
	SlaveAwaitStart State = "AwaitStart" // started, replied, waiting for START
	SlaveRunning    State = "Running"    // pumping stdio
	SlaveDone       State = "Done"       // EXIT sent, or gave up

	EvStarted      Event = "started"       // the process started
	EvStartFailed  Event = "start-failed"  // the process could not start
	EvStart        Event = "START"         // Control START from the client
	EvSignal       Event = "SIGNAL"        // Control SIGNAL from the client
	EvExit         Event = "EXIT"          // Control EXIT (only valid towards a client)
	EvExited       Event = "exited"        // process exited and its outputs ended
	EvPeerGone     Event = "peer-gone"     // the client disconnected or closed
	EvStartTimeout Event = "start-timeout" // no START in time
)

// SlaveTable is the slave's transition table.
var SlaveTable = Table{
	SlaveStarting: {
		EvStarted:     SlaveAwaitStart,
		EvStartFailed: SlaveDone,
	},
	SlaveAwaitStart: {
		EvStart:        SlaveRunning,
		EvPeerGone:     SlaveDone,
		EvStartTimeout: SlaveDone,
	},
	SlaveRunning: {
		EvSignal:   SlaveRunning,
		EvExited:   SlaveDone,
		EvPeerGone: SlaveDone,
	},
}

// pipeSize is the capacity asked for the process's stdin and stdout pipes.
const pipeSize = 1 << 20

// growPipe asks for a bigger pipe buffer on f, when f is a pipe: fewer,
// larger chunks. The kernel caps it at /proc/sys/fs/pipe-max-size; any
// failure keeps the default.
func growPipe(f *os.File) {
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
}

// StartTimeout bounds how long a started process waits for START.
const StartTimeout = 60 * time.Second

// Endings. A process ends the way a command under sshd does when its
// session goes away: its stdin reaches EOF and its process group gets
// SIGHUP; a group still alive a step later gets SIGTERM, and one step after
// that SIGKILL. So a program that cleans up on EOF, SIGHUP or SIGTERM (rsync
// removing its temporary file) can, and one that ignores them still ends.
var (
	// HangupGrace is the step between signals when the client driving the
	// process is gone (its context disconnected) or broke the protocol.
	HangupGrace = 2 * time.Second
	// ShutdownGrace is the step when this context shuts down: two steps
	// fit within core.ChildShutdownGrace, the time a parent gives a
	// shutting-down child before cutting its stream.
	ShutdownGrace = 1 * time.Second
)

// shutdownSlack is what the shutdown hook allows on top of two
// ShutdownGrace steps before it kills the group itself.
const shutdownSlack = 300 * time.Millisecond

// sftpServerPaths are where Debian, Fedora and others install sftp-server.
var sftpServerPaths = []string{
	"/usr/lib/openssh/sftp-server",
	"/usr/libexec/openssh/sftp-server",
	"/usr/lib/ssh/sftp-server",
	"/usr/libexec/sftp-server",
	"/usr/lib/sftp-server",
}

// slave is one process started for a client.
type slave struct {
	r       *core.Router
	m       *Machine
	cmd     *exec.Cmd
	peer    int32
	control *core.Receiver
	stdin   *core.ByteReader
	stdinW  io.WriteCloser
	stdoutR io.ReadCloser
	stderrR io.ReadCloser
	origin  string
	ctx     context.Context
	cancel  context.CancelFunc
	unhook  func()

	stdinOnce sync.Once
	exited    chan struct{} // closed when the process (group leader) was reaped
	waitErr   error         // its Wait result, valid once exited is closed
	ended     chan struct{} // closed when run is done with the process
	shutdown  atomic.Bool   // this context is shutting down
}

// StartProcess is Agent.start_process: it starts spec's command with its
// stdio on pipes and returns the handles the client drives it with. It is
// an agent.ProcessStarter.
func StartProcess(ctx context.Context, r *core.Router, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	_ = ctx // the process outlives the call; it is bound to the router instead
	peer := spec.PeerId
	s := &slave{r: r, m: NewMachine("slave", SlaveTable, SlaveStarting), peer: peer, origin: spec.Origin,
		exited: make(chan struct{}), ended: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(r.Lifetime())
	cmd, err := buildCommand(spec)
	if err == nil && s.ctx.Err() != nil {
		err = fmt.Errorf("context %d is shutting down", r.ID())
	}
	if err == nil {
		err = s.start(cmd)
	}
	if err != nil {
		s.m.Fire(EvStartFailed)
		s.cancel()
		return nil, &mitogen.CallError{Message: err.Error(), Code: errnoName(err)}
	}
	s.m.Fire(EvStarted)
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	// A context that shuts down takes its processes with it.
	s.unhook = r.OnShutdown(s.onShutdown)
	onlyPeer := func(m *wire.Message, _ *core.Stream) bool { return m.Auth == peer }
	s.control = r.NewReceiver(core.WithPeer(peer), core.WithPolicy(onlyPeer), core.WithQueueLimit(64, 1<<20))
	s.stdin = r.NewByteReader(s.ctx, peer)
	go s.run()
	return &mitogen.ProcessStarted{ControlHandle: s.control.Handle(), Stdin: s.stdin.End(), Pid: int32(cmd.Process.Pid)}, nil
}

func errnoName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	if errors.Is(err, exec.ErrNotFound) {
		return "ENOENT"
	}
	return ""
}

// buildCommand turns a ProcessSpec into a command, the way sshd would for
// command, subsystem and login; argv is run directly.
func buildCommand(spec *mitogen.ProcessSpec) (*exec.Cmd, error) {
	shell, home := userShell()
	var cmd *exec.Cmd
	switch {
	case len(spec.Argv) > 0:
		cmd = exec.Command(spec.Argv[0], spec.Argv[1:]...)
	case spec.Subsystem != "":
		if spec.Subsystem != "sftp" {
			return nil, fmt.Errorf("subsystem request for %s failed: no such subsystem", spec.Subsystem)
		}
		path := ""
		for _, p := range sftpServerPaths {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			return nil, fmt.Errorf("subsystem request for sftp failed: sftp-server not found (install openssh-sftp-server)")
		}
		cmd = exec.Command(path)
	case spec.Command != "":
		cmd = exec.Command(shell, "-c", spec.Command)
	case spec.Login:
		cmd = exec.Command(shell, "-l")
	default:
		return nil, errors.New("start_process: ProcessSpec names no command")
	}
	switch spec.Dir {
	case "":
	case "~":
		cmd.Dir = home
	default:
		cmd.Dir = spec.Dir
	}
	cmd.Env = os.Environ()
	if len(spec.Env) > 0 {
		keys := make([]string, 0, len(spec.Env))
		for k := range spec.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			cmd.Env = append(cmd.Env, k+"="+spec.Env[k])
		}
	}
	// Its own process group, so that it and its children can be killed together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// userShell returns the current user's login shell (from /etc/passwd, as
// sshd uses it) and home directory; /bin/sh and / when unknown.
func userShell() (shell, home string) {
	shell, home = "/bin/sh", "/"
	u, err := user.Current()
	if err == nil && u.HomeDir != "" {
		home = u.HomeDir
	}
	if h := os.Getenv("HOME"); h != "" {
		home = h
	}
	if err != nil {
		return shell, home
	}
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return shell, home
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 7 && f[2] == u.Uid && f[6] != "" {
			if _, err := os.Stat(f[6]); err == nil {
				return f[6], home
			}
		}
	}
	return shell, home
}

// start starts cmd with its stdio on pipes whose far ends this side owns
// (not exec.Cmd's StdoutPipe, which Wait closes before every byte is read).
func (s *slave) start(cmd *exec.Cmd) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return err
	}
	growPipe(inW)
	growPipe(outR)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return fmt.Errorf("%s: %w", cmd.Args[0], err)
	}
	s.cmd = cmd
	s.stdinW, s.stdoutR, s.stderrR = inW, outR, errR
	return nil
}

// closeStdin closes the process's stdin (once): it reads EOF.
func (s *slave) closeStdin() { s.stdinOnce.Do(func() { s.stdinW.Close() }) }

// signalGroup sends sig to the process group.
func (s *slave) signalGroup(sig syscall.Signal) {
	_ = syscall.Kill(-s.cmd.Process.Pid, sig)
}

// groupGone waits up to d for the process and every member of its group
// to be gone, and reports whether they are.
func (s *slave) groupGone(d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	select {
	case <-s.exited:
	case <-deadline.C:
		return false
	}
	// The leader is reaped; its group lives on while any member does (the
	// kernel keeps the ID from reuse meanwhile).
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syscall.Kill(-s.cmd.Process.Pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return false
		}
	}
}

// end ends the process as sshd ends a session's command: stdin EOF and
// SIGHUP, then SIGTERM and SIGKILL a step apart for a group still alive.
// The step is HangupGrace, or ShutdownGrace once this context is shutting
// down. It returns once the process is reaped.
func (s *slave) end(log *slog.Logger, why string) {
	log.Debug("ending the process", "why", why)
	s.closeStdin()
	s.signalGroup(syscall.SIGHUP)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		step := HangupGrace
		if s.shutdown.Load() || s.r.Lifetime().Err() != nil {
			step = min(step, ShutdownGrace)
		}
		if s.groupGone(step) {
			return
		}
		log.Debug("process group still alive; escalating", "signal", unix.SignalName(sig))
		s.signalGroup(sig)
	}
	<-s.exited
}

// onShutdown runs when this context shuts down: run ends the process (in
// ShutdownGrace steps, as the router's lifetime is over); wait for that,
// bounded, so that the context does not exit before its processes.
func (s *slave) onShutdown() {
	s.shutdown.Store(true)
	s.cancel() // normally done already: the router's lifetime ended first
	t := time.NewTimer(2*ShutdownGrace + shutdownSlack)
	defer t.Stop()
	select {
	case <-s.ended:
	case <-t.C:
		s.signalGroup(syscall.SIGKILL)
	}
}

// checkStart applies the START rule (idl: ControlKind.START): every end
// it names belongs to the client itself and is a dynamic handle there, so
// a client can aim the process's output and EXIT only at handles of its
// own, never at another context nor at a well-known handle.
func checkStart(c *mitogen.Control, peer int32) error {
	handleOK := func(h int32) bool { return h >= mitogen.FIRST_DYNAMIC_HANDLE && h != mitogen.IS_DEAD }
	for _, e := range []struct {
		name string
		end  *mitogen.StreamEnd
	}{{"stdout", c.Stdout}, {"stderr", c.Stderr}, {"stdin_credit", c.StdinCredit}} {
		switch {
		case e.end == nil:
			return fmt.Errorf("START lacks %s", e.name)
		case e.end.ContextId != peer:
			return fmt.Errorf("START %s names context %d, not the client %d", e.name, e.end.ContextId, peer)
		case !handleOK(e.end.Handle):
			return fmt.Errorf("START %s names handle %d, not a dynamic handle", e.name, e.end.Handle)
		case e.name != "stdin_credit" && e.end.Window <= 0:
			return fmt.Errorf("START %s grants no window (%d)", e.name, e.end.Window)
		}
	}
	if !handleOK(c.ControlHandle) {
		return fmt.Errorf("START control_handle %d is not a dynamic handle", c.ControlHandle)
	}
	return nil
}

func (s *slave) run() {
	log := s.r.Logger().With("pid", s.cmd.Process.Pid, "origin", s.origin)
	defer close(s.ended)
	defer s.unhook()
	defer s.cancel()
	defer s.control.Close()
	defer s.stdin.Close()
	started := false
	finish := func(reason string) {
		if !started {
			// Nobody reads its output: let writes fail rather than block.
			s.stdoutR.Close()
			s.stderrR.Close()
		}
		s.end(log, reason)
		log.Debug("process abandoned", "why", reason)
	}

	// AwaitStart.
	startCtx, cancelStart := context.WithTimeout(s.ctx, StartTimeout)
	msg, err := s.control.Get(startCtx)
	cancelStart()
	var ctl mitogen.Control
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		s.m.Fire(EvStartTimeout)
		finish("no START within " + StartTimeout.String())
		return
	case err != nil:
		s.m.Fire(EvPeerGone)
		finish(err.Error())
		return
	}
	if _, derr := ctl.FastRead(msg.Data); derr != nil || ctl.Kind != mitogen.ControlKind_START {
		ev := Event(fmt.Sprint(ctl.Kind))
		if derr != nil {
			ev = "malformed"
		}
		_, perr := s.m.Fire(ev)
		log.Error("relay protocol error", "err", perr)
		s.m.Fire(EvPeerGone)
		finish(perr.Error())
		return
	}
	if err := checkStart(&ctl, s.peer); err != nil {
		// No EXIT: the handle it would go to is the offence.
		log.Error("relay protocol error; ending the process", "err", err, "client", s.peer)
		s.m.Fire(EvPeerGone)
		finish(err.Error())
		return
	}
	if _, err := s.m.Fire(EvStart); err != nil {
		finish(err.Error())
		return
	}
	started = true
	client := ctl.ControlHandle
	exitWith := func(status int32, sig, note string) {
		s.r.Send(&wire.Message{Dst: s.peer, Handle: client, Data: marshal(&mitogen.Control{Kind: mitogen.ControlKind_EXIT, ExitStatus: status, Signal: sig, Note: note})})
	}
	stdout := s.r.NewByteWriter(s.ctx)
	stderr := s.r.NewByteWriter(s.ctx)
	if err := errors.Join(stdout.Connect(ctl.Stdout), stderr.Connect(ctl.Stderr)); err != nil {
		// Not reached: checkStart vouched for both ends.
		s.m.Fire(EvPeerGone)
		started = false
		finish(err.Error())
		return
	}

	// Running: three pumps, control messages, and the process's exit.
	var pumps sync.WaitGroup
	pumps.Add(2)
	pump := func(w *core.ByteWriter, r io.ReadCloser) {
		defer pumps.Done()
		if _, err := w.ReadFrom(r); err != nil {
			log.Debug("output pump", "err", err)
			_, _ = io.Copy(io.Discard, r) // keep the process from blocking on a full pipe
		}
		w.Close()
	}
	go pump(stdout, s.stdoutR)
	go pump(stderr, s.stderrR)
	go func() {
		_, err := s.stdin.WriteTo(s.stdinW)
		if err != nil {
			log.Debug("stdin pump", "err", err)
		}
		s.closeStdin()
	}()
	outputsDone := make(chan struct{})
	go func() { pumps.Wait(); close(outputsDone) }()
	ctlMsgs := make(chan error, 1)
	go func() {
		for {
			m, err := s.control.Get(s.ctx)
			if err != nil {
				ctlMsgs <- err
				return
			}
			var c mitogen.Control
			if _, err := c.FastRead(m.Data); err != nil || c.Kind != mitogen.ControlKind_SIGNAL {
				_, perr := s.m.Fire(Event(fmt.Sprint(c.Kind)))
				if perr == nil {
					perr = fmt.Errorf("unexpected control message %v", c.Kind)
				}
				log.Error("relay protocol error; ending the process", "err", perr)
				ctlMsgs <- perr
				return
			}
			if _, err := s.m.Fire(EvSignal); err == nil && c.SignalNumber > 0 && c.SignalNumber < 65 {
				s.signalGroup(syscall.Signal(c.SignalNumber))
			}
		}
	}()
	for done := false; !done; {
		select {
		case <-s.exited:
			<-outputsDone
			done = true
		case err := <-ctlMsgs:
			// The client is gone or broke the protocol, or this context
			// is shutting down.
			s.m.Fire(EvPeerGone)
			s.end(log, "control ended: "+err.Error())
			return
		}
	}
	s.m.Fire(EvExited)
	status, sig, note := exitStatus(s.waitErr)
	exitWith(status, sig, note)
}

// exitStatus maps a process's end to ssh's exit status: the code, or 255
// with a note for a signal.
func exitStatus(err error) (int32, string, string) {
	if err == nil {
		return 0, "", ""
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			name := unix.SignalName(ws.Signal())
			if len(name) > 3 {
				name = name[3:]
			}
			return 255, name, fmt.Sprintf("remote command killed by signal %s", name)
		}
		return int32(ee.ExitCode()), "", ""
	}
	return 255, "", "fakessh: " + err.Error()
}
