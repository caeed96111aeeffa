package container

import (
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// LXCOptions are the settings of an lxc (lxc-attach) or lxd (lxc exec) hop.
type LXCOptions struct {
	// CacheDir overrides the agent cache directory inside the container.
	// lxc-attach --clear-env leaves HOME unset, so the default is
	// /.cache/mitogen-go there.
	CacheDir string `opt:"cache_dir"`
	// Program is the binary (default "lxc-attach" for lxc, "lxc" for lxd).
	Program string `opt:"program"`
}

// LXC is the "lxc" connection method, for classic LXC containers:
//
//	lxc-attach --clear-env --name CONTAINER -- /bin/sh -c SCRIPT
var LXC = transport.Method{
	Kind:       transport.KindLXC,
	Syntax:     "lxc:container",
	Summary:    "a running LXC container, with lxc-attach",
	Parse:      parseContainer(transport.KindLXC, false),
	NewOptions: func() any { return new(LXCOptions) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		o := opts.(*LXCOptions)
		argv := []string{program(o.Program, "lxc-attach"), "--clear-env", "--name", spec.Host, "--"}
		return &Exec{Name: spec.String(), Argv: argv, CacheDir: o.CacheDir, Agent: agent, Failures: commonFailures}, nil
	},
}

// LXD is the "lxd" connection method, for LXD (and Incus-era lxc client)
// instances:
//
//	lxc exec --mode=non-interactive CONTAINER -- /bin/sh -c SCRIPT
var LXD = transport.Method{
	Kind:       transport.KindLXD,
	Syntax:     "lxd:container",
	Summary:    "a running LXD instance, with lxc exec",
	Parse:      parseContainer(transport.KindLXD, false),
	NewOptions: func() any { return new(LXCOptions) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		o := opts.(*LXCOptions)
		argv := []string{program(o.Program, "lxc"), "exec", "--mode=non-interactive", spec.Host, "--"}
		return &Exec{Name: spec.String(), Argv: argv, CacheDir: o.CacheDir, Agent: agent, Failures: commonFailures}, nil
	},
}

func init() {
	transport.Register(LXC)
	transport.Register(LXD)
}
