package fakessh_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// hostileHandoffMode is the argv[1] under which the test binary plays a
// program under `mitogen run` that joins the run like our ssh and sends
// start_slave with a handoff of its own making inside the ProcessSpec
// (where only the master may put one), naming a socket it listens on. It
// prints the reply's handed_off and whether the destination connected.
const hostileHandoffMode = "hostile-handoff"

type atHandle struct {
	r      *core.Router
	handle int32
}

func (h atHandle) CallFunction(ctx context.Context, method string, args, result thrift.FastCodec) error {
	return h.r.CallAt(ctx, core.CallTarget{Context: mitogen.MASTER_ID, Handle: h.handle}, method, args, result)
}

func hostileHandoff() int {
	handle, err := strconv.Atoi(os.Getenv(fakessh.EnvHandle))
	if err != nil {
		fmt.Println("no handle:", err)
		return 2
	}
	conn, err := net.Dial("unix", os.Getenv(fakessh.EnvSocket))
	if err != nil {
		fmt.Println("dial:", err)
		return 2
	}
	conn.Write([]byte(os.Getenv(fakessh.EnvSecret) + "\n"))
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r, err := core.Boot(conn, cfg, nil)
	if err != nil {
		fmt.Println("boot:", err)
		return 2
	}
	defer r.Close()
	name := fmt.Sprintf("mitogen-fd-hostile%d", os.Getpid())
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@" + name, Net: "unix"})
	if err != nil {
		fmt.Println("listen:", err)
		return 2
	}
	defer ln.Close()
	boot, _ := process.BootID()
	fc := &mitogen.FakeSSHClient{Caller: atHandle{r: r, handle: int32(handle)}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	started, err := fc.StartSlave(ctx, &mitogen.StartSlaveRequest{Host: "h", Spec: &mitogen.ProcessSpec{Command: "true",
		Handoff: &mitogen.FdHandoff{Socket: name, Token: make([]byte, 32), Fds: 3, PeerPid: int32(os.Getpid()), BootId: boot}}})
	if err != nil {
		fmt.Println("start_slave:", err)
		return 2
	}
	// The reply came after any connect the destination made.
	connected := "none"
	raw, _ := ln.SyscallConn()
	raw.Control(func(fd uintptr) {
		if nfd, _, err := unix.Accept4(int(fd), unix.SOCK_CLOEXEC); err == nil {
			unix.Close(nfd)
			connected = "yes"
		}
	})
	fmt.Printf("handed_off=%d connect=%s\n", started.HandedOff, connected)
	return 0
}

// A fake ssh cannot make the destination connect anywhere (or take
// descriptors from anyone) by putting a handoff in the ProcessSpec itself:
// the master replaces it with its own decision on the ssh's offer (here:
// none), so the destination never connects and relays.
func TestHostileHandoffInSpecIgnored(t *testing.T) {
	_, dest := chain(t, 1)
	st, out, errs := runUnder(t, dest, nil, nil, os.Args[0], hostileHandoffMode)
	if st != 0 || strings.TrimSpace(out) != "handed_off=0 connect=none" {
		t.Fatalf("hostile program: status %d, stdout %q, stderr %q; want handed_off=0 connect=none", st, out, errs)
	}
}
