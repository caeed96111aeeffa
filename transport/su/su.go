// Package su starts agents as another user with su(1). util-linux su asks
// for the target user's password through PAM, which (when stdin is not a
// terminal) prints the prompt on stderr and reads the answer from stdin:
// the password is answered there, before the agent exchange begins; a
// wrong one is an error at once. su run by root asks nothing.
package su

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// Options are the su settings of a hop. They travel only to the context
// that runs this su.
type Options struct {
	// Password is the target user's password (what su asks).
	Password string `opt:"password,secret"`
	// PasswordPrompt is the text su's prompt contains (default
	// "password:"; set it for other languages), matched case-insensitively.
	PasswordPrompt string `opt:"password_prompt"`
	// Login is su -l (the target user's login environment).
	Login bool `opt:"login"`
	// CacheDir overrides the agent cache directory.
	CacheDir string `opt:"cache_dir"`
	// Program is the su binary (default "su").
	Program string `opt:"program"`
}

// Method is the "su" connection method; the package registers it into
// transport.Default.
var Method = transport.Method{
	Kind:        transport.KindSu,
	Syntax:      "su[:user]",
	Summary:     "another user on the same host, with su(1) and that user's password (default root)",
	SameMachine: true,
	Parse:       transport.ParseUser(transport.KindSu),
	NewOptions:  func() any { return new(Options) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		return &Transport{User: spec.User, Opts: *opts.(*Options), Agent: agent}, nil
	},
}

func init() { transport.Register(Method) }

// Transport is an su hop.
type Transport struct {
	User  string
	Opts  Options
	Agent *bootstrap.Agent
}

func (t *Transport) String() string { return "su:" + t.User }

// Args returns su's arguments for running the POSIX sh program script.
// su hands its -c argument to the target user's login shell, which must
// understand POSIX quoting (sh, bash, dash, zsh, ksh); that shell runs
// /bin/sh at once.
func (t *Transport) Args(script string) []string {
	var args []string
	if t.Opts.Login {
		args = append(args, "-l")
	}
	return append(args, t.User, "-c", "exec /bin/sh -c "+bootstrap.ShellQuote(script))
}

// Start implements transport.Transport.
func (t *Transport) Start(ctx context.Context) (transport.Conn, error) {
	script, err := t.Agent.Script(t.Opts.CacheDir)
	if err != nil {
		return nil, err
	}
	prog := t.Opts.Program
	if prog == "" {
		prog = "su"
	}
	match := t.Opts.PasswordPrompt
	if match == "" {
		match = "password:"
	}
	return bootstrap.Start(ctx, bootstrap.Command{
		Cmd:            exec.Command(prog, t.Args(script)...),
		Agent:          t.Agent,
		PromptOnStderr: true,
		Prompts: []bootstrap.Prompt{{
			Match:   match,
			Answer:  t.Opts.Password,
			Missing: fmt.Sprintf("su to %s asks for a password: give one with --su-password-file", t.User),
			Again:   fmt.Sprintf("su to %s: wrong password", t.User),
		}},
		Classify: bootstrap.Classifier("su to "+t.User, "su", []bootstrap.Failure{
			{Match: "authentication failure", Kind: "wrong password"},
			{Match: "su: sorry", Kind: "wrong password"},
			{Match: "incorrect password", Kind: "wrong password"},
			{Match: "does not exist", Kind: "no such user"},
			{Match: "user unknown", Kind: "no such user"},
		}),
	})
}
