package mitogen

import (
	"os"
	"path/filepath"
	"slices"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// AgentArg is the first argument a context's agent is started with: the
// local method runs "BINARY agent", and the bootstrap of the other methods
// ends in `exec AGENT agent`. A program embedding mitogen-go must not use
// it as a command of its own.
const AgentArg = "agent"

// SSHName is the name fakessh runs this binary under (a symlink named
// "ssh" first on the program's PATH).
const SSHName = "ssh"

// Role is what a process was started as.
type Role int

const (
	// RoleNone is a process started by a user: the program proper.
	RoleNone Role = iota
	// RoleAgent is a context's agent, started by a master or a context
	// (argv[1] is AgentArg).
	RoleAgent
	// RoleSSH is fakessh's ssh, started by a program under RunFakeSSH
	// (argv[0]'s base name is SSHName).
	RoleSSH
	// RoleWrapper is fakessh's scp or sftp (argv[0]'s base name is one of
	// fakessh.Wrapped), which runs the real one with fakessh's ssh.
	RoleWrapper
)

// RoleOf tells the role of a process from its argv.
func RoleOf(args []string) Role {
	switch {
	case len(args) > 0 && filepath.Base(args[0]) == SSHName:
		return RoleSSH
	case len(args) > 0 && slices.Contains(fakessh.Wrapped, filepath.Base(args[0])):
		return RoleWrapper
	case len(args) > 1 && args[1] == AgentArg:
		return RoleAgent
	}
	return RoleNone
}

// Main is the embedding contract: a program using mitogen-go calls it
// first thing in its main function. When the process was started in one
// of the library's roles, Main serves that role and exits the process with
// its status; otherwise it returns at once and main goes on.
//
// The roles: the agent of a context (argv[1] == AgentArg: the master, or
// another context, started this binary; see agent.Run: status 0 after
// SHUTDOWN, 1 when the parent stream broke), and fakessh's ssh (started
// under the name SSHName by a program RunFakeSSH runs; see
// fakessh.SSHMain), and fakessh's scp and sftp (started under those names;
// see fakessh.WrapperMain).
//
// This is what lets a program be its own agent: the local method re-runs
// the running binary, and the others (ssh, sudo, containers, ...) copy it
// to the far side once, cache it by its SHA-256 and run it there. So the
// agent is always the same code as the master, and a program that calls
// Main needs no separate agent binary (Config.AgentPath names another
// binary when the far side needs one, e.g. another architecture). Test
// binaries do the same in TestMain, before m.Run.
//
// Options add to what the agent role serves: WithService registers a
// user's own services in every context this binary runs as (the
// bootstrap ships this binary, so the services reach any host the master
// reaches, with nothing installed there).
//
// In the agent and ssh roles Main also tunes the Go runtime for a relay
// (agent.TuneRuntime); the program proper is left alone.
func Main(opts ...Option) {
	var o mainOptions
	for _, opt := range opts {
		opt(&o)
	}
	switch RoleOf(os.Args) {
	case RoleAgent:
		agent.TuneRuntime()
		os.Exit(agent.RunWith(agent.RunConfig{Processes: process.StartProcess, Services: o.services,
			ServiceOptions: []func(*agent.Service){func(s *agent.Service) { s.FakeSSH = fakessh.StartOnContext }}}))
	case RoleSSH:
		agent.TuneRuntime()
		os.Exit(fakessh.SSHMain(os.Args[1:]))
	case RoleWrapper:
		os.Exit(fakessh.WrapperMain(os.Args))
	}
}

// Option is an option of Main.
type Option func(*mainOptions)

type mainOptions struct {
	services []agent.ServiceRegistrar
}

// WithService registers a user's services in every context this binary
// serves as an agent: register runs once per context with its router,
// before the context reports ready, and typically calls Router.Serve with
// the dispatcher mitogen-gen generated for the user's IDL service. An
// error from register ends that agent (exit status 1, the error on its
// stderr) before it reports ready, so the master's Connect fails.
func WithService(register func(r *core.Router) error) Option {
	return func(o *mainOptions) { o.services = append(o.services, register) }
}
