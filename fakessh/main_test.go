package fakessh_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	mitogengo "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/internal/testproc"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// The test binary doubles as the agent and as fakessh's ssh, so the tests
// run the real thing without building the CLI first.
func TestMain(m *testing.M) {
	mitogengo.Main()
	if f := os.Getenv(testproc.EnvSignalRecorder); f != "" {
		os.Exit(testproc.SignalRecorder(f, os.Getenv(testproc.EnvSignalRecorderExitOn)))
	}
	if n, err := strconv.Atoi(os.Getenv(fakessh.EnvTestHog)); err == nil {
		os.Exit(fakessh.Hog(n))
	}
	if len(os.Args) > 1 && os.Args[1] == hostileSSHMode && os.Getenv("MITOGEN_TEST_AGENT") == "1" {
		os.Exit(hostileSSH())
	}
	if len(os.Args) > 1 && os.Args[1] == hostileHandoffMode && os.Getenv("MITOGEN_TEST_AGENT") == "1" {
		os.Exit(hostileHandoff())
	}
	os.Setenv("MITOGEN_TEST_AGENT", "1")
	// Remote commands run as sshd runs them, through the user's shell
	// with its login files (bash reads ~/.bashrc under sshd): the local
	// agents get an empty home, so that this machine's own login files
	// (root's may run slow, racy tools) stay out of every test here.
	home, err := os.MkdirTemp("", "fakessh-test-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("HOME", home)
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// chain starts a master and a chain of local contexts.
func chain(t *testing.T, hops int) (*core.Router, *core.Context) {
	t.Helper()
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := core.NewMaster(cfg)
	t.Cleanup(func() { r.Close() })
	return r, chainOn(t, r, hops)
}

// chainOn starts a chain of local contexts on an existing master.
func chainOn(t *testing.T, r *core.Router, hops int) *core.Context {
	t.Helper()
	specs := make([]transport.Spec, hops)
	for i := range specs {
		specs[i] = transport.Spec{Kind: transport.KindLocal}
	}
	c, err := agent.Dial(ctxT(t, 30*time.Second), r, nil, specs, nil)
	if err != nil {
		t.Fatalf("starting %d local contexts: %v", hops, err)
	}
	return c[len(c)-1]
}
