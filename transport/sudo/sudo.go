// Package sudo starts agents as another user with sudo(8). sudo always
// gets a pty as its controlling terminal, so it works under
// "Defaults requiretty" and can be answered a password; a wrong password
// is an error at once, never a hang.
package sudo

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// prompt is the password prompt we ask sudo to print, to recognise it.
const prompt = "MITOGEN-SUDO-PASSWORD:"

// Options are the sudo settings of a hop.
type Options struct {
	// Password answers sudo's prompt.
	Password string
	// PreserveEnv is sudo -E.
	PreserveEnv bool
	// Login is sudo -i (the target user's login shell and environment).
	Login bool
	// KeepHome keeps the caller's HOME (by default sudo -H sets the target's).
	KeepHome bool
	// CacheDir overrides the agent cache directory.
	CacheDir string
	// Program is the sudo binary (default "sudo").
	Program string
}

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
		Prompts: []bootstrap.Prompt{{
			Match:   prompt,
			Answer:  t.Opts.Password,
			Missing: fmt.Sprintf("sudo to %s asks for a password: give one with --sudo-password-file", t.User),
			Again:   fmt.Sprintf("sudo to %s: wrong password", t.User),
		}},
		Classify: func(stderr string, err error) error {
			low := strings.ToLower(stderr)
			kind := "the agent did not start"
			switch {
			case strings.Contains(low, "not in the sudoers"), strings.Contains(low, "not allowed to execute"):
				kind = "not permitted by sudoers"
			case strings.Contains(low, "unknown user"):
				kind = "no such user"
			case strings.Contains(low, "incorrect password"):
				kind = "wrong password"
			}
			if stderr == "" {
				stderr = "(sudo printed nothing)"
			}
			return fmt.Errorf("sudo to %s: %s: %v\nsudo said:\n%s", t.User, kind, err, stderr)
		},
	})
}
