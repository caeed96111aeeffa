package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// pipeName is what readlink shows for f's pipe: "pipe:[inode]".
func pipeName(t *testing.T, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("pipe:[%d]", st.Ino)
}

// handoffStarter starts spec in c with handoff h (as fakessh's master
// would set it), recording the reply.
func handoffStarter(c *core.Context, h *mitogen.FdHandoff, got **mitogen.ProcessStarted) Starter {
	return func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		sp := *spec
		sp.PeerId = c.Router().ID()
		sp.Handoff = h
		st, err := c.Agent().StartProcess(ctx, &sp)
		*got = st
		return st, err
	}
}

func bootID(t *testing.T) string {
	t.Helper()
	b, err := BootID()
	if err != nil {
		t.Skipf("no boot id here: %v", err)
	}
	return b
}

// A handed-off process reads and writes the offering side's own pipes (the
// very inodes, so no byte is relayed); its stderr (not offered) is
// relayed; its exit status comes back exactly.
func TestHandoffGivesTheProcessTheOfferedPipes(t *testing.T) {
	c := localContext(t)
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	defer inW.Close()
	defer outR.Close()
	o, err := NewOffer(inR, outW, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	h := o.Handoff()
	h.PeerPid, h.BootId = int32(os.Getpid()), bootID(t)
	var started *mitogen.ProcessStarted
	var errb bytes.Buffer
	settled := false
	start := handoffStarter(c, h, &started)
	wrapped := func(ctx context.Context, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
		st, err := start(ctx, spec)
		if err == nil {
			var handed int32
			handed, err = o.Settle(st)
			settled = handed == HandoffStdin|HandoffStdout
			inR.Close() // only the process holds them now
			outW.Close()
		}
		return st, err
	}
	wantIn, wantOut := pipeName(t, inR), pipeName(t, outW)
	go func() { inW.Write([]byte("typed\n")); inW.Close() }()
	res, err := Relay(context.Background(), c.Router(), c.ID(), wrapped,
		&mitogen.ProcessSpec{Command: "readlink /proc/self/fd/0 /proc/self/fd/1; read l; echo \"$l\"; echo err >&2; exit 44"},
		Stdio{Stderr: &errb})
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	out, _ := io.ReadAll(outR)
	if !settled || started.HandedOff != 3 {
		t.Errorf("handed_off %d; want 3", started.HandedOff)
	}
	if want := wantIn + "\n" + wantOut + "\ntyped\n"; string(out) != want {
		t.Errorf("the process's output %q; want %q (its own fds are the offered pipes)", out, want)
	}
	if res.Status != 44 || errb.String() != "err\n" {
		t.Errorf("status %d, stderr %q; want 44, \"err\\n\"", res.Status, errb.String())
	}
}

// listenAbstract is a listener that is not the client's: what a process
// squatting on the machine might offer.
func listenAbstract(t *testing.T) (*net.UnixListener, string) {
	t.Helper()
	name := fmt.Sprintf("%stest%d-%d", handoffPrefix, os.Getpid(), time.Now().UnixNano())
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + name, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, name
}

// relayOK checks that a start with handoff h fell back to the relay.
func relayOK(t *testing.T, c *core.Context, h *mitogen.FdHandoff) {
	t.Helper()
	var started *mitogen.ProcessStarted
	var out bytes.Buffer
	res, err := Relay(context.Background(), c.Router(), c.ID(), handoffStarter(c, h, &started),
		&mitogen.ProcessSpec{Command: "echo relayed; exit 3"}, Stdio{Stdout: &out})
	if err != nil || res.Status != 3 || out.String() != "relayed\n" || started.HandedOff != 0 {
		t.Fatalf("status %d, out %q, handed_off %v, err %v; want the relay (3, relayed, 0)", res.Status, out.String(), started, err)
	}
}

// The process side sends the token only to a listener owned by the pid
// the master vouched for: a listener of another process gets a connection
// and nothing on it, and the process is relayed.
func TestHandoffOnlyToTheVouchedPid(t *testing.T) {
	c := localContext(t)
	ln, name := listenAbstract(t)
	got := make(chan string, 1)
	ln.SetDeadline(time.Now().Add(60 * time.Second))
	go func() {
		conn, err := ln.AcceptUnix()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		b, _ := io.ReadAll(conn)
		got <- fmt.Sprintf("read %d bytes", len(b))
	}()
	relayOK(t, c, &mitogen.FdHandoff{Socket: name, Token: bytes.Repeat([]byte{7}, 32), Fds: 3,
		PeerPid: int32(os.Getpid()) + 1, BootId: bootID(t)})
	if g := <-got; g != "read 0 bytes" {
		t.Fatalf("listener of another pid: %s; want a connection that gets nothing", g)
	}
}

// Another machine's boot id (or a malformed handoff) makes the process
// side not even connect.
func TestHandoffNotTriedOffMachine(t *testing.T) {
	c := localContext(t)
	ln, name := listenAbstract(t)
	tok := bytes.Repeat([]byte{7}, 32)
	for _, h := range []*mitogen.FdHandoff{
		{Socket: name, Token: tok, Fds: 3, PeerPid: int32(os.Getpid()), BootId: "another-machine"},
		{Socket: name, Token: tok[:8], Fds: 3, PeerPid: int32(os.Getpid()), BootId: bootID(t)},
		{Socket: name, Token: tok, Fds: 1, PeerPid: int32(os.Getpid()), BootId: bootID(t)},
		{Socket: "elsewhere", Token: tok, Fds: 3, PeerPid: int32(os.Getpid()), BootId: bootID(t)},
	} {
		relayOK(t, c, h)
	}
	// The start replied after any connect it made: none is pending.
	raw, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var aerr error
	raw.Control(func(fd uintptr) {
		var nfd int
		if nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC); aerr == nil {
			unix.Close(nfd)
		}
	})
	if aerr == nil {
		t.Fatal("the process side connected for a handoff it must refuse")
	} else if aerr != unix.EAGAIN {
		t.Fatalf("accept: %v", aerr)
	}
}

// An offer gives its descriptors only to a connection presenting the
// token, and only once.
func TestOfferOnlyForTheToken(t *testing.T) {
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	o, err := NewOffer(r, w, w)
	if err != nil {
		t.Fatal(err)
	}
	h := o.Handoff()
	if h.Fds != 7 {
		t.Fatalf("fds %d; want 7 (stderr a pipe too)", h.Fds)
	}
	try := func(tok []byte) (int, int, error) {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: "@" + h.Socket, Net: "unix"})
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write(tok)
		oob := make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 1), oob)
		nfds := 0
		if msgs, _ := unix.ParseSocketControlMessage(oob[:oobn]); len(msgs) > 0 {
			fds, _ := unix.ParseUnixRights(&msgs[0])
			for _, fd := range fds {
				unix.Close(fd)
			}
			nfds = len(fds)
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return n, nfds, err
	}
	wrong := append([]byte(nil), h.Token...)
	wrong[0] ^= 1
	if n, nfds, err := try(wrong); n != 0 || nfds != 0 || err != nil {
		t.Fatalf("wrong token: %d bytes, %d fds, %v; want nothing", n, nfds, err)
	}
	if n, nfds, err := try(h.Token); n != 1 || nfds != 3 || err != nil {
		t.Fatalf("token: %d bytes, %d fds, %v; want 1 and 3", n, nfds, err)
	}
	if _, nfds, err := try(h.Token); nfds != 0 || err == nil && nfds != 0 {
		t.Fatalf("second taker got %d fds (%v)", nfds, err)
	}
	if sent := o.Close(); sent != 7 {
		t.Fatalf("Close reports %d sent; want 7", sent)
	}
	// A reply may claim only what was handed over.
	if _, err := o.Settle(&mitogen.ProcessStarted{HandedOff: 3}); err == nil {
		t.Fatal("Settle accepted a claim of fds 3 after 7 were handed")
	}
}

// Terminals and files are never offered, and never taken: a hostile offer
// of a regular file (with the right token, from the right pid) makes the
// process side close it and relay.
func TestHandoffRefusesTerminalsAndFiles(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if _, err := NewOffer(ptmx, w, nil); err == nil {
		t.Fatal("a terminal as stdin was offered")
	}
	c := localContext(t)
	ln, name := listenAbstract(t)
	f, err := os.CreateTemp(t.TempDir(), "file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok := bytes.Repeat([]byte{9}, 32)
	rights := unix.UnixRights(int(r.Fd()), int(f.Fd()))
	ln.SetDeadline(time.Now().Add(60 * time.Second))
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		conn, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		io.ReadFull(conn, make([]byte, len(tok)))
		conn.WriteMsgUnix([]byte{'F'}, rights, nil)
	}()
	relayOK(t, c, &mitogen.FdHandoff{Socket: name, Token: tok, Fds: 3, PeerPid: int32(os.Getpid()), BootId: bootID(t)})
}
