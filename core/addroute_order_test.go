package core_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// A grandchild's first frame after Ready reaches the master: the route to
// it is announced (ADD_ROUTE) before anything the grandchild sends after
// Ready is forwarded up. Before the fix, StartChild sent ADD_ROUTE from its
// own goroutine once it had woken on the Ready, while the stream's reader
// went on forwarding the next frame, which could overtake it: the master
// dropped that frame as forged (fakessh's ssh booted under a context calls
// the master at once). Ready and the next frame here come in one write.
func TestFrameAfterReadyFollowsAddRoute(t *testing.T) {
	m, _ := testMaster(t)
	a, _, _ := startChild(t, m, m.AllocateID())
	got := make(chan int32, 64)
	h := m.AddHandler(0, nil, func(msg *wire.Message, _ *core.Stream) { got <- msg.Src })
	for i := 0; i < 30; i++ {
		id := grantTo(t, m, a)
		x, y := socketpair(t)
		go func() {
			boot, err := wire.ReadFrame(y, 1<<20)
			if err != nil {
				return
			}
			ready := wire.Encode(&wire.Message{Dst: a.ID(), Src: id, Auth: id, Handle: boot.ReplyTo,
				Data: thrift.FastMarshal(&mitogen.Ready{ContextId: id, Pid: 1})})
			first := wire.Encode(&wire.Message{Dst: mitogen.MASTER_ID, Src: id, Auth: id, Handle: h, Data: []byte("hello")})
			y.Write(append(ready, first...))
			for {
				if _, err := wire.ReadFrame(y, 1<<20); err != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := a.StartChild(ctx, x, id, fmt.Sprint("grandchild-", i))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case src := <-got:
			if src != id {
				t.Fatalf("got a frame from %d, want %d", src, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("start %d: the grandchild's first frame after Ready never reached the master", i)
		}
		y.Close()
	}
}
