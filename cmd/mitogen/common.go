package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// specList is a repeatable --via flag.
type specList []transport.Spec

func (s *specList) String() string {
	var parts []string
	for _, sp := range *s {
		parts = append(parts, sp.String())
	}
	return strings.Join(parts, ",")
}

func (s *specList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		sp, err := transport.ParseSpec(strings.TrimSpace(part))
		if err != nil {
			return err
		}
		*s = append(*s, sp)
	}
	return nil
}

// commonFlags are shared by the commands that reach contexts.
type commonFlags struct {
	via              specList
	verbose          bool
	sshConfig        string
	sshOptions       stringList
	identity         string
	connectTimeout   int
	hostKeyChecking  string
	sshPasswordFile  string
	sudoPasswordFile string
	sudoPreserveEnv  bool
	sudoLogin        bool
	cacheDir         string
	opts             map[string]string // transport options, set by master()
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.via, "via", "a hop to the context to use: local, ssh:[user@]host[:port] or sudo:[user] (repeat, or comma-separate, for a chain; default: local)")
	fs.BoolVar(&c.verbose, "v", false, "log debug messages of the master and its contexts to stderr")
	fs.StringVar(&c.sshConfig, "ssh-config", "", "ssh: configuration file (ssh -F)")
	fs.Var(&c.sshOptions, "ssh-option", "ssh: an option KEY=VALUE (ssh -o; repeatable)")
	fs.StringVar(&c.identity, "identity", "", "ssh: identity file (ssh -i)")
	fs.IntVar(&c.connectTimeout, "connect-timeout", 0, "ssh: connection timeout in seconds")
	fs.StringVar(&c.hostKeyChecking, "host-key-checking", "", "ssh: enforce, accept-new or ignore (default: as the ssh_config's StrictHostKeyChecking says)")
	fs.StringVar(&c.sshPasswordFile, "ssh-password-file", "", "ssh: file holding the password or key passphrase (default: BatchMode, keys only)")
	fs.StringVar(&c.sudoPasswordFile, "sudo-password-file", "", "sudo: file holding the password (default: ask on the terminal when sudo asks)")
	fs.BoolVar(&c.sudoPreserveEnv, "sudo-preserve-env", false, "sudo: keep the environment (sudo -E)")
	fs.BoolVar(&c.sudoLogin, "sudo-login", false, "sudo: run as a login shell of the target user (sudo -i)")
	fs.StringVar(&c.cacheDir, "agent-cache-dir", "", "far side's agent cache directory (default ~/.cache/mitogen-go)")
}

// options turns the flags into transport options for every hop.
func (c *commonFlags) options() (map[string]string, error) {
	o := map[string]string{
		agent.OptSSHConfig:       c.sshConfig,
		agent.OptIdentity:        c.identity,
		agent.OptHostKeyChecking: c.hostKeyChecking,
		agent.OptCacheDir:        c.cacheDir,
		agent.OptSSHOptions:      strings.Join(c.sshOptions, "\n"),
	}
	switch c.hostKeyChecking {
	case "", "enforce", "accept-new", "ignore":
	default:
		return nil, fmt.Errorf("--host-key-checking %q: want enforce, accept-new or ignore", c.hostKeyChecking)
	}
	if c.connectTimeout > 0 {
		o[agent.OptConnectTimeout] = fmt.Sprint(c.connectTimeout)
	}
	if c.sudoPreserveEnv {
		o[agent.OptSudoPreserveEnv] = "1"
	}
	if c.sudoLogin {
		o[agent.OptSudoLogin] = "1"
	}
	readSecret := func(file, what string) (string, error) {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the %s password file: %w", what, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if c.sshPasswordFile != "" {
		pw, err := readSecret(c.sshPasswordFile, "ssh")
		if err != nil {
			return nil, err
		}
		o[agent.OptSSHPassword] = pw
	}
	usesSudo := false
	for _, h := range c.hops() {
		usesSudo = usesSudo || h.Kind == transport.KindSudo
	}
	if c.sudoPasswordFile != "" {
		pw, err := readSecret(c.sudoPasswordFile, "sudo")
		if err != nil {
			return nil, err
		}
		o[agent.OptSudoPassword] = pw
	} else if usesSudo && os.Getuid() != 0 {
		if pw, err := askPassword("[mitogen] sudo password (empty if none needed): "); err == nil {
			o[agent.OptSudoPassword] = pw
		}
	}
	return o, nil
}

func (c *commonFlags) hops() []transport.Spec {
	if len(c.via) == 0 {
		return []transport.Spec{{Kind: transport.KindLocal}}
	}
	return c.via
}

// newFlagSet makes a flag set whose --help prints the synopsis.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\nOptions:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; done is true when the command should exit with code.
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0, true
		}
		return 2, true
	}
	return 0, false
}

// parseCommand parses a command's flags and returns the arguments after
// them, which must not be empty; done is true when the command should exit
// with code.
func parseCommand(fs *flag.FlagSet, args []string, synopsis string) (argv []string, code int, done bool) {
	if code, done := parseFlags(fs, args); done {
		return nil, code, true
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(os.Stderr, "mitogen %s: nothing to run (usage: %s)\n", fs.Name(), synopsis)
		return nil, 2, true
	}
	return fs.Args(), 0, false
}

// master starts the master router and the chain of contexts.
func (c *commonFlags) master(ctx context.Context) (*core.Router, []*core.Context, error) {
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts, err := c.options()
	if err != nil {
		return nil, nil, err
	}
	c.opts = opts
	r := core.NewMaster(cfg)
	chain, err := agent.Dial(ctx, r, nil, c.hops(), opts)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, chain, nil
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func fail(w io.Writer, format string, args ...any) int {
	fmt.Fprintf(w, "mitogen: "+format+"\n", args...)
	return 255
}
