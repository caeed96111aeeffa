// Command hostile is a program run under `mitogen run` that joins the run
// as fakessh's ssh would and then misbehaves in every way a child context
// can: containers declaring 2^31-1 elements in requests and logs, route
// updates for contexts it does not own, ID requests, and messages to
// handles it was never given. The test that builds it then checks that
// the master is unharmed: the next ssh of the same run succeeds.
package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// lockedConn lets raw frames be written between the router's own writes.
type lockedConn struct {
	net.Conn
	mu sync.Mutex
}

func (c *lockedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

const huge = 1<<31 - 1

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func run() error {
	handle, err := strconv.Atoi(os.Getenv("MITOGEN_FAKESSH_HANDLE"))
	if err != nil {
		return err
	}
	raw, err := net.Dial("unix", os.Getenv("MITOGEN_FAKESSH_SOCKET"))
	if err != nil {
		return err
	}
	if _, err := raw.Write([]byte(os.Getenv("MITOGEN_FAKESSH_SECRET") + "\n")); err != nil {
		return err
	}
	conn := &lockedConn{Conn: raw}
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r, err := core.Boot(conn, cfg, nil)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	me := r.ID()
	send := func(m wire.Message) {
		m.Src, m.Auth = me, me
		conn.Write(wire.Encode(&m))
	}
	b := thrift.Binary

	// FakeSSH:start_slave with argv declaring 2^31-1 strings, then with an
	// env map declaring 2^31-1 entries.
	for _, field := range []string{"argv", "env"} {
		p := b.AppendMessageBegin(nil, "FakeSSH:start_slave", thrift.CALL, 1)
		p = b.AppendFieldBegin(p, thrift.STRUCT, 1) // req
		p = b.AppendFieldBegin(p, thrift.STRING, 1)
		p = b.AppendString(p, "h")
		p = b.AppendFieldBegin(p, thrift.STRUCT, 4) // spec
		if field == "argv" {
			p = b.AppendFieldBegin(p, thrift.LIST, 1)
			p = b.AppendListBegin(p, thrift.STRING, huge)
		} else {
			p = b.AppendFieldBegin(p, thrift.MAP, 5)
			p = b.AppendMapBegin(p, thrift.STRING, thrift.STRING, huge)
		}
		p = append(p, make([]byte, 64)...)
		send(wire.Message{Dst: mitogen.MASTER_ID, Handle: int32(handle), ReplyTo: 0, Data: p})
	}
	// FORWARD_LOG whose attrs declare 2^31-1 elements.
	p := b.AppendFieldBegin(nil, thrift.STRING, 3)
	p = b.AppendString(p, "hostile log")
	p = b.AppendFieldBegin(p, thrift.LIST, 4)
	p = b.AppendListBegin(p, thrift.STRUCT, huge)
	send(wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.FORWARD_LOG, Data: p})

	// Route updates for contexts that are not ours to announce or remove:
	// the master, our ancestors, our siblings and IDs never allocated to us.
	for id := int32(0); id < 40; id++ {
		if id == me {
			continue
		}
		u := thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: id, Reason: "hostile"})
		send(wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.DEL_ROUTE, Data: u})
		send(wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.ADD_ROUTE, Data: u})
	}
	// ID requests from a context that may start no children.
	for i := 0; i < 64; i++ {
		req := thrift.FastMarshal(&mitogen.AllocateIDRequest{Count: 1 << 16})
		send(wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.ALLOCATE_ID, Data: req})
	}
	// Calls and shutdowns the master must refuse from a child.
	send(wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.SHUTDOWN})
	call := b.AppendMessageBegin(nil, "Agent:sleep", thrift.CALL, 2)
	call = append(call, 0)
	send(wire.Message{Dst: mitogen.MASTER_ID, Handle: mitogen.CALL_FUNCTION, Data: call})
	for h := int32(mitogen.FIRST_DYNAMIC_HANDLE); h < mitogen.FIRST_DYNAMIC_HANDLE+64; h++ {
		send(wire.Message{Dst: mitogen.MASTER_ID, Handle: h, Data: []byte("junk")})
	}
	// Give the master time to act on everything before the stream ends.
	time.Sleep(500 * time.Millisecond)
	r.Close()
	return nil
}
