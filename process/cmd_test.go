package process

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// localContext starts a master and one local agent (this test binary).
func localContext(t *testing.T) *core.Context {
	t.Helper()
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := core.NewMaster(cfg)
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := agent.Dial(ctx, r, nil, []transport.Spec{{Kind: transport.KindLocal}}, nil)
	if err != nil {
		t.Fatalf("starting a local context: %v", err)
	}
	return c[0]
}

func TestCmd(t *testing.T) {
	c := localContext(t)

	t.Run("Run with status, stdout and stderr", func(t *testing.T) {
		var out, errs bytes.Buffer
		cmd := Command(c, "sh", "-c", "echo out; echo err >&2; exit 3")
		cmd.Stdout, cmd.Stderr = &out, &errs
		err := cmd.Run()
		var ee *ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || ee.Signaled() || out.String() != "out\n" || errs.String() != "err\n" {
			t.Fatalf("err %v, stdout %q, stderr %q; want exit status 3, out, err", err, out.String(), errs.String())
		}
	})
	t.Run("Output with stdin, env and dir", func(t *testing.T) {
		dir := t.TempDir()
		cmd := Command(c, "sh", "-c", `cat; echo "$GREETING"; pwd`)
		cmd.Stdin = strings.NewReader("input\n")
		cmd.Env = []string{"GREETING=hello"}
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil || string(out) != "input\nhello\n"+dir+"\n" {
			t.Fatalf("Output: %q, %v", out, err)
		}
	})
	t.Run("Output keeps stderr in the ExitError", func(t *testing.T) {
		_, err := Command(c, "sh", "-c", "echo oops >&2; exit 1").Output()
		var ee *ExitError
		if !errors.As(err, &ee) || string(ee.Stderr) != "oops\n" {
			t.Fatalf("err %v; want an ExitError with stderr \"oops\\n\"", err)
		}
	})
	t.Run("Shell and CombinedOutput", func(t *testing.T) {
		cmd := Command(c)
		cmd.Shell = "echo $((6 * 7)); echo two >&2"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "42\n") || !strings.Contains(string(out), "two\n") {
			t.Fatalf("CombinedOutput: %q, %v", out, err)
		}
	})
	t.Run("Signal", func(t *testing.T) {
		cmd := Command(c, "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Pid() <= 0 {
			t.Fatalf("Pid %d", cmd.Pid())
		}
		if err := cmd.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *ExitError
		if !errors.As(err, &ee) || !ee.Signaled() || ee.Signal() != "TERM" || ee.ExitCode() != -1 || ee.Status != 255 {
			t.Fatalf("Wait: %v (%+v); want killed by TERM", err, ee)
		}
		if err := cmd.Wait(); err == nil {
			t.Fatal("a second Wait succeeded")
		}
	})
	t.Run("CommandContext kills on cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := CommandContext(ctx, c, "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cancel()
		err := cmd.Wait()
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Signal() != "KILL" {
			t.Fatalf("Wait after cancel: %v; want killed by KILL", err)
		}
		if !gone(int32(cmd.Pid())) {
			t.Fatalf("process %d still alive", cmd.Pid())
		}
	})
	t.Run("start failure", func(t *testing.T) {
		err := Command(c, "/nonexistent/program").Run()
		if err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("Run: %v; want the start failure", err)
		}
	})
	t.Run("spec must name one thing", func(t *testing.T) {
		cmd := Command(c, "true")
		cmd.Login = true
		if err := cmd.Run(); err == nil || !strings.Contains(err.Error(), "exactly one") {
			t.Fatalf("Run: %v", err)
		}
		if err := Command(c).Run(); err == nil {
			t.Fatal("an empty Cmd ran")
		}
		cmd = Command(c, "true")
		cmd.Env = []string{"NOEQUALS"}
		if err := cmd.Run(); err == nil {
			t.Fatal("a bad Env entry was accepted")
		}
	})
}
