package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/internal/ptys"
)

// A terminal session for a test: `mitogen ARGS` started as the leader of a
// new session whose controlling terminal is a pseudo-terminal the test
// made (/dev/ptmx), as a login on a terminal would start it. The test
// plays the user: it reads what the terminal shows, types, resizes the
// window and hangs up.
type termSession struct {
	t         *testing.T
	master    *os.File // the test's end (the "screen and keyboard")
	slavePath string   // the terminal's device, /dev/pts/N
	cmd       *exec.Cmd

	mu       sync.Mutex
	screen   bytes.Buffer // everything the terminal showed
	grew     chan struct{}
	readDone chan struct{} // closed when the screen ends (EIO: nobody holds the terminal)

	done    chan struct{} // closed when cmd exited
	status  int           // its exit status (128+N for a signal), once done
	initial *unix.Termios // the terminal's modes before mitogen started
}

// Bound of every wait of these tests: a hang fails the test here, instead
// of hanging the suite. It is no assertion on speed.
const termWait = 90 * time.Second

// openPty makes a pseudo-terminal and opens its slave.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, s, err := ptys.OpenPair()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	return m, s
}

// control runs f on f's descriptor without putting it in blocking mode
// (as File.Fd would: a blocked read could not be interrupted by Close).

// startTerm starts `mitogen args...` on a new terminal of rows x cols.
func startTerm(t *testing.T, rows, cols uint16, args ...string) *termSession {
	t.Helper()
	return startTermProgram(t, rows, cols, os.Args[0], args...)
}

// startTermProgram starts program on a new terminal of rows x cols, as
// the leader of its session; "mitogen" on its PATH is the mitogen command.
func startTermProgram(t *testing.T, rows, cols uint16, program string, args ...string) *termSession {
	t.Helper()
	m, s := openPty(t)
	ts := &termSession{t: t, master: m, slavePath: s.Name(), grew: make(chan struct{}, 1), done: make(chan struct{}), readDone: make(chan struct{})}
	ts.resize(rows, cols)
	ts.initial = ts.modes()
	bin := t.TempDir()
	if err := os.Symlink(os.Args[0], filepath.Join(bin, "mitogen")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(program, args...)
	cmd.Env = append(os.Environ(), envCLI+"=1", "TERM=xterm", "PATH="+bin+":"+os.Getenv("PATH"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	err := cmd.Start()
	s.Close() // the screen ends (EIO) once the session's processes close it
	if err != nil {
		m.Close()
		t.Fatalf("starting mitogen on a terminal: %v", err)
	}
	ts.cmd = cmd
	go func() {
		defer close(ts.readDone)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			if n > 0 {
				ts.mu.Lock()
				ts.screen.Write(buf[:n])
				ts.mu.Unlock()
				select {
				case ts.grew <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		ts.status = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			ts.status = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				ts.status = 128 + int(ws.Signal())
			}
		} else if err != nil {
			ts.status = -1
		}
		close(ts.done)
	}()
	t.Cleanup(func() {
		select {
		case <-ts.done:
		default:
			// It hung: end its session (it and everything it started,
			// found by session ID, which is its PID) and say so.
			killSession(cmd.Process.Pid)
			<-ts.done
		}
		killSession(cmd.Process.Pid) // whatever it left behind
		m.Close()
	})
	return ts
}

// killSession sends SIGKILL to each process of session sid (the session a
// test started), by PID.
func killSession(sid int) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := unix.Getsid(pid); err == nil && s == sid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Screen returns what the terminal showed so far.
func (ts *termSession) Screen() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.screen.String()
}

// waitFor waits until the screen shows want (after the first from bytes)
// and returns the screen.
func (ts *termSession) waitFor(want string) string {
	ts.t.Helper()
	deadline := time.NewTimer(termWait)
	defer deadline.Stop()
	for {
		if s := ts.Screen(); strings.Contains(s, want) {
			return s
		}
		select {
		case <-ts.grew:
		case <-ts.done:
			// Its last output may still be on its way.
			select {
			case <-ts.readDone:
			case <-deadline.C:
			}
			if s := ts.Screen(); strings.Contains(s, want) {
				return s
			}
			ts.t.Fatalf("mitogen exited (status %d) and the terminal never showed %q; it showed:\n%s", ts.status, want, ts.Screen())
		case <-deadline.C:
			ts.t.Fatalf("the terminal did not show %q within %v (a hang); it showed:\n%s\nprocesses of the session:\n%s", want, termWait, ts.Screen(), sessionPS(ts.cmd.Process.Pid))
		}
	}
}

// wait waits for mitogen to exit and for the terminal to show all it
// wrote (the screen ends when no process holds the terminal any more:
// nothing of the run may outlive it), and returns its status.
func (ts *termSession) wait() int {
	ts.t.Helper()
	deadline := time.NewTimer(termWait)
	defer deadline.Stop()
	select {
	case <-ts.done:
	case <-deadline.C:
		ts.t.Fatalf("mitogen did not exit within %v (a hang); the terminal showed:\n%s\nprocesses of the session:\n%s", termWait, ts.Screen(), sessionPS(ts.cmd.Process.Pid))
	}
	select {
	case <-ts.readDone:
	case <-deadline.C:
		ts.t.Fatalf("mitogen exited, but the terminal is still held open; processes of the session:\n%s", sessionPS(ts.cmd.Process.Pid))
	}
	return ts.status
}

// sessionPS describes the processes of session sid, for failure messages.
func sessionPS(sid int) string {
	var b strings.Builder
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := unix.Getsid(pid); err != nil || s != sid {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		fmt.Fprintf(&b, "  %s  [%s]\n", strings.TrimSpace(string(stat)), strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return b.String()
}

// typeIn types s on the terminal's keyboard.
func (ts *termSession) typeIn(s string) {
	ts.t.Helper()
	if _, err := ts.master.Write([]byte(s)); err != nil {
		ts.t.Fatalf("typing %q: %v", s, err)
	}
}

// resize sets the terminal's window size (the kernel signals SIGWINCH to
// its foreground process group).
func (ts *termSession) resize(rows, cols uint16) {
	ts.t.Helper()
	err := ptys.Control(ts.master, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err != nil {
		ts.t.Fatalf("resizing the terminal: %v", err)
	}
}

// hangUp closes the terminal, as closing a terminal window does: the
// kernel sends SIGHUP to the session leader (mitogen) and to the
// terminal's foreground process group.
func (ts *termSession) hangUp() {
	ts.master.Close()
}

// modes returns the terminal's modes (TCGETS on the master reads the
// slave's).
func (ts *termSession) modes() *unix.Termios {
	ts.t.Helper()
	var tio *unix.Termios
	err := ptys.Control(ts.master, func(fd int) error {
		var err error
		tio, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	})
	if err != nil {
		ts.t.Fatalf("reading the terminal's modes: %v", err)
	}
	return tio
}
