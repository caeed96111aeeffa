package kitexconn

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/server"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/examples/kitex/kitex_gen/echo"
	echosvc "github.com/seed-a176d0ab/mitogen-go/examples/kitex/kitex_gen/echo/echo"
)

// The test binary is its own agent: in every context it starts, it serves
// the example's Echo service with Kitex, as "echo".
func TestMain(m *testing.M) {
	mitogen.Main(mitogen.WithService(Serve("echo", func(opts ...server.Option) server.Server {
		return echosvc.NewServer(new(pidEcho), opts...)
	})))
	os.Exit(m.Run())
}

// pidEcho answers with the payload and its process ID as the message;
// asked to "block", it creates the file named by the payload and never
// answers.
type pidEcho struct{}

func (*pidEcho) Echo(_ context.Context, req *echo.EchoRequest) (*echo.EchoReply, error) {
	if req.Message == "block" {
		os.WriteFile(string(req.Payload), nil, 0o600) // "I am blocked"
		select {}                                     // until the process ends
	}
	return &echo.EchoReply{Message: strconv.Itoa(os.Getpid()), Payload: req.Payload, Uid: int32(os.Getuid())}, nil
}

// A stock Kitex client in the master calls the Kitex server in a context
// (an agent process started by the master, and one started by that
// context), many calls at once: gonet dials a connection for each call in
// flight.
func TestKitexCallsIntoContexts(t *testing.T) {
	ctx := testCtx(t)
	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c1, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := c1.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]bool{}
	for _, c := range []*mitogen.Context{c1, c2} {
		cli, err := echosvc.NewClient("echo", ClientOptions(c.Context, "echo")...)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		var mu sync.Mutex
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				payload := []byte(fmt.Sprintf("call %d", i))
				r, err := cli.Echo(ctx, &echo.EchoRequest{Payload: payload})
				if err == nil && string(r.Payload) != string(payload) {
					err = fmt.Errorf("payload %q came back as %q", payload, r.Payload)
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				pids[r.Message] = true
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("%s: %v", c, err)
		}
	}
	if len(pids) != 2 || pids[strconv.Itoa(os.Getpid())] {
		t.Fatalf("answered by processes %v; want the two contexts' agents", pids)
	}
}

// A context serving Kitex still ends on SIGTERM: Kitex's server would
// otherwise take SIGINT, SIGTERM and SIGHUP for itself and leave the agent
// running once it stopped.
func TestServingContextStillEndsOnSIGTERM(t *testing.T) {
	ctx := testCtx(t)
	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	cli, err := echosvc.NewClient("echo", ClientOptions(c.Context, "echo")...)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cli.Echo(ctx, &echo.EchoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(r.Message)
	if err != nil || pid == os.Getpid() {
		t.Fatalf("agent pid %q", r.Message)
	}
	// The pid is the agent this test's master started and has not reaped.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.Agent().Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			t.Fatal("the context still answers after SIGTERM")
		}
		if err != nil {
			break // the context is gone
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sequential calls reuse one pooled connection: a connection Kitex puts
// back is found again under the address it dialed (a dial per call would
// double every call's cost).
func TestKitexReusesConnections(t *testing.T) {
	ctx := testCtx(t)
	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	d := &Dialer{Context: c.Context, Name: "echo"}
	cli, err := echosvc.NewClient("echo", append(ClientOptions(c.Context, "echo"), client.WithDialer(d))...)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := cli.Echo(ctx, &echo.EchoRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.dials.Load(); n != 1 {
		t.Fatalf("20 sequential calls dialed %d connections, want 1", n)
	}
}

// A Kitex echo call (64 B) to a local context's agent.
func BenchmarkKitexLocalContext(b *testing.B) {
	ctx := b.Context()
	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	c, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		b.Fatal(err)
	}
	d := &Dialer{Context: c.Context, Name: "echo"}
	cli, err := echosvc.NewClient("echo", append(ClientOptions(c.Context, "echo"), client.WithDialer(d))...)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { b.ReportMetric(float64(d.dials.Load()), "dials") }()
	req := &echo.EchoRequest{Payload: make([]byte, 64)}
	for b.Loop() {
		if _, err := cli.Echo(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// Concurrent calls dial a connection each; once they are done, Kitex's
// pool keeps at most its idle limit (10) and closes the rest, and the
// server side lets them go: the listener's count of open connections
// falls back to that limit.
func TestKitexConcurrentConnectionsAreReleased(t *testing.T) {
	w := newWorld(t)
	ctx := testCtx(t)
	l, err := ListenConfig{}.listen(w.child, "echo")
	if err != nil {
		t.Fatal(err)
	}
	exit := make(chan error)
	svr := echosvc.NewServer(new(pidEcho), ServerOptions(l, exit)...)
	ran := make(chan error, 1)
	go func() { ran <- svr.Run() }()
	defer func() {
		// The routers first: their connections close, so Kitex's
		// graceful stop has none to wait for.
		w.master.Close()
		w.child.Close()
		close(exit)
		<-ran
	}()

	cli, err := echosvc.NewClient("echo", ClientOptions(w.c, "echo")...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cli.Echo(ctx, &echo.EchoRequest{Payload: []byte{byte(i)}}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "connections beyond the pool's idle limit to be released", func() bool { return l.openConns() <= 10 })
}

// A call in flight when the serving context dies returns an error: the
// connection's streams fail when their peer context disconnects, so the
// Kitex client does not wait forever (it has no timeout here).
func TestKitexCallEndsWhenTheContextDies(t *testing.T) {
	ctx := testCtx(t)
	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		t.Fatal(err)
	}
	cli, err := echosvc.NewClient("echo", ClientOptions(c.Context, "echo")...)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cli.Echo(ctx, &echo.EchoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(r.Message)
	if err != nil || pid == os.Getpid() {
		t.Fatalf("agent pid %q", r.Message)
	}
	blocked := filepath.Join(t.TempDir(), "blocked")
	done := make(chan error, 1)
	go func() {
		_, err := cli.Echo(context.Background(), &echo.EchoRequest{Message: "block", Payload: []byte(blocked)})
		done <- err
	}()
	waitFor(t, "the call to be served", func() bool { _, err := os.Stat(blocked); return err == nil })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a call to a killed context succeeded")
		}
	case <-ctx.Done():
		t.Fatal("a call to a killed context is still waiting")
	}
}
