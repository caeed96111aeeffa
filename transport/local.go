package transport

import (
	"errors"
	"os"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
)

// LocalMethod is "local": an agent re-executed from this binary on this
// machine, as the same user, over a socketpair (see fd.Local).
var LocalMethod = Method{
	Kind:        KindLocal,
	Syntax:      "local",
	Summary:     "this machine, as the same user (the binary re-executed over a socketpair)",
	SameMachine: true,
	Parse: func(arg string) (Spec, error) {
		if arg != "" {
			return Spec{}, errors.New("local takes no argument")
		}
		return Spec{Kind: KindLocal}, nil
	},
	New: func(spec Spec, _ any, agent *bootstrap.Agent) (Transport, error) {
		// Nothing is installed: the agent binary is run as it is.
		// A local hop is no sshd session: the master's own session
		// variables (it may run under ssh) are not the agent's, which
		// would pass them on as its own to the commands it runs as sshd
		// would (see package process).
		l := &fd.Local{Env: withoutSSHSession(os.Environ())}
		if agent != nil {
			l.Exe = agent.Path
		}
		return l, nil
	},
}

func init() { Register(LocalMethod) }

// withoutSSHSession is env without sshd's session variables.
func withoutSSHSession(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "SSH_ORIGINAL_COMMAND":
			continue
		}
		out = append(out, kv)
	}
	return out
}
