package fakessh_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// hostileSSHMode is the argv[1] under which the test binary plays a hostile
// program under `mitogen run`: it joins the run like our ssh does, then
// sends the master's FakeSSH handle StartSlaveRequests whose ProcessSpec
// declares 2^31-1 argv strings or env entries, and prints each reply.
const hostileSSHMode = "hostile-ssh"

func hostileSSH() int {
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
	huge := func(hdr ...byte) []byte {
		b := binary.BigEndian.AppendUint32(hdr, 1<<31-1)
		return append(b, make([]byte, 8)...)
	}
	// FakeSSHStartSlaveArgs{1: StartSlaveRequest{4: ProcessSpec{...}}}
	wrap := func(spec []byte) []byte {
		req := append([]byte{byte(thrift.STRUCT), 0, 4}, spec...)
		return append([]byte{byte(thrift.STRUCT), 0, 1}, req...)
	}
	for _, tc := range []struct {
		name string
		args []byte
	}{
		{"argv", wrap(huge(byte(thrift.LIST), 0, 1, byte(thrift.STRING)))},
		{"env", wrap(huge(byte(thrift.MAP), 0, 5, byte(thrift.STRING), byte(thrift.STRING)))},
	} {
		rc := r.NewReceiver()
		method := mitogen.FakeSSHStartSlaveMethod
		b := make([]byte, thrift.Binary.MessageBeginLength(method))
		thrift.Binary.WriteMessageBegin(b, method, thrift.CALL, 1)
		r.Send(&wire.Message{Dst: mitogen.MASTER_ID, Handle: int32(handle), ReplyTo: rc.Handle(), Data: append(b, tc.args...)})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		m, err := rc.Get(ctx)
		cancel()
		rc.Close()
		if err != nil {
			fmt.Printf("%s: no reply: %v\n", tc.name, err)
			return 2
		}
		_, typ, _, n, err := thrift.Binary.ReadMessageBegin(m.Data)
		if err != nil || typ != thrift.EXCEPTION {
			fmt.Printf("%s: reply type %d (%v)\n", tc.name, typ, err)
			continue
		}
		ex := thrift.NewApplicationException(0, "")
		ex.FastRead(m.Data[n:])
		fmt.Printf("%s: EXCEPTION %d %s\n", tc.name, ex.TypeID(), ex.Error())
	}
	return 0
}

// A program under `mitogen run` that sends the master's FakeSSH handle a
// StartSlaveRequest declaring 2^31-1 argv strings, or an env map of 2^31-1
// entries, gets a PROTOCOL_ERROR exception; the master stays alive and
// serves the next ssh.
func TestHostileStartSlaveHugeSizes(t *testing.T) {
	_, dest := chain(t, 1)
	st, out, errs := runUnder(t, dest, nil, nil, os.Args[0], hostileSSHMode)
	if st != 0 {
		t.Fatalf("hostile program: status %d, stdout %q, stderr %q", st, out, errs)
	}
	for _, name := range []string{"argv", "env"} {
		want := fmt.Sprintf("%s: EXCEPTION %d ", name, thrift.PROTOCOL_ERROR)
		if !strings.Contains(out, want) || !strings.Contains(out, "2147483647 elements") {
			t.Errorf("%s: output %q, want a PROTOCOL_ERROR naming the declared size", name, out)
		}
	}
	st, out, errs = runUnder(t, dest, nil, nil, "ssh", "h", "echo still here")
	if st != 0 || out != "still here\n" {
		t.Fatalf("ssh after the hostile program: status %d, stdout %q, stderr %q", st, out, errs)
	}
}
