package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// rawAgent is a real `mitogen agent` process driven by hand as its parent.
type rawAgent struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr bytes.Buffer
	waited chan error
}

func startRawAgent(t *testing.T) *rawAgent {
	t.Helper()
	a := &rawAgent{t: t, cmd: exec.Command(mitogenBin, "agent"), waited: make(chan error, 1)}
	var err error
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.stdout = bufio.NewReader(out)
	a.cmd.Stderr = &a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.waited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-a.waited:
		default:
			_ = a.cmd.Process.Kill() // by PID: ours
			<-a.waited
		}
	})
	return a
}

func (a *rawAgent) send(m *wire.Message) {
	a.t.Helper()
	if _, err := a.stdin.Write(wire.Encode(m)); err != nil {
		a.t.Fatalf("writing to the agent: %v", err)
	}
}

func (a *rawAgent) boot(dst, src int32, b *mitogen.Boot) {
	a.send(&wire.Message{Dst: dst, Src: src, Auth: src, Handle: mitogen.BOOTSTRAP, ReplyTo: 1000, Data: thrift.FastMarshal(b)})
}

// frame reads the agent's next frame; after 30 s without one, it kills the
// agent (which ends the read) and says so.
func (a *rawAgent) frame() (wire.Message, error) {
	type res struct {
		m   wire.Message
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := wire.ReadFrame(a.stdout, 1<<20)
		ch <- res{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill() // by PID: ours
		<-ch
		return wire.Message{}, errors.New("the agent neither answered nor exited in 30 s (killed)")
	}
}

func (a *rawAgent) ready() {
	a.t.Helper()
	m, err := a.frame()
	if err != nil || m.Handle != 1000 {
		a.t.Fatalf("no Ready: %v %v (stderr %q)", err, m.String(), a.stderr.String())
	}
}

// exit waits for the agent to end and returns its status and stderr.
func (a *rawAgent) exit() (int, string) {
	a.t.Helper()
	select {
	case err := <-a.waited:
		a.waited <- err // for Cleanup
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			a.t.Fatal(err)
		}
		return a.cmd.ProcessState.ExitCode(), a.stderr.String()
	case <-time.After(30 * time.Second):
		a.t.Fatalf("agent still running after 30 s (stderr %q)", a.stderr.String())
	}
	return 0, ""
}

func oneLine(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") || !strings.Contains(stderr, want) {
		t.Errorf("stderr %q: want one line saying %q", stderr, want)
	}
}

var goodBoot = mitogen.Boot{ContextId: 5, ParentId: 0, ParentIds: []int32{0}, Name: "t", LogLevel: 8}

// An agent whose parent stream ends without SHUTDOWN (the parent died, or
// sent garbage) says so on stderr and exits non-zero; after SHUTDOWN it
// exits 0 silently.
func TestAgentExitStatusTellsABrokenParentStream(t *testing.T) {
	t.Run("closed without SHUTDOWN", func(t *testing.T) {
		a := startRawAgent(t)
		b := goodBoot
		a.boot(5, 0, &b)
		a.ready()
		a.stdin.Close()
		code, stderr := a.exit()
		if code == 0 {
			t.Errorf("exit status 0 after the parent stream broke")
		}
		oneLine(t, stderr, "parent stream ended without SHUTDOWN")
	})
	t.Run("malformed frame", func(t *testing.T) {
		a := startRawAgent(t)
		b := goodBoot
		a.boot(5, 0, &b)
		a.ready()
		a.stdin.Write([]byte{0, 0, 0, 3, 0x42, 0x42, 0x42})
		code, stderr := a.exit()
		if code == 0 {
			t.Errorf("exit status 0 after a malformed frame from the parent")
		}
		oneLine(t, stderr, "parent stream ended without SHUTDOWN")
	})
	t.Run("SHUTDOWN", func(t *testing.T) {
		a := startRawAgent(t)
		b := goodBoot
		a.boot(5, 0, &b)
		a.ready()
		a.send(&wire.Message{Dst: 5, Src: 0, Auth: 0, Handle: mitogen.SHUTDOWN})
		a.stdin.Close() // at once: the SHUTDOWN before it makes it clean
		code, stderr := a.exit()
		if code != 0 || stderr != "" {
			t.Errorf("after SHUTDOWN: exit %d, stderr %q; want 0 and nothing", code, stderr)
		}
	})
}

// Boots that cannot describe a place in the tree are refused: no Ready, one
// line on stderr, non-zero exit.
func TestAgentRefusesImpossibleBoot(t *testing.T) {
	for _, c := range []struct {
		name     string
		dst, src int32
		boot     mitogen.Boot
		want     string
	}{
		{"context is its parent", 5, 5, mitogen.Boot{ContextId: 5, ParentId: 5, ParentIds: []int32{5, 0}}, "context_id 5"},
		{"context is the master", 0, 3, mitogen.Boot{ContextId: 0, ParentId: 3, ParentIds: []int32{3, 0}}, "MASTER_ID"},
		{"context among its parents", 5, 3, mitogen.Boot{ContextId: 5, ParentId: 3, ParentIds: []int32{3, 5, 0}}, "parent_ids"},
		{"dst is not the context", 6, 0, mitogen.Boot{ContextId: 5, ParentId: 0, ParentIds: []int32{0}}, "addressed to context 6"},
		{"src is not the parent", 5, 2, mitogen.Boot{ContextId: 5, ParentId: 0, ParentIds: []int32{0}}, "parent_id is 0"},
		{"duplicate parents", 5, 3, mitogen.Boot{ContextId: 5, ParentId: 3, ParentIds: []int32{3, 2, 3, 0}}, "twice"},
		{"parents do not end at the master", 5, 3, mitogen.Boot{ContextId: 5, ParentId: 3, ParentIds: []int32{3}}, "MASTER_ID"},
		{"no parents", 5, 0, mitogen.Boot{ContextId: 5, ParentId: 0}, "parent_ids is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := startRawAgent(t)
			a.boot(c.dst, c.src, &c.boot)
			if m, err := a.frame(); err == nil {
				t.Errorf("the agent answered an impossible Boot: %v", m.String())
			} else if strings.Contains(err.Error(), "killed") {
				t.Fatal(err)
			}
			code, stderr := a.exit()
			if code == 0 {
				t.Errorf("exit status 0 after an impossible Boot")
			}
			oneLine(t, stderr, "refusing Boot")
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not say %q", stderr, c.want)
			}
		})
	}
}
