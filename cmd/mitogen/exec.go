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
