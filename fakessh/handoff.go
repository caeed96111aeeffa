package fakessh

// FD HANDOFF (idl/mitogen.thrift, FdHandoff): when the destination runs on
// this machine, the remote command takes our ssh's stdio descriptors
// themselves and no byte of the session is relayed. The ssh offers
// (offerStdio), the master decides and vouches for the ssh's pid
// (run.handoffFor), the destination proves it is here and takes them
// (package process).

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh/sshargs"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// EnvHandoff set to "0" in the program's environment makes our ssh relay
// its stdio even to a destination on this machine (for comparisons).
const EnvHandoff = "MITOGEN_FAKESSH_HANDOFF"

// offerStdio makes our ssh's offer when the invocation allows one: no
// pty session, stdin read (no -n), stdin and stdout FIFOs or sockets.
// nil: relay.
func offerStdio(inv *sshargs.Invocation, pty bool) *process.Offer {
	if os.Getenv(EnvHandoff) == "0" || pty || inv.NoStdin {
		return nil
	}
	o, err := process.NewOffer(os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		return nil
	}
	return o
}

// handedStdin is our ssh's stdin as the relay reads it: once the stdin
// was handed off, it is empty (the command reads the program's pipe
// itself), so the relay ends its stdin stream at once.
type handedStdin struct {
	r      io.Reader
	handed *atomic.Int32
}

func (h handedStdin) Read(p []byte) (int, error) {
	if h.handed.Load()&process.HandoffStdin != 0 {
		return 0, io.EOF
	}
	return h.r.Read(p)
}

// dropHanded points the handed-off stdin and stdout of this process at
// /dev/null, so that only the remote command holds the program's pipes
// (the program sees EOF and EPIPE as with a local command).
func dropHanded(handed int32) {
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(null)
	if handed&process.HandoffStdin != 0 {
		_ = unix.Dup2(null, 0)
	}
	if handed&process.HandoffStdout != 0 {
		_ = unix.Dup2(null, 1)
	}
}

// handoffFor is the master's decision on an ssh's offer (FD HANDOFF step
// 2): for a run on this machine and a destination this master started on
// this machine (core.Router.OnThisMachine: hops that stay here, from here),
// a well-formed offer becomes the spec's handoff, with the ssh's pid as
// this kernel reported it at admission and this machine's boot ID. A
// destination elsewhere never sees the offer (it could pass the token to
// a local accomplice). nil: relay.
func (st *run) handoffFor(caller int32, dest *core.Context, offer *mitogen.FdHandoff) *mitogen.FdHandoff {
	if offer == nil || st.On != nil || process.CheckHandoff(offer) != nil {
		return nil
	}
	if dest == nil || !st.Router.OnThisMachine(dest.ID()) {
		return nil
	}
	st.mu.Lock()
	pid := st.pids[caller]
	st.mu.Unlock()
	if pid <= 0 {
		return nil
	}
	boot, err := process.BootID()
	if err != nil {
		return nil
	}
	return &mitogen.FdHandoff{Socket: offer.Socket, Token: offer.Token, Fds: offer.Fds, PeerPid: pid, BootId: boot}
}

// checkHandedOff is the master's check of a start reply against the
// handoff it asked for (FD HANDOFF step 4).
func checkHandedOff(started *mitogen.ProcessStarted, asked *mitogen.FdHandoff) error {
	if started.HandedOff == 0 {
		return nil
	}
	if asked == nil || started.HandedOff&^asked.Fds != 0 {
		return fmt.Errorf("the reply claims handed-off fds %d that were not offered", started.HandedOff)
	}
	return nil
}
