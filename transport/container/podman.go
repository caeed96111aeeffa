package container

import (
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// PodmanOptions are the podman settings of a hop.
type PodmanOptions struct {
	// Args are extra podman arguments before "exec" (e.g. --connection NAME,
	// --url unix:///run/other.sock).
	Args []string `opt:"args"`
	// CacheDir overrides the agent cache directory inside the container.
	CacheDir string `opt:"cache_dir"`
	// Program is the podman binary (default "podman").
	Program string `opt:"program"`
}

// Validate checks the options.
func (o *PodmanOptions) Validate() error { return checkArgs(o.Args) }

// Podman is the "podman" connection method:
//
//	podman [ARGS...] exec --interactive [--user=USER] -- CONTAINER /bin/sh -c SCRIPT
var Podman = transport.Method{
	Kind:       transport.KindPodman,
	Syntax:     "podman:[user@]container",
	Summary:    "a running Podman container, with podman exec",
	Parse:      parseContainer(transport.KindPodman, true),
	NewOptions: func() any { return new(PodmanOptions) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		o := opts.(*PodmanOptions)
		argv := append([]string{program(o.Program, "podman")}, o.Args...)
		argv = append(argv, "exec", "--interactive")
		if spec.User != "" {
			argv = append(argv, "--user="+spec.User)
		}
		argv = append(argv, "--", spec.Host)
		return &Exec{Name: spec.String(), Argv: argv, CacheDir: o.CacheDir, Agent: agent, Failures: commonFailures}, nil
	},
}

func init() { transport.Register(Podman) }
