// Package fd provides byte streams over file descriptors: socketpairs,
// inherited descriptors (an agent's stdin and stdout), and the local
// transport, which re-executes the current binary as `mitogen agent` over a
// socketpair.
package fd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Conn is the byte stream of a started agent (transport.Conn is this type;
// it is defined here, where streams are made, so that the packages that
// make them need not import package transport).
type Conn interface {
	io.ReadWriteCloser
	// Wait waits for the agent process (when there is one) to exit after the
	// stream ended, and returns how it ended.
	Wait() error
	// Kill ends the agent process at once.
	Kill() error
}

// Socketpair returns the two ends of a connected AF_UNIX stream socketpair,
// both close-on-exec.
func Socketpair() (a, b *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range fds {
		// Larger kernel buffers: fewer context switches per megabyte.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	}
	return os.NewFile(uintptr(fds[0]), "socketpair.0"), os.NewFile(uintptr(fds[1]), "socketpair.1"), nil
}

// socketBuffer is the SO_SNDBUF/SO_RCVBUF asked for on socketpairs (the
// kernel caps it at net.core.wmem_max/rmem_max).
const socketBuffer = 4 << 20

// FileConn turns a socket descriptor into a net.Conn (which writes with
// writev); f is closed.
func FileConn(f *os.File) (net.Conn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("fd %d is not a usable socket: %w", f.Fd(), err)
	}
	return c, nil
}

// pipeConn joins a read and a write descriptor into one stream.
type pipeConn struct {
	r    io.ReadCloser
	w    io.WriteCloser
	once sync.Once
}

func (p *pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeConn) Close() error {
	var err error
	p.once.Do(func() { err = errors.Join(p.w.Close(), p.r.Close()) })
	return err
}

// SyscallConns returns the descriptors of the two sides, when both are
// descriptors (core.SyscallConns), so that a core.Stream reads and writes
// them directly.
func (p *pipeConn) SyscallConns() (read, write syscall.RawConn, err error) {
	return syscallConns(p.r, p.w)
}

// syscallConns returns the raw descriptors of r and w, when both are
// descriptors read and written as they are.
func syscallConns(r, w any) (read, write syscall.RawConn, err error) {
	raw := func(x any) (syscall.RawConn, error) {
		switch c := x.(type) {
		case *os.File:
			return c.SyscallConn()
		case *net.UnixConn:
			return c.SyscallConn()
		case *net.TCPConn:
			return c.SyscallConn()
		}
		return nil, errors.New("not a descriptor stream")
	}
	if read, err = raw(r); err != nil {
		return nil, nil, err
	}
	if write, err = raw(w); err != nil {
		return nil, nil, err
	}
	return read, write, nil
}

// Join returns a stream reading from r and writing to w; Close closes both.
func Join(r io.ReadCloser, w io.WriteCloser) io.ReadWriteCloser { return &pipeConn{r: r, w: w} }

// StdioConn takes over this process's stdin and stdout as the stream to the
// parent (how an agent is started). Afterwards fd 0 reads /dev/null and fd 1
// is a copy of stderr, so nothing else can corrupt the stream.
func StdioConn() (io.ReadWriteCloser, error) {
	in, err := unix.Dup(0)
	if err != nil {
		return nil, fmt.Errorf("dup stdin: %w", err)
	}
	out, err := unix.Dup(1)
	if err != nil {
		return nil, fmt.Errorf("dup stdout: %w", err)
	}
	unix.CloseOnExec(in)
	unix.CloseOnExec(out)
	// Non-blocking, so Go's poller serves them and Close ends a blocked Read.
	_ = unix.SetNonblock(in, true)
	_ = unix.SetNonblock(out, true)
	if null, err := unix.Open("/dev/null", unix.O_RDONLY, 0); err == nil {
		_ = unix.Dup2(null, 0)
		_ = unix.Close(null)
	}
	_ = unix.Dup2(2, 1)
	inF := os.NewFile(uintptr(in), "parent-in")
	outF := os.NewFile(uintptr(out), "parent-out")
	if st, err := inF.Stat(); err == nil && st.Mode()&os.ModeSocket != 0 && sameFile(inF, outF) {
		outF.Close()
		return FileConn(inF)
	}
	return Join(inF, outF), nil
}

func sameFile(a, b *os.File) bool {
	sa, err1 := a.Stat()
	sb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// Local starts agents on this machine: Exe (the current binary by default)
// re-executed with Args (default: "agent") over a socketpair.
type Local struct {
	Exe  string
	Args []string
	// Stderr receives the agent's stderr (default: this process's).
	Stderr io.Writer
	// Env, when non-nil, replaces the environment.
	Env []string
}

func (l *Local) String() string { return "local" }

// Start implements transport.Transport.
func (l *Local) Start(ctx context.Context) (Conn, error) {
	exe := l.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("local transport: finding own executable: %w", err)
		}
	}
	args := l.Args
	if args == nil {
		args = []string{"agent"}
	}
	ours, theirs, err := Socketpair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin = theirs
	cmd.Stdout = theirs
	cmd.Stderr = l.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	cmd.Env = l.Env
	// The agent dies with its parent, whatever kills the parent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return nil, fmt.Errorf("local transport: starting %s: %w", exe, err)
	}
	c, err := FileConn(ours)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}
	return newProcConn(c, cmd), nil
}

// ProcConn is a stream to an agent process that this side started.
type ProcConn struct {
	io.ReadWriteCloser
	cmd      *exec.Cmd
	waitOnce sync.Once
	waitErr  error
	exited   chan struct{}
}

func newProcConn(rw io.ReadWriteCloser, cmd *exec.Cmd) *ProcConn {
	p := &ProcConn{ReadWriteCloser: rw, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p
}

// NewProcConn wraps a started command whose stream is rw.
func NewProcConn(rw io.ReadWriteCloser, cmd *exec.Cmd) *ProcConn { return newProcConn(rw, cmd) }

// Wait waits for the process to exit.
func (p *ProcConn) Wait() error {
	<-p.exited
	return p.waitErr
}

// SyscallConns returns the stream's descriptors when it is made of
// descriptors (see core.SyscallConns).
func (p *ProcConn) SyscallConns() (read, write syscall.RawConn, err error) {
	switch c := p.ReadWriteCloser.(type) {
	case interface {
		SyscallConns() (syscall.RawConn, syscall.RawConn, error)
	}:
		return c.SyscallConns()
	default:
		return syscallConns(c, c)
	}
}

// Exited is closed when the process has exited.
func (p *ProcConn) Exited() <-chan struct{} { return p.exited }

// Pid is the agent process's ID.
func (p *ProcConn) Pid() int { return p.cmd.Process.Pid }

// Kill kills the agent process.
func (p *ProcConn) Kill() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	return p.cmd.Process.Kill()
}

// Close closes the stream; the agent sees EOF and exits. The process is
// reaped in the background.
func (p *ProcConn) Close() error { return p.ReadWriteCloser.Close() }
