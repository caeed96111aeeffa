package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/container"
	"github.com/seed-a176d0ab/mitogen-go/transport/doas"
	"github.com/seed-a176d0ab/mitogen-go/transport/setns"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	"github.com/seed-a176d0ab/mitogen-go/transport/su"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
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

// commonFlags are shared by the commands that reach contexts. Each flag
// belongs to one connection method and goes only to the hops of that kind
// (an ssh password never travels to a sudo hop, nor a sudo password to
// the ssh hop before it).
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
	suPasswordFile   string
	suLogin          bool
	doasPasswordFile string
	kubeNamespace    string
	kubeContainer    string
	kubeconfig       string
	kubeContext      string
	setnsNamespaces  string
	cacheDir         string
	hopOptions       hopOptionList
	persistFlags

	secrets map[string]string // password file contents (or answers), by kind
	// noAsk makes secret answer "" instead of asking on the terminal, and
	// set wouldAsk (a persistent master may hold the chain already).
	noAsk, wouldAsk bool
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// hopOptionList is the repeatable --hop-option KIND.KEY=VALUE flag.
type hopOptionList map[transport.Kind]map[string]string

func (h *hopOptionList) String() string { return "" }

func (h *hopOptionList) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	kind, key, ok2 := strings.Cut(name, ".")
	if !ok || !ok2 || kind == "" || key == "" {
		return fmt.Errorf("want KIND.KEY=VALUE (e.g. docker.program=/usr/bin/docker), got %q", v)
	}
	zero, err := transport.Default.NewOptions(transport.Kind(kind))
	if err != nil {
		return err
	}
	if zero == nil {
		return fmt.Errorf("%s hops take no options", kind)
	}
	if slices.Contains(transport.SecretKeys(zero), key) {
		if !strings.HasPrefix(value, "@") {
			return fmt.Errorf("%s.%s is a secret: give it from a file, %s.%s=@FILE, not on the command line", kind, key, kind, key)
		}
		b, err := os.ReadFile(value[1:])
		if err != nil {
			return fmt.Errorf("%s.%s: %w", kind, key, err)
		}
		value = strings.TrimRight(string(b), "\r\n")
	}
	if err := transport.DecodeOptions(map[string]string{key: value}, zero); err != nil {
		return fmt.Errorf("%s hops: %w", kind, err)
	}
	if *h == nil {
		*h = hopOptionList{}
	}
	if (*h)[transport.Kind(kind)] == nil {
		(*h)[transport.Kind(kind)] = map[string]string{}
	}
	(*h)[transport.Kind(kind)][key] = value
	return nil
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.via, "via", "a hop to the context to use (repeat, or comma-separate, for a chain; default: local); see 'mitogen methods'")
	fs.BoolVar(&c.verbose, "v", false, "log debug messages of the master and its contexts to stderr")
	fs.StringVar(&c.sshConfig, "ssh-config", "", "ssh hops: configuration file (ssh -F)")
	fs.Var(&c.sshOptions, "ssh-option", "ssh hops: an option KEY=VALUE (ssh -o; repeatable)")
	fs.StringVar(&c.identity, "identity", "", "ssh hops: identity file (ssh -i), a path on the host where that ssh runs")
	fs.IntVar(&c.connectTimeout, "connect-timeout", 0, "ssh hops: connection timeout in seconds")
	fs.StringVar(&c.hostKeyChecking, "host-key-checking", "", "ssh hops: enforce, accept-new or ignore (default: as the ssh_config's StrictHostKeyChecking says)")
	fs.StringVar(&c.sshPasswordFile, "ssh-password-file", "", "ssh hops: file holding the password or key passphrase (default: BatchMode, keys only)")
	fs.StringVar(&c.sudoPasswordFile, "sudo-password-file", "", "sudo hops: file holding the password (default: ask on the terminal when sudo asks)")
	fs.BoolVar(&c.sudoPreserveEnv, "sudo-preserve-env", false, "sudo hops: keep the environment (sudo -E)")
	fs.BoolVar(&c.sudoLogin, "sudo-login", false, "sudo hops: run as a login shell of the target user (sudo -i)")
	fs.StringVar(&c.suPasswordFile, "su-password-file", "", "su hops: file holding the target user's password (default: ask on the terminal)")
	fs.BoolVar(&c.suLogin, "su-login", false, "su hops: the target user's login environment (su -l)")
	fs.StringVar(&c.doasPasswordFile, "doas-password-file", "", "doas hops: file holding the password (default: ask on the terminal)")
	fs.StringVar(&c.kubeNamespace, "kubectl-namespace", "", "kubectl hops: the pod's namespace")
	fs.StringVar(&c.kubeContainer, "kubectl-container", "", "kubectl hops: the pod's container")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubectl hops: kubeconfig file, a path on the host where kubectl runs")
	fs.StringVar(&c.kubeContext, "kubectl-context", "", "kubectl hops: kubeconfig context")
	fs.StringVar(&c.setnsNamespaces, "setns-namespaces", "", "setns hops: comma-separated namespaces to enter (default: all)")
	fs.StringVar(&c.cacheDir, "agent-cache-dir", "", "every hop that installs the agent: its cache directory there (default ~/.cache/mitogen-go)")
	fs.Var(&c.hopOptions, "hop-option", "any method's option, for every hop of that kind: KIND.KEY=VALUE (secrets: KIND.KEY=@FILE; repeatable; see 'mitogen methods')")
	c.persistFlags.register(fs)
}

// secret returns the password for hops of kind: read from file, else
// asked on the terminal when ask is set and this process is not root,
// else empty. Each is read or asked once.
func (c *commonFlags) secret(kind transport.Kind, file string, ask bool) (string, error) {
	if pw, ok := c.secrets[string(kind)]; ok {
		return pw, nil
	}
	pw := ""
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the %s password file: %w", kind, err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
	} else if ask && os.Getuid() != 0 && c.noAsk {
		c.wouldAsk = true
		return "", nil
	} else if ask && os.Getuid() != 0 {
		if answer, err := askPassword(fmt.Sprintf("[mitogen] %s password (empty if none needed): ", kind)); err == nil {
			pw = answer
		}
	}
	if c.secrets == nil {
		c.secrets = map[string]string{}
	}
	c.secrets[string(kind)] = pw
	return pw, nil
}

// hopOptions returns the typed options of a hop of kind: the flags of
// that kind's method, and nothing of any other method's.
func (c *commonFlags) hopOptionsFor(kind transport.Kind) (any, error) {
	opts, err := transport.Default.NewOptions(kind)
	if err != nil || opts == nil {
		return nil, err
	}
	var pwErr error
	switch o := opts.(type) {
	case *ssh.Options:
		o.ConfigFile, o.Identity, o.HostKeyChecking = c.sshConfig, c.identity, c.hostKeyChecking
		o.Options, o.ConnectTimeout = c.sshOptions, c.connectTimeout
		o.Password, pwErr = c.secret(kind, c.sshPasswordFile, false)
	case *sudo.Options:
		o.PreserveEnv, o.Login = c.sudoPreserveEnv, c.sudoLogin
		o.Password, pwErr = c.secret(kind, c.sudoPasswordFile, true)
	case *su.Options:
		o.Login = c.suLogin
		o.Password, pwErr = c.secret(kind, c.suPasswordFile, true)
	case *doas.Options:
		o.Password, pwErr = c.secret(kind, c.doasPasswordFile, true)
	case *container.KubectlOptions:
		o.Namespace, o.Container, o.Kubeconfig, o.Context = c.kubeNamespace, c.kubeContainer, c.kubeconfig, c.kubeContext
	case *setns.Options:
		if c.setnsNamespaces != "" {
			o.Namespaces = strings.Split(c.setnsNamespaces, ",")
		}
	}
	if pwErr != nil {
		return nil, pwErr
	}
	if c.cacheDir != "" {
		// Only for methods that have a cache directory.
		_ = transport.DecodeOptions(map[string]string{"cache_dir": c.cacheDir}, opts)
	}
	if extra := c.hopOptions[kind]; len(extra) > 0 {
		if err := transport.DecodeOptions(extra, opts); err != nil {
			return nil, fmt.Errorf("--hop-option %s: %w", kind, err)
		}
	}
	if _, err := transport.EncodeOptions(opts); err != nil { // runs Validate
		return nil, fmt.Errorf("%s hops: %w", kind, err)
	}
	return opts, nil
}

// hopsOf gives each spec of a chain its own options.
func (c *commonFlags) hopsOf(specs []transport.Spec) ([]agent.Hop, error) {
	hops := make([]agent.Hop, len(specs))
	for i, sp := range specs {
		o, err := c.hopOptionsFor(sp.Kind)
		if err != nil {
			return nil, fmt.Errorf("hop %d (%s): %w", i+1, sp, err)
		}
		hops[i] = agent.Hop{Spec: sp, Options: o}
	}
	return hops, nil
}

// dial reaches the last context of specs.
func (c *commonFlags) dial(ctx context.Context, r *core.Router, specs []transport.Spec) ([]*core.Context, error) {
	hops, err := c.hopsOf(specs)
	if err != nil {
		return nil, err
	}
	return (&agent.Dialer{}).Dial(ctx, r, hops)
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

// newMaster starts the master router, logging to stderr.
func (c *commonFlags) newMaster() *core.Router {
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	cfg := core.DefaultConfig()
	agent.ApplyEnv(&cfg)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return core.NewMaster(cfg)
}

// master starts the master router and the chain of contexts.
func (c *commonFlags) master(ctx context.Context) (*core.Router, []*core.Context, error) {
	r := c.newMaster()
	chain, err := c.dial(ctx, r, c.hops())
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
