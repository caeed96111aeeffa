package bootstrap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/transport/fd"
)

// Prompt is a question a program asks on its terminal and the answer to
// give. An empty Answer means "fail with Missing".
type Prompt struct {
	// Match is a substring of the prompt, matched case-insensitively.
	Match string
	// Answer is written, followed by a newline, the first time.
	Answer string
	// Missing is the error when the prompt comes and there is no answer.
	Missing string
	// Again is the error when the prompt comes a second time (a wrong
	// password): the program is killed at once rather than left waiting.
	Again string
}

// Command describes how a transport starts the far shell.
type Command struct {
	// Cmd runs the bootstrap script (see Agent.Script) on the far side.
	Cmd *exec.Cmd
	// Prompts, when any, give the command a pty as controlling terminal
	// and answer what it asks there. Answers are never logged. Prompts are
	// answered only until the agent handshake begins: text that looks like
	// a prompt later never makes a password travel.
	Prompts []Prompt
	// PromptOnStderr: the command asks on its stderr and reads the answer
	// from its stdin instead of its terminal (util-linux su through PAM's
	// text conversation does so when stdin is not a terminal). No pty is
	// made. The answer goes into the stream before the agent exchange, so
	// the far side must read no more than the answer's line.
	PromptOnStderr bool
	// Classify turns the command's last stderr lines into a clear error.
	Classify func(stderr string, err error) error
	// Memory says Cmd runs on this host and keeps its stdin and stdout
	// for the program it runs (sudo, doas do; su reads its password from
	// stdin, ssh and containers run elsewhere): the agent is then given
	// in memory (see the package comment), and its stream is a socket on
	// the command's stdout. When memory is not available here the command
	// gets pipes and the far side uses its disk cache.
	Memory bool
	// Agent is the binary installed when the far side needs it.
	Agent *Agent
	// Sent, when not nil, is increased by the agent bytes sent.
	Sent *int64
}

// noClose is the writing side of a socket whose reading side closes it.
type noClose struct{ io.Writer }

func (noClose) Close() error { return nil }

// memory returns the agent's memfd when c asks for it and this host has
// one, else nil.
func (c *Command) memory() *os.File {
	if !c.Memory || c.Agent == nil {
		return nil
	}
	f, err := c.Agent.memoryFile()
	if err != nil {
		return nil
	}
	return f
}

// tail keeps the last bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tail) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(t.buf), "\r", "")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Start runs c, answers its prompts, performs the agent handshake and
// returns the stream to the started agent.
func Start(ctx context.Context, c Command) (fd.Conn, error) {
	cmd := c.Cmd
	var stdin io.WriteCloser
	var stdoutR io.ReadCloser
	var stdoutW *os.File
	if mem := c.memory(); mem != nil {
		// The agent in memory on the command's stdin, the stream on a
		// socket as its stdout (both ways).
		ours, theirs, err := fd.Socketpair()
		if err != nil {
			return nil, err
		}
		nc, err := fd.FileConn(ours)
		if err != nil {
			theirs.Close()
			return nil, err
		}
		cmd.Stdin = mem
		stdin, stdoutR, stdoutW = noClose{nc}, nc, theirs
	} else {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if stdoutR, stdoutW, err = os.Pipe(); err != nil {
			return nil, err
		}
	}
	cmd.Stdout = stdoutW
	errTail := &tail{}
	var promptSrc io.ReadCloser // where prompts are read
	var answerDst io.Writer     // where answers are written
	var stderrW *os.File        // PromptOnStderr: the command's end of its stderr pipe
	cmd.Stderr = errTail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	closeAll := func() {
		stdoutR.Close()
		stdoutW.Close()
		if promptSrc != nil {
			promptSrc.Close()
		}
	}
	switch {
	case len(c.Prompts) > 0 && c.PromptOnStderr:
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, err
		}
		promptSrc, answerDst = r, stdin
		cmd.Stderr = w
		stderrW = w
	case len(c.Prompts) > 0:
		m, s, err := fd.OpenPTY()
		if err != nil {
			closeAll()
			return nil, err
		}
		promptSrc, answerDst = m, m
		defer s.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, s)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 2 + len(cmd.ExtraFiles), Pdeathsig: syscall.SIGKILL}
	}
	err := cmd.Start()
	if stderrW != nil {
		// Only the command holds its stderr now: the prompt reader sees EOF
		// once the command is gone, after everything it printed.
		stderrW.Close()
	}
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	stdoutW.Close()
	conn := fd.NewProcConn(fd.Join(stdoutR, stdin), cmd)

	promptErr := make(chan error, 1)
	var answering atomic.Bool
	answering.Store(true)
	answered := make(chan struct{})
	if promptSrc != nil {
		go func() {
			answer(promptSrc, answerDst, c.Prompts, &answering, errTail, promptErr)
			close(answered)
		}()
		if stderrW == nil {
			// A pty's master does not end while this process holds the
			// slave: stop reading it when the command is gone.
			go func() { <-conn.Exited(); promptSrc.Close() }()
		}
	}
	fail := func(err error) (fd.Conn, error) {
		_ = conn.Kill()
		_ = conn.Wait()
		conn.Close()
		// What the command printed last on its stderr pipe (su's
		// "Authentication failure" comes after its delay) explains the
		// failure: read it to the end, bounded, before classifying. (A pty
		// is read until the command exits; a read of its master may not be
		// interrupted, so it is not waited for.)
		if stderrW != nil {
			select {
			case <-answered:
			case <-time.After(2 * time.Second):
				promptSrc.Close() // a pipe: this ends the read
				<-answered
			}
		}
		select {
		case perr := <-promptErr:
			return nil, perr
		default:
		}
		if c.Classify != nil {
			return nil, c.Classify(errTail.lastLines(5), err)
		}
		return nil, fmt.Errorf("%w; last output: %s", err, errTail.lastLines(5))
	}

	br := bufio.NewReaderSize(stdoutR, 64<<10)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case perr := <-promptErr:
			promptErr <- perr
			cancel()
		case <-conn.Exited():
			// give the handshake a moment to read what was printed
			time.Sleep(50 * time.Millisecond)
			cancel()
		case <-hctx.Done():
		}
	}()
	sent, err := handshake(hctx, br, stdin, c.Agent, func() { answering.Store(false) })
	if c.Sent != nil {
		*c.Sent += sent
	}
	if err != nil {
		var pe *PlatformError
		if errors.As(err, &pe) {
			_ = conn.Kill()
			return nil, err
		}
		return fail(err)
	}
	return &bufConn{ProcConn: conn, r: br}, nil
}

// bufConn reads through the buffered reader the handshake used.
type bufConn struct {
	*fd.ProcConn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// answer watches src (a pty or the command's stderr) for prompts and
// answers on dst while answering is true; everything read is copied to
// echo. It returns when src ends.
func answer(src io.Reader, dst io.Writer, prompts []Prompt, answering *atomic.Bool, echo io.Writer, errc chan<- error) {
	seen := make([]int, len(prompts))
	var acc []byte
	buf := make([]byte, 1024)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			echo.Write(buf[:n])
			if answering.Load() {
				acc = append(acc, bytes.ToLower(buf[:n])...)
				for i, p := range prompts {
					for {
						j := bytes.Index(acc, []byte(strings.ToLower(p.Match)))
						if j < 0 {
							break
						}
						acc = acc[j+len(p.Match):]
						seen[i]++
						switch {
						case seen[i] > 1:
							errc <- errors.New(p.Again)
							drain(src, echo)
							return
						case p.Answer == "":
							errc <- errors.New(p.Missing)
							drain(src, echo)
							return
						}
						dst.Write([]byte(p.Answer + "\n"))
					}
				}
				if len(acc) > 4096 {
					acc = acc[len(acc)-1024:]
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// drain copies what remains of src to echo, so that a command writing to
// its stderr pipe never blocks on it.
func drain(src io.Reader, echo io.Writer) { _, _ = io.Copy(echo, src) }

// Failure names a failure by a substring of what the command printed
// (matched case-insensitively).
type Failure struct{ Match, Kind string }

// Classifier returns a Command.Classify that names what failed in "what"
// (e.g. "sudo to postgres") by the first of failures found in program's
// last lines, or "the agent did not start".
func Classifier(what, program string, failures []Failure) func(stderr string, err error) error {
	return func(stderr string, err error) error {
		low := strings.ToLower(stderr)
		kind := "the agent did not start"
		for _, f := range failures {
			if strings.Contains(low, strings.ToLower(f.Match)) {
				kind = f.Kind
				break
			}
		}
		if stderr == "" {
			stderr = "(" + program + " printed nothing)"
		}
		return fmt.Errorf("%s: %s: %v\n%s said:\n%s", what, kind, err, program, stderr)
	}
}
