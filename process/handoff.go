package process

// FD HANDOFF (idl/mitogen.thrift, FdHandoff): a process started for a
// client on the same machine may take the client's own stdio descriptors,
// passed once by SCM_RIGHTS, instead of pipes whose bytes are relayed. The
// offering side (fakessh's ssh) is Offer; the taking side is receiveHandoff,
// used by start_process when the master put a handoff in the ProcessSpec.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Handoff bits (FdHandoff.fds, ProcessStarted.handed_off).
const (
	HandoffStdin  int32 = 1
	HandoffStdout int32 = 2
	HandoffStderr int32 = 4
)

const (
	// handoffPrefix starts every handoff socket name.
	handoffPrefix = "mitogen-fd-"
	// handoffTimeout bounds each side's wait for the other.
	handoffTimeout = 5 * time.Second
	// handoffConns is how many connections an Offer serves at once.
	handoffConns = 4
	// handoffTokenLen is the length of the token an Offer makes.
	handoffTokenLen = 32
)

// BootID is this machine's boot ID (/proc/sys/kernel/random/boot_id).
func BootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", errors.New("boot id: empty")
	}
	return id, nil
}

// CheckHandoff applies the form rules of FdHandoff to h: the socket name,
// the token length and the fds bits. It does not look at peer_pid or
// boot_id.
func CheckHandoff(h *mitogen.FdHandoff) error {
	switch {
	case h == nil:
		return errors.New("handoff: absent")
	case len(h.Socket) <= len(handoffPrefix) || len(h.Socket) > 100 || !strings.HasPrefix(h.Socket, handoffPrefix):
		return fmt.Errorf("handoff: bad socket name %q", h.Socket)
	case strings.ContainsAny(h.Socket, "\x00/"):
		return fmt.Errorf("handoff: bad socket name %q", h.Socket)
	case len(h.Token) < 16 || len(h.Token) > 64:
		return fmt.Errorf("handoff: token of %d bytes", len(h.Token))
	case h.Fds != HandoffStdin|HandoffStdout && h.Fds != HandoffStdin|HandoffStdout|HandoffStderr:
		return fmt.Errorf("handoff: fds %d is neither 3 nor 7", h.Fds)
	}
	return nil
}

// passable reports whether f may be handed to another process: a FIFO or
// a socket, never a terminal, device or file.
func passable(fd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	t := st.Mode & unix.S_IFMT
	return t == unix.S_IFIFO || t == unix.S_IFSOCK
}

// Offer is the offering side of a handoff: an abstract unix socket that
// gives the offered descriptors, once, to the first connection that
// presents the token.
type Offer struct {
	ln    *net.UnixListener
	h     *mitogen.FdHandoff
	files []*os.File

	mu     sync.Mutex
	sent   int32 // the fds given away (0: none)
	closed bool
	wg     sync.WaitGroup
	slots  chan struct{}
}

// NewOffer offers stdin and stdout, and stderr when it can be passed too.
// It fails when stdin or stdout is not a FIFO or a socket, or the socket
// cannot be made; the caller then relays as usual.
func NewOffer(stdin, stdout, stderr *os.File) (*Offer, error) {
	if stdin == nil || stdout == nil || !passable(int(stdin.Fd())) || !passable(int(stdout.Fd())) {
		return nil, errors.New("handoff: stdin and stdout must be FIFOs or sockets")
	}
	o := &Offer{h: &mitogen.FdHandoff{Fds: HandoffStdin | HandoffStdout}, files: []*os.File{stdin, stdout},
		slots: make(chan struct{}, handoffConns)}
	if stderr != nil && passable(int(stderr.Fd())) {
		o.h.Fds |= HandoffStderr
		o.files = append(o.files, stderr)
	}
	o.h.Token = make([]byte, handoffTokenLen)
	name := make([]byte, 16)
	if _, err := rand.Read(o.h.Token); err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	if _, err := rand.Read(name); err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	o.h.Socket = handoffPrefix + hex.EncodeToString(name)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + o.h.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("handoff: listen: %w", err)
	}
	o.ln = ln
	o.wg.Add(1)
	go o.serve()
	return o, nil
}

// Handoff is the offer to send (socket, token, fds).
func (o *Offer) Handoff() *mitogen.FdHandoff {
	return &mitogen.FdHandoff{Socket: o.h.Socket, Token: o.h.Token, Fds: o.h.Fds}
}

func (o *Offer) serve() {
	defer o.wg.Done()
	for {
		c, err := o.ln.AcceptUnix()
		if err != nil {
			return
		}
		o.slots <- struct{}{} // at most handoffConns at once; each ends within handoffTimeout
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			defer func() { <-o.slots }()
			defer c.Close()
			o.give(c)
		}()
	}
}

// give hands the descriptors over c if it presents the token and they were
// not given yet.
func (o *Offer) give(c *net.UnixConn) {
	_ = c.SetDeadline(time.Now().Add(handoffTimeout))
	tok := make([]byte, len(o.h.Token))
	if _, err := io.ReadFull(c, tok); err != nil || subtle.ConstantTimeCompare(tok, o.h.Token) != 1 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sent != 0 || o.closed {
		return
	}
	fds := make([]int, len(o.files))
	for i, f := range o.files {
		fds[i] = int(f.Fd())
	}
	if _, _, err := c.WriteMsgUnix([]byte{'F'}, unix.UnixRights(fds...), nil); err != nil {
		return
	}
	o.sent = o.h.Fds
	o.ln.Close() // nobody else gets anything
}

// Close stops listening, waits for the connections being served, and
// reports the fds given away (0: none; they will not be given after).
func (o *Offer) Close() int32 {
	o.ln.Close()
	o.wg.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return o.sent
}

// Settle closes o and checks a start reply against what was given: a
// reply may claim exactly the fds handed over, or none (the process side
// fell back to pipes). It returns the fds the process took.
func (o *Offer) Settle(started *mitogen.ProcessStarted) (int32, error) {
	sent := o.Close()
	if started == nil || started.HandedOff == 0 {
		return 0, nil
	}
	if started.HandedOff != sent {
		return 0, fmt.Errorf("handoff: the destination claims fds %d, but %d were handed over", started.HandedOff, sent)
	}
	return sent, nil
}

// receiveHandoff is the taking side (FD HANDOFF step 3): it proves this
// context is on the offering side's machine and takes its descriptors,
// returned in stdin, stdout, stderr order (stderr nil when not handed).
// On any failure nothing is kept and the caller relays as usual.
func receiveHandoff(h *mitogen.FdHandoff) ([3]*os.File, error) {
	var out [3]*os.File
	if err := CheckHandoff(h); err != nil {
		return out, err
	}
	boot, err := BootID()
	if err != nil {
		return out, err
	}
	if h.BootId != boot {
		return out, fmt.Errorf("handoff: boot id %q is not this machine's", h.BootId)
	}
	if h.PeerPid <= 0 {
		return out, fmt.Errorf("handoff: peer pid %d", h.PeerPid)
	}
	d := net.Dialer{Timeout: handoffTimeout}
	nc, err := d.Dial("unix", "@"+h.Socket)
	if err != nil {
		return out, fmt.Errorf("handoff: connect: %w", err)
	}
	c := nc.(*net.UnixConn)
	defer c.Close()
	pid, err := peerPid(c)
	if err != nil {
		return out, err
	}
	if pid != h.PeerPid {
		return out, fmt.Errorf("handoff: the socket's owner is pid %d, not the client's %d", pid, h.PeerPid)
	}
	_ = c.SetDeadline(time.Now().Add(handoffTimeout))
	if _, err := c.Write(h.Token); err != nil {
		return out, fmt.Errorf("handoff: %w", err)
	}
	want := bits.OnesCount32(uint32(h.Fds))
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(3*4)) // room for 3: more is truncated (and closed by the kernel)
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	var fds []int
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				if r, rerr := unix.ParseUnixRights(&m); rerr == nil {
					fds = append(fds, r...)
				}
			}
		}
	}
	fail := func(err error) ([3]*os.File, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return [3]*os.File{}, err
	}
	switch {
	case err != nil:
		return fail(fmt.Errorf("handoff: receive: %w", err))
	case n != 1 || buf[0] != 'F':
		return fail(errors.New("handoff: the offer sent no descriptors"))
	case flags&unix.MSG_CTRUNC != 0 || len(fds) != want:
		return fail(fmt.Errorf("handoff: %d descriptors received, %d expected", len(fds), want))
	}
	for _, fd := range fds {
		if !passable(fd) {
			return fail(errors.New("handoff: a descriptor is neither a FIFO nor a socket"))
		}
	}
	names := []string{"handoff-stdin", "handoff-stdout", "handoff-stderr"}
	for i, fd := range fds {
		unix.CloseOnExec(fd)
		out[i] = os.NewFile(uintptr(fd), names[i])
	}
	return out, nil
}

func peerPid(c *net.UnixConn) (int32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("handoff: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return 0, fmt.Errorf("handoff: peer credentials: %v %v", err, cerr)
	}
	return cred.Pid, nil
}

// startMaybeHandoff starts cmd on the descriptors of the handoff h when
// there is one and it succeeds, else on pipes (s.start). It returns the
// fds the process took directly.
func (s *slave) startMaybeHandoff(cmd *exec.Cmd, h *mitogen.FdHandoff) (int32, error) {
	if h == nil || (h.Socket == "" && len(h.Token) == 0 && h.Fds == 0) {
		return 0, s.start(cmd) // absent (a peer may send an empty struct for it)
	}
	files, err := receiveHandoff(h)
	if err != nil {
		s.r.Logger().Debug("stdio handoff not used; relaying", "err", err)
		return 0, s.start(cmd)
	}
	return h.Fds, s.startHandedOff(cmd, files)
}

// startHandedOff starts cmd with the handed-off descriptors as its stdin
// and stdout (and stderr, else a pipe this side relays), and keeps no copy.
func (s *slave) startHandedOff(cmd *exec.Cmd, files [3]*os.File) error {
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	var errR, errW *os.File
	if files[2] == nil {
		var err error
		if errR, errW, err = os.Pipe(); err != nil {
			return err
		}
		cmd.Stderr = errW
	} else {
		cmd.Stderr = files[2]
	}
	cmd.Stdin, cmd.Stdout = files[0], files[1]
	err := cmd.Start()
	if errW != nil {
		errW.Close()
	}
	if err != nil {
		if errR != nil {
			errR.Close()
		}
		return fmt.Errorf("%s: %w", cmd.Args[0], err)
	}
	s.cmd = cmd
	s.stdinW = nopWriteCloser{}
	s.stdoutR = emptyReadCloser{}
	if errR != nil {
		s.stderrR = errR
	} else {
		s.stderrR = emptyReadCloser{}
	}
	return nil
}

// nopWriteCloser stands for a handed-off stdin: the client's stdin stream
// (ended at once by a client that handed it off) is discarded.
type nopWriteCloser struct{}

func (nopWriteCloser) Write(p []byte) (int, error) { return len(p), nil }
func (nopWriteCloser) Close() error                { return nil }

// emptyReadCloser stands for a handed-off output: its stream ends at once.
type emptyReadCloser struct{}

func (emptyReadCloser) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyReadCloser) Close() error             { return nil }
