package fakessh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh/sshargs"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/internal/pipesize"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// SSHMain is the body of fakessh's ssh: it parses the command line as
// OpenSSH does, becomes a context of the run's master and relays the
// requested command. It returns the exit status for os.Exit.
func SSHMain(args []string) int {
	inv, err := sshargs.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 255
	}
	switch inv.Mode {
	case sshargs.ModeVersion:
		fmt.Fprintln(os.Stderr, sshargs.Version)
		return 0
	case sshargs.ModePrintConfig:
		name := ""
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		if err := sshargs.PrintConfig(os.Stdout, inv, name); err != nil {
			return 255
		}
		return 0
	}
	if inv.Control != "" {
		return control(inv)
	}
	if len(inv.Unsupported) > 0 {
		for _, u := range inv.Unsupported {
			fmt.Fprintf(os.Stderr, "ssh: fakessh does not support %s\n", u)
		}
		return 255
	}
	if inv.Background && os.Getenv(envBackground) == "" {
		if inv.Login && len(inv.Local)+len(inv.Dynamic)+len(inv.Remote) == 0 {
			fmt.Fprintln(os.Stderr, "Cannot fork into background without a command to execute.")
			return 255
		}
		return background()
	}
	ready := readyFunc()
	sock, secret := os.Getenv(EnvSocket), os.Getenv(EnvSecret)
	handle, herr := strconv.Atoi(os.Getenv(EnvHandle))
	if sock == "" || len(secret) != secretLen || herr != nil {
		fmt.Fprintln(os.Stderr, "ssh: this is mitogen's fakessh, which only works under 'mitogen run'")
		return 255
	}
	conn, err := dialMaster(sock, secret, dialPatience)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssh: connecting to the mitogen master: %v\n", err)
		return 255
	}
	cfg := core.DefaultConfig()
	agent.ApplyEnv(&cfg)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := core.Boot(conn, cfg, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssh: joining the mitogen master: %v\n", err)
		return 255
	}
	defer r.Close()

	// A signal ends the relay (and so the remote command, the way sshd ends
	// a session); ssh then exits 255, saying "Killed by signal N." only
	// with -v (OpenSSH's VERBOSE level).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	// Never stopped: the process exits when SSHMain returns, and
	// signal.Stop waits for the runtime's signal goroutine to go idle,
	// which took up to 0.3 ms of every `ssh host true`.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, os.Interrupt)
	caught := make(chan os.Signal, 1)
	go func() {
		select {
		case sig := <-sigs:
			caught <- sig
			cancel()
		case <-ctx.Done():
		}
	}()
	// killed reports the signal that ended the session, as ssh does: at
	// its VERBOSE level only.
	killed := func() int {
		sig := <-caught
		caught <- sig
		if !inv.Quiet && inv.Verbose > 0 {
			fmt.Fprintf(os.Stderr, "Killed by signal %d.\r\n", sig.(syscall.Signal))
		}
		return 255
	}
	fwd := newForwarder(ctx, r, inv, int32(handle))
	if inv.StdioForward != nil {
		st := fwd.stdioForward(ctx, ready)
		if ctx.Err() != nil {
			return killed()
		}
		return st
	}
	if err := fwd.listen(ctx); err != nil {
		fwd.close()
		return 255
	}
	if inv.NoCommand {
		// No session: forwards only, until killed or the master goes.
		ready()
		select {
		case <-ctx.Done():
		case <-r.Done():
		}
		cancel()
		fwd.close()
		if len(caught) > 0 {
			return killed()
		}
		return 255
	}
	defer fwd.close()
	spec := specFor(inv, os.Environ())
	stdinTTY := !inv.NoStdin && isTerminal(int(os.Stdin.Fd()))
	pty, warn := wantPty(inv, stdinTTY)
	if warn && !inv.Quiet {
		fmt.Fprint(os.Stderr, noPtyLine)
	}
	// FD HANDOFF: a destination on this machine may take our stdio itself
	// (never for a pty session).
	offer := offerStdio(inv, pty)
	var handed atomic.Int32
	start := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		fc := &mitogen.FakeSSHClient{Caller: handleCaller{r: r, handle: int32(handle)}}
		req := &mitogen.StartSlaveRequest{Host: inv.Host, User: inv.User, Port: int32(inv.Port), Spec: spec}
		if offer != nil {
			req.Offer = offer.Handoff()
		}
		started, err := fc.StartSlave(ctx, req)
		if offer != nil {
			h, herr := offer.Settle(started)
			if err == nil && herr != nil {
				return nil, herr
			}
			handed.Store(h)
			dropHanded(h)
		}
		if err == nil {
			ready()
		}
		return started, err
	}
	if offer != nil {
		defer offer.Close()
	}
	pipesize.Grow(os.Stdin)
	pipesize.Grow(os.Stdout)
	stdio := process.Stdio{Stdin: handedStdin{r: os.Stdin, handed: &handed}, Stdout: os.Stdout, Stderr: os.Stderr}
	if inv.NoStdin {
		stdio.Stdin = nil
	}
	if pty {
		// A pty on the far side (ssh -t): its size now and as it changes,
		// and the local terminal, if any, in raw mode for the session.
		spec.Pty = &mitogen.PtyRequest{Term: os.Getenv("TERM"), Size: windowSize(int(os.Stdin.Fd()))}
		if stdinTTY {
			restore, err := rawMode(int(os.Stdin.Fd()))
			if err == nil {
				defer restore()
			}
			sizes, stop := watchWindow(int(os.Stdin.Fd()))
			defer stop()
			stdio.WindowChanges = sizes
		}
	}
	status, ran := relay(ctx, r, start, spec, stdio, inv, caught)
	if pty && ran && !inv.Quiet {
		// OpenSSH's closing line of a pty session (its INFO level).
		fmt.Fprintf(os.Stderr, "Connection to %s closed.\r\n", inv.Host)
	}
	return status
}

// relay runs the session and returns ssh's exit status, and whether the
// session ran to its end (EXIT, or ssh's own signal). ssh's own lines on
// stderr are OpenSSH's: none with -q (LogLevel QUIET silences even its
// errors); "Killed by signal N." and a remote command's death by a signal
// only with -v (OpenSSH logs the first at VERBOSE and says nothing of the
// second, exiting 255).
func relay(ctx context.Context, r *core.Router, start process.Starter, spec *mitogen.ProcessSpec, stdio process.Stdio, inv *sshargs.Invocation, caught <-chan os.Signal) (int, bool) {
	say := func(format string, args ...any) {
		if !inv.Quiet {
			fmt.Fprintf(os.Stderr, format, args...)
		}
	}
	res, err := process.Relay(ctx, r, process.AnyDestination, start, spec, stdio)
	if err != nil {
		select {
		case sig := <-caught:
			if inv.Verbose > 0 {
				say("Killed by signal %d.\r\n", sig.(syscall.Signal))
			}
			return 255, true
		default:
		}
		var ce *mitogen.CallError
		if errors.As(err, &ce) && ce.Code == "EACCES" {
			// The master refused the ssh user, as sshd would: its
			// message is ssh's ("root@h: Permission denied (...).").
			say("%s\n", ce.Message)
		} else if res.Note != "" {
			say("ssh: %s\n", res.Note)
		} else {
			say("ssh: %s: %v\n", inv.Host, err)
		}
		return 255, false
	}
	switch {
	case res.Note == "":
	case res.Signal != "":
		if inv.Verbose > 0 {
			say("ssh: %s: %s\n", inv.Host, res.Note)
		}
	default:
		say("ssh: %s: %s\n", inv.Host, res.Note)
	}
	return res.Status, true
}

// dialPatience bounds how long our ssh retries a master that is busy
// (too many connections yet to present the secret).
const dialPatience = 30 * time.Second

// dialMaster connects to the run's socket and presents the secret. A master
// over its pre-authentication cap answers busyLine and closes; that is
// retried, with backoff, for up to patience. Anything else it sends is the
// start of its Boot frame, left unread in the returned connection (a plain
// socket, which core reads and writes directly).
func dialMaster(sock, secret string, patience time.Duration) (io.ReadWriteCloser, error) {
	deadline := time.Now().Add(patience)
	pause := 20 * time.Millisecond
	for {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return nil, err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("%s: not a unix socket connection", sock)
		}
		// A busy master may have closed before the secret is written; its
		// answer is still there to read.
		_, werr := c.Write([]byte(secret + "\n"))
		head, err := peekHead(uc, len(busyLine), deadline)
		n := len(head)
		switch {
		case werr != nil && (n == 0 || string(head) != busyLine[:n]):
			c.Close()
			return nil, werr
		case err == nil && string(head) != busyLine:
			return uc, nil
		case n > 0 && string(head) == busyLine[:n]:
			c.Close() // busy: try again
		case n == 0 && errors.Is(err, io.EOF):
			c.Close()
			return nil, errors.New("the master closed the connection (wrong secret?)")
		default:
			c.Close()
			return nil, fmt.Errorf("unexpected answer from the master (%q, %v)", head, err)
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the master stayed busy")
		}
		time.Sleep(pause)
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// peekHead waits until c holds n bytes to read (or ends, or deadline
// passes) and returns them without consuming them: up to n bytes, and
// io.EOF when the peer closed before n arrived.
func peekHead(c *net.UnixConn, n int, deadline time.Time) ([]byte, error) {
	if err := c.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	defer c.SetReadDeadline(time.Time{})
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n+1)
	got := 0
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			k, _, e := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false // nothing yet: wait until readable
			case e != nil:
				perr = e
				return true
			case k == 0:
				perr = io.EOF
				return true
			}
			got = min(k, n)
			if k < n && !peerClosed(int(fd)) {
				return false // part of it: wait for the rest
			}
			if k < n {
				perr = io.EOF
			}
			return true
		}
	})
	if err == nil {
		err = perr
	}
	return buf[:got], err
}

// peerClosed reports whether the peer of the socket fd has shut down its
// sending side (POLLRDHUP).
func peerClosed(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	n, err := unix.Poll(p, 0)
	return err == nil && n > 0 && p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0
}

// handleCaller makes calls to a service the master serves on a handle.
type handleCaller struct {
	r      *core.Router
	handle int32
}

func (h handleCaller) CallFunction(ctx context.Context, method string, args, result thrift.FastCodec) error {
	return h.r.CallAt(ctx, core.CallTarget{Context: mitogen.MASTER_ID, Handle: h.handle}, method, args, result)
}

// specFor turns an ssh invocation into the ProcessSpec sshd would run:
// a subsystem, the command string through the user's shell, or a login
// shell; in the home directory; with the environment ssh would send.
func specFor(inv *sshargs.Invocation, environ []string) *mitogen.ProcessSpec {
	spec := &mitogen.ProcessSpec{Dir: "~", Origin: "fakessh ssh " + inv.Host}
	switch {
	case inv.Subsystem:
		spec.Subsystem = inv.Command[0]
	case len(inv.Command) > 0:
		spec.Command = inv.RemoteCommand()
	default:
		spec.Login = true
	}
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		for _, pat := range inv.SendEnv {
			for _, p := range strings.Fields(pat) {
				if ok, _ := path.Match(p, k); ok && !strings.HasPrefix(p, "-") {
					env[k] = v
				}
			}
		}
	}
	for k, v := range inv.SetEnv {
		env[k] = v
	}
	if len(env) > 0 {
		spec.Env = env
	}
	return spec
}
