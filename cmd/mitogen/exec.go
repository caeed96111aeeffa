package main

import (
	"context"
	"fmt"
	"os"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

func cmdExec(args []string) int {
	var cf commonFlags
	fs := newFlagSet("exec", "mitogen exec [--via SPEC]... -- CMD [ARG...]\n\nRuns CMD in the last context of the chain with stdin, stdout and stderr\nrelayed, and exits with its exit status (255 if it was killed by a signal\nor the context was lost).")
	cf.register(fs)
	dir := fs.String("dir", "", "working directory of CMD (default: the agent's, which a local agent inherits from here)")
	argv, code, done := parseCommand(fs, args, "mitogen exec [--via SPEC]... -- CMD [ARG...]")
	if done {
		return code
	}
	ctx, cancel := signalContext()
	defer cancel()
	if cf.persistent() {
		return execPersistent(ctx, &cf, argv, *dir)
	}
	r, chain, err := cf.master(ctx)
	if err != nil {
		return fail(os.Stderr, "%v", err)
	}
	defer r.Close()
	dest := chain[len(chain)-1]
	start := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		spec.PeerId = r.ID()
		return dest.Agent().StartProcess(ctx, spec)
	}
	spec := &mitogen.ProcessSpec{Argv: argv, Dir: *dir, Origin: "mitogen exec"}
	res, err := process.Relay(ctx, r, dest.ID(), start, spec, process.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	return execStatus(argv, dest.String(), res, err)
}

// execStatus reports a relay's end and returns the exit status.
func execStatus(argv []string, dest string, res process.Result, err error) int {
	if err != nil && res.Note != "" {
		return fail(os.Stderr, "exec %s in %s: %s", argv[0], dest, res.Note)
	}
	if err != nil {
		return fail(os.Stderr, "exec %s in %s: %v", argv[0], dest, err)
	}
	if res.Note != "" {
		fmt.Fprintf(os.Stderr, "mitogen: %s\n", res.Note)
	}
	return res.Status
}

// execPersistent is exec through the persistent master: it starts the
// process in the chain the master holds (dialing it first if need be) and
// relays it from here, as exec does with a chain of its own.
func execPersistent(ctx context.Context, cf *commonFlags, argv []string, dir string) int {
	c, err := cf.persistClient(ctx)
	if err != nil {
		return fail(os.Stderr, "%v", err)
	}
	defer c.Close()
	start := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		var started *mitogen.ProcessStarted
		_, err := cf.withChain(func(pc *mitogen.PersistChain) error {
			var err error
			started, err = c.Service().StartProcess(ctx, pc, spec)
			return err
		})
		return started, err
	}
	if dir == "" && cf.onThisMachine() {
		// Without a master the agents of such a chain start in this
		// directory, and the command in theirs; the master's run in "/".
		dir, _ = os.Getwd()
	}
	spec := &mitogen.ProcessSpec{Argv: argv, Dir: dir, Origin: "mitogen exec (persistent master)"}
	res, err := process.Relay(ctx, c.Router(), process.AnyDestination, start, spec, process.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	return execStatus(argv, cf.chainText(), res, err)
}
