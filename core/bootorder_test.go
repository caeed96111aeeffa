package core_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// TestBootIsTheFirstFrame: a child being started must see BOOTSTRAP before
// anything else, however busy the router is broadcasting to its children.
// Here a child announces and removes a grandchild in a loop, so the master
// sends DEL_ROUTE to every other child all the time. Before the fix, a
// child appeared among the router's children before its Boot was queued,
// got a DEL_ROUTE first, refused it ("first frame is for handle 104") and
// exited: fakessh's "closed by peer before Ready" on a loaded machine.
func TestBootIsTheFirstFrame(t *testing.T) {
	m, _ := testMaster(t)

	// The flooding child, spoken to with raw frames.
	a, b := socketpair(t)
	const flooder = 7
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, _ = m.StartChild(ctx, a, flooder, "flooder")
	}()
	boot, err := wire.ReadFrame(b, 1<<20)
	if err != nil || boot.Handle != mitogen.BOOTSTRAP {
		t.Fatalf("flooder's first frame: %v %v", boot.String(), err)
	}
	write := func(c net.Conn, msg wire.Message) error {
		_, err := c.Write(wire.Encode(&msg))
		return err
	}
	ready := thrift.FastMarshal(&mitogen.Ready{ContextId: flooder, Pid: 1})
	if err := write(b, wire.Message{Dst: 0, Src: flooder, Auth: flooder, Handle: boot.ReplyTo, Data: ready}); err != nil {
		t.Fatal(err)
	}
	grand, err := m.AllocateIDFor(flooder)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // drain what the master sends the flooder
		defer wg.Done()
		for {
			if _, err := wire.ReadFrame(b, 1<<20); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		u := thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: grand, Reason: "flood"})
		for {
			select {
			case <-stop:
				return
			default:
			}
			if write(b, wire.Message{Dst: 0, Src: flooder, Auth: flooder, Handle: mitogen.ADD_ROUTE, Data: u}) != nil ||
				write(b, wire.Message{Dst: 0, Src: flooder, Auth: flooder, Handle: mitogen.DEL_ROUTE, Data: u}) != nil {
				return
			}
		}
	}()
	defer func() { close(stop); b.Close(); wg.Wait() }()

	for i := int32(0); i < 200; i++ {
		c, d := socketpair(t)
		first := make(chan wire.Message, 1)
		go func() {
			msg, err := wire.ReadFrame(d, 1<<20)
			if err != nil {
				msg = wire.Message{Handle: -1}
			}
			first <- msg
			d.Close()
		}()
		// The child hangs up once it has its first frame, which ends
		// StartChild; the timeout is only a way out (a shorter one could
		// close the stream before a loaded writer sent Boot at all).
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, _, _ = m.StartChild(ctx, c, 100+i, fmt.Sprint("boot-order-", i))
		cancel()
		if msg := <-first; msg.Handle != mitogen.BOOTSTRAP {
			t.Fatalf("start %d: the child's first frame is %s, not BOOTSTRAP", i, msg.String())
		}
	}
}
