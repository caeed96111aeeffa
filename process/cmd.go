package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Cmd is a command to run in a context, shaped after os/exec.Cmd. Exactly
// one of Args, Shell, Subsystem and Login says what runs; the other fields
// are optional. A Cmd cannot be reused after Start.
type Cmd struct {
	// Args is the program and its arguments, run directly (argv[0] found
	// on the context's PATH).
	Args []string
	// Shell is a command line run as `$SHELL -c Shell` with the user's
	// shell, as sshd runs a remote command.
	Shell string
	// Subsystem names a subsystem to run, as sshd does; only "sftp".
	Subsystem string
	// Login runs the user's login shell.
	Login bool

	// Env holds "KEY=value" entries added to the command's environment
	// (unlike os/exec, it does not replace it): for Args, the one the
	// context's agent has; for Shell, Subsystem and Login, the one sshd
	// would give (USER, HOME, SSH_CONNECTION, ...: see ProcessSpec).
	Env []string
	// Dir is the working directory in the context: empty for the agent's
	// own, "~" for the user's home.
	Dir string

	// Stdin is the process's input; nil is empty input. Wait does not wait
	// for a Read in progress on it to return.
	Stdin io.Reader
	// Stdout and Stderr receive the process's outputs; nil discards.
	Stdout io.Writer
	Stderr io.Writer

	// Origin says who asked, for the context's logs.
	Origin string

	// WaitDelay bounds how long Wait waits for the process's EXIT after
	// the Cmd's context is done (it then sends SIGKILL). Zero means 5 s.
	WaitDelay time.Duration

	// Router is the local router the relay runs on; Starter starts the
	// process in context Dest (AnyDestination: the one Starter's reply
	// names, never Router's own). Command sets all three; set them directly
	// to start processes some other way (fakessh asks its master).
	Router  *core.Router
	Starter Starter
	Dest    int32

	ctx      context.Context
	cl       *client
	pid      int
	mu       sync.Mutex
	done     chan struct{} // closed when the relay is over
	res      Result
	err      error
	waited   bool
	startErr error
}

// Command returns a Cmd that runs argv (when given; else set Shell,
// Subsystem or Login) in the context c, relayed through c's router.
func Command(c *core.Context, argv ...string) *Cmd {
	return CommandContext(context.Background(), c, argv...)
}

// CommandContext is Command with a context: when ctx is done before the
// process ends, the process is sent SIGKILL and Wait returns (after at most
// WaitDelay).
func CommandContext(ctx context.Context, c *core.Context, argv ...string) *Cmd {
	r := c.Router()
	start := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		spec.PeerId = r.ID()
		return c.Agent().StartProcess(ctx, spec)
	}
	return &Cmd{Args: argv, Router: r, Starter: start, Dest: c.ID(), ctx: ctx}
}

// Spec is the ProcessSpec Start sends (PeerId is the Starter's to set).
func (c *Cmd) Spec() (*mitogen.ProcessSpec, error) {
	n := 0
	for _, set := range []bool{len(c.Args) > 0, c.Shell != "", c.Subsystem != "", c.Login} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("process: a Cmd needs exactly one of Args, Shell, Subsystem and Login (has %d)", n)
	}
	spec := &mitogen.ProcessSpec{Argv: c.Args, Command: c.Shell, Subsystem: c.Subsystem, Login: c.Login, Dir: c.Dir, Origin: c.Origin}
	if len(c.Env) > 0 {
		spec.Env = make(map[string]string, len(c.Env))
		for _, kv := range c.Env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("process: Env entry %q is not KEY=value", kv)
			}
			spec.Env[k] = v
		}
	}
	return spec, nil
}

// Start starts the process and its relay; it returns once the process
// runs (its START is sent). Wait then reports how it ended.
func (c *Cmd) Start() error {
	if c.done != nil || c.startErr != nil {
		return errors.New("process: already started")
	}
	if c.Router == nil || c.Starter == nil {
		c.startErr = errors.New("process: Cmd has no Router or Starter (use Command)")
		return c.startErr
	}
	spec, err := c.Spec()
	if err != nil {
		c.startErr = err
		return err
	}
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		c.startErr = err
		return err
	}
	// The relay outlives ctx by up to WaitDelay: ctx's end kills the
	// process, whose EXIT is then still heard.
	relayCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cl := &client{r: c.Router, dest: c.Dest}
	if err := cl.start(relayCtx, c.Starter, spec, Stdio{Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr}); err != nil {
		cancel()
		if cl.res.Note != "" {
			err = fmt.Errorf("%w (%s)", err, cl.res.Note)
		}
		c.startErr = fmt.Errorf("process: starting %s: %w", c.what(), err)
		return c.startErr
	}
	c.cl = cl
	c.pid = int(cl.started.Pid)
	c.done = make(chan struct{})
	go func() {
		defer cancel()
		defer close(c.done)
		c.res, c.err = cl.wait()
	}()
	go func() {
		select {
		case <-ctx.Done():
		case <-c.done:
			return
		}
		cl.signal(syscall.SIGKILL)
		delay := c.WaitDelay
		if delay <= 0 {
			delay = 5 * time.Second
		}
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-c.done:
		}
	}()
	return nil
}

func (c *Cmd) what() string {
	switch {
	case len(c.Args) > 0:
		return c.Args[0]
	case c.Shell != "":
		return fmt.Sprintf("%q", c.Shell)
	case c.Subsystem != "":
		return "subsystem " + c.Subsystem
	}
	return "login shell"
}

// Pid is the process's ID in its context (0 before Start).
func (c *Cmd) Pid() int { return c.pid }

// Signal sends sig to the process's group. It is a no-op once the process
// has ended.
func (c *Cmd) Signal(sig syscall.Signal) error {
	if c.cl == nil {
		return errors.New("process: not started")
	}
	select {
	case <-c.done:
		return errors.New("process: already ended")
	default:
	}
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("process: no signal %d", int(sig))
	}
	c.cl.signal(sig)
	return nil
}

// Wait waits for the process to end and every byte of its output to be
// delivered. It returns nil for exit status 0, an *ExitError for another
// status or a signal, or the relay's failure (the context lost, a protocol
// error, the Cmd's context done and the process not heard of in
// WaitDelay).
func (c *Cmd) Wait() error {
	if c.done == nil {
		return errors.New("process: not started")
	}
	c.mu.Lock()
	if c.waited {
		c.mu.Unlock()
		return errors.New("process: Wait was already called")
	}
	c.waited = true
	c.mu.Unlock()
	<-c.done
	if c.err != nil {
		if c.ctx != nil && c.ctx.Err() != nil {
			return fmt.Errorf("process: %s: %w (%v)", c.what(), c.ctx.Err(), c.err)
		}
		return fmt.Errorf("process: %s: %w", c.what(), c.err)
	}
	if c.res.Status == 0 && c.res.Signal == "" {
		return nil
	}
	return &ExitError{Status: c.res.Status, SignalName: c.res.Signal, Note: c.res.Note}
}

// Run starts the process and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the process and returns its stdout. Stdout must be nil.
// When Stderr is nil, the head of stderr (up to 64 KiB) is kept in the
// *ExitError.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("process: Stdout already set")
	}
	var out bytes.Buffer
	c.Stdout = &out
	var errs *headBuffer
	if c.Stderr == nil {
		errs = &headBuffer{max: 64 << 10}
		c.Stderr = errs
	}
	err := c.Run()
	var ee *ExitError
	if errs != nil && errors.As(err, &ee) {
		ee.Stderr = errs.b.Bytes()
	}
	return out.Bytes(), err
}

// CombinedOutput runs the process and returns stdout and stderr together.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("process: Stdout or Stderr already set")
	}
	var out lockedBuffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	return out.b.Bytes(), err
}

// ExitError is a process that ended with a status other than 0 or was
// killed by a signal.
type ExitError struct {
	// Status is the status as ssh reports it: 0-255, 255 for a signal.
	Status int
	// SignalName names the signal that killed the process ("KILL"), if one did.
	SignalName string
	// Note is the process side's one-line remark (a signal, a failed stdin).
	Note string
	// Stderr holds the head of stderr when Output collected it.
	Stderr []byte
}

// ExitCode is the exit status, or -1 when a signal ended the process (as
// os.ProcessState.ExitCode).
func (e *ExitError) ExitCode() int {
	if e.SignalName != "" {
		return -1
	}
	return e.Status
}

// Signaled says whether a signal ended the process.
func (e *ExitError) Signaled() bool { return e.SignalName != "" }

// Signal is the name of the signal that ended the process ("KILL"), or "".
func (e *ExitError) Signal() string { return e.SignalName }

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("exit status %d", e.Status)
	if e.SignalName != "" {
		msg = "signal: " + e.SignalName
	}
	if e.Note != "" && !strings.Contains(e.Note, "killed by signal") {
		msg += " (" + e.Note + ")"
	}
	return msg
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	max int
	b   bytes.Buffer
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - h.b.Len(); room > 0 {
		h.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// lockedBuffer is a buffer two pumps write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
