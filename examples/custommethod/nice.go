// Package custommethod is an example of a connection method defined
// outside mitogen-go's own packages: "nice" starts the agent on this
// machine at a lower CPU priority, with nice(1), installing it with the
// same shell bootstrap ssh and sudo use. Its one typed option, the
// niceness, travels per hop like any built-in method's.
//
// A program adds it to a registry of its own:
//
//	methods, _ := transport.NewRegistry(transport.LocalMethod, custommethod.Method)
//
// or to transport.Default with transport.Register(custommethod.Method), so
// that the CLI-style ParseSpec and agent.Dialer know it. A hop of this kind
// can only be started by a process that has the method compiled in: the
// master, or agents built from a binary that registers it.
package custommethod

import (
	"context"
	"errors"
	"os/exec"
	"strconv"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// Kind is the method's spec prefix.
const Kind transport.Kind = "nice"

// Options are the settings of a nice hop.
type Options struct {
	// Level is the niceness adjustment (nice -n), 1 to 19; 0 means 10.
	Level int `opt:"level"`
	// CacheDir overrides the agent cache directory.
	CacheDir string `opt:"cache_dir"`
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.Level < 0 || o.Level > 19 {
		return errors.New("level: want 1 to 19")
	}
	return nil
}

// Method is the "nice" connection method.
var Method = transport.Method{
	Kind:    Kind,
	Syntax:  "nice",
	Summary: "this machine, at a lower CPU priority (an example of an added method)",
	Parse: func(arg string) (transport.Spec, error) {
		if arg != "" {
			return transport.Spec{}, errors.New("nice takes no argument")
		}
		return transport.Spec{Kind: Kind}, nil
	},
	NewOptions: func() any { return new(Options) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		return &Transport{Opts: *opts.(*Options), Agent: agent}, nil
	},
}

// Transport is a nice hop.
type Transport struct {
	Opts  Options
	Agent *bootstrap.Agent
}

func (t *Transport) String() string { return string(Kind) }

// Start implements transport.Transport.
func (t *Transport) Start(ctx context.Context) (transport.Conn, error) {
	script, err := t.Agent.Script(t.Opts.CacheDir)
	if err != nil {
		return nil, err
	}
	level := t.Opts.Level
	if level == 0 {
		level = 10
	}
	return bootstrap.Start(ctx, bootstrap.Command{
		Cmd:      exec.Command("nice", "-n", strconv.Itoa(level), "/bin/sh", "-c", script),
		Agent:    t.Agent,
		Classify: bootstrap.Classifier("nice", "nice", nil),
	})
}
