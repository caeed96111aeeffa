package fakessh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strings"
	"sync"
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
}

// StartProcess is Agent.start_process: it starts spec's command with its
// stdio on pipes and returns the handles the client drives it with. It is
// an agent.ProcessStarter.
func StartProcess(ctx context.Context, r *core.Router, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	_ = ctx // the process outlives the call; it is bound to the router instead
	peer := spec.PeerId
	s := &slave{r: r, m: NewMachine("slave", SlaveTable, SlaveStarting), peer: peer, origin: spec.Origin}
	s.ctx, s.cancel = context.WithCancel(r.Lifetime())
	cmd, err := buildCommand(spec)
	if err == nil {
		err = s.start(cmd)
	}
	if err != nil {
		s.m.Fire(EvStartFailed)
		s.cancel()
		return nil, &mitogen.CallError{Message: err.Error(), Code: errnoName(err)}
	}
	s.m.Fire(EvStarted)
	// A context that shuts down takes its processes with it.
	s.unhook = r.OnShutdown(s.kill)
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

// kill ends the process group.
func (s *slave) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (s *slave) run() {
	log := s.r.Logger().With("pid", s.cmd.Process.Pid, "origin", s.origin)
	defer s.unhook()
	defer s.cancel()
	defer s.control.Close()
	defer s.stdin.Close()
	waited := make(chan error, 1)
	started := false
	finish := func(reason string) {
		s.kill()
		if !started {
			s.stdinW.Close()
			s.stdoutR.Close()
			s.stderrR.Close()
		}
		<-waited
		log.Debug("process abandoned", "why", reason)
	}
	go func() { waited <- s.cmd.Wait() }()

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
		s.m.Fire(EvPeerGone)
		exitWith(255, "", "fakessh: "+err.Error())
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
	stdinErr := make(chan error, 1)
	go func() {
		_, err := s.stdin.WriteTo(s.stdinW)
		if err != nil {
			log.Debug("stdin pump", "err", err)
		}
		if core.IsDead(err) && !errors.Is(err, core.ErrSenderClosed) {
			// The stream failed (e.g. an overrun): the process must not
			// take what it got for the whole of its input.
			stdinErr <- err
			s.kill()
		}
		s.stdinW.Close()
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
				log.Error("relay protocol error; killing the process", "err", perr)
				s.kill()
				continue
			}
			if _, err := s.m.Fire(EvSignal); err == nil && c.SignalNumber > 0 && c.SignalNumber < 65 {
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.Signal(c.SignalNumber))
			}
		}
	}()
	var waitErr error
	for done := false; !done; {
		select {
		case waitErr = <-waited:
			<-outputsDone
			done = true
		case err := <-ctlMsgs:
			// The client is gone, or this context is shutting down.
			log.Debug("control ended; killing the process", "err", err)
			s.m.Fire(EvPeerGone)
			s.kill()
			<-waited
			return
		}
	}
	s.m.Fire(EvExited)
	status, sig, note := exitStatus(waitErr)
	select {
	case err := <-stdinErr:
		status, sig, note = 255, "", "fakessh: stdin stream failed: "+err.Error()
	default:
	}
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
