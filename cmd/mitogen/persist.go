package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/persist"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
)

// EnvPersist set to "no" (or "0", "off", "false") is --no-persist for every command.
const envPersist = "MITOGEN_PERSIST"

// persistFlags choose whether and how a command uses a persistent master.
type persistFlags struct {
	noPersist   bool
	persistDir  string
	idleTimeout time.Duration
}

func (p *persistFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&p.noPersist, "no-persist", false, "do not use a persistent master: start the chain for this command alone and end it after (also "+envPersist+"=no)")
	p.registerMaster(fs)
}

// registerMaster registers the flags that name and configure the master.
func (p *persistFlags) registerMaster(fs *flag.FlagSet) {
	fs.StringVar(&p.persistDir, "persist-dir", "", "directory of the persistent master's socket (default $"+persist.EnvDir+", else $XDG_RUNTIME_DIR/mitogen-go, else /tmp/mitogen-go-UID)")
	fs.DurationVar(&p.idleTimeout, "idle-timeout", persist.DefaultIdleTimeout, "a persistent master started by this command ends this long after its last client left")
}

func (p *persistFlags) dir() string {
	if p.persistDir != "" {
		return p.persistDir
	}
	return persist.DefaultDir()
}

// persistent says whether this command goes through a persistent master:
// unless told not to, when the chain has a hop beyond a plain local agent
// (a login to keep: ssh, sudo, a container, ...). A local-only chain costs
// no more to start than to reach a master, and its agent then inherits
// this command's environment and directory, as without a master.
func (c *commonFlags) persistent(extra ...[]transport.Spec) bool {
	switch strings.ToLower(os.Getenv(envPersist)) {
	case "no", "0", "off", "false":
		return false
	}
	if c.noPersist {
		return false
	}
	for _, specs := range append(extra, c.hops()) {
		for _, sp := range specs {
			if sp.Kind != transport.KindLocal {
				return true
			}
		}
	}
	return false
}

// onThisMachine says whether every hop of the chain runs its agent on this
// machine, in the directory of the one before (local, sudo, su, doas,
// without a login that would go to the target's home).
func (c *commonFlags) onThisMachine() bool {
	for _, sp := range c.hops() {
		switch sp.Kind {
		case transport.KindLocal, transport.KindDoas:
		case transport.KindSudo, transport.KindSu:
			if c.sudoLogin && sp.Kind == transport.KindSudo || c.suLogin && sp.Kind == transport.KindSu || c.hopOptions[sp.Kind]["login"] != "" {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (c *commonFlags) logger() *slog.Logger {
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// persistClient connects to the persistent master, starting one when none runs.
func (c *commonFlags) persistClient(ctx context.Context) (*persist.Client, error) {
	dir := c.dir()
	return persist.Ensure(ctx, dir, c.logger(), func(ctx context.Context) error {
		return startMaster(ctx, dir, c.idleTimeout, c.verbose)
	})
}

// persistChain is a chain in the wire form of the master's requests. With
// ask false, passwords that would be asked on the terminal are left out
// (and wouldAsk set): the chain then says not to dial, as the master may
// hold it already.
func (c *commonFlags) persistChain(specs []transport.Spec, ask bool) (*mitogen.PersistChain, error) {
	c.noAsk = !ask
	c.wouldAsk = false
	hops, err := c.hopsOf(specs)
	c.noAsk = false
	if err != nil {
		return nil, err
	}
	absPaths(hops)
	return persist.EncodeChain(hops, ask || !c.wouldAsk)
}

// withChains runs f with the chain of this command (and those of extra,
// by name) in the wire form of the master's requests. Passwords that would
// be asked on the terminal are asked only when the master does not hold a
// chain yet (f then fails with ENOTCONN and runs again with them). It
// returns the chain f last ran with.
func (c *commonFlags) withChains(extra map[string][]transport.Spec, f func(pc *mitogen.PersistChain, hosts map[string]*mitogen.PersistChain) error) (*mitogen.PersistChain, error) {
	var pc *mitogen.PersistChain
	attempt := func(ask bool) (asked bool, err error) {
		if pc, err = c.persistChain(c.hops(), ask); err != nil {
			return false, err
		}
		asked = c.wouldAsk
		var hosts map[string]*mitogen.PersistChain
		for name, specs := range extra {
			if hosts == nil {
				hosts = map[string]*mitogen.PersistChain{}
			}
			if hosts[name], err = c.persistChain(specs, ask); err != nil {
				return false, fmt.Errorf("--host %s: %w", name, err)
			}
			asked = asked || c.wouldAsk
		}
		return asked, f(pc, hosts)
	}
	wouldAsk, err := attempt(false)
	var ce *mitogen.CallError
	if !wouldAsk || !errors.As(err, &ce) || ce.Code != "ENOTCONN" {
		return pc, err
	}
	_, err = attempt(true)
	return pc, err
}

// withChain is withChains for the command's chain alone.
func (c *commonFlags) withChain(f func(pc *mitogen.PersistChain) error) (*mitogen.PersistChain, error) {
	return c.withChains(nil, func(pc *mitogen.PersistChain, _ map[string]*mitogen.PersistChain) error { return f(pc) })
}

// absPaths makes the first hop's relative file options absolute: the
// master that starts that hop runs in another directory.
func absPaths(hops []agent.Hop) {
	if len(hops) == 0 {
		return
	}
	if o, ok := hops[0].Options.(*ssh.Options); ok {
		for _, p := range []*string{&o.Identity, &o.ConfigFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				if a, err := filepath.Abs(*p); err == nil {
					*p = a
				}
			}
		}
	}
}

// chainText describes the command's chain for messages.
func (c *commonFlags) chainText() string {
	parts := make([]string, 0, len(c.hops()))
	for _, sp := range c.hops() {
		parts = append(parts, sp.String())
	}
	return strings.Join(parts, ",")
}

// readyFD is the descriptor on which `mitogen master --serve --ready-fd`
// reports its start to the client that started it.
const readyFD = 3

// startMaster starts `mitogen master --serve` in the background, in a
// session of its own, and waits until it listens or has failed.
func startMaster(ctx context.Context, dir string, idle time.Duration, verbose bool) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	args := []string{"master", "--serve", "--ready-fd", strconv.Itoa(readyFD), "--persist-dir", dir, "--idle-timeout", idle.String()}
	if verbose {
		args = append(args, "--log", filepath.Join(dir, "master.log"))
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{pw} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return err
	}
	_ = pr.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(io.LimitReader(pr, 4096))
	msg := strings.TrimSpace(string(got))
	if msg == "ok" {
		return cmd.Process.Release()
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if msg == "" && err != nil {
		return fmt.Errorf("the master did not report: %w", err)
	}
	if msg == "" {
		return errors.New("the master exited without reporting")
	}
	return errors.New(strings.TrimPrefix(msg, "error: "))
}

const masterSynopsis = "mitogen master [--check | --stop] [--persist-dir DIR] [--idle-timeout D]"

// cmdMaster starts, checks or stops the persistent master.
func cmdMaster(args []string) int {
	var pf persistFlags
	fs := newFlagSet("master", masterSynopsis+`

Manages this user's persistent master, which holds the chains of contexts
that 'mitogen exec', 'run' and 'ping' ask for (any chain with a hop beyond
a local agent, unless --no-persist) so that later commands reuse them.
Without an option, starts one if none runs and prints its status.
--check prints the status, or exits 255 if none runs; --stop ends the master
and every context it holds.`)
	pf.registerMaster(fs)
	check := fs.Bool("check", false, "print the status of the running master; exit 255 if none runs")
	stop := fs.Bool("stop", false, "stop the running master and every context it holds")
	serve := fs.Bool("serve", false, "run the master in the foreground (what a client starts in the background)")
	ready := fs.Int("ready-fd", 0, "with --serve: write \"ok\" or the error to this descriptor once listening")
	logFile := fs.String("log", "", "with --serve: append the master's log to this file")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mitogen master: unexpected argument %q (usage: %s)\n", fs.Arg(0), masterSynopsis)
		return 2
	}
	dir := pf.dir()
	ctx, cancel := signalContext()
	defer cancel()
	switch {
	case *serve:
		return serveMaster(ctx, dir, pf.idleTimeout, *ready, *logFile)
	case *stop:
		c, err := persist.Dial(dir, nil)
		if err != nil {
			return fail(os.Stderr, "master --stop: %v", err)
		}
		defer c.Close()
		st, err := c.Service().Status(ctx)
		if err != nil {
			return fail(os.Stderr, "master --stop: %v", err)
		}
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		defer scancel()
		if err := c.Stop(sctx); err != nil {
			return fail(os.Stderr, "master --stop: %v", err)
		}
		fmt.Printf("mitogen master: stopped (pid %d)\n", st.Pid)
		return 0
	}
	var c *persist.Client
	var err error
	if *check {
		c, err = persist.Dial(dir, nil)
	} else {
		c, err = persist.Ensure(ctx, dir, nil, func(ctx context.Context) error { return startMaster(ctx, dir, pf.idleTimeout, false) })
	}
	if err != nil {
		return fail(os.Stderr, "master: %v", err)
	}
	defer c.Close()
	st, err := c.Service().Status(ctx)
	if err != nil {
		return fail(os.Stderr, "master: %v", err)
	}
	fmt.Printf("mitogen master: running (pid %d) in %s; idle timeout %v; %d client(s) connected\n",
		st.Pid, dir, time.Duration(st.IdleTimeoutMs)*time.Millisecond, st.Clients)
	for _, ch := range st.Chains {
		fmt.Printf("  chain %s\n", ch)
	}
	return 0
}

// maxLogSize is the size past which a master's --log file is truncated
// when a master starts.
const maxLogSize = 16 << 20

// serveMaster is `mitogen master --serve`.
func serveMaster(ctx context.Context, dir string, idle time.Duration, readyFd int, logFile string) int {
	var ready *os.File
	if readyFd > 0 {
		ready = os.NewFile(uintptr(readyFd), "ready")
	}
	report := func(err error) {
		if ready == nil {
			return
		}
		if err != nil {
			fmt.Fprintf(ready, "error: %v\n", err)
		} else {
			fmt.Fprintln(ready, "ok")
		}
		ready.Close()
		ready = nil
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if logFile != "" {
		flags := os.O_WRONLY | os.O_APPEND | os.O_CREATE
		if st, err := os.Stat(logFile); err == nil && st.Size() > maxLogSize {
			flags |= os.O_TRUNC // a debugging aid, not an archive
		}
		f, err := os.OpenFile(logFile, flags, 0o600)
		if err != nil {
			report(err)
			return fail(os.Stderr, "master: %v", err)
		}
		defer f.Close()
		log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := &persist.Server{Dir: dir, IdleTimeout: idle, Logger: log}
	if err := s.Serve(ctx, report); err != nil {
		return fail(os.Stderr, "master: %v", err)
	}
	return 0
}
