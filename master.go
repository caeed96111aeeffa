package mitogen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

// Config configures a Master. Its zero value means the defaults
// (DefaultConfig).
type Config struct {
	// Core holds the router's limits and timings (see core.Config: zero
	// fields mean the defaults, nonsense is an error).
	Core core.Config
	// Methods are the connection methods hops may use (nil:
	// transport.Default, every built-in method).
	Methods *transport.Registry
	// AgentPath is the agent binary started for contexts ("": this
	// binary, which must call Main first in its main function).
	AgentPath string
}

// DefaultConfig returns the defaults: core.DefaultConfig, the built-in
// methods, this binary as the agent.
func DefaultConfig() Config {
	return Config{Core: core.DefaultConfig()}
}

// Validate reports what makes c unusable.
func (c Config) Validate() error {
	if err := c.Core.Validate(); err != nil {
		return err
	}
	if c.AgentPath != "" {
		st, err := os.Stat(c.AgentPath)
		if err != nil {
			return fmt.Errorf("mitogen.Config.AgentPath: %w", err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("mitogen.Config.AgentPath %s: not an executable file", c.AgentPath)
		}
	}
	return nil
}

// Master is the process that starts and drives contexts: the root of the
// tree, holding context ID 0 (mitogen.MASTER_ID in the IDL).
type Master struct {
	router *core.Router
	dialer *agent.Dialer
}

// NewMaster validates cfg and starts a master's router. Close it when done:
// that shuts every context it started down.
func NewMaster(cfg Config) (*Master, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r, err := core.NewMasterChecked(cfg.Core)
	if err != nil {
		return nil, err
	}
	methods := cfg.Methods
	if methods == nil {
		methods = transport.Default
	}
	reg := &agent.Registry{Methods: methods}
	if cfg.AgentPath != "" {
		reg = agent.NewRegistry(&bootstrap.Agent{Path: cfg.AgentPath})
		reg.Methods = methods
	}
	return &Master{router: r, dialer: &agent.Dialer{Methods: methods, Transports: reg.Transport}}, nil
}

// Router is the master's router, for the lower-level API of package core.
func (m *Master) Router() *core.Router { return m.router }

// Close shuts the master down: every context is told to SHUTDOWN (and
// given core.Config.ShutdownGrace), then every stream is closed.
func (m *Master) Close() error { return m.router.Close() }

// Context wraps a core.Context of a Master: calls (Agent), messages (Send),
// Shutdown and the rest come from core.Context; Connect continues a chain
// from it.
type Context struct {
	*core.Context
	master *Master
}

// Master is the master the context belongs to.
func (c *Context) Master() *Master { return c.master }

// Hop is one step of a chain: a spec in text form ("ssh:web1",
// "sudo:postgres", "local", or the form of any registered method) and that
// hop's own options (a pointer to the method's options struct, such as
// *ssh.Options, or nil for the defaults). Options go only to the context
// that starts the hop.
type Hop struct {
	Spec    string
	Options any
}

// Local is a hop to a new agent on the same host as the context starting
// it, as the same user.
func Local() Hop { return Hop{Spec: string(transport.KindLocal)} }

// SSH is a hop over the system's OpenSSH client to dest
// ("[user@]host[:port]"); opts may be nil.
func SSH(dest string, opts *ssh.Options) Hop {
	h := Hop{Spec: string(transport.KindSSH) + ":" + dest}
	if opts != nil {
		h.Options = opts
	}
	return h
}

// Sudo is a hop to another user ("" is root) with sudo(8) on the host of
// the context starting it; opts may be nil.
func Sudo(user string, opts *sudo.Options) Hop {
	h := Hop{Spec: string(transport.KindSudo)}
	if user != "" {
		h.Spec += ":" + user
	}
	if opts != nil {
		h.Options = opts
	}
	return h
}

// Specs turns specs in text form into hops with default options, for
// chains given as text (m.Connect(ctx, Specs("ssh:web1", "sudo")...)).
func Specs(specs ...string) []Hop {
	out := make([]Hop, len(specs))
	for i, s := range specs {
		out[i] = Hop{Spec: s}
	}
	return out
}

// Connect starts a chain of contexts from the master: the first hop is
// started by the master itself, each next one by the context before it.
// It returns the last context. Every hop's spec and options are checked
// before anything starts; when a later hop fails, the contexts already
// started for this chain are shut down.
func (m *Master) Connect(ctx context.Context, hops ...Hop) (*Context, error) {
	return m.connect(ctx, nil, hops)
}

// Connect starts a chain of contexts from c: its first hop is started by c
// (so an ssh hop's options, an identity file for instance, are read on c's
// host). It returns the last context; see Master.Connect.
func (c *Context) Connect(ctx context.Context, hops ...Hop) (*Context, error) {
	return c.master.connect(ctx, c.Context, hops)
}

func (m *Master) connect(ctx context.Context, from *core.Context, hops []Hop) (*Context, error) {
	if len(hops) == 0 {
		return nil, errors.New("connect: no hops")
	}
	ah := make([]agent.Hop, len(hops))
	for i, h := range hops {
		spec, err := m.dialer.Methods.ParseSpec(h.Spec)
		if err != nil {
			return nil, fmt.Errorf("hop %d: %w", i+1, err)
		}
		ah[i] = agent.Hop{Spec: spec, Options: h.Options}
	}
	chain, err := m.dialer.DialFrom(ctx, m.router, from, ah)
	if err != nil {
		if len(chain) > 0 {
			// The first context started for this chain takes the
			// rest with it.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.router.Config().ShutdownGrace)
			_ = chain[0].Shutdown(sctx)
			cancel()
		}
		return nil, err
	}
	return &Context{Context: chain[len(chain)-1], master: m}, nil
}

// FakeSSHOptions are the settings of RunFakeSSH. Nil stdio fields mean
// this process's own (os.Stdin, os.Stdout, os.Stderr); pass io.Discard or
// an empty reader to give the program none.
type FakeSSHOptions struct {
	// Hosts serve the ssh destinations they name; others go to RunFakeSSH's
	// dest.
	Hosts map[string]*Context
	// Stdin, Stdout and Stderr are the program's stdio.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Env is the program's base environment (nil: os.Environ()).
	Env []string
	// Dir is the program's working directory ("": this process's).
	Dir string
	// Config holds the run's limits and timings (zero: the defaults).
	Config fakessh.RunConfig
	// On, when set, is the context the program runs in (fakessh in a
	// child context): its ssh invocations are served by the Hosts contexts
	// and by dest, which may then be nil (only Hosts are served; any other
	// name is refused as an unknown host). Env is then not used, and Dir
	// is a directory in On ("": the home directory).
	On *Context
}

// RunFakeSSH runs argv on this host (or in opts.On) with fakessh's ssh
// first on its PATH:
// every ssh the program starts (rsync's, scp's, git's, a script's) runs its
// command in dest (or the Hosts context named by the ssh destination)
// instead of connecting anywhere, with stdio relayed and its exit status
// returned to the program. It returns the program's exit status (128+N for
// a signal). opts may be nil. This binary is the ssh: it must call Main
// first in its main function.
func (m *Master) RunFakeSSH(ctx context.Context, dest *Context, argv []string, opts *FakeSSHOptions) (int, error) {
	if opts == nil {
		opts = &FakeSSHOptions{}
	}
	if (dest == nil && opts.On == nil) || (dest != nil && dest.master != m) {
		return 255, errors.New("RunFakeSSH: dest must be a context of this master")
	}
	rn := &fakessh.Runner{Router: m.router, Hosts: map[string]*core.Context{},
		Stdin: opts.Stdin, Stdout: opts.Stdout, Stderr: opts.Stderr, Env: opts.Env, Dir: opts.Dir, Config: opts.Config}
	if dest != nil {
		rn.Default = dest.Context
	}
	if opts.On != nil {
		if opts.On.master != m {
			return 255, errors.New("RunFakeSSH: On must be a context of this master")
		}
		rn.On = opts.On.Context
	}
	if rn.Stdin == nil {
		rn.Stdin = os.Stdin
	}
	if rn.Stdout == nil {
		rn.Stdout = os.Stdout
	}
	if rn.Stderr == nil {
		rn.Stderr = os.Stderr
	}
	for name, c := range opts.Hosts {
		if c == nil || c.master != m {
			return 255, fmt.Errorf("RunFakeSSH: host %q: not a context of this master", name)
		}
		rn.Hosts[name] = c.Context
	}
	return rn.Run(ctx, argv)
}
