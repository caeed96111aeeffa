package agent

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
)

// Run is the body of `mitogen agent`: it takes stdin/stdout as the stream to
// its parent, boots, serves the Agent service and returns the process exit
// code: 0 when the parent sent SHUTDOWN, 1 (with a line on stderr) when the
// Boot was refused or the parent stream ended without SHUTDOWN.
//
// Options set further fields of the Service (e.g. its FakeSSH starter).
func Run(ts Transports, ps ProcessStarter, opts ...func(*Service)) int {
	return RunWith(RunConfig{Transports: ts, Processes: ps, ServiceOptions: opts})
}

// ServiceRegistrar registers services of a user's program on a context's
// router (with Router.Serve for an IDL service served by CALL_FUNCTION, or
// Router.ServeOn / NewReceiver for handles of its own). It runs once per
// context, after the Agent service is registered and before the context
// tells its parent it is ready, so that no call can arrive before it. An
// error fails the boot: the agent prints it on stderr and exits 1 without
// telling its parent it is ready.
type ServiceRegistrar func(r *core.Router) error

// RunConfig is what RunWith serves. Zero fields take the defaults of Run.
type RunConfig struct {
	// Transports start this context's own children (default: the
	// transport registry with every built-in method).
	Transports Transports
	// Processes serves Agent.start_process (nil: refused).
	Processes ProcessStarter
	// Services are the user's services, registered in this context.
	Services []ServiceRegistrar
	// ServiceOptions set further fields of the Agent service (e.g. its
	// FakeSSH starter) before it is registered.
	ServiceOptions []func(*Service)
}

// RunWith is Run with user services: see RunConfig.
func RunWith(rc RunConfig) int {
	ts, ps := rc.Transports, rc.Processes
	closeInherited()
	conn, err := fd.StdioConn()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitogen agent: %v\n", err)
		return 1
	}
	cfg := core.DefaultConfig()
	ApplyEnv(&cfg)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if ts == nil {
		ts = (&Registry{}).Transport
	}
	var regErr error
	r, err := core.BootWith(conn, cfg, func(r *core.Router) error {
		svc := &Service{Router: r, Transports: ts, Processes: ps}
		for _, o := range rc.ServiceOptions {
			o(svc)
		}
		svc.Serve()
		for _, reg := range rc.Services {
			if err := reg(r); err != nil {
				regErr = fmt.Errorf("context %d: registering a user service: %w", r.ID(), err)
				return regErr
			}
		}
		return nil
	})
	if regErr != nil {
		fmt.Fprintf(os.Stderr, "mitogen agent: %v; exiting\n", regErr)
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitogen agent: %v (this command is started by a mitogen master, not by hand)\n", err)
		return 1
	}
	<-r.Done()
	if err := r.Err(); err != nil {
		// The only clean end is SHUTDOWN (see idl/mitogen.thrift): say
		// why this one was not, on one line, and fail.
		fmt.Fprintf(os.Stderr, "mitogen agent: context %d: %v; exiting\n", r.ID(), err)
		return 1
	}
	return 0
}

// closeInherited marks every descriptor above stderr close-on-exec: none
// is the agent's to pass on (an agent run from memory holds its memfd as
// fd 3, and a parent may leak others), so that no command it runs
// inherits one.
func closeInherited() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 2 {
			syscall.CloseOnExec(n)
		}
	}
}
