package process

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/internal/ptys"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Limits of a PtyRequest (idl: PtyRequest, WindowSize).
const (
	maxTermLen = 64
	maxWindow  = 65535
)

// errInvalid marks a request refused as malformed (CallError code EINVAL).
var errInvalid = syscall.EINVAL

// checkPty applies the rules of PtyRequest: a term of printable ASCII
// without spaces, at most maxTermLen bytes, and a window size whose
// fields fit TIOCSWINSZ. A nil request (no pty) passes.
func checkPty(p *mitogen.PtyRequest) error {
	if p == nil {
		return nil
	}
	if len(p.Term) > maxTermLen {
		return fmt.Errorf("pty request: term is %d bytes, over %d: %w", len(p.Term), maxTermLen, errInvalid)
	}
	for i := 0; i < len(p.Term); i++ {
		if c := p.Term[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("pty request: term %q has byte %#x: %w", p.Term, c, errInvalid)
		}
	}
	return checkWindow(p.Size, false)
}

// checkWindow applies the rule of WindowSize; required says whether an
// absent size is an error (WINDOW_CHANGE) or 0x0 (PtyRequest).
func checkWindow(w *mitogen.WindowSize, required bool) error {
	if w == nil {
		if required {
			return errors.New("no window size")
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    int32
	}{{"rows", w.Rows}, {"cols", w.Cols}, {"width_px", w.WidthPx}, {"height_px", w.HeightPx}} {
		if f.v < 0 || f.v > maxWindow {
			return fmt.Errorf("window size: %s %d is outside 0-%d: %w", f.name, f.v, maxWindow, errInvalid)
		}
	}
	return nil
}

// setWindow sets the window size of the pty whose master is m; the kernel
// signals SIGWINCH to the pty's foreground process group.
func setWindow(m *os.File, w *mitogen.WindowSize) error {
	if w == nil {
		return nil
	}
	ws := &unix.Winsize{Row: uint16(w.Rows), Col: uint16(w.Cols), Xpixel: uint16(w.WidthPx), Ypixel: uint16(w.HeightPx)}
	return ptys.Control(m, func(fd int) error { return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws) })
}

// startPty starts cmd on a new pty (idl: PtyRequest): the leader of a new
// session whose controlling terminal is the pty's slave, which is its
// stdin, stdout and stderr. Its output is read from the master; its
// stderr stream is empty; input is written to the master and its end is
// not passed on.
func (s *slave) startPty(cmd *exec.Cmd, req *mitogen.PtyRequest) error {
	m, path, err := ptys.Open()
	if err != nil {
		return err
	}
	if err := setWindow(m, req.Size); err != nil {
		m.Close()
		return fmt.Errorf("setting the pty's window size: %w", err)
	}
	sl, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return fmt.Errorf("opening the pty's slave: %w", err)
	}
	if req.Term != "" {
		cmd.Env = append(cmd.Env, "TERM="+req.Term) // exec keeps the last of duplicates
	}
	cmd.Env = append(cmd.Env, "SSH_TTY="+path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sl, sl, sl
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err = cmd.Start()
	sl.Close() // the output ends (EIO) once no process holds the slave
	if err != nil {
		m.Close()
		return fmt.Errorf("%s: %w", cmd.Args[0], err)
	}
	s.cmd = cmd
	s.pty = m
	s.stdinW = ptyInput{m}
	s.stdoutR = ptyOutput{m}
	s.stderrR = io.NopCloser(strings.NewReader(""))
	return nil
}

// ptyInput writes a process's input to its pty; closing it does nothing,
// as a pty has no end of input to pass on (the master stays open for the
// output).
type ptyInput struct{ m *os.File }

func (p ptyInput) Write(b []byte) (int, error) { return p.m.Write(b) }
func (p ptyInput) Close() error                { return nil }

// ptyOutput reads a process's output from its pty: EIO, which the master
// reads once no process holds the slave open, is the end of the output.
type ptyOutput struct{ m *os.File }

func (p ptyOutput) Read(b []byte) (int, error) {
	n, err := p.m.Read(b)
	if err != nil && errors.Is(err, syscall.EIO) {
		err = io.EOF
	}
	return n, err
}

func (p ptyOutput) Close() error { return p.m.Close() }
