package fakessh

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// joinRun connects to a run's socket as a fake ssh would and answers Boot;
// it returns the connection and the context ID it was given.
func joinRun(t *testing.T, sock, secret string) (net.Conn, int32) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write([]byte(secret + "\n"))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	boot, err := wire.ReadFrame(c, 1<<20)
	if err != nil {
		t.Fatalf("not admitted (no Boot): %v", err)
	}
	c.SetReadDeadline(time.Time{})
	var b mitogen.Boot
	if _, err := b.FastRead(boot.Data); err != nil {
		t.Fatal(err)
	}
	c.Write(wire.Encode(&wire.Message{Dst: b.ParentId, Src: b.ContextId, Auth: b.ContextId, Handle: boot.ReplyTo,
		Data: thrift.FastMarshal(&mitogen.Ready{ContextId: b.ContextId})}))
	go io.Copy(io.Discard, c)
	return c, b.ContextId
}

// A fake ssh context is a leaf: whatever route updates it sends, the
// destination stays reachable and the run's next ssh is admitted.
func TestHostileSSHContextCannotReroute(t *testing.T) {
	cfg := core.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r := core.NewMaster(cfg)
	defer r.Close()
	// The destination: an in-process agent child of the master.
	a, b := net.Pipe()
	booted := make(chan *core.Router, 1)
	go func() {
		cr, err := core.Boot(b, cfg, func(cr *core.Router) { (&agent.Service{Router: cr}).Serve() })
		if err != nil {
			t.Error(err)
		}
		booted <- cr
	}()
	dest, _, err := r.StartChild(context.Background(), a, r.AllocateID(), "dest")
	if err != nil {
		t.Fatal(err)
	}
	if cr := <-booted; cr != nil {
		defer cr.Close()
	}

	st := &run{Runner: &Runner{Router: r, Default: dest}, members: map[int32]bool{}}
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secret := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	go st.accept(ctx, ln, secret)

	evil, id := joinRun(t, sock, secret)
	send := func(handle, target int32) {
		evil.Write(wire.Encode(&wire.Message{Dst: mitogen.MASTER_ID, Src: id, Auth: id, Handle: handle,
			Data: thrift.FastMarshal(&mitogen.RouteUpdate{TargetId: target})}))
	}
	send(mitogen.DEL_ROUTE, mitogen.MASTER_ID)
	send(mitogen.DEL_ROUTE, dest.ID())
	for next := id + 1; next < id+4; next++ {
		send(mitogen.ADD_ROUTE, next)
	}
	rc := r.NewReceiver()
	defer rc.Close()
	evil.Write(wire.Encode(&wire.Message{Dst: mitogen.MASTER_ID, Src: id, Auth: id, Handle: rc.Handle(), Data: []byte("barrier")}))
	if _, err := rc.Get(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if err := dest.Agent().Ping(pctx); err != nil {
		t.Fatalf("destination unreachable after a hostile ssh context's route updates: %v", err)
	}
	_, id2 := joinRun(t, sock, secret) // the run's next ssh
	if id2 != id+1 {
		t.Fatalf("next ssh got ID %d, want %d", id2, id+1)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
