package agent

import (
	"fmt"
	"log/slog"
	"os"

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
		svc := &Service{Router: r, Transports: ts, Processes: ps}
		for _, o := range opts {
			o(svc)
		}
		svc.Serve()
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
