// Package agent is what every context serves (the Agent service of
// idl/mitogen.thrift) and how a master reaches contexts: Dial starts a
// context directly or through a chain of others.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

// Transports builds the transport for a spec. Options carry transport
// settings (ssh options, passwords) from ConnectRequest.options.
type Transports func(spec transport.Spec, options map[string]string) (transport.Transport, error)

// DefaultTransports knows local, ssh and sudo hops, installing this
// binary as the agent where one is needed.
func DefaultTransports(spec transport.Spec, opts map[string]string) (transport.Transport, error) {
	return (&Registry{}).Transport(spec, opts)
}

// Registry builds transports, sharing one agent binary (read, hashed and
// compressed once) among them.
type Registry struct {
	mu    sync.Mutex
	agent *bootstrap.Agent
}

// NewRegistry returns a registry that installs a as the agent.
func NewRegistry(a *bootstrap.Agent) *Registry { return &Registry{agent: a} }

func (g *Registry) self() (*bootstrap.Agent, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.agent == nil {
		a, err := bootstrap.Self()
		if err != nil {
			return nil, err
		}
		g.agent = a
	}
	return g.agent, nil
}

// Option keys understood in ConnectRequest.options (and Dial's opts).
const (
	OptSSHConfig       = "ssh_config"
	OptSSHOptions      = "ssh_options" // newline-separated KEY=VALUE
	OptIdentity        = "identity"
	OptConnectTimeout  = "connect_timeout"
	OptHostKeyChecking = "host_key_checking"
	OptSSHPassword     = "ssh_password"
	OptSudoPassword    = "sudo_password"
	OptSudoPreserveEnv = "sudo_preserve_env"
	OptSudoLogin       = "sudo_login"
	OptCacheDir        = "cache_dir"
)

// Transport implements Transports.
func (g *Registry) Transport(spec transport.Spec, opts map[string]string) (transport.Transport, error) {
	switch spec.Kind {
	case transport.KindLocal:
		return &fd.Local{}, nil
	case transport.KindSSH:
		a, err := g.self()
		if err != nil {
			return nil, err
		}
		o := ssh.Options{
			ConfigFile:      opts[OptSSHConfig],
			Identity:        opts[OptIdentity],
			HostKeyChecking: opts[OptHostKeyChecking],
			Password:        opts[OptSSHPassword],
			CacheDir:        opts[OptCacheDir],
		}
		if v := opts[OptSSHOptions]; v != "" {
			o.Options = strings.Split(v, "\n")
		}
		if v := opts[OptConnectTimeout]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("connect timeout %q: want seconds", v)
			}
			o.ConnectTimeout = n
		}
		return &ssh.Transport{Spec: spec, Opts: o, Agent: a}, nil
	case transport.KindSudo:
		a, err := g.self()
		if err != nil {
			return nil, err
		}
		return &sudo.Transport{User: spec.User, Agent: a, Opts: sudo.Options{
			Password:    opts[OptSudoPassword],
			PreserveEnv: opts[OptSudoPreserveEnv] == "1",
			Login:       opts[OptSudoLogin] == "1",
			CacheDir:    opts[OptCacheDir],
		}}, nil
	}
	return nil, fmt.Errorf("unknown transport %s", spec)
}

// ProcessStarter starts a process for Agent.start_process.
type ProcessStarter func(ctx context.Context, r *core.Router, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error)

// Service implements mitogen.Agent for one router.
type Service struct {
	Router     *core.Router
	Transports Transports
	Processes  ProcessStarter
}

var _ mitogen.Agent = (*Service)(nil)

// Serve registers s as the router's Agent service.
func (s *Service) Serve() {
	s.Router.Serve("Agent", func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchAgent(ctx, s, method, args)
	})
}

// Ping does nothing.
func (s *Service) Ping(context.Context) error { return nil }

// Echo returns data.
func (s *Service) Echo(_ context.Context, data []byte) ([]byte, error) { return data, nil }

// Sleep sleeps for millis or until ctx ends.
func (s *Service) Sleep(ctx context.Context, millis int64) error {
	t := time.NewTimer(time.Duration(millis) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ReadFile reads up to max bytes of path.
func (s *Service) ReadFile(_ context.Context, path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		code := ""
		var errno syscall.Errno
		if errors.As(err, &errno) {
			code = unix.ErrnoName(errno)
		}
		return nil, &mitogen.CallError{Message: err.Error(), Code: code}
	}
	defer f.Close()
	if max <= 0 || max > int64(s.Router.Config().MaxFrameSize/2) {
		max = int64(s.Router.Config().MaxFrameSize / 2)
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, &mitogen.CallError{Message: err.Error()}
	}
	return b, nil
}

// StartProcess starts a process with its stdio relayed (see ProcessSpec).
func (s *Service) StartProcess(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	if s.Processes == nil {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("context %d cannot start processes", s.Router.ID())}
	}
	if spec == nil {
		return nil, &mitogen.CallError{Message: "start_process: no ProcessSpec"}
	}
	return s.Processes(ctx, s.Router, spec)
}

// Connect starts a child context of this one.
func (s *Service) Connect(ctx context.Context, req *mitogen.ConnectRequest) (*mitogen.ConnectReply, error) {
	if req == nil {
		return nil, &mitogen.CallError{Message: "connect: no ConnectRequest"}
	}
	spec, err := transport.ParseSpec(req.Spec)
	if err != nil {
		return nil, &mitogen.CallError{Message: err.Error()}
	}
	c, ready, err := StartLocalChild(ctx, s.Router, s.transports(), spec, req.Options, req.ContextId, req.Name)
	if err != nil {
		return nil, &mitogen.CallError{Message: err.Error()}
	}
	return &mitogen.ConnectReply{ContextId: c.ID(), Pid: ready.Pid}, nil
}

func (s *Service) transports() Transports {
	if s.Transports != nil {
		return s.Transports
	}
	return (&Registry{}).Transport
}

// StartLocalChild starts an agent over spec's transport and makes it a
// child of r with ID id.
func StartLocalChild(ctx context.Context, r *core.Router, ts Transports, spec transport.Spec, opts map[string]string, id int32, name string) (*core.Context, *mitogen.Ready, error) {
	t, err := ts(spec, opts)
	if err != nil {
		return nil, nil, err
	}
	conn, err := t.Start(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", spec, err)
	}
	c, ready, err := r.StartChild(ctx, conn, id, name)
	if err != nil {
		_ = conn.Kill()
		return nil, nil, err
	}
	// Reap the agent when its stream ends; kill it if the router shuts down.
	go func() {
		select {
		case <-r.Done():
			_ = conn.Kill()
		case <-waitChan(conn):
		}
	}()
	return c, ready, nil
}

func waitChan(c transport.Conn) <-chan struct{} {
	ch := make(chan struct{})
	go func() { _ = c.Wait(); close(ch) }()
	return ch
}

// Dial starts a context at the end of a chain of hops: the first hop is
// started by r itself, each next one by the context before it. It returns
// every context of the chain, in order. r must be the master's router.
func Dial(ctx context.Context, r *core.Router, ts Transports, hops []transport.Spec, opts map[string]string) ([]*core.Context, error) {
	if ts == nil {
		ts = (&Registry{}).Transport
	}
	var chain []*core.Context
	var via *core.Context
	for i, spec := range hops {
		var id int32
		if via == nil {
			id = r.AllocateID()
		} else {
			var err error
			if id, err = r.AllocateIDFor(via.ID()); err != nil { // granted to via's subtree
				return chain, fmt.Errorf("hop %d (%s) via %s: %w", i+1, spec, via, err)
			}
		}
		name := fmt.Sprintf("%s.%d", spec, id)
		var c *core.Context
		if via == nil {
			var err error
			c, _, err = StartLocalChild(ctx, r, ts, spec, opts, id, name)
			if err != nil {
				return chain, fmt.Errorf("hop %d (%s): %w", i+1, spec, err)
			}
		} else {
			_, err := via.Agent().Connect(ctx, &mitogen.ConnectRequest{ContextId: id, Spec: spec.String(), Name: name, Options: opts})
			var ce *mitogen.CallError
			if errors.As(err, &ce) {
				return chain, fmt.Errorf("hop %d (%s) via %s: %s", i+1, spec, via, ce.Message)
			}
			if err != nil {
				return chain, fmt.Errorf("hop %d (%s) via %s: %w", i+1, spec, via, err)
			}
			c = r.Context(id, name)
		}
		chain = append(chain, c)
		via = c
	}
	return chain, nil
}
