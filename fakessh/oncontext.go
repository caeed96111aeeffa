package fakessh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// fakessh in a child context (`mitogen run --on`). The program runs in a
// context C the master holds; its ssh invocations are served by the
// master's other contexts, with the authority rules of a local run:
//
//  1. The master serves the run's FakeSSH handle, whose policy admits C
//     (for join) and the run's fake ssh contexts (for start_slave), and
//     asks C to run the program (Agent.start_fakessh), driving it like
//     `mitogen exec` drives a process (package process).
//  2. C prepares a private directory and socket as a local run does
//     (StartOnContext), with C's own binary as the fake ssh, and starts
//     the program with them on its PATH and in its environment.
//  3. A fake ssh joins the socket there (uid and secret checked by C); C
//     asks the master for its ID (FakeSSH.join): the master allocates it,
//     grants it to C and records it as a member of the run. C boots the
//     fake ssh as a leaf child with that ID.
//  4. The fake ssh calls start_slave on the master's handle, as in a local
//     run; the master starts the command in the destination context on its
//     own authority, driven only by that fake ssh.
//  5. When the program is done, C closes the socket, ends its fake ssh
//     contexts and removes the directory; the master removes the handle.

// maxJoins bounds the fake ssh contexts of one run on a context.
const maxJoins = 65536

// runOn is Run for a Runner with On set: the master's side.
func (rn *Runner) runOn(ctx context.Context, argv []string) (int, error) {
	r := rn.Router
	st := &run{Runner: rn, members: make(map[int32]bool)}
	handle := r.ServeOn(st.isMember, func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchFakeSSH(ctx, st, method, args)
	})
	defer func() {
		st.mu.Lock()
		st.ended = true
		st.mu.Unlock()
		r.RemoveHandler(handle)
	}()
	dir := rn.Dir
	if dir == "" {
		dir = "~"
	}
	spec := &mitogen.ProcessSpec{Argv: argv, Dir: dir, Origin: "mitogen run --on"}
	// The relay outlives ctx: when ctx ends, the program gets SIGTERM and,
	// KillGrace later, SIGKILL (as a local run's program does), and the
	// relay goes on until its EXIT; only a context that does not answer
	// either gets the relay cut, one more KillGrace later.
	var started *mitogen.ProcessStarted
	var startErr error
	startedCh := make(chan struct{})
	start := func(_ context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		spec.PeerId = r.ID()
		ps, err := rn.On.Agent().StartFakessh(ctx, &mitogen.FakeSSHProgram{Spec: spec, Handle: handle})
		if err == nil {
			started = ps
			close(startedCh)
		}
		startErr = err
		return ps, err
	}
	relayCtx, cutRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer cutRelay()
	relayDone := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
		case <-relayDone:
			return
		}
		select {
		case <-startedCh:
		case <-relayDone:
			return
		}
		grace := rn.Config.withDefaults().KillGrace
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			r.Send(&wire.Message{Dst: rn.On.ID(), Handle: started.ControlHandle,
				Data: thrift.FastMarshal(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: int32(sig)})})
			select {
			case <-relayDone:
				return
			case <-time.After(grace):
			}
		}
		cutRelay()
	}()
	res, err := process.Relay(relayCtx, r, rn.On.ID(), start, spec, process.Stdio{Stdin: rn.Stdin, Stdout: rn.Stdout, Stderr: rn.Stderr})
	close(relayDone)
	<-watched
	if err != nil {
		status := 255
		var ce *mitogen.CallError
		if errors.As(startErr, &ce) && ce.Code == "ENOENT" {
			status = 127 // as a shell reports a program not found
		}
		if res.Note != "" {
			return status, fmt.Errorf("fakessh: running %s in %s: %s", argv[0], rn.On, res.Note)
		}
		return status, fmt.Errorf("fakessh: running %s in %s: %w", argv[0], rn.On, err)
	}
	if res.Signal != "" {
		// As a shell reports a program killed by a signal.
		if n := unix.SignalNum("SIG" + res.Signal); n != 0 {
			return 128 + int(n), ctx.Err()
		}
	}
	if res.Note != "" && rn.Stderr != nil {
		fmt.Fprintf(rn.Stderr, "mitogen run: %s\n", res.Note)
	}
	return res.Status, nil
}

// Join implements mitogen.FakeSSH for the context a run on a context
// runs in: it gives an admitted fake ssh its ID (see FakeSSH.join).
func (st *run) Join(ctx context.Context, pid int32) (*mitogen.FakeSSHJoined, error) {
	caller, ok := core.CallerID(ctx)
	if !ok || st.On == nil || caller != st.On.ID() {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("join: context %d does not run this run's program", caller)}
	}
	st.mu.Lock()
	switch {
	case st.ended:
		st.mu.Unlock()
		return nil, &mitogen.CallError{Message: "join: the run is over"}
	case st.joins >= maxJoins:
		st.mu.Unlock()
		return nil, &mitogen.CallError{Message: fmt.Sprintf("join: the run has had %d fake ssh contexts, the most it may", maxJoins)}
	}
	st.joins++
	st.mu.Unlock()
	id, err := st.Router.AllocateIDFor(caller)
	if err != nil {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("join: %v", err)}
	}
	st.mu.Lock()
	st.members[id] = true
	st.mu.Unlock()
	st.Router.Logger().Debug("fakessh join", "on", st.On.String(), "id", id, "pid", pid)
	return &mitogen.FakeSSHJoined{ContextId: id}, nil
}

// StartOnContext is Agent.start_fakessh (an agent.FakeSSHStarter): it runs
// prog in this context with this binary as the fake ssh first on its PATH,
// and serves the run's socket until the program is done (see
// FakeSSHProgram in idl/mitogen.thrift). The process is driven by the
// caller exactly as one from Agent.start_process.
func StartOnContext(ctx context.Context, r *core.Router, prog *mitogen.FakeSSHProgram) (*mitogen.ProcessStarted, error) {
	if prog == nil || prog.Spec == nil {
		return nil, &mitogen.CallError{Message: "start_fakessh: no program"}
	}
	spec := *prog.Spec
	switch {
	case len(spec.Argv) == 0 || spec.Argv[0] == "":
		return nil, &mitogen.CallError{Message: "start_fakessh: the program's argv is empty"}
	case spec.Command != "" || spec.Subsystem != "" || spec.Login:
		return nil, &mitogen.CallError{Message: "start_fakessh: only argv may name the program"}
	case prog.Handle < mitogen.FIRST_DYNAMIC_HANDLE || prog.Handle == mitogen.IS_DEAD:
		return nil, &mitogen.CallError{Message: fmt.Sprintf("start_fakessh: handle %d is not a dynamic handle", prog.Handle)}
	}
	pd, err := newPrivateDir(selfExe(), r.Logger())
	if err != nil {
		return nil, &mitogen.CallError{Message: err.Error()}
	}
	fc := &mitogen.FakeSSHClient{Caller: handleCaller{r: r, handle: prog.Handle}}
	st := &run{Runner: &Runner{Router: r}, members: make(map[int32]bool),
		join: func(ctx context.Context, pid int32) (int32, error) {
			j, err := fc.Join(ctx, pid)
			if err != nil {
				return 0, err
			}
			return j.ContextId, nil
		}}
	runCtx, cancel := context.WithCancel(r.Lifetime())
	st.wg.Add(1)
	go func() { defer st.wg.Done(); st.accept(runCtx, pd.ln, pd.secret) }()
	cleanup := func() {
		cancel()
		pd.ln.Close()
		st.wg.Wait()
		st.disconnectAll()
		os.RemoveAll(pd.dir)
	}

	env := make(map[string]string, len(spec.Env)+4)
	for k, v := range spec.Env {
		env[k] = v
	}
	path, ok := env["PATH"]
	if !ok {
		path = os.Getenv("PATH")
	}
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env["PATH"] = pd.dir + string(os.PathListSeparator) + path
	env[EnvSocket], env[EnvSecret], env[EnvHandle] = pd.sock, pd.secret, strconv.Itoa(int(prog.Handle))
	spec.Env = env
	ssh := filepath.Join(pd.dir, "ssh")
	spec.Argv = programArgs(spec.Argv, ssh)
	// A program named "ssh" is ours, as on the PATH it will see.
	if p, err := lookPathIn(spec.Argv[0], []string{"PATH=" + env["PATH"]}); err == nil && p == ssh {
		spec.Argv = append([]string{ssh}, spec.Argv[1:]...)
	}
	started, err := process.DefaultConfig().StartProcessThen(ctx, r, &spec, cleanup)
	if err != nil {
		cleanup()
		return nil, err
	}
	return started, nil
}

// selfExe is this binary, for the fake ssh: its file when it has one, else
// (run from memory, or the file replaced) this process's /proc exe link,
// which the program's processes, being this user's, can execute.
func selfExe() string {
	exe, err := os.Executable()
	if err == nil && !strings.HasSuffix(exe, " (deleted)") && !strings.HasPrefix(exe, "/memfd:") {
		var st syscall.Stat_t
		if syscall.Stat(exe, &st) == nil {
			return exe
		}
	}
	return fmt.Sprintf("/proc/%d/exe", os.Getpid())
}
