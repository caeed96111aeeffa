package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSu behaves as util-linux su does through PAM when stdin is not a
// terminal: the prompt on stderr, the password read from stdin, then the
// command.
const fakeSu = `printf 'Password: ' >&2
read -r pw
[ "$pw" = right ] || { echo "su: Authentication failure" >&2; exit 1; }
exec /bin/sh -c "$1"`

func startFakeSu(t *testing.T, a *Agent, answer string) (string, error) {
	t.Helper()
	script, err := a.Script(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := Start(ctx, Command{
		Cmd:            exec.Command("/bin/sh", "-c", fakeSu, "fakesu", script),
		Agent:          a,
		PromptOnStderr: true,
		Prompts:        []Prompt{{Match: "password:", Answer: answer, Missing: "MISSING", Again: "AGAIN"}},
		Classify:       Classifier("fakesu", "su", []Failure{{Match: "authentication failure", Kind: "wrong password"}}),
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	out, _ := io.ReadAll(conn)
	conn.Wait()
	return string(out), nil
}

func TestPromptOnStderrAnsweredOnStdin(t *testing.T) {
	a := fakeAgent(t)
	out, err := startFakeSu(t, a, "right")
	if err != nil || out != "AGENT-RAN agent\n" {
		t.Fatalf("right password: %q %v", out, err)
	}
	if _, err := startFakeSu(t, a, "wrong"); err == nil || !strings.Contains(err.Error(), "wrong password") || strings.Contains(err.Error(), "right") {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := startFakeSu(t, a, ""); err == nil || !strings.Contains(err.Error(), "MISSING") {
		t.Fatalf("no password: %v", err)
	}
}

// Once the agent exchange has begun, text that looks like a prompt is not
// answered: a password never goes into the agent's stream.
func TestNoAnswerAfterHandshakeBegins(t *testing.T) {
	for _, begun := range []bool{false, true} {
		var answering atomic.Bool
		answering.Store(!begun)
		var dst, echo bytes.Buffer
		errc := make(chan error, 1)
		answer(strings.NewReader("agent log: Password: "), &dst, []Prompt{{Match: "password:", Answer: "pw"}}, &answering, &echo, errc)
		if want := map[bool]string{false: "pw\n", true: ""}[begun]; dst.String() != want {
			t.Errorf("handshake begun %v: answered %q, want %q", begun, dst.String(), want)
		}
	}
	// handshake marks the beginning as soon as the far side's first line
	// has come.
	called := false
	a := fakeAgent(t)
	_, err := handshake(context.Background(), bufio.NewReader(strings.NewReader("MITOGEN0 cached\n")), io.Discard, a, func() { called = true })
	if err != nil || !called {
		t.Fatalf("begun called %v, err %v", called, err)
	}
}
