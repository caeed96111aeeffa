// Package sudo starts agents as another user with sudo(8). sudo always
// gets a pty as its controlling terminal, so it works under
// "Defaults requiretty" and can be answered a password; a wrong password
// is an error at once, never a hang.
package sudo

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// prompt is the password prompt we ask sudo to print, to recognise it.
const prompt = "MITOGEN-SUDO-PASSWORD:"

// Options are the sudo settings of a hop. They travel only to the context
// that runs this sudo.
type Options struct {
	// Password answers sudo's prompt (the password of the user running
	// sudo, on the host where it runs).
	Password string `opt:"password,secret"`
	// PreserveEnv is sudo -E.
	PreserveEnv bool `opt:"preserve_env"`
	// Login is sudo -i (the target user's login shell and environment).
	Login bool `opt:"login"`
	// KeepHome keeps the caller's HOME (by default sudo -H sets the target's).
	KeepHome bool `opt:"keep_home"`
	// CacheDir overrides the agent cache directory.
	CacheDir string `opt:"cache_dir"`
	// Program is the sudo binary (default "sudo").
	Program string `opt:"program"`
}

// Method is the "sudo" connection method; the package registers it into
// transport.Default.
var Method = transport.Method{
	Kind:        transport.KindSudo,
	Syntax:      "sudo[:user]",
	Summary:     "another user on the same host, with sudo(8) (default root)",
	SameMachine: true,
	Parse:       transport.ParseUser(transport.KindSudo),
	NewOptions:  func() any { return new(Options) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		return &Transport{User: spec.User, Opts: *opts.(*Options), Agent: agent}, nil
	},
}

func init() { transport.Register(Method) }

// Transport is a sudo hop.
type Transport struct {
	User  string
	Opts  Options
	Agent *bootstrap.Agent
	// AgentBytesSent counts agent bytes sent by this transport.
	AgentBytesSent int64
}

func (t *Transport) String() string { return "sudo:" + t.User }

// Args returns sudo's arguments for running the shell command.
func (t *Transport) Args(command string) []string {
	args := []string{"-p", prompt}
	if !t.Opts.KeepHome {
		args = append(args, "-H")
	}
	if t.Opts.PreserveEnv {
		args = append(args, "-E")
	}
	if t.Opts.Login {
		args = append(args, "-i")
	}
	return append(args, "-u", t.User, "--", "/bin/sh", "-c", command)
}

// Start implements transport.Transport.
func (t *Transport) Start(ctx context.Context) (transport.Conn, error) {
	script, err := t.Agent.Script(t.Opts.CacheDir)
	if err != nil {
		return nil, err
	}
	prog := t.Opts.Program
	if prog == "" {
		prog = "sudo"
	}
	return bootstrap.Start(ctx, bootstrap.Command{
		Cmd:   exec.Command(prog, t.Args(script)...),
		Agent: t.Agent,
		Sent:  &t.AgentBytesSent,
		// sudo keeps stdin and stdout for the command: the agent runs
		// from memory, for users with no (writable) home as well.
		Memory: true,
		Prompts: []bootstrap.Prompt{{
			Match:   prompt,
			Answer:  t.Opts.Password,
			Missing: fmt.Sprintf("sudo to %s asks for a password: give one with --sudo-password-file", t.User),
			Again:   fmt.Sprintf("sudo to %s: wrong password", t.User),
		}},
		Classify: bootstrap.Classifier("sudo to "+t.User, "sudo", []bootstrap.Failure{
			{Match: "not in the sudoers", Kind: "not permitted by sudoers"},
			{Match: "not allowed to execute", Kind: "not permitted by sudoers"},
			{Match: "unknown user", Kind: "no such user"},
			{Match: "incorrect password", Kind: "wrong password"},
		}),
	})
}
