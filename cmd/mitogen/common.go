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
	via     specList
	verbose bool
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.via, "via", "a hop to the context to use: local, ssh:[user@]host[:port] or sudo:[user] (repeat, or comma-separate, for a chain; default: local)")
	fs.BoolVar(&c.verbose, "v", false, "log debug messages of the master and its contexts to stderr")
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

// master starts the master router and the chain of contexts.
func (c *commonFlags) master(ctx context.Context) (*core.Router, []*core.Context, error) {
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	r := core.NewMaster(cfg)
	chain, err := agent.Dial(ctx, r, nil, c.hops(), nil)
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
