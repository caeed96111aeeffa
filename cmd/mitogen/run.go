package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
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
	fs := newFlagSet("run", "mitogen run [--via SPEC]... [--host NAME=SPEC[,SPEC...]]... -- PROGRAM [ARG...]\n\nRuns PROGRAM with mitogen's ssh first on its PATH: every ssh it starts runs\nits command in a context instead (the --host context for that host name,\nelse the --via one), with no new connection. Exits with PROGRAM's status.\nAt a terminal PROGRAM gets it as a shell gives it to a job (^C, ^Z, window\nsize; ssh -t gives a remote pty). SIGHUP, SIGINT and SIGTERM are passed on\nto PROGRAM; after clean-up the exit status is then 128+N, as a shell says.\n\nExample: mitogen run --via local -- rsync -a src/ anyhost:/tmp/dst/")
	cf.register(fs)
	fs.Var(hosts, "host", "serve ssh destination NAME with its own chain of hops (repeatable)")
	argv, code, done := parseCommand(fs, args, "mitogen run [--via SPEC]... [--host NAME=SPEC[,SPEC...]]... -- PROGRAM [ARG...]")
	if done {
		return code
	}
	ctx, stop := runSignalContext()
	defer stop()
	status := runProgram(ctx, &cf, hosts, argv)
	// Killed by SIGHUP, SIGINT or SIGTERM (at any step): the status a
	// shell reports for that signal, once everything is cleaned up.
	var se *fakessh.SignalError
	if errors.As(context.Cause(ctx), &se) {
		return 128 + int(se.Signal)
	}
	return status
}

// runSignalContext is cancelled, with a *fakessh.SignalError cause, by
// SIGHUP (the terminal closed), SIGINT or SIGTERM.
func runSignalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			cancel(&fakessh.SignalError{Signal: s.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

// runProgram connects the contexts and runs argv under fakessh; the
// master and its contexts are shut down when it returns.
func runProgram(ctx context.Context, cf *commonFlags, hosts hostMap, argv []string) int {
	r, chain, err := cf.master(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return 255 // a signal ended the set-up: nothing to say
		}
		return fail(os.Stderr, "%v", err)
	}
	defer r.Close()
	rn := &fakessh.Runner{Router: r, Default: chain[len(chain)-1], Hosts: map[string]*core.Context{},
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	for name, hops := range hosts {
		c, err := cf.dial(ctx, r, hops)
		if err != nil {
			if ctx.Err() != nil {
				return 255
			}
			return fail(os.Stderr, "--host %s: %v", name, err)
		}
		rn.Hosts[name] = c[len(c)-1]
	}
	status, err := rn.Run(ctx, argv)
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "mitogen run: %v\n", err)
	}
	return status
}
