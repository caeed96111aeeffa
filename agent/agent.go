package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/forward"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"

	// The built-in connection methods register themselves into
	// transport.Default ("local" is in package transport).
	_ "github.com/seed-a176d0ab/mitogen-go/transport/container"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/doas"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/setns"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/su"
	_ "github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

// Transports builds the transport for a hop from its spec and its own
// options in wire form (ConnectRequest.options: only this hop's settings).
type Transports func(spec transport.Spec, options map[string]string) (transport.Transport, error)

// DefaultTransports builds transports with the methods of
// transport.Default, installing this binary as the agent where one is
// needed.
func DefaultTransports(spec transport.Spec, opts map[string]string) (transport.Transport, error) {
	return (&Registry{}).Transport(spec, opts)
}

// Registry builds transports with a set of connection methods, sharing
// one agent binary (read, hashed and compressed once) among them. Its zero
// value uses transport.Default and this binary.
type Registry struct {
	// Methods are the connection methods (default transport.Default).
	Methods *transport.Registry

	mu    sync.Mutex
	agent *bootstrap.Agent
}

// NewRegistry returns a registry that installs a as the agent.
func NewRegistry(a *bootstrap.Agent) *Registry { return &Registry{agent: a} }

func (g *Registry) methods() *transport.Registry {
	if g.Methods != nil {
		return g.Methods
	}
	return transport.Default
}

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

// Legacy option keys of Dial's single options map, which it sorts out per
// hop (see LegacyOptions). New code gives each Hop its own typed options.
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

// legacyKeys maps, per kind, Dial's legacy keys to the method's own.
var legacyKeys = map[transport.Kind]map[string]string{
	transport.KindSSH: {
		OptSSHConfig: "config_file", OptSSHOptions: "options", OptIdentity: "identity",
		OptConnectTimeout: "connect_timeout", OptHostKeyChecking: "host_key_checking",
		OptSSHPassword: "password",
	},
	transport.KindSudo: {OptSudoPassword: "password", OptSudoPreserveEnv: "preserve_env", OptSudoLogin: "login"},
}

// LegacyOptions picks out of a single legacy options map (keys Opt*) the
// wire options of one hop of kind: ssh settings only for ssh hops, sudo
// settings only for sudo hops, cache_dir for every method that has it.
func LegacyOptions(methods *transport.Registry, kind transport.Kind, all map[string]string) (map[string]string, error) {
	zero, err := methods.NewOptions(kind)
	if err != nil || zero == nil {
		return nil, err
	}
	hasCacheDir := transport.DecodeOptions(map[string]string{"cache_dir": ""}, zero) == nil
	out := map[string]string{}
	for k, v := range all {
		if v == "" {
			continue
		}
		if own, ok := legacyKeys[kind][k]; ok {
			out[own] = v
		} else if k == OptCacheDir && hasCacheDir {
			out["cache_dir"] = v
		}
	}
	return out, nil
}

// Transport implements Transports: it decodes the hop's options with its
// method and builds the transport.
func (g *Registry) Transport(spec transport.Spec, opts map[string]string) (transport.Transport, error) {
	a, err := g.self()
	if err != nil {
		return nil, err
	}
	return g.methods().New(spec, opts, a)
}

// ProcessStarter starts a process for Agent.start_process.
type ProcessStarter func(ctx context.Context, r *core.Router, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error)

// FakeSSHStarter runs a program under fakessh for Agent.start_fakessh.
type FakeSSHStarter func(ctx context.Context, r *core.Router, prog *mitogen.FakeSSHProgram) (*mitogen.ProcessStarted, error)

// Service implements mitogen.Agent for one router.
type Service struct {
	Router     *core.Router
	Transports Transports
	Processes  ProcessStarter
	// FakeSSH serves Agent.start_fakessh (nil: refused).
	FakeSSH FakeSSHStarter
	// Methods parse the specs of Connect requests (default
	// transport.Default); Transports must know the same kinds.
	Methods *transport.Registry

	dials forward.Dialer // dial_tcp's connections
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

// StartFakessh runs a program under fakessh in this context (see
// FakeSSHProgram).
func (s *Service) StartFakessh(ctx context.Context, prog *mitogen.FakeSSHProgram) (*mitogen.ProcessStarted, error) {
	if s.FakeSSH == nil {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("context %d cannot run programs under fakessh", s.Router.ID())}
	}
	if prog == nil || prog.Spec == nil {
		return nil, &mitogen.CallError{Message: "start_fakessh: no program"}
	}
	return s.FakeSSH(ctx, s.Router, prog)
}

// Connect starts a child context of this one.
func (s *Service) Connect(ctx context.Context, req *mitogen.ConnectRequest) (*mitogen.ConnectReply, error) {
	if req == nil {
		return nil, &mitogen.CallError{Message: "connect: no ConnectRequest"}
	}
	methods := s.Methods
	if methods == nil {
		methods = transport.Default
	}
	spec, err := methods.ParseSpec(req.Spec)
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

// Hop is one step of a chain: where to go, and this hop's own settings.
type Hop struct {
	Spec transport.Spec
	// Options are the hop method's options: a pointer to its options
	// struct (*ssh.Options for an ssh hop, *sudo.Options for sudo, ...),
	// or nil for the defaults. They go only to the context that starts
	// this hop: the master for the first hop, the previous hop's context
	// for the others (paths in them, such as an ssh identity file, are
	// paths on that host).
	Options any
}

// Dialer reaches contexts through chains of hops.
type Dialer struct {
	// Methods encode the hops' options and parse specs (default
	// transport.Default).
	Methods *transport.Registry
	// Transports starts the first hop, in this process (default: a
	// Registry over Methods, installing this binary as the agent).
	Transports Transports
	// Sent, when not nil, is told each hop's spec and the wire options
	// sent for it before the hop starts: hop 0's go to Transports in this
	// process, later hops' in the ConnectRequest to the previous context.
	// For audits and tests: secret values are included.
	Sent func(hop int, spec transport.Spec, options map[string]string)
}

// Dial starts a context at the end of hops: the first hop is started by r
// itself, each next one by the context before it. It returns every context
// of the chain, in order. r must be the master's router.
func (d *Dialer) Dial(ctx context.Context, r *core.Router, hops []Hop) ([]*core.Context, error) {
	return d.DialFrom(ctx, r, nil, hops)
}

// DialFrom is Dial with the first hop started by from, a context reached
// through r (nil: r itself), so that the chain continues one that exists:
// the returned contexts are from's descendants. Options of the first hop
// then go to from, like those of later hops to their previous hop.
func (d *Dialer) DialFrom(ctx context.Context, r *core.Router, from *core.Context, hops []Hop) ([]*core.Context, error) {
	methods := d.Methods
	if methods == nil {
		methods = transport.Default
	}
	ts := d.Transports
	if ts == nil {
		ts = (&Registry{Methods: methods}).Transport
	}
	// Every hop's options are checked before anything starts.
	wire := make([]map[string]string, len(hops))
	for i, h := range hops {
		m, err := methods.EncodeOptions(h.Spec.Kind, h.Options)
		if err != nil {
			return nil, fmt.Errorf("hop %d (%s): %w", i+1, h.Spec, err)
		}
		wire[i] = m
	}
	var chain []*core.Context
	via := from
	for i, h := range hops {
		spec := h.Spec
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
		if d.Sent != nil {
			d.Sent(i, spec, wire[i])
		}
		if lg := r.Config().Logger; lg != nil {
			lg.Debug("dialing hop", "hop", i+1, "spec", spec.String(), "options", methods.Redact(spec.Kind, wire[i]))
		}
		var c *core.Context
		if via == nil {
			var err error
			c, _, err = StartLocalChild(ctx, r, ts, spec, wire[i], id, name)
			if err != nil {
				return chain, fmt.Errorf("hop %d (%s): %w", i+1, spec, err)
			}
		} else {
			_, err := via.Agent().Connect(ctx, &mitogen.ConnectRequest{ContextId: id, Spec: spec.String(), Name: name, Options: wire[i]})
			var ce *mitogen.CallError
			if errors.As(err, &ce) {
				return chain, fmt.Errorf("hop %d (%s) via %s: %s", i+1, spec, via, ce.Message)
			}
			if err != nil {
				return chain, fmt.Errorf("hop %d (%s) via %s: %w", i+1, spec, via, err)
			}
			c = r.Context(id, name)
		}
		if methods.SameMachine(spec.Kind) && (via == nil || r.OnThisMachine(via.ID())) {
			r.SetOnThisMachine(id)
		}
		chain = append(chain, c)
		via = c
	}
	return chain, nil
}

// DialHops is (&Dialer{Transports: ts}).Dial(ctx, r, hops).
func DialHops(ctx context.Context, r *core.Router, ts Transports, hops []Hop) ([]*core.Context, error) {
	return (&Dialer{Transports: ts}).Dial(ctx, r, hops)
}

// Dial is the older form of DialHops: one options map with the legacy
// keys (Opt*) for the whole chain, of which each hop is sent only its own
// method's settings (see LegacyOptions).
func Dial(ctx context.Context, r *core.Router, ts Transports, specs []transport.Spec, opts map[string]string) ([]*core.Context, error) {
	hops := make([]Hop, len(specs))
	for i, spec := range specs {
		wire, err := LegacyOptions(transport.Default, spec.Kind, opts)
		if err != nil {
			return nil, fmt.Errorf("hop %d (%s): %w", i+1, spec, err)
		}
		hops[i] = Hop{Spec: spec}
		if wire != nil {
			o, err := transport.Default.DecodeOptions(spec.Kind, wire)
			if err != nil {
				return nil, fmt.Errorf("hop %d (%s): %w", i+1, spec, err)
			}
			hops[i].Options = o
		}
	}
	return DialHops(ctx, r, ts, hops)
}
