// Package fakessh runs unmodified programs that shell out to ssh (rsync,
// scp, sftp, git) against contexts the master already holds: a private `ssh`
// first on the program's PATH turns each invocation into a context of its
// own, which asks the master to start the command in the destination
// context and relays stdio both ways with flow control and the exact exit
// status. The relay itself, both ends, is package process; what is ssh's
// stays here:
//
//  1. Run prepares a private directory with our ssh first on PATH and a
//     private socket back to the master (run.go).
//  2. The program runs and executes ssh from PATH.
//  3. Our ssh connects back, proves it belongs to the run, and boots as a
//     child context of the master (sshmain.go).
//  4. It turns the ssh command line into the ProcessSpec sshd would run
//     (a command through the user's shell, a subsystem or a login shell,
//     in the home directory, with SendEnv/SetEnv) and asks the master, on
//     the run's FakeSSH handle, to start it (process.Relay with a Starter).
//  5. The master calls Agent.start_process in the destination on its own
//     authority, naming the ssh context as the only peer allowed to drive
//     the process (process.StartProcess serves it there).
//  6. The relay runs until the process has exited and every byte of its
//     output is out; our ssh exits with its status.
//
// When the destination runs on this machine, the command takes our ssh's
// own stdin and stdout (FD HANDOFF, handoff.go) and no byte of the session
// is relayed; control and the exit status go as in step 6.
package fakessh

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/forward"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/internal/pgroup"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// Environment of the program run under fakessh; our ssh reads it.
const (
	EnvSocket = "MITOGEN_FAKESSH_SOCKET" // path of the run's private socket
	EnvSecret = "MITOGEN_FAKESSH_SECRET" // the run's secret, sent first on the socket
	EnvHandle = "MITOGEN_FAKESSH_HANDLE" // the master's FakeSSH handle for this run
	EnvDir    = "MITOGEN_FAKESSH_DIR"    // the run's private directory (our ssh, scp, sftp)
)

// Wrapped names the programs that run ssh by path (their build's
// /usr/bin/ssh) rather than from PATH: fakessh puts a wrapper of each first
// on the program's PATH, which runs the real one (found on PATH without
// the run's directory) with "-S <our ssh>" (WrapperMain).
var Wrapped = []string{"scp", "sftp"}

// secretLen is the length of the hex secret line (without its newline).
const secretLen = 64

// Admission of connections to a run's socket. A connection is
// "pre-authentication" from accept until it has presented the secret; at
// most RunConfig.PreauthLimit may be so at once, each for at most
// RunConfig.PreauthTimeout. Over the cap a connection gets busyLine and is
// closed at once (our ssh then retries for a while); one warning is logged
// per burst of such refusals.
const busyLine = "busy\n"

// RunConfig holds a run's limits and timings. A zero field means its
// default (DefaultRunConfig); a negative one is an error (Validate).
type RunConfig struct {
	// PreauthLimit is how many connections to the run's socket may be
	// waiting to present the run's secret at once (default 64).
	PreauthLimit int
	// PreauthTimeout is how long a connection has to present the
	// secret (default 5s).
	PreauthTimeout time.Duration
	// BootTimeout is how long an admitted ssh has to answer its Boot
	// (default 30s).
	BootTimeout time.Duration
	// StartTimeout bounds the destination's start_process call for one
	// ssh invocation (default 60s).
	StartTimeout time.Duration
	// KillGrace is, when Run's ctx ends, the time between SIGTERM and
	// SIGKILL to the program's process group (default 2s).
	KillGrace time.Duration
	// MaxSessions is how many ssh contexts of the run may be booting or
	// connected at once (default 256); an ssh beyond it is told "busy"
	// and retries, as with PreauthLimit.
	MaxSessions int
}

// DefaultRunConfig returns a run's defaults.
func DefaultRunConfig() RunConfig {
	return RunConfig{PreauthLimit: 64, PreauthTimeout: 5 * time.Second, BootTimeout: 30 * time.Second,
		StartTimeout: 60 * time.Second, KillGrace: 2 * time.Second, MaxSessions: 256}
}

// Validate reports the first field of c that makes no sense.
func (c RunConfig) Validate() error {
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"PreauthLimit", c.PreauthLimit < 0}, {"PreauthTimeout", c.PreauthTimeout < 0},
		{"BootTimeout", c.BootTimeout < 0}, {"StartTimeout", c.StartTimeout < 0}, {"KillGrace", c.KillGrace < 0},
		{"MaxSessions", c.MaxSessions < 0},
	} {
		if f.bad {
			return fmt.Errorf("fakessh.RunConfig.%s: negative", f.name)
		}
	}
	return nil
}

func (c RunConfig) withDefaults() RunConfig {
	d := DefaultRunConfig()
	if c.PreauthLimit == 0 {
		c.PreauthLimit = d.PreauthLimit
	}
	if c.PreauthTimeout == 0 {
		c.PreauthTimeout = d.PreauthTimeout
	}
	if c.BootTimeout == 0 {
		c.BootTimeout = d.BootTimeout
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = d.StartTimeout
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = d.MaxSessions
	}
	if c.KillGrace == 0 {
		c.KillGrace = d.KillGrace
	}
	return c
}

// Runner runs one program under fakessh.
type Runner struct {
	// Router is the master's router.
	Router *core.Router
	// On, when not nil, is the context the program runs in (`mitogen run
	// --on`): the program and its ssh processes run there (through
	// Agent.start_fakessh), the master serves their ssh destinations with
	// Hosts and Default, and the program's stdio is relayed. Exe and Env
	// are then not used, and Dir is a directory there (default: the home
	// directory, as ssh's).
	On *core.Context
	// Default serves ssh destinations not named in Hosts. Required unless
	// On is set; when On is set and Default is nil, only Hosts are served
	// and any other name is refused as an unknown host.
	Default *core.Context
	// Hosts maps ssh destination host names to contexts.
	Hosts map[string]*core.Context
	// Exe is the binary to run as ssh (this one by default); it must call
	// SSHMain when started under the name "ssh".
	Exe string
	// Stdio of the program; nil Stdin reads nothing, nil outputs discard.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Env is the program's base environment (default os.Environ()).
	Env []string
	// Dir is the program's working directory.
	Dir string
	// Config holds the run's limits and timings (zero: the defaults).
	Config RunConfig
}

// Run runs argv with fakessh's ssh first on its PATH, ssh destinations
// served by dest, stdio inherited, and returns its exit status.
func Run(ctx context.Context, dest *core.Context, argv []string) (int, error) {
	rn := &Runner{Router: dest.Router(), Default: dest, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	return rn.Run(ctx, argv)
}

// run is the state of one Runner.Run.
type run struct {
	*Runner
	mu      sync.Mutex
	members map[int32]bool // fakessh contexts of this run
	count   int
	wg      sync.WaitGroup
	// join, when not nil, gets the ID of an admitted fake ssh from the
	// master (a run served by a context: FakeSSH.join); else this router
	// (the master) allocates it.
	join func(ctx context.Context, pid int32) (int32, error)
	// For the master of a run on a context (Runner.On): how many fake ssh
	// joined, and whether the run is over (no more joins).
	joins int
	ended bool
	// preauth overrides Config.PreauthTimeout (tests).
	preauth time.Duration
	// Refusal warnings: when the last one was logged, how many since.
	lastWarn time.Time
	unwarned int
	// u serves ssh users other than the destination's (user.go).
	u users
	// reserved counts admissions past the secret still waiting for an ID
	// (they count against MaxSessions).
	reserved int
	// pids holds each member's process ID as the run's socket reported it
	// (SO_PEERCRED), for FD HANDOFF (handoff.go).
	pids map[int32]int32
}

// Run runs argv and returns its exit status (a signal gives 128+N, as a
// shell reports it). Everything it created is removed when it returns, and
// the program, its ssh processes and their remote commands are gone.
//
// When ctx ends, the program's process group gets SIGTERM, or the signal
// of a SignalError cause (context.WithCancelCause), and SIGKILL after
// Config.KillGrace; for a SignalError Run returns 128+N and no error.
//
// If the run holds the foreground of its controlling terminal (stdin,
// stdout or stderr), the program gets it as a shell gives it to a job,
// job-control stops and continues are passed both ways, and the terminal
// (foreground group and modes) is restored when Run returns.
func (rn *Runner) Run(ctx context.Context, argv []string) (int, error) {
	if len(argv) == 0 {
		return 255, errors.New("fakessh: no program to run")
	}
	if rn.Router != nil && rn.On != nil {
		if err := rn.Config.Validate(); err != nil {
			return 255, err
		}
		return rn.runOn(ctx, argv)
	}
	s, err := rn.Open(ctx)
	if err != nil {
		return 255, err
	}
	defer s.Close()
	return rn.RunProgram(ctx, s.Dir, s.Env, argv)
}

// Session is the master's side of a run without its program: the private
// directory with our ssh, the socket and the FakeSSH handle, served until
// Close. Run is Open, RunProgram and Close; a master that serves programs
// run by another process of the same user (the persistent master of the
// mitogen CLI) hands that process Dir and Env for its RunProgram.
type Session struct {
	// Dir is the run's private directory, holding our ssh; RunProgram
	// puts it first on the program's PATH.
	Dir string
	// Env holds what our ssh reads (EnvSocket, EnvSecret, EnvHandle), as
	// KEY=VALUE: the run's secret is in it.
	Env   []string
	close func()
	once  sync.Once
}

// Close stops serving the session: the socket and the handle go, the ssh
// contexts of the run are disconnected (ending their remote commands) and
// the private directory is removed. Safe to call more than once.
func (s *Session) Close() { s.once.Do(s.close) }

// Open prepares a run's private directory, socket and FakeSSH handle and
// serves them until Close (or ctx ends, after which no ssh is admitted).
func (rn *Runner) Open(ctx context.Context) (*Session, error) {
	if rn.Router == nil || rn.Default == nil {
		return nil, errors.New("fakessh: Runner needs a Router and a Default (or On) context")
	}
	if err := rn.Config.Validate(); err != nil {
		return nil, err
	}
	exe := rn.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("fakessh: finding own executable: %w", err)
		}
	}
	pd, err := newPrivateDir(exe, rn.Router.Logger())
	if err != nil {
		return nil, err
	}
	dir, sock, secret, ln := pd.dir, pd.sock, pd.secret, pd.ln

	st := &run{Runner: rn, members: make(map[int32]bool)}
	r := rn.Router
	handle := r.ServeOn(st.isMember, func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchFakeSSH(ctx, st, method, args)
	})
	runCtx, cancel := context.WithCancel(ctx)
	st.wg.Add(1)
	go func() { defer st.wg.Done(); st.accept(runCtx, ln, secret) }()
	return &Session{
		Dir: dir,
		Env: []string{EnvSocket + "=" + sock, EnvSecret + "=" + secret, EnvHandle + "=" + strconv.Itoa(int(handle)), EnvDir + "=" + dir},
		close: func() {
			cancel()
			ln.Close()
			st.wg.Wait()
			r.RemoveHandler(handle)
			st.disconnectAll()
			st.shutdownUserHops()
			os.RemoveAll(dir)
		},
	}, nil
}

// RunProgram runs argv as Run does, against the session whose Dir and Env
// are given (see Open), and returns its exit status. Only the Runner's
// program fields are used (Stdin, Stdout, Stderr, Env, Dir and
// Config.KillGrace).
func (rn *Runner) RunProgram(ctx context.Context, dir string, sessionEnv []string, argv []string) (int, error) {
	if len(argv) == 0 {
		return 255, errors.New("fakessh: no program to run")
	}
	if err := rn.Config.Validate(); err != nil {
		return 255, err
	}
	cmd := exec.Command(argv[0], programArgs(argv, filepath.Join(dir, "ssh"))[1:]...)
	env := rn.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = withPath(env, dir)
	cmd.Env = append(cmd.Env, sessionEnv...)
	cmd.Dir = rn.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = rn.Stdin, rn.Stdout, rn.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The program's group gets the terminal, if the run holds one (job.go),
	// before the program runs; the run takes it back on every way out.
	term := controllingTerminal(rn.Stdin, rn.Stdout, rn.Stderr)
	if term.lendAtStart() {
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, term.fd
	}
	if term != nil {
		defer term.takeBack(false)
	}
	jobs := newJobControl(term)
	defer jobs.stop()
	// Resolve the program on the PATH it will see, so that "ssh" is ours.
	if p, err := lookPathIn(argv[0], cmd.Env); err == nil {
		cmd.Path, cmd.Err = p, nil
	}
	if err := cmd.Start(); err != nil {
		return 127, fmt.Errorf("fakessh: starting %s: %w", argv[0], err)
	}
	// The program leads its own group. Its exit is noticed with the
	// program unreaped, so that the group's ID stays its own (not reused
	// by a stranger's group) for every signal below (package pgroup).
	group := pgroup.Watch(cmd)
	jobs.watch(group)
	var signalled *SignalError
	select {
	case <-group.Exited():
	case <-ctx.Done():
		// The run's own signal goes on to the program (SIGTERM when the
		// run was cancelled otherwise); a stopped program is continued to
		// take it.
		sig := syscall.SIGTERM
		if errors.As(context.Cause(ctx), &signalled) {
			sig = signalled.Signal
		}
		_ = group.Signal(sig)
		_ = group.Signal(syscall.SIGCONT)
		select {
		case <-group.Exited():
		case <-time.After(rn.Config.withDefaults().KillGrace):
			_ = group.Signal(syscall.SIGKILL)
			<-group.Exited()
		}
	}
	jobs.stop() // before the reap: no waitid for stops of a reaped PID
	// Whatever the program left behind in its process group goes too.
	_ = group.Signal(syscall.SIGKILL)
	werr := group.Reap()
	if signalled != nil {
		return 128 + int(signalled.Signal), nil
	}
	if werr == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), ctx.Err()
		}
		return ee.ExitCode(), nil
	}
	return 255, werr
}

// privateDir is a run's private directory, with our ssh in it, and the
// socket the fake ssh processes join the run through.
type privateDir struct {
	dir, sock, secret string
	ln                *net.UnixListener
}

// newPrivateDir makes a run's private directory (0700, in the temporary
// directory, after removing those of dead runs) holding the owner file,
// `ssh` (a symlink to exe) and the listening socket, and a fresh secret.
// The caller closes ln and removes dir.
func newPrivateDir(exe string, log *slog.Logger) (*privateDir, error) {
	removeStaleDirs(os.TempDir(), log)
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("fakessh: private directory: %w", err)
	}
	fail := func(err error) (*privateDir, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(ownerLine()), 0o600); err != nil {
		return fail(fmt.Errorf("fakessh: private directory: %w", err))
	}
	for _, name := range append([]string{"ssh"}, Wrapped...) {
		if err := os.Symlink(exe, filepath.Join(dir, name)); err != nil {
			return fail(fmt.Errorf("fakessh: installing %s: %w", name, err))
		}
	}
	secretBytes := make([]byte, secretLen/2)
	if _, err := rand.Read(secretBytes); err != nil {
		return fail(err)
	}
	sock := filepath.Join(dir, "master.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fail(fmt.Errorf("fakessh: listening: %w", err))
	}
	ln.SetUnlinkOnClose(true)
	return &privateDir{dir: dir, sock: sock, secret: hex.EncodeToString(secretBytes), ln: ln}, nil
}

// A run's private directory is dirPrefix* in the temporary directory. It
// names its owner (the master process) in ownerFile, so that a later run can
// remove the directories of masters that died without cleaning up.
const (
	dirPrefix = "mitogen-fakessh-"
	ownerFile = "owner"
)

// ownerLine describes this process: PID, start time (/proc/PID/stat field
// 22, which tells a reused PID apart) and PID namespace.
func ownerLine() string {
	pid := os.Getpid()
	start, _ := procStart(pid)
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return fmt.Sprintf("pid=%d start=%s pidns=%s\n", pid, start, ns)
}

// procStart returns field 22 (starttime) of /proc/pid/stat.
func procStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(s[i+1:]) // from field 3 (state) on
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return f[19], nil
}

// ownerDead reports whether the owner line names a process of this PID
// namespace that is gone (no such PID, or a PID reused by a process started
// at another time). Anything it cannot judge counts as alive.
func ownerDead(line string) bool {
	var pid int
	var start, ns string
	if n, _ := fmt.Sscanf(strings.TrimSpace(line), "pid=%d start=%s pidns=%s", &pid, &start, &ns); n != 3 || pid <= 0 || start == "" {
		return false
	}
	if own, err := os.Readlink("/proc/self/ns/pid"); err != nil || own != ns {
		return false
	}
	cur, err := procStart(pid)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && cur != start
}

// removeStaleDirs removes the private directories in tmp that belong to
// this user and whose owner is dead. Directories of other users, without an
// owner, of live or unknown owners, and anything not a plain directory are
// left alone.
func removeStaleDirs(tmp string, log *slog.Logger) {
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), dirPrefix) || !e.IsDir() {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		st, err := os.Lstat(dir)
		if err != nil || !st.IsDir() {
			continue
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Getuid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil || !ownerDead(string(b)) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			log.Debug("fakessh: removing a stale directory", "dir", dir, "err", err)
			continue
		}
		log.Debug("fakessh: removed the directory of a dead run", "dir", dir, "owner", strings.TrimSpace(string(b)))
	}
}

// programArgs adds "-S ssh" for scp and sftp, which run the ssh their build
// names (/usr/bin/ssh) rather than the one on PATH, unless -S is given.
func programArgs(argv []string, ssh string) []string {
	// Option letters that take a value, from scp's and sftp's getopt strings.
	valued := map[string]string{"scp": "cDFiJloPSX", "sftp": "bBcDFiJloPRsSX"}[filepath.Base(argv[0])]
	if valued == "" {
		return argv
	}
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			if a[j] == 'S' {
				return argv // the user chose an ssh program
			}
			if strings.IndexByte(valued, a[j]) >= 0 {
				if j == len(a)-1 {
					i++ // the value is the next argument
				}
				break
			}
		}
	}
	return append([]string{argv[0], "-S", ssh}, argv[1:]...)
}

// lookPathIn finds name in the PATH of env.
func lookPathIn(name string, env []string) (string, error) {
	return lookPathSkipping(name, env, "")
}

// lookPathSkipping finds name in the PATH of env, leaving out the
// directory skip.
func lookPathSkipping(name string, env []string, skip string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathList := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathList = v
		}
	}
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			d = "."
		}
		if skip != "" && filepath.Clean(d) == filepath.Clean(skip) {
			continue
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

// withPath puts dir first on PATH.
func withPath(env []string, dir string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			e = "PATH=" + dir + string(os.PathListSeparator) + e[len("PATH="):]
			found = true
		}
		out = append(out, e)
	}
	if !found {
		out = append(out, "PATH="+dir+":/usr/local/bin:/usr/bin:/bin")
	}
	return out
}

// isMember is the policy of the master's FakeSSH handle: the run's fake
// ssh contexts, and for a run on a context that context (for join).
func (st *run) isMember(m *wire.Message, _ *core.Stream) bool {
	if st.On != nil && m.Auth == st.On.ID() {
		return true
	}
	return st.member(m.Auth)
}

func (st *run) member(id int32) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.members[id]
}

// accept serves connections from our ssh processes: each must come from
// this user (peer credentials) and present the run's secret first.
func (st *run) accept(ctx context.Context, ln *net.UnixListener, secret string) {
	slots := make(chan struct{}, st.Config.withDefaults().PreauthLimit)
	refused := 0 // in the current burst
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		select {
		case slots <- struct{}{}:
			if refused > 0 {
				st.Router.Logger().Warn("fakessh: accepting connections again", "refused", refused)
				refused = 0
			}
		default:
			if refused == 0 {
				st.Router.Logger().Warn("fakessh: too many connections have not presented the secret; refusing new ones", "limit", st.Config.withDefaults().PreauthLimit)
			}
			refused++
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write([]byte(busyLine))
			conn.Close()
			continue
		}
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			if err := st.admit(ctx, conn, secret, func() { <-slots }); err != nil {
				st.warnRefused(err)
				conn.Close()
			}
		}()
	}
}

// warnRefused logs a refused connection: at most one warning a second,
// counting the ones it leaves out.
func (st *run) warnRefused(err error) {
	st.mu.Lock()
	now := time.Now()
	if now.Sub(st.lastWarn) < time.Second {
		st.unwarned++
		st.mu.Unlock()
		return
	}
	n := st.unwarned
	st.lastWarn, st.unwarned = now, 0
	st.mu.Unlock()
	if n > 0 {
		st.Router.Logger().Warn("fakessh: refused a connection", "err", err, "more_refused_before", n)
		return
	}
	st.Router.Logger().Warn("fakessh: refused a connection", "err", err)
}

// admit checks a connection and boots the ssh context behind it; release
// frees its pre-authentication slot (called once, when the secret was
// checked or the connection refused).
func (st *run) admit(ctx context.Context, conn *net.UnixConn, secret string, release func()) error {
	var once sync.Once
	defer once.Do(release)
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return fmt.Errorf("peer credentials: %v %v", err, cerr)
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("peer uid %d is not ours (%d)", cred.Uid, os.Getuid())
	}
	timeout := st.Config.withDefaults().PreauthTimeout
	if st.preauth > 0 {
		timeout = st.preauth
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	line := make([]byte, secretLen+1)
	if _, err := io.ReadFull(conn, line); err != nil {
		return fmt.Errorf("reading secret: %w", err)
	}
	if subtle.ConstantTimeCompare(line[:secretLen], []byte(secret)) != 1 || line[secretLen] != '\n' {
		return errors.New("wrong secret")
	}
	_ = conn.SetReadDeadline(time.Time{})
	once.Do(release)
	st.mu.Lock()
	if limit := st.Config.withDefaults().MaxSessions; len(st.members)+st.reserved >= limit {
		st.mu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write([]byte(busyLine))
		return fmt.Errorf("%d ssh contexts of this run are connected (MaxSessions)", limit)
	}
	st.reserved++
	st.mu.Unlock()
	bootCtx, cancel := context.WithTimeout(ctx, st.Config.withDefaults().BootTimeout)
	defer cancel()
	id := int32(0)
	if st.join == nil {
		id = st.Router.AllocateID()
	} else {
		id, err = st.join(bootCtx, cred.Pid)
	}
	st.mu.Lock()
	st.reserved--
	if err != nil {
		st.mu.Unlock()
		return fmt.Errorf("joining the run at the master: %w", err)
	}
	st.count++
	n := st.count
	st.members[id] = true
	if st.pids == nil {
		st.pids = map[int32]int32{}
	}
	st.pids[id] = cred.Pid
	st.mu.Unlock()
	// The member is forgotten when its stream ends (or the run does), so
	// that the cap counts live sessions and the map stays bounded.
	defer func() {
		st.mu.Lock()
		delete(st.members, id)
		delete(st.pids, id)
		st.mu.Unlock()
	}()
	_, _, err = st.Router.StartChild(bootCtx, conn, id, fmt.Sprintf("fakessh.%d(pid %d)", n, cred.Pid), core.Leaf())
	if err != nil {
		return err
	}
	var stream *core.Stream
	for _, c := range st.Router.Children() {
		if c.RemoteID() == id {
			stream = c
		}
	}
	if stream != nil {
		select {
		case <-stream.Done():
		case <-ctx.Done():
			// The run is over: its ssh contexts go with it (the member is
			// forgotten on return, so disconnectAll would not see it), and
			// with them their remote commands, even for an ssh that left
			// the program's process group.
			st.Router.CloseStream(stream, "fakessh run ended")
		}
	}
	return nil
}

// disconnectAll ends the streams of this run's ssh contexts.
func (st *run) disconnectAll() {
	st.mu.Lock()
	ids := st.members
	st.members = map[int32]bool{}
	st.mu.Unlock()
	for _, s := range st.Router.Children() {
		if ids[s.RemoteID()] {
			st.Router.CloseStream(s, "fakessh run ended")
		}
	}
}

// StartSlave implements mitogen.FakeSSH for the run's ssh contexts: it picks
// the destination for req.Host and starts the process there on the master's
// authority, driven only by the calling ssh context.
func (st *run) StartSlave(ctx context.Context, req *mitogen.StartSlaveRequest) (*mitogen.ProcessStarted, error) {
	caller, ok := core.CallerID(ctx)
	if !ok || req == nil || req.Spec == nil {
		return nil, &mitogen.CallError{Message: "start_slave: malformed request"}
	}
	// The handle's policy admits the run's fake ssh contexts and, for a
	// run on a context, that context, which may only join.
	dest, err := st.serve(caller, req.Host)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, st.Config.withDefaults().StartTimeout)
	defer cancel()
	dest, err = st.asUser(callCtx, dest, req.User, req.Host)
	if err != nil {
		return nil, err
	}
	spec := *req.Spec
	spec.PeerId = caller
	spec.Argv = nil // a fakessh ssh runs commands the way sshd does, never raw argv
	spec.Env = AcceptEnv(spec.Env)
	spec.Handoff = nil // never the ssh's own
	if spec.Pty == nil {
		spec.Handoff = st.handoffFor(caller, dest, req.Offer)
	}
	st.Router.Logger().Debug("fakessh start_slave", "host", req.Host, "dest", dest.String(), "caller", caller,
		"command", spec.Command, "subsystem", spec.Subsystem, "login", spec.Login)
	started, err := dest.Agent().StartProcess(callCtx, &spec)
	if err != nil {
		var ce *mitogen.CallError
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, &mitogen.CallError{Message: fmt.Sprintf("starting on %s: %v", dest, err)}
	}
	if err := process.CheckStarted(started, dest.ID()); err != nil {
		st.Router.Logger().Error("fakessh start_slave: bad reply", "dest", dest.String(), "err", err)
		return nil, &mitogen.CallError{Message: fmt.Sprintf("starting on %s: %v", dest, err)}
	}
	if err := checkHandedOff(started, spec.Handoff); err != nil {
		st.Router.Logger().Error("fakessh start_slave: bad reply", "dest", dest.String(), "err", err)
		return nil, &mitogen.CallError{Message: fmt.Sprintf("starting on %s: %v", dest, err)}
	}
	return started, nil
}

// AcceptEnv is what sshd's default configuration on Debian
// ("AcceptEnv LANG LC_*") keeps of the variables a client sends (ssh's
// SendEnv and SetEnv): LANG and LC_*, nothing else. The destination adds
// them to the environment sshd would give the command (package process).
func AcceptEnv(env map[string]string) map[string]string {
	var out map[string]string
	for k, v := range env {
		if k == "LANG" || strings.HasPrefix(k, "LC_") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// destinationFor picks the context serving host (nil: none, in a run on a
// context without --via).
func (st *run) destinationFor(host string) *core.Context {
	if c, ok := st.Hosts[host]; ok {
		return c
	}
	return st.Default
}

// serve picks the context serving host for a call of caller: never for the
// context a run on a context runs its program in (it may only join), and
// an error ssh would give for a host the run was not given.
func (st *run) serve(caller int32, host string) (*core.Context, error) {
	if st.On != nil && caller == st.On.ID() {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("context %d is not a fake ssh of this run", caller)}
	}
	dest := st.destinationFor(host)
	if dest == nil {
		st.Router.Logger().Info("fakessh: refused a host this run was not given", "host", host, "caller", caller)
		return nil, &mitogen.CallError{Message: fmt.Sprintf("Could not resolve hostname %s: Name or service not known", host), Code: "ENOENT"}
	}
	return dest, nil
}

// Destination implements mitogen.FakeSSH: the ID of the context serving host.
func (st *run) Destination(ctx context.Context, host string) (*mitogen.DestinationReply, error) {
	caller, ok := core.CallerID(ctx)
	if !ok {
		return nil, &mitogen.CallError{Message: "destination: malformed request"}
	}
	dest, err := st.serve(caller, host)
	if err != nil {
		return nil, err
	}
	return &mitogen.DestinationReply{ContextId: dest.ID()}, nil
}

// Dial implements mitogen.FakeSSH for ssh -W, -L and -D: req.Host's
// context dials on the master's authority, with the calling ssh context as
// the only peer of the connection.
func (st *run) Dial(ctx context.Context, req *mitogen.FakeDialRequest) (*mitogen.DialReply, error) {
	caller, ok := core.CallerID(ctx)
	if !ok || req == nil || req.Dial == nil {
		return nil, &mitogen.CallError{Message: "dial: malformed request"}
	}
	d := *req.Dial
	d.PeerId = caller
	if _, err := forward.CheckRequest(&d, caller); err != nil {
		return nil, &mitogen.CallError{Message: err.Error()}
	}
	dest, err := st.serve(caller, req.Host)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, forward.MaxDialTimeout+st.Config.withDefaults().StartTimeout)
	defer cancel()
	rep, err := dest.Agent().DialTcp(callCtx, &d)
	if err != nil {
		var ce *mitogen.CallError
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, &mitogen.CallError{Message: fmt.Sprintf("dialling from %s: %v", dest, err)}
	}
	if err := forward.CheckReply(rep, dest.ID()); err != nil {
		st.Router.Logger().Error("fakessh dial: bad reply", "dest", dest.String(), "err", err)
		return nil, &mitogen.CallError{Message: fmt.Sprintf("dialling from %s: %v", dest, err)}
	}
	return rep, nil
}

// Listen implements mitogen.FakeSSH for ssh -R: req.Host's context listens
// on the master's authority, offering its connections to the calling ssh
// context only.
func (st *run) Listen(ctx context.Context, req *mitogen.FakeListenRequest) (*mitogen.ListenReply, error) {
	caller, ok := core.CallerID(ctx)
	if !ok || req == nil || req.Listen == nil {
		return nil, &mitogen.CallError{Message: "listen: malformed request"}
	}
	l := *req.Listen
	l.PeerId = caller
	if _, err := forward.CheckListenRequest(&l, caller); err != nil {
		return nil, &mitogen.CallError{Message: err.Error()}
	}
	dest, err := st.serve(caller, req.Host)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := context.WithTimeout(ctx, st.Config.withDefaults().StartTimeout)
	defer cancel()
	rep, err := dest.Agent().ListenTcp(callCtx, &l)
	if err != nil {
		var ce *mitogen.CallError
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, &mitogen.CallError{Message: fmt.Sprintf("listening on %s: %v", dest, err)}
	}
	if err := forward.CheckListenReply(rep); err != nil {
		st.Router.Logger().Error("fakessh listen: bad reply", "dest", dest.String(), "err", err)
		return nil, &mitogen.CallError{Message: fmt.Sprintf("listening on %s: %v", dest, err)}
	}
	return rep, nil
}
