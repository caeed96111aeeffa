//go:generate go run ./internal/kitexgen

// Command kitex is the example of package kitexconn: a Kitex service
// (echo.thrift, compiled into kitex_gen/ by Kitex's own generator; see
// internal/kitexgen) served inside every context this binary runs as, and
// called from the master with a stock Kitex client, through any chain of
// hops and with no port opened anywhere.
//
//	kitex -via ssh:web1,sudo:root -message hello
//
// starts the chain (the bootstrap ships this very binary to each hop, so
// nothing needs installing there), calls Echo.echo in its last context and
// prints the reply. -bench N instead measures N calls through a local
// context beside the same calls to a Kitex server over loopback TCP, and
// prints a row of the README's benchmark table.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/server"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/examples/kitex/kitex_gen/echo"
	echosvc "github.com/seed-a176d0ab/mitogen-go/examples/kitex/kitex_gen/echo/echo"
	"github.com/seed-a176d0ab/mitogen-go/kitexconn"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

// listenerName is what the service listens as in each context.
const listenerName = "echo"

// handler implements the Echo service.
type handler struct{}

// Echo answers with the request's message, payload, and who answered.
func (handler) Echo(_ context.Context, req *echo.EchoRequest) (*echo.EchoReply, error) {
	host, _ := os.Hostname()
	return &echo.EchoReply{
		Message: fmt.Sprintf("%s (uid %d, pid %d)", req.Message, os.Getuid(), os.Getpid()),
		Payload: req.Payload,
		Uid:     int32(os.Getuid()),
		Host:    host,
	}, nil
}

func newServer(opts ...server.Option) server.Server {
	return echosvc.NewServer(new(handler), opts...)
}

func main() {
	// Kitex logs each server start at Info; the example's contexts start
	// one each.
	klog.SetLevel(klog.LevelWarn)
	// In a context (argv[1] == "agent") this serves the Echo service and
	// never returns; in the program proper it returns at once.
	mitogen.Main(mitogen.WithService(kitexconn.Serve(listenerName, newServer)))

	via := flag.String("via", "local", "comma-separated hops to the context serving the call (e.g. ssh:user@host:port,sudo:root)")
	identity := flag.String("identity", "", "ssh hops: identity file")
	var sshOpts multiFlag
	flag.Var(&sshOpts, "ssh-option", "ssh hops: an -o KEY=VALUE option (repeatable)")
	sudoPasswordFile := flag.String("sudo-password-file", "", "sudo hops: a file holding the password sudo asks for")
	message := flag.String("message", "hello", "the message to echo")
	bench := flag.Int("bench", 0, "measure this many calls through a local context and over loopback TCP, print a benchmark row")
	serveTCP := flag.Bool("serve-tcp", false, "serve Echo on a loopback TCP port, print its address (for -bench)")
	flag.Parse()

	var err error
	switch {
	case *serveTCP:
		err = runTCPServer()
	case *bench > 0:
		err = runBench(*bench)
	default:
		err = run(*via, *identity, sshOpts, *sudoPasswordFile, *message)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kitex example: %v\n", err)
		os.Exit(1)
	}
}

// run starts the chain, calls Echo.echo in its last context and prints
// the reply.
func run(via, identity string, sshOpts []string, sudoPasswordFile, message string) error {
	var sudoPassword string
	if sudoPasswordFile != "" {
		b, err := os.ReadFile(sudoPasswordFile)
		if err != nil {
			return err
		}
		sudoPassword = strings.TrimRight(string(b), "\r\n")
	}
	var hops []mitogen.Hop
	for _, spec := range strings.Split(via, ",") {
		h := mitogen.Hop{Spec: spec}
		switch {
		case strings.HasPrefix(spec, "ssh:"):
			h.Options = &ssh.Options{Identity: identity, Options: sshOpts}
		case spec == "sudo" || strings.HasPrefix(spec, "sudo:"):
			h.Options = &sudo.Options{Password: sudoPassword}
		}
		hops = append(hops, h)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.DefaultConfig())
	if err != nil {
		return err
	}
	defer m.Close()
	c, err := m.Connect(ctx, hops...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", via, err)
	}
	cli, err := echosvc.NewClient("echo", kitexconn.ClientOptions(c.Context, listenerName)...)
	if err != nil {
		return err
	}
	reply, err := cli.Echo(ctx, &echo.EchoRequest{Message: message})
	if err != nil {
		return fmt.Errorf("Echo.echo in %s: %w", c, err)
	}
	fmt.Printf("%s: %s\n", c, reply.Message)
	fmt.Printf("uid=%d host=%s\n", reply.Uid, reply.Host)
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (f *multiFlag) String() string     { return strings.Join(*f, ",") }
func (f *multiFlag) Set(v string) error { *f = append(*f, v); return nil }
