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

const runSynopsis = "mitogen run [--on SPEC[,SPEC...]] [--via SPEC]... [--host NAME=SPEC[,SPEC...]]... -- PROGRAM [ARG...]"

func cmdRun(args []string) int {
	var cf commonFlags
	var on specList
	hosts := hostMap{}
	fs := newFlagSet("run", runSynopsis+`

Runs PROGRAM with mitogen's ssh first on its PATH: every ssh it starts runs
its command in a context instead (the --host context for that host name,
else the --via one), with no new connection. Exits with PROGRAM's status.
At a terminal PROGRAM gets it as a shell gives it to a job (^C, ^Z, window
size; ssh -t gives a remote pty). SIGHUP, SIGINT and SIGTERM are passed on
to PROGRAM; after clean-up the exit status is then 128+N, as a shell says.

With --on, PROGRAM runs in the context at the end of that chain, and its
ssh commands are served by the master's other contexts: only the --host
names (and every other name when --via is given, by the --via context).

Examples:
  mitogen run --via local -- rsync -a src/ anyhost:/tmp/dst/
  mitogen run --on ssh:web1 --host web2=ssh:bastion,ssh:web2 -- rsync -a /srv/ web2:/srv/`)
	cf.register(fs)
	fs.Var(&on, "on", "run PROGRAM in the context at the end of this chain of hops (comma-separated)")
	fs.Var(hosts, "host", "serve ssh destination NAME with its own chain of hops (repeatable)")
	argv, code, done := parseCommand(fs, args, runSynopsis)
	if done {
		return code
	}
	ctx, stop := runSignalContext()
	defer stop()
	status := runProgram(ctx, &cf, on, hosts, argv)
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

// runProgram connects the contexts and runs argv under fakessh (through the
// persistent master when it serves these chains); the master and its
// contexts are shut down when it returns.
func runProgram(ctx context.Context, cf *commonFlags, on specList, hosts hostMap, argv []string) int {
	var hostChains [][]transport.Spec
	for _, specs := range hosts {
		hostChains = append(hostChains, specs)
	}
	if len(on) == 0 && cf.persistent(hostChains...) {
		return runPersistent(ctx, cf, hosts, argv)
	}
	rn := &fakessh.Runner{Hosts: map[string]*core.Context{}, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	if len(on) == 0 {
		r, chain, err := cf.master(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return 255 // a signal ended the set-up: nothing to say
			}
			return fail(os.Stderr, "%v", err)
		}
		defer r.Close()
		rn.Router, rn.Default = r, chain[len(chain)-1]
	} else {
		r := cf.newMaster()
		defer r.Close()
		rn.Router = r
		c, err := cf.dial(ctx, r, on)
		if err != nil {
			if ctx.Err() != nil {
				return 255
			}
			return fail(os.Stderr, "--on: %v", err)
		}
		rn.On = c[len(c)-1]
		if len(cf.via) > 0 {
			c, err := cf.dial(ctx, r, cf.via)
			if err != nil {
				if ctx.Err() != nil {
					return 255
				}
				return fail(os.Stderr, "--via: %v", err)
			}
			rn.Default = c[len(c)-1]
		}
	}
	for name, hops := range hosts {
		c, err := cf.dial(ctx, rn.Router, hops)
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
