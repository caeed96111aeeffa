// Package kitexconn carries Kitex RPC over mitogen contexts: a Kitex client
// in the master (or in any context) calls a Kitex server running inside
// another context, however many ssh, sudo or other hops away, with no port
// opened anywhere.
//
// It holds three things:
//   - Conn, a net.Conn over a pair of mitogen byte streams (lossless, with
//     credit flow control; see core.ByteReader), and Dial, which opens one
//     to a Listener in another context with one CALL_FUNCTION round trip;
//   - Listener, a net.Listener fed by those dials, and Serve, a registrar
//     for mitogen.WithService that runs a Kitex server on one in every
//     context the program's binary is shipped to;
//   - ServerOptions and ClientOptions, the Kitex options that put a server
//     on a Listener and a client on Dial. Both use Kitex's gonet transport
//     (its default netpoll transport takes only TCP and unix sockets).
//
// gonet carries one request at a time per connection: concurrent calls
// dial more connections, and Kitex's client pools idle ones for reuse. A
// dial is one round trip to the context; a Listener bounds the connections
// open at once (ListenConfig). Connections hold no goroutine of their own.
//
// Importing this package links Kitex's client and server (~320 packages,
// ~20 MB): keep it out of binaries that must stay small. The mitogen CLI
// does not import it.
//
// Serving, in a program that calls mitogen.Main first:
//
//	mitogen.Main(mitogen.WithService(kitexconn.Serve("echo",
//		func(opts ...server.Option) server.Server { return echo.NewServer(handler{}, opts...) })))
//
// Calling, from the master:
//
//	c, err := m.Connect(ctx, mitogen.SSH("web1", nil), mitogen.Sudo("", nil))
//	cli, err := echo.NewClient("echo", kitexconn.ClientOptions(c.Context, "echo")...)
package kitexconn

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/remote/trans/gonet"
	"github.com/cloudwego/kitex/server"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

// ServerOptions are the Kitex server options that serve on l: the gonet
// transport over l, and exit as the server's exit signal (Run stops the
// server and returns when exit is closed or sends). This replaces Kitex's
// default of stopping on SIGINT, SIGTERM and SIGHUP, which would take
// those signals from an agent, whose life its parent decides.
func ServerOptions(l *Listener, exit <-chan error) []server.Option {
	return []server.Option{
		server.WithListener(l),
		server.WithTransServerFactory(gonet.NewTransServerFactory()),
		server.WithTransHandlerFactory(gonet.NewSvrTransHandlerFactory()),
		server.WithExitSignal(func() <-chan error { return exit }),
	}
}

// Serve returns a registrar for mitogen.WithService (or
// agent.RunConfig.Services) that, in every context, listens as name and
// runs the Kitex server newServer makes with ServerOptions (typically the
// generated NewServer with the service's handler). When the context shuts
// down the server stops, closing the listener.
func Serve(name string, newServer func(opts ...server.Option) server.Server) func(r *core.Router) error {
	return func(r *core.Router) error {
		l, err := ListenConfig{}.listen(r, name)
		if err != nil {
			return err
		}
		exit := make(chan error)
		svr := newServer(ServerOptions(l, exit)...)
		if svr == nil {
			l.Close()
			return fmt.Errorf("kitexconn: listener %q: no server made", name)
		}
		// Kitex closes the listener itself once told to stop: closing it
		// first would make it log a failed Accept.
		r.OnShutdown(func() { close(exit) })
		go func() {
			defer l.Close()
			if err := svr.Run(); err != nil {
				r.Logger().Error("kitex server stopped", "listener", name, "err", err)
			}
		}()
		return nil
	}
}

// DefaultDialTimeout is the connect timeout ClientOptions sets (Kitex's own
// default of 50 ms is meant for a LAN, not for a chain of hops).
const DefaultDialTimeout = 10 * time.Second

// Dialer opens Kitex client connections to the listener Name in Context;
// it implements Kitex's remote.Dialer and ignores the address Kitex
// passes (see Address).
type Dialer struct {
	Context *core.Context
	Name    string

	dials atomic.Int64 // connections dialed, for tests
}

// DialTimeout implements remote.Dialer: Dial bounded by timeout (none when
// it is not positive), returning a connection with the buffered reader and
// writer gonet's client asks for.
func (d *Dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d.dials.Add(1)
	c, err := Dial(ctx, d.Context, d.Name)
	if err != nil {
		return nil, err
	}
	return newBufConn(c, dialedAddr{network, address}), nil
}

// Address is the address ClientOptions gives Kitex for the listener name
// in context c: Kitex keys its connection pool by it, and needs it to
// parse as a unix socket path; no such path is ever opened.
func Address(c *core.Context, name string) string {
	return fmt.Sprintf("mitogen/context/%d/%s", c.ID(), name)
}

// ClientOptions are the Kitex client options that call the server
// listening as name in context c (see Serve): the gonet transport, Dialer
// as the dialer, Address as the one instance, and DefaultDialTimeout as
// the connect timeout. Options given after them override them.
func ClientOptions(c *core.Context, name string) []client.Option {
	return []client.Option{
		client.WithTransHandlerFactory(gonet.NewCliTransHandlerFactory()),
		client.WithDialer(&Dialer{Context: c, Name: name}),
		client.WithHostPorts(Address(c, name)),
		client.WithConnectTimeout(DefaultDialTimeout),
	}
}
