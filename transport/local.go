package transport

import (
	"errors"

	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
)

// LocalMethod is "local": an agent re-executed from this binary on this
// machine, as the same user, over a socketpair (see fd.Local).
var LocalMethod = Method{
	Kind:    KindLocal,
	Syntax:  "local",
	Summary: "this machine, as the same user (the binary re-executed over a socketpair)",
	Parse: func(arg string) (Spec, error) {
		if arg != "" {
			return Spec{}, errors.New("local takes no argument")
		}
		return Spec{Kind: KindLocal}, nil
	},
	New: func(spec Spec, _ any, agent *bootstrap.Agent) (Transport, error) {
		// Nothing is installed: the agent binary is run as it is.
		l := &fd.Local{}
		if agent != nil {
			l.Exe = agent.Path
		}
		return l, nil
	},
}

func init() { Register(LocalMethod) }
