package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/internal/pgroup"
	"github.com/seed-a176d0ab/mitogen-go/internal/pipesize"
)

// Config holds the process side's timeouts. A zero field takes its
// default (DefaultConfig).
type Config struct {
	// StartTimeout bounds how long a started process waits for START.
	StartTimeout time.Duration
	// HangupGrace is the step between the ending's signals (SIGHUP,
	// SIGTERM, SIGKILL) when the client driving the process is gone or
	// broke the protocol.
	HangupGrace time.Duration
	// ShutdownGrace is the step when this context shuts down: two steps
	// (plus a small slack) must fit within core.ChildShutdownGrace, the
	// time a parent gives a shutting-down child before cutting its stream.
	ShutdownGrace time.Duration
}

// DefaultConfig is the configuration the IDL describes (ENDINGS): 60 s for
// START, 2 s steps, 1 s steps on shutdown.
func DefaultConfig() Config {
	return Config{StartTimeout: 60 * time.Second, HangupGrace: 2 * time.Second, ShutdownGrace: time.Second}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.StartTimeout <= 0 {
		c.StartTimeout = d.StartTimeout
	}
	if c.HangupGrace <= 0 {
		c.HangupGrace = d.HangupGrace
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = d.ShutdownGrace
	}
	return c
}

// Endings. A process ends the way a command under sshd does when its
// session goes away: its stdin reaches EOF and its process group gets
// SIGHUP; a group still alive a step later gets SIGTERM, and one step after
// that SIGKILL. So a program that cleans up on EOF, SIGHUP or SIGTERM (rsync
// removing its temporary file) can, and one that ignores them still ends.
//
// The group is signalled only while its leader is unreaped (package
// pgroup): the exited leader is reaped once the process side will signal
// the group no more (EXIT sent, or the ending over), so that no late
// signal can reach a new group that reused the ID.

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
	cfg     Config
	r       *core.Router
	cmd     *exec.Cmd
	peer    int32
	control *core.Receiver
	ctl     chan ctlEvent // control messages, decoded, then the end of the handle
	stdin   *core.ByteReader
	stdinW  io.WriteCloser
	stdoutR io.ReadCloser
	stderrR io.ReadCloser
	pty     *os.File // the pty's master, for a process on a pty
	origin  string
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	unhook  func()

	// Set on entering Running.
	started     bool
	client      int32         // the client's control handle (EXIT goes there)
	outputsDone chan struct{} // closed when both output pumps are done
	stdinErr    chan error    // the stdin stream's failure, if it failed

	stdinOnce sync.Once
	group     *pgroup.Leader
	exited    <-chan struct{} // closed when the process (group leader) exited, reaped or not
	ended     chan struct{}   // closed when run is done with the process
	then      func()          // called after ended is closed (StartProcessThen)
	shutdown  atomic.Bool     // this context is shutting down
}

// ctlEvent is one message on the process's control handle, decoded (or
// not: err), or the end of the handle (gone: the client's context is gone,
// or this one is shutting down).
type ctlEvent struct {
	c    *mitogen.Control
	err  error
	gone error
}

// StartProcess is Agent.start_process with DefaultConfig: it starts spec's
// command with its stdio on pipes and returns the handles the client
// drives it with. It is an agent.ProcessStarter.
func StartProcess(ctx context.Context, r *core.Router, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	return DefaultConfig().StartProcess(ctx, r, spec)
}

// StartProcess is Agent.start_process with c's timeouts (see the package
// StartProcess). The process outlives ctx: it is bound to r's lifetime.
func (c Config) StartProcess(ctx context.Context, r *core.Router, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	return c.StartProcessThen(ctx, r, spec, nil)
}

// StartProcessThen is StartProcess that calls then (when not nil), once,
// when the process side is done with the process: EXIT sent, or the
// process's ending (ENDINGS) over. It is not called when the start fails.
func (c Config) StartProcessThen(ctx context.Context, r *core.Router, spec *mitogen.ProcessSpec, then func()) (*mitogen.ProcessStarted, error) {
	_ = ctx // the process outlives the call; it is bound to the router instead
	peer := spec.PeerId
	s := &slave{cfg: c.withDefaults(), r: r, peer: peer, origin: spec.Origin,
		ended: make(chan struct{}), ctl: make(chan ctlEvent, 1), then: then}
	s.ctx, s.cancel = context.WithCancel(r.Lifetime())
	cmd, err := buildCommand(spec)
	if err == nil {
		err = checkPty(spec.Pty)
	}
	if err == nil && s.ctx.Err() != nil {
		err = fmt.Errorf("context %d is shutting down", r.ID())
	}
	var handedOff int32
	if err == nil && spec.Pty != nil {
		err = s.startPty(cmd, spec.Pty) // a terminal session: never a handoff
	} else if err == nil {
		handedOff, err = s.startMaybeHandoff(cmd, spec.Handoff)
	}
	if err != nil {
		s.cancel()
		return nil, &mitogen.CallError{Message: err.Error(), Code: errnoName(err)}
	}
	s.log = r.Logger().With("pid", s.cmd.Process.Pid, "origin", s.origin)
	s.group = pgroup.Watch(s.cmd)
	s.exited = s.group.Exited()
	// A context that shuts down takes its processes with it.
	s.unhook = r.OnShutdown(s.onShutdown)
	onlyPeer := func(m *wire.Message, _ *core.Stream) bool { return m.Auth == peer }
	s.control = r.NewReceiver(core.WithPeer(peer), core.WithPolicy(onlyPeer), core.WithQueueLimit(64, 1<<20))
	s.stdin = r.NewByteReader(s.ctx, peer)
	go s.readControl()
	go s.run()
	return &mitogen.ProcessStarted{ControlHandle: s.control.Handle(), Stdin: s.stdin.End(), Pid: int32(cmd.Process.Pid), HandedOff: handedOff}, nil
}

// readControl turns the control handle's messages into events, in order,
// until the handle ends or the slave is done.
func (s *slave) readControl() {
	for {
		m, err := s.control.Get(s.ctx)
		ev := ctlEvent{gone: err}
		if err == nil {
			ev.c = &mitogen.Control{}
			if _, derr := ev.c.FastRead(m.Data); derr != nil {
				ev = ctlEvent{err: fmt.Errorf("undecodable Control: %w", derr)}
			}
		}
		select {
		case s.ctl <- ev:
		case <-s.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
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
// command, subsystem and login (the user's shell, sshd's environment: see
// sshdEnv); argv is run directly, with the agent's own environment.
func buildCommand(spec *mitogen.ProcessSpec) (*exec.Cmd, error) {
	acct := currentAccount()
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
		cmd = exec.Command(acct.shell, "-c", spec.Command)
	case spec.Login:
		cmd = exec.Command(acct.shell, "-l")
	default:
		return nil, errors.New("start_process: ProcessSpec names no command")
	}
	switch spec.Dir {
	case "":
	case "~":
		// sshd starts in "/" when the home directory is missing or closed.
		cmd.Dir = "/"
		if acct.home != "" && unix.Access(acct.home, unix.X_OK) == nil {
			cmd.Dir = acct.home
		}
	default:
		cmd.Dir = spec.Dir
	}
	if len(spec.Argv) > 0 {
		cmd.Env = os.Environ()
	} else {
		cmd.Env = sshdEnv(acct)
	}
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
	// A session of its own, as under sshd: its own process group, so that
	// it and its children can be killed together, and no controlling
	// terminal but the pty it may be given (idl: ProcessSpec SESSION).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd, nil
}

// account is the user the agent runs as, as sshd sees it.
type account struct {
	uid   int
	name  string // "" when the password database does not know the uid
	home  string // $HOME, else from the password database, else "/"
	shell string // the login shell when usable, else /bin/sh
}

// currentAccount looks the agent's user up in /etc/passwd (as sshd does).
// The login shell is used when /etc/shells lists it (or there is no
// /etc/shells) and it exists; an account whose shell is nologin or false
// (nobody, daemons) reached through sudo gets /bin/sh, as sudo runs it.
// HOME is the agent's own $HOME when set: the transport that started it
// set it from the same database (sshd, sudo -H, su), or chose another on
// purpose (a local hop keeps the master's, sudo's keep_home the caller's).
func currentAccount() account {
	a := passwdAccount()
	if h := os.Getenv("HOME"); h != "" {
		a.home = h
	}
	return a
}

// passwdAccount is the agent's user as /etc/passwd describes it.
func passwdAccount() account {
	a := account{uid: os.Getuid(), home: "/", shell: "/bin/sh"}
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return a
	}
	uid := strconv.Itoa(a.uid)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || f[2] != uid {
			continue
		}
		a.name = f[0]
		if f[5] != "" {
			a.home = f[5]
		}
		if f[6] != "" && loginShell(f[6]) {
			a.shell = f[6]
		}
		break
	}
	return a
}

// loginShell reports whether shell may run commands: it exists and
// /etc/shells lists it (when there is an /etc/shells).
func loginShell(shell string) bool {
	if st, err := os.Stat(shell); err != nil || st.IsDir() {
		return false
	}
	b, err := os.ReadFile("/etc/shells")
	if err != nil {
		return true
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == shell {
			return true
		}
	}
	return false
}

// sshd's PATH (Debian's OpenSSH build: --with-default-path and
// --with-superuser-path) and mail directory.
const (
	sshdPath     = "/usr/local/bin:/usr/bin:/bin:/usr/games"
	sshdRootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	mailDir      = "/var/mail"
)

// sshdEnv is the environment sshd gives a session's command, and nothing
// of the agent's own: USER, LOGNAME, HOME, SHELL, PATH, MAIL and
// SSH_CONNECTION/SSH_CLIENT. Those two are the agent's own when an sshd
// started it (an ssh hop: the real connection), else what sshd sets for a
// connection from 127.0.0.1 to port 22. What the client sent
// (ProcessSpec.env) is added after.
func sshdEnv(a account) []string {
	name := a.name
	if name == "" {
		name = strconv.Itoa(a.uid)
	}
	path := sshdPath
	if a.uid == 0 {
		path = sshdRootPath
	}
	conn, client := os.Getenv("SSH_CONNECTION"), os.Getenv("SSH_CLIENT")
	if len(strings.Fields(conn)) != 4 || len(strings.Fields(client)) != 3 {
		port := 32768 + rand.IntN(28232) // Linux's default ephemeral range
		conn = fmt.Sprintf("127.0.0.1 %d 127.0.0.1 22", port)
		client = fmt.Sprintf("127.0.0.1 %d 22", port)
	}
	return []string{
		"USER=" + name, "LOGNAME=" + name, "HOME=" + a.home, "SHELL=" + a.shell, "PATH=" + path,
		"MAIL=" + mailDir + "/" + name, "SSH_CONNECTION=" + conn, "SSH_CLIENT=" + client,
	}
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
	pipesize.Grow(inW)
	pipesize.Grow(outR)
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

// signalGroup sends sig to the process group, unless its leader was
// reaped (its ID may belong to another group by now).
func (s *slave) signalGroup(sig syscall.Signal) {
	_ = s.group.Signal(sig)
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
	// The leader has exited, unreaped (so the ID is still this group's);
	// the group lives on while any other member does.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if !s.group.MembersAlive() {
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
func (s *slave) end(why string) {
	defer func() { _ = s.group.Reap() }() // abandoned: its status has no taker
	log := s.log
	log.Debug("ending the process", "why", why)
	s.closeStdin()
	if s.pty != nil {
		// The pty hangs up, as when sshd closes a session: the kernel
		// signals SIGHUP to the pty's session and foreground group (a job
		// of an interactive shell has a group of its own), and whatever
		// still holds it open reads EOF.
		s.pty.Close()
	}
	s.signalGroup(syscall.SIGHUP)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		step := s.cfg.HangupGrace
		if s.shutdown.Load() || s.r.Lifetime().Err() != nil {
			step = min(step, s.cfg.ShutdownGrace)
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
	t := time.NewTimer(2*s.cfg.ShutdownGrace + shutdownSlack)
	defer t.Stop()
	select {
	case <-s.ended:
	case <-t.C:
		// The ending's own SIGKILL has not come yet (a loaded machine):
		// send it, and give the kernel a bounded moment to let the run
		// reap the group, so that the context does not exit before it.
		s.signalGroup(syscall.SIGKILL)
		reap := time.NewTimer(killReapWait)
		defer reap.Stop()
		select {
		case <-s.ended:
		case <-reap.C:
		}
	}
}

// killReapWait bounds how long the shutdown hook waits, after its SIGKILL,
// for the process to be reaped.
const killReapWait = 2 * time.Second

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
		case e.name != "stdin_credit" && e.end.Window < mitogen.MIN_STREAM_WINDOW:
			// The byte stream's own minimum (core.ByteWriter.Connect):
			// checked here, before anything connects to the START's ends.
			return fmt.Errorf("START %s grants a window of %d, below MIN_STREAM_WINDOW (%d)", e.name, e.end.Window, mitogen.MIN_STREAM_WINDOW)
		}
	}
	if !handleOK(c.ControlHandle) {
		return fmt.Errorf("START control_handle %d is not a dynamic handle", c.ControlHandle)
	}
	return nil
}

// run drives the process side's state machine: one handler per state,
// each returning the next state, until Done.
func (s *slave) run() {
	defer func() {
		if s.then != nil {
			s.then()
		}
	}()
	defer close(s.ended)
	defer s.unhook()
	defer s.cancel()
	defer s.control.Close()
	defer s.stdin.Close()
	for st := SlaveAwaitStart; st != SlaveDone; {
		switch st {
		case SlaveAwaitStart:
			st = s.awaitStart()
		case SlaveRunning:
			st = s.running()
		default:
			panic(fmt.Sprintf("process: no handler for state %v", st)) // not reached
		}
	}
}

// awaitStart is the handler of AwaitStart: a valid START begins the relay;
// the client's departure, the start timeout and anything else end the
// process.
func (s *slave) awaitStart() SlaveState {
	timeout := time.NewTimer(s.cfg.StartTimeout)
	defer timeout.Stop()
	select {
	case <-timeout.C:
		return s.finish("no START within " + s.cfg.StartTimeout.String())
	case <-s.ctx.Done():
		return s.finish("context shutting down")
	case ev := <-s.ctl:
		switch {
		case ev.gone != nil:
			return s.finish(ev.gone.Error())
		case ev.err != nil:
			return s.protocolError(SlaveAwaitStart, "Control", ev.err)
		case ev.c.Kind != mitogen.ControlKind_START:
			return s.protocolError(SlaveAwaitStart, "Control "+ev.c.Kind.String(), nil)
		}
		// No EXIT for a bad START: the handle it would go to is the offence.
		if err := checkStart(ev.c, s.peer); err != nil {
			return s.protocolError(SlaveAwaitStart, "Control START", err)
		}
		if err := s.begin(ev.c); err != nil {
			return s.protocolError(SlaveAwaitStart, "Control START", err) // not reached: checkStart vouched for the ends
		}
		return SlaveRunning
	}
}

// running is the handler of Running: SIGNAL is delivered; the process's
// exit (with both outputs ended) sends EXIT; the client's departure and
// anything else end the process. After the leader exited, the outputs may
// stay open for long (a member of its group holds them: `cmd &`): the
// control handle and the context are watched all the while, and the group
// can be signalled, as its leader is still unreaped.
func (s *slave) running() SlaveState {
	exited := s.exited
	var outputs <-chan struct{} // once the leader exited: both outputs ended
	for {
		select {
		case <-exited:
			exited, outputs = nil, s.outputsDone
		case <-outputs:
			return s.exit()
		case <-s.ctx.Done():
			return s.finish("context shutting down")
		case ev := <-s.ctl:
			switch {
			case ev.gone != nil:
				// The client is gone, or this context is shutting down.
				return s.finish("control ended: " + ev.gone.Error())
			case ev.err != nil:
				return s.protocolError(SlaveRunning, "Control", ev.err)
			case ev.c.Kind == mitogen.ControlKind_WINDOW_CHANGE:
				if err := checkWindow(ev.c.Window, true); err != nil {
					return s.protocolError(SlaveRunning, "Control WINDOW_CHANGE", err)
				}
				if s.pty != nil {
					if err := setWindow(s.pty, ev.c.Window); err != nil {
						s.log.Debug("setting the pty's window size", "err", err)
					}
				}
				continue
			case ev.c.Kind != mitogen.ControlKind_SIGNAL:
				return s.protocolError(SlaveRunning, "Control "+ev.c.Kind.String(), nil)
			case ev.c.SignalNumber <= 0 || ev.c.SignalNumber > 64:
				return s.protocolError(SlaveRunning, "Control SIGNAL", fmt.Errorf("no signal %d", ev.c.SignalNumber))
			}
			s.signalGroup(syscall.Signal(ev.c.SignalNumber))
		}
	}
}

// exit reaps the exited leader (no signal to its group after this) once
// both outputs ended, and sends EXIT.
func (s *slave) exit() SlaveState {
	status, sig, note := exitStatus(s.group.Reap())
	select {
	case err := <-s.stdinErr:
		status, sig, note = 255, "", "fakessh: stdin stream failed: "+err.Error()
	default:
	}
	s.r.Send(&wire.Message{Dst: s.peer, Handle: s.client, Data: marshal(&mitogen.Control{Kind: mitogen.ControlKind_EXIT, ExitStatus: status, Signal: sig, Note: note})})
	return SlaveDone
}

// protocolError acts on an event state does not accept: it is logged and
// the process ended (ENDINGS), with no EXIT.
func (s *slave) protocolError(state SlaveState, event string, why error) SlaveState {
	err := &ProtocolError{Side: "process", State: state, Event: event, Err: why}
	s.log.Error("relay protocol error; ending the process", "err", err, "client", s.peer)
	return s.finish(err.Error())
}

// finish ends the process (ENDINGS) and returns Done.
func (s *slave) finish(reason string) SlaveState {
	if !s.started {
		// Nobody reads its output: let writes fail rather than block.
		s.stdoutR.Close()
		s.stderrR.Close()
	}
	s.end(reason)
	s.log.Debug("process abandoned", "why", reason)
	return SlaveDone
}

// begin enters Running for the START c: the output pumps to the ends it
// names and the stdin pump.
func (s *slave) begin(c *mitogen.Control) error {
	// checkStart vouched for the ends; check again, so that a failure here
	// can never leave one writer connected: closing it would send
	// Dead{SENDER_CLOSED} to a handle of a START refused (nothing may be
	// sent to those).
	if err := checkStart(c, s.peer); err != nil {
		return err
	}
	stdout := s.r.NewByteWriter(s.ctx)
	stderr := s.r.NewByteWriter(s.ctx)
	if err := stdout.Connect(c.Stdout); err != nil {
		stdout.Close() // not connected: sends nothing
		stderr.Close()
		return err
	}
	if err := stderr.Connect(c.Stderr); err != nil {
		// Not reached (checkStart covers Connect's rules). stdout is left
		// unclosed rather than tell its handle anything; its credit
		// handle goes with this context's router.
		stderr.Close()
		return err
	}
	s.started = true
	s.client = c.ControlHandle
	var pumps sync.WaitGroup
	pumps.Add(2)
	pump := func(w *core.ByteWriter, r io.ReadCloser) {
		defer pumps.Done()
		src := io.Reader(r)
		if f, ok := r.(*os.File); ok {
			src = core.FileReader(f)
		}
		if _, err := w.ReadFrom(src); err != nil {
			s.log.Debug("output pump", "err", err)
			_, _ = io.Copy(io.Discard, r) // keep the process from blocking on a full pipe
		}
		w.Close()
		r.Close()
	}
	go pump(stdout, s.stdoutR)
	go pump(stderr, s.stderrR)
	s.outputsDone = make(chan struct{})
	go func() { pumps.Wait(); close(s.outputsDone) }()
	s.stdinErr = make(chan error, 1)
	go func() {
		dst := io.Writer(s.stdinW)
		if f, ok := s.stdinW.(*os.File); ok {
			dst = core.FileWriter(f)
		}
		_, err := s.stdin.WriteTo(dst)
		if err != nil {
			s.log.Debug("stdin pump", "err", err)
		}
		if stdinFailed(err) {
			// The stream failed (e.g. an overrun): the process must not
			// take what it got for the whole of its input, so it is killed
			// before its stdin is closed.
			s.stdinErr <- err
			s.signalGroup(syscall.SIGKILL)
		}
		s.closeStdin()
	}()
	return nil
}

// stdinFailed says whether the stdin stream's end err is a failure that
// kills the process (idl: Control.note): any dead end but SENDER_CLOSED,
// except the client's or this context's departure (DISCONNECTED, NO_ROUTE,
// SHUTDOWN), which is an ending (ENDINGS: stdin EOF, then SIGHUP), not a
// kill.
func stdinFailed(err error) bool {
	if !core.IsDead(err) {
		return false
	}
	for _, e := range []error{core.ErrSenderClosed, core.ErrDisconnected, core.ErrNoRoute, core.ErrShutdown} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
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
