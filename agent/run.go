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
func Run(ts Transports, ps ProcessStarter) int {
	closeInherited()
	conn, err := fd.StdioConn()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitogen agent: %v\n", err)
		return 1
	}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if ts == nil {
		ts = (&Registry{}).Transport
	}
	r, err := core.Boot(conn, cfg, func(r *core.Router) {
		(&Service{Router: r, Transports: ts, Processes: ps}).Serve()
	})
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
