// Package container holds the connection methods that reach a running
// container or pod through its runtime's "exec" command: docker, podman,
// kubectl, lxc (lxc-attach) and lxd (lxc exec). Each runs the agent
// bootstrap (see package bootstrap) with /bin/sh inside the target, so the
// image needs /bin/sh, head, gzip, sha256sum and uname; the agent binary
// is sent over the exec's stdin the first time and cached in the
// container. Each method registers itself from its own file.
//
// The runtime gets no terminal: stdin and stdout are pipes carrying the
// stream (a terminal would mangle it), stderr is kept for error messages.
package container

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// Exec is a hop that runs Argv followed by "/bin/sh -c SCRIPT": the
// runtime's exec command line, built by the method.
type Exec struct {
	// Name describes the hop ("docker:web").
	Name string
	// Argv is the program and its arguments up to the command to run.
	Argv []string
	// CacheDir overrides the agent cache directory inside the target.
	CacheDir string
	// Agent is the binary installed in the target.
	Agent *bootstrap.Agent
	// Failures name errors by what the runtime printed.
	Failures []bootstrap.Failure
}

func (e *Exec) String() string { return e.Name }

// Command returns the full argument vector for running script.
func (e *Exec) Command(script string) []string {
	return append(append([]string(nil), e.Argv...), "/bin/sh", "-c", script)
}

// Start implements transport.Transport.
func (e *Exec) Start(ctx context.Context) (transport.Conn, error) {
	script, err := e.Agent.Script(e.CacheDir)
	if err != nil {
		return nil, err
	}
	argv := e.Command(script)
	return bootstrap.Start(ctx, bootstrap.Command{
		Cmd:      exec.Command(argv[0], argv[1:]...),
		Agent:    e.Agent,
		Classify: bootstrap.Classifier(e.Name, argv[0], e.Failures),
	})
}

// commonFailures are the runtimes' usual complaints.
var commonFailures = []bootstrap.Failure{
	{Match: "no such container", Kind: "no such container"},
	{Match: "not found", Kind: "not found"},
	{Match: "is not running", Kind: "the container is not running"},
	{Match: "permission denied", Kind: "permission denied"},
	{Match: "cannot connect", Kind: "the runtime is unreachable"},
	{Match: "unable to connect", Kind: "the runtime is unreachable"},
}

// checkArgs rejects extra runtime arguments that cannot be passed safely.
func checkArgs(args []string) error {
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, "\n\x00") {
			return fmt.Errorf("runtime argument %q: empty or with a newline", a)
		}
	}
	return nil
}

// parseContainer parses "[user@]name" (user allowed when withUser).
func parseContainer(kind transport.Kind, withUser bool) func(string) (transport.Spec, error) {
	return func(arg string) (transport.Spec, error) {
		user, host, _, err := transport.SplitUserHost(arg, false)
		if err != nil {
			return transport.Spec{}, err
		}
		if user != "" && !withUser {
			return transport.Spec{}, fmt.Errorf("%s takes no user", kind)
		}
		if strings.ContainsAny(host, "[]:") {
			return transport.Spec{}, fmt.Errorf("bad container name %q", host)
		}
		return transport.Spec{Kind: kind, User: user, Host: host}, nil
	}
}

func program(p, def string) string {
	if p == "" {
		return def
	}
	return p
}
