package persist

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// socketPair returns the two ends of a unix stream socketpair.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// The service's handle takes calls from the master's clients only: a child
// context that was not admitted through the socket (a context of a held
// chain, say) is refused, and so is a client once it has left.
func TestServiceRefusesOtherContexts(t *testing.T) {
	r := core.NewMaster(core.DefaultConfig())
	defer r.Close()
	st := &server{Server: &Server{}, r: r, members: map[int32]bool{}, chains: map[string]*held{}, stopped: make(chan struct{})}
	st.ctx = r.Lifetime()
	handle := r.ServeOn(st.isMember, func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchPersistentMaster(ctx, st, method, args)
	})
	a, b := socketPair(t)
	id := r.AllocateID()
	bootErr := make(chan error, 1)
	var child *core.Router
	go func() {
		var err error
		child, err = core.Boot(b, core.DefaultConfig(), nil)
		bootErr <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := r.StartChild(ctx, a, id, "not-a-client"); err != nil {
		t.Fatal(err)
	}
	if err := <-bootErr; err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	svc := &mitogen.PersistentMasterClient{Caller: handleCaller{r: child, handle: handle}}
	_, err := svc.Status(ctx)
	var de *core.DeadError
	if !errors.As(err, &de) || de.Reason != mitogen.DeadReason_REFUSED {
		t.Fatalf("status from a context that is not a client: %v; want Dead{REFUSED}", err)
	}
	// The same context as a member is served: the policy is what refused it.
	st.mu.Lock()
	st.members[id] = true
	st.mu.Unlock()
	if _, err := svc.Status(ctx); err != nil {
		t.Fatalf("status from a member: %v", err)
	}
	st.mu.Lock()
	delete(st.members, id)
	st.mu.Unlock()
	if err := svc.Stop(ctx); !errors.As(err, &de) || de.Reason != mitogen.DeadReason_REFUSED {
		t.Fatalf("stop from a client that left: %v; want Dead{REFUSED}", err)
	}
	select {
	case <-st.stopped:
		t.Fatal("a refused stop stopped the master")
	default:
	}
}
