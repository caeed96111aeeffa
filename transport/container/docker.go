package container

import (
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// DockerOptions are the docker settings of a hop.
type DockerOptions struct {
	// Args are extra docker arguments before "exec" (e.g. --context NAME,
	// -H unix:///run/other.sock).
	Args []string `opt:"args"`
	// CacheDir overrides the agent cache directory inside the container.
	CacheDir string `opt:"cache_dir"`
	// Program is the docker binary (default "docker").
	Program string `opt:"program"`
}

// Validate checks the options.
func (o *DockerOptions) Validate() error { return checkArgs(o.Args) }

// Docker is the "docker" connection method:
//
//	docker [ARGS...] exec --interactive [--user=USER] -- CONTAINER /bin/sh -c SCRIPT
var Docker = transport.Method{
	Kind:       transport.KindDocker,
	Syntax:     "docker:[user@]container",
	Summary:    "a running Docker container, with docker exec",
	Parse:      parseContainer(transport.KindDocker, true),
	NewOptions: func() any { return new(DockerOptions) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		o := opts.(*DockerOptions)
		argv := append([]string{program(o.Program, "docker")}, o.Args...)
		argv = append(argv, "exec", "--interactive")
		if spec.User != "" {
			argv = append(argv, "--user="+spec.User)
		}
		argv = append(argv, "--", spec.Host)
		return &Exec{Name: spec.String(), Argv: argv, CacheDir: o.CacheDir, Agent: agent, Failures: commonFailures}, nil
	},
}

func init() { transport.Register(Docker) }
