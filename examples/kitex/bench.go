package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/remote/trans/gonet"
	"github.com/cloudwego/kitex/server"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/examples/kitex/kitex_gen/echo"
	echosvc "github.com/seed-a176d0ab/mitogen-go/examples/kitex/kitex_gen/echo/echo"
	"github.com/seed-a176d0ab/mitogen-go/kitexconn"
)

// runTCPServer serves Echo with Kitex's defaults (the netpoll transport) on
// a loopback TCP port, prints the address on stdout and serves until
// stdin ends (its parent, the benchmark, closed it or died).
func runTCPServer() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	exit := make(chan error, 1)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		exit <- nil
	}()
	svr := echosvc.NewServer(new(handler), server.WithListener(ln),
		server.WithExitSignal(func() <-chan error { return exit }))
	fmt.Println(ln.Addr())
	return svr.Run()
}

// runBench times n Echo calls (64-byte payload) through a local context
// beside the same calls to a separate process serving Echo over loopback
// TCP, with Kitex's default transport and with gonet (the transport
// kitexconn uses), interleaved in rounds so that the machine's noise falls
// on all alike. It prints Markdown rows of the README's table: medians,
// and the ratio of ours to each anchor.
func runBench(n int) error {
	ctx := context.Background()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.Command(self, "-serve-tcp")
	srv.Stderr = os.Stderr
	stdin, err := srv.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { stdin.Close(); srv.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return fmt.Errorf("TCP server: %w", err)
	}
	addr := strings.TrimSpace(line)

	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		return err
	}
	defer m.Close()
	c, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		return err
	}
	viaCtx, err := echosvc.NewClient("echo", kitexconn.ClientOptions(c.Context, listenerName)...)
	if err != nil {
		return err
	}
	tcp, err := echosvc.NewClient("echo", client.WithHostPorts(addr))
	if err != nil {
		return err
	}
	tcpGonet, err := echosvc.NewClient("echo", client.WithHostPorts(addr),
		client.WithTransHandlerFactory(gonet.NewCliTransHandlerFactory()), client.WithDialer(gonet.NewDialer()))
	if err != nil {
		return err
	}
	clients := []echosvc.Client{viaCtx, tcp, tcpGonet}
	req := &echo.EchoRequest{Message: "bench", Payload: bytes.Repeat([]byte("x"), 64)}
	call := func(cli echosvc.Client) (time.Duration, error) {
		t := time.Now()
		r, err := cli.Echo(ctx, req)
		d := time.Since(t)
		if err == nil && !bytes.Equal(r.Payload, req.Payload) {
			err = errors.New("payload changed on the way")
		}
		return d, err
	}
	for _, cli := range clients { // warm up: connections, pools, code paths
		for range 200 {
			if _, err := call(cli); err != nil {
				return err
			}
		}
	}
	times := make([][]time.Duration, len(clients))
	const rounds = 20
	for range rounds {
		for i, cli := range clients {
			for range max(n/rounds, 1) {
				d, err := call(cli)
				if err != nil {
					return err
				}
				times[i] = append(times[i], d)
			}
		}
	}
	ours, netpoll, gonetTCP := medianUs(times[0]), medianUs(times[1]), medianUs(times[2])
	fmt.Printf("| Kitex echo call (64 B) through a local context | %.4g µs | Kitex over loopback TCP (default transport) | %.4g µs | %.3g× | ≤ 2× |\n", ours, netpoll, ours/netpoll)
	fmt.Printf("| Kitex echo call (64 B) through a local context | %.4g µs | Kitex over loopback TCP (gonet transport) | %.4g µs | %.3g× | |\n", ours, gonetTCP, ours/gonetTCP)
	return nil
}

func medianUs(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Microsecond)
}
