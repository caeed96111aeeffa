package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// hostMap is the repeatable --host NAME=SPEC[,SPEC...] flag.
type hostMap map[string][]transport.Spec

func (h hostMap) String() string { return "" }

func (h hostMap) Set(v string) error {
	name, specs, ok := strings.Cut(v, "=")
	if !ok || name == "" || specs == "" {
		return fmt.Errorf("want NAME=SPEC[,SPEC...], got %q", v)
	}
	if _, dup := h[name]; dup {
		return fmt.Errorf("host %q mapped twice", name)
	}
	var l specList
	if err := l.Set(specs); err != nil {
		return err
	}
	h[name] = l
	return nil
}

func cmdRun(args []string) int {
	var cf commonFlags
	hosts := hostMap{}
	fs := newFlagSet("run", "mitogen run [--via SPEC]... [--host NAME=SPEC[,SPEC...]]... -- PROGRAM [ARG...]\n\nRuns PROGRAM with mitogen's ssh first on its PATH: every ssh it starts runs\nits command in a context instead (the --host context for that host name,\nelse the --via one), with no new connection. Exits with PROGRAM's status.\n\nExample: mitogen run --via local -- rsync -a src/ anyhost:/tmp/dst/")
	cf.register(fs)
	fs.Var(hosts, "host", "serve ssh destination NAME with its own chain of hops (repeatable)")
	argv, code, done := parseCommand(fs, args, "mitogen run [--via SPEC]... [--host NAME=SPEC[,SPEC...]]... -- PROGRAM [ARG...]")
	if done {
		return code
	}
	ctx, cancel := signalContext()
	defer cancel()
	var hostChains [][]transport.Spec
	for _, specs := range hosts {
		hostChains = append(hostChains, specs)
	}
	if cf.persistent(hostChains...) {
		return runPersistent(ctx, &cf, hosts, argv)
	}
	r, chain, err := cf.master(ctx)
	if err != nil {
		return fail(os.Stderr, "%v", err)
	}
	defer r.Close()
	rn := &fakessh.Runner{Router: r, Default: chain[len(chain)-1], Hosts: map[string]*core.Context{},
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	for name, hops := range hosts {
		c, err := cf.dial(ctx, r, hops)
		if err != nil {
			return fail(os.Stderr, "--host %s: %v", name, err)
		}
		rn.Hosts[name] = c[len(c)-1]
	}
	status, err := rn.Run(ctx, argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitogen run: %v\n", err)
	}
	return status
}

// runPersistent is run through the persistent master: the master serves
// the run's ssh invocations with the chains it holds, and the program runs
// here, as run runs it with chains of its own.
func runPersistent(ctx context.Context, cf *commonFlags, hosts hostMap, argv []string) int {
	c, err := cf.persistClient(ctx)
	if err != nil {
		return fail(os.Stderr, "%v", err)
	}
	defer c.Close()
	var run *mitogen.PersistRun
	_, err = cf.withChains(hosts, func(pc *mitogen.PersistChain, hs map[string]*mitogen.PersistChain) error {
		var err error
		run, err = c.Service().OpenRun(ctx, pc, hs)
		return err
	})
	if err != nil {
		var ce *mitogen.CallError
		if errors.As(err, &ce) {
			return fail(os.Stderr, "run: %s", ce.Message)
		}
		return fail(os.Stderr, "run: %v", err)
	}
	rn := &fakessh.Runner{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	status, err := rn.RunProgram(ctx, run.Dir, run.Env, argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mitogen run: %v\n", err)
	}
	return status
}
