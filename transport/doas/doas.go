// Package doas starts agents as another user with doas(1) (OpenBSD's, or
// opendoas on Linux), allowed by rules in /etc/doas.conf. doas reads its
// password from the controlling terminal: it gets a pty, where the
// password is answered; a wrong one is an error at once.
package doas

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// Options are the doas settings of a hop. They travel only to the context
// that runs this doas.
type Options struct {
	// Password answers doas's prompt (the password of the user running
	// doas, on the host where it runs).
	Password string `opt:"password,secret"`
	// PasswordPrompt is the text doas's prompt contains (default
	// "password:"), matched case-insensitively.
	PasswordPrompt string `opt:"password_prompt"`
	// CacheDir overrides the agent cache directory.
	CacheDir string `opt:"cache_dir"`
	// Program is the doas binary (default "doas").
	Program string `opt:"program"`
}

// Method is the "doas" connection method; the package registers it into
// transport.Default.
var Method = transport.Method{
	Kind:        transport.KindDoas,
	Syntax:      "doas[:user]",
	Summary:     "another user on the same host, with doas(1) as /etc/doas.conf allows (default root)",
	SameMachine: true,
	Parse:       transport.ParseUser(transport.KindDoas),
	NewOptions:  func() any { return new(Options) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		return &Transport{User: spec.User, Opts: *opts.(*Options), Agent: agent}, nil
	},
}

func init() { transport.Register(Method) }

// Transport is a doas hop.
type Transport struct {
	User  string
	Opts  Options
	Agent *bootstrap.Agent
}

func (t *Transport) String() string { return "doas:" + t.User }

// Args returns doas's arguments for running the POSIX sh program script.
func (t *Transport) Args(script string) []string {
	return []string{"-u", t.User, "--", "/bin/sh", "-c", script}
}

// Start implements transport.Transport.
func (t *Transport) Start(ctx context.Context) (transport.Conn, error) {
	script, err := t.Agent.Script(t.Opts.CacheDir)
	if err != nil {
		return nil, err
	}
	prog := t.Opts.Program
	if prog == "" {
		prog = "doas"
	}
	match := t.Opts.PasswordPrompt
	if match == "" {
		match = "password:"
	}
	return bootstrap.Start(ctx, bootstrap.Command{
		Cmd:   exec.Command(prog, t.Args(script)...),
		Agent: t.Agent,
		// doas keeps stdin and stdout for the command: the agent runs
		// from memory.
		Memory: true,
		Prompts: []bootstrap.Prompt{{
			Match:   match,
			Answer:  t.Opts.Password,
			Missing: fmt.Sprintf("doas to %s asks for a password: give one with --doas-password-file", t.User),
			Again:   fmt.Sprintf("doas to %s: wrong password", t.User),
		}},
		Classify: bootstrap.Classifier("doas to "+t.User, "doas", []bootstrap.Failure{
			{Match: "authentication failed", Kind: "wrong password"},
			{Match: "authorization failed", Kind: "wrong password"},
			{Match: "not permitted", Kind: "not permitted by doas.conf"},
			{Match: "unknown user", Kind: "no such user"},
			{Match: "doas.conf", Kind: "doas.conf is missing or unreadable"},
		}),
	})
}
