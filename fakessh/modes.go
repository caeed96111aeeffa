package fakessh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/fakessh/sshargs"
	"github.com/seed-a176d0ab/mitogen-go/forward"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// envBackground marks the copy of our ssh that -f started: it tells its
// parent on fd 3 when the session is up.
const envBackground = "MITOGEN_FAKESSH_BACKGROUND"

// socksTimeout bounds a -D client's SOCKS handshake.
const socksTimeout = 30 * time.Second

// control answers ssh -O the way a ControlMaster that is always running
// would: the run's master is that master.
func control(inv *sshargs.Invocation) int {
	owner, err := os.ReadFile(filepath.Join(os.Getenv(EnvDir), ownerFile))
	var pid int
	if err == nil {
		_, err = fmt.Sscanf(string(owner), "pid=%d", &pid)
	}
	if os.Getenv(EnvSocket) == "" || err != nil {
		fmt.Fprintf(os.Stderr, "Control socket connect(%s): No such file or directory\n", os.Getenv(EnvSocket))
		return 255
	}
	switch inv.Control {
	case "check":
		fmt.Fprintf(os.Stderr, "Master running (pid=%d)\r\n", pid)
	case "exit":
		fmt.Fprint(os.Stderr, "Exit request sent.\r\n")
	case "stop":
		fmt.Fprint(os.Stderr, "Stop listening request sent.\r\n")
	default:
		fmt.Fprintf(os.Stderr, "ssh: fakessh does not support -O %s (its master is mitogen's, which takes no forwardings at run time)\n", inv.Control)
		return 255
	}
	return 0
}

// background runs the -f copy of this ssh and returns once that copy says
// the session is up (0), or with its status when it ends before.
func background() int {
	pr, pw, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssh: fork: %v\n", err)
		return 255
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ssh: fork: %v\n", err)
		return 255
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), envBackground+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr // stdin: /dev/null, as -f implies -n
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		fmt.Fprintf(os.Stderr, "ssh: fork: %v\n", err)
		return 255
	}
	pw.Close()
	b := make([]byte, 1)
	n, _ := pr.Read(b)
	pr.Close()
	if n == 1 {
		return 0 // the copy goes on alone
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		return 255
	}
	if err != nil {
		return 255
	}
	return 0
}

// readyFunc returns what the session calls once it is up: for the -f copy,
// telling its parent (once); otherwise nothing.
func readyFunc() func() {
	if os.Getenv(envBackground) == "" {
		return func() {}
	}
	os.Unsetenv(envBackground)
	f := os.NewFile(3, "background-ready")
	var once sync.Once
	return func() {
		once.Do(func() {
			if f != nil {
				f.Write([]byte{1})
				f.Close()
			}
		})
	}
}

// forwarder serves an ssh invocation's -W, -L and -D through the run's
// master and the destination context.
type forwarder struct {
	r      *core.Router
	inv    *sshargs.Invocation
	handle int32
	quiet  bool
	life   context.Context

	destOnce sync.Once
	dest     int32
	destErr  error

	slots chan struct{} // one per forwarded connection held
	wg    sync.WaitGroup
	lns   []net.Listener
	// closers end the -R listeners.
	closers []func()
	chans   int // channel numbers for messages, as ssh counts them
	mu      sync.Mutex
}

func newForwarder(life context.Context, r *core.Router, inv *sshargs.Invocation, handle int32) *forwarder {
	return &forwarder{r: r, inv: inv, handle: handle, quiet: inv.Quiet, life: life,
		slots: make(chan struct{}, mitogen.MAX_DIALS)}
}

func (f *forwarder) client() *mitogen.FakeSSHClient {
	return &mitogen.FakeSSHClient{Caller: handleCaller{r: f.r, handle: f.handle}}
}

// destination asks the master once which context serves the host.
func (f *forwarder) destination(ctx context.Context) (int32, error) {
	f.destOnce.Do(func() {
		rep, err := f.client().Destination(ctx, f.inv.Host)
		switch {
		case err != nil:
			f.destErr = err
		case rep == nil || rep.ContextId == 0 || rep.ContextId == f.r.ID():
			f.destErr = errors.New("the master named no destination context")
		default:
			f.dest = rep.ContextId
		}
	})
	return f.dest, f.destErr
}

// open has the destination dial host:port for this ssh.
func (f *forwarder) open(ctx context.Context, host string, port int) (*forward.Conn, error) {
	dest, err := f.destination(ctx)
	if err != nil {
		return nil, err
	}
	return forward.Open(ctx, f.life, f.r, dest, func(ctx context.Context, recv *mitogen.StreamEnd) (*mitogen.DialReply, error) {
		return f.client().Dial(ctx, &mitogen.FakeDialRequest{Host: f.inv.Host,
			Dial: &mitogen.DialRequest{Host: host, Port: int32(port), Recv: recv}})
	})
}

// callMessage is the text of a failed call, without the Go wrapping.
func callMessage(err error) string {
	var ce *mitogen.CallError
	if errors.As(err, &ce) {
		return ce.Message
	}
	return err.Error()
}

// stdio is ssh's own stdin and stdout as one connection (-W).
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) CloseWrite() error           { return os.Stdout.Close() }
func (stdio) Close() error                { os.Stdin.Close(); return os.Stdout.Close() }

// stdioForward serves -W: stdin and stdout are a connection the
// destination made.
func (f *forwarder) stdioForward(ctx context.Context, ready func()) int {
	fw := f.inv.StdioForward
	c, err := f.open(ctx, fw.Host, fw.Port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "channel 0: open failed: connect failed: %s\r\nstdio forwarding failed\r\n", callMessage(err))
		return 255
	}
	ready()
	if err := c.Splice(stdio{}); err != nil && ctx.Err() == nil {
		if !f.quiet {
			fmt.Fprintf(os.Stderr, "ssh: stdio forwarding to %s: %v\n", net.JoinHostPort(fw.Host, strconv.Itoa(fw.Port)), err)
		}
		return 255
	}
	if ctx.Err() != nil {
		return 255
	}
	return 0
}

// listenAddrs are the addresses ssh listens on for a forward's bind host
// (GatewayPorts no: the loopback addresses unless one is named).
func listenAddrs(fw sshargs.Forward) []string {
	p := strconv.Itoa(fw.BindPort)
	switch fw.BindHost {
	case "", "localhost":
		return []string{net.JoinHostPort("127.0.0.1", p), net.JoinHostPort("::1", p)}
	case "*":
		return []string{":" + p}
	}
	return []string{net.JoinHostPort(fw.BindHost, p)}
}

// listen binds the -L and -D listeners and serves them. A forward that
// cannot listen is reported as ssh reports it; with ExitOnForwardFailure
// it is an error.
func (f *forwarder) listen(ctx context.Context) error {
	bind := func(kind byte, fw sshargs.Forward, serve func(net.Conn)) error {
		bound := 0
		var first error
		for _, a := range listenAddrs(fw) {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				if first == nil {
					first = err
				}
				continue
			}
			bound++
			f.lns = append(f.lns, ln)
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.accept(ln, serve) }()
		}
		if bound == 0 {
			msg := fmt.Sprintf("%v\r\nchannel_setup_fwd_listener_tcpip: cannot listen to port: %d\r\nCould not request %s forwarding.\r\n",
				first, fw.BindPort, map[byte]string{'L': "local", 'D': "dynamic"}[kind])
			if strings.EqualFold(f.inv.Options["exitonforwardfailure"], "yes") {
				fmt.Fprint(os.Stderr, msg)
				return errors.New("forwarding failed")
			}
			if !f.quiet {
				fmt.Fprint(os.Stderr, msg)
			}
		}
		return nil
	}
	for _, fw := range f.inv.Local {
		if err := bind('L', fw, func(c net.Conn) { f.serveLocal(ctx, c, fw) }); err != nil {
			return err
		}
	}
	for _, fw := range f.inv.Dynamic {
		if err := bind('D', fw, func(c net.Conn) { f.serveSocks(ctx, c) }); err != nil {
			return err
		}
	}
	for _, fw := range f.inv.Remote {
		if err := f.remote(ctx, fw); err != nil {
			if strings.EqualFold(f.inv.Options["exitonforwardfailure"], "yes") {
				fmt.Fprintf(os.Stderr, "Error: remote port forwarding failed for listen port %d (%s)\r\n", fw.BindPort, callMessage(err))
				return errors.New("forwarding failed")
			}
			if !f.quiet {
				fmt.Fprintf(os.Stderr, "Warning: remote port forwarding failed for listen port %d (%s)\r\n", fw.BindPort, callMessage(err))
			}
		}
	}
	return nil
}

// remote sets up one -R: the destination listens, and each connection it
// accepts is connected from here to fw's target.
func (f *forwarder) remote(ctx context.Context, fw sshargs.Forward) error {
	dest, err := f.destination(ctx)
	if err != nil {
		return err
	}
	fromDest := func(m *wire.Message, _ *core.Stream) bool { return m.Auth == dest }
	notify := f.r.NewReceiver(core.WithPeer(dest), core.WithPolicy(fromDest), core.WithQueueLimit(int(mitogen.MAX_PENDING_ACCEPTS)+4, 1<<20))
	rep, err := f.client().Listen(ctx, &mitogen.FakeListenRequest{Host: f.inv.Host,
		Listen: &mitogen.ListenRequest{BindHost: fw.BindHost, Port: int32(fw.BindPort), NotifyHandle: notify.Handle()}})
	if err == nil {
		err = forward.CheckListenReply(rep)
	}
	if err != nil {
		notify.Close()
		return err
	}
	if fw.BindPort == 0 {
		fmt.Fprintf(os.Stderr, "Allocated port %d for remote forward to %s:%d\r\n", rep.Port, fw.Host, fw.Port)
	}
	answer := func(c *mitogen.ListenControl) {
		f.r.Send(&wire.Message{Dst: dest, Handle: rep.ControlHandle, Data: thrift.FastMarshal(c)})
	}
	f.closers = append(f.closers, func() {
		answer(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_CLOSE})
		notify.Close()
	})
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			m, err := notify.Get(f.life)
			if err != nil || m.IsDead() {
				return
			}
			var acc mitogen.Accepted
			if _, err := acc.FastRead(m.Data); err != nil || forward.CheckReply(&mitogen.DialReply{Send: acc.Send}, dest) != nil {
				if !f.quiet {
					fmt.Fprintf(os.Stderr, "ssh: remote forwarding: malformed connection offer from context %d\r\n", dest)
				}
				continue
			}
			select {
			case f.slots <- struct{}{}:
			default:
				answer(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_ANSWER, ConnId: acc.ConnId})
				continue
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer func() { <-f.slots }()
				f.serveRemote(fw, dest, &acc, answer)
			}()
		}
	}()
	return nil
}

// serveRemote connects one connection the destination accepted for -R to
// fw's target, from here.
func (f *forwarder) serveRemote(fw sshargs.Forward, dest int32, acc *mitogen.Accepted, answer func(*mitogen.ListenControl)) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(fw.Host, strconv.Itoa(fw.Port)), forward.DefaultDialTimeout)
	if err != nil {
		answer(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_ANSWER, ConnId: acc.ConnId})
		if !f.quiet {
			fmt.Fprintf(os.Stderr, "connect_to %s port %d: failed.\r\n", fw.Host, fw.Port)
		}
		return
	}
	rc, err := forward.Open(f.life, f.life, f.r, dest, func(_ context.Context, recv *mitogen.StreamEnd) (*mitogen.DialReply, error) {
		answer(&mitogen.ListenControl{Kind: mitogen.ListenControlKind_ANSWER, ConnId: acc.ConnId, Recv: recv})
		return &mitogen.DialReply{Send: acc.Send}, nil
	})
	if err != nil {
		c.Close()
		return
	}
	rc.Splice(c)
}

// accept serves one listener until it is closed, holding at most
// MAX_DIALS connections at once (more are closed at once).
func (f *forwarder) accept(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		select {
		case f.slots <- struct{}{}:
		default:
			if !f.quiet {
				fmt.Fprintf(os.Stderr, "ssh: too many forwarded connections (%d); refusing one\n", mitogen.MAX_DIALS)
			}
			c.Close()
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() { <-f.slots }()
			serve(c)
		}()
	}
}

func (f *forwarder) channel() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chans++
	return f.chans
}

// serveLocal relays one -L connection to fw's target, dialled by the
// destination.
func (f *forwarder) serveLocal(ctx context.Context, c net.Conn, fw sshargs.Forward) {
	rc, err := f.open(ctx, fw.Host, fw.Port)
	if err != nil {
		c.Close()
		if !f.quiet {
			fmt.Fprintf(os.Stderr, "channel %d: open failed: connect failed: %s\r\n", f.channel(), callMessage(err))
		}
		return
	}
	rc.Splice(c)
}

// SOCKS replies.
const (
	socks5OK, socks5Fail, socks5Refused, socks5CmdUnsupported, socks5AddrUnsupported = 0, 1, 5, 7, 8
	socks4OK, socks4Fail                                                             = 0x5a, 0x5b
)

// serveSocks serves one -D connection: a SOCKS4, SOCKS4A or SOCKS5 CONNECT
// (no authentication), dialled by the destination.
func (f *forwarder) serveSocks(ctx context.Context, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(socksTimeout))
	host, port, reply, err := socksRequest(c)
	if err != nil {
		c.Close()
		if !f.quiet {
			fmt.Fprintf(os.Stderr, "ssh: dynamic forwarding: %v\r\n", err)
		}
		return
	}
	rc, err := f.open(ctx, host, port)
	if err != nil {
		reply(false, err)
		c.Close()
		if !f.quiet {
			fmt.Fprintf(os.Stderr, "channel %d: open failed: connect failed: %s\r\n", f.channel(), callMessage(err))
		}
		return
	}
	if err := reply(true, nil); err != nil {
		rc.Close()
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	rc.Splice(c)
}

// readCString reads a NUL-terminated string of at most 255 bytes.
func readCString(r io.Reader) (string, error) {
	var b [1]byte
	var s []byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", err
		}
		if b[0] == 0 {
			return string(s), nil
		}
		if len(s) == 255 {
			return "", errors.New("SOCKS4 string too long")
		}
		s = append(s, b[0])
	}
}

// socksRequest reads a SOCKS handshake up to the CONNECT request and
// returns its target and how to answer it.
func socksRequest(c net.Conn) (string, int, func(bool, error) error, error) {
	var ver [1]byte
	if _, err := io.ReadFull(c, ver[:]); err != nil {
		return "", 0, nil, err
	}
	switch ver[0] {
	case 4:
		var h [7]byte // cmd, port, ip
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return "", 0, nil, err
		}
		if _, err := readCString(c); err != nil { // user ID
			return "", 0, nil, err
		}
		reply := func(ok bool, _ error) error {
			code := byte(socks4Fail)
			if ok {
				code = socks4OK
			}
			_, err := c.Write([]byte{0, code, 0, 0, 0, 0, 0, 0})
			return err
		}
		if h[0] != 1 {
			reply(false, nil)
			return "", 0, nil, fmt.Errorf("SOCKS4 command %d is not CONNECT", h[0])
		}
		port := int(binary.BigEndian.Uint16(h[1:3]))
		host := net.IP(h[3:7]).String()
		if h[3] == 0 && h[4] == 0 && h[5] == 0 && h[6] != 0 { // SOCKS4A
			name, err := readCString(c)
			if err != nil {
				return "", 0, nil, err
			}
			host = name
		}
		return host, port, reply, nil
	case 5:
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return "", 0, nil, err
		}
		methods := make([]byte, n[0])
		if _, err := io.ReadFull(c, methods); err != nil {
			return "", 0, nil, err
		}
		if !strings.ContainsRune(string(methods), 0) {
			c.Write([]byte{5, 0xff})
			return "", 0, nil, errors.New("SOCKS5 client offers no method without authentication")
		}
		if _, err := c.Write([]byte{5, 0}); err != nil {
			return "", 0, nil, err
		}
		var h [4]byte // ver, cmd, rsv, atyp
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return "", 0, nil, err
		}
		reply := func(ok bool, err error) error {
			code := byte(socks5OK)
			if !ok {
				code = socks5Fail
				var ce *mitogen.CallError
				if errors.As(err, &ce) && ce.Code == "ECONNREFUSED" {
					code = socks5Refused
				}
			}
			_, werr := c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0})
			return werr
		}
		if h[0] != 5 || h[1] != 1 {
			c.Write([]byte{5, socks5CmdUnsupported, 0, 1, 0, 0, 0, 0, 0, 0})
			return "", 0, nil, fmt.Errorf("SOCKS5 command %d is not CONNECT", h[1])
		}
		var host string
		switch h[3] {
		case 1, 4:
			ip := make([]byte, map[byte]int{1: 4, 4: 16}[h[3]])
			if _, err := io.ReadFull(c, ip); err != nil {
				return "", 0, nil, err
			}
			host = net.IP(ip).String()
		case 3:
			if _, err := io.ReadFull(c, n[:]); err != nil {
				return "", 0, nil, err
			}
			name := make([]byte, n[0])
			if _, err := io.ReadFull(c, name); err != nil {
				return "", 0, nil, err
			}
			host = string(name)
		default:
			c.Write([]byte{5, socks5AddrUnsupported, 0, 1, 0, 0, 0, 0, 0, 0})
			return "", 0, nil, fmt.Errorf("SOCKS5 address type %d", h[3])
		}
		var p [2]byte
		if _, err := io.ReadFull(c, p[:]); err != nil {
			return "", 0, nil, err
		}
		return host, int(binary.BigEndian.Uint16(p[:])), reply, nil
	}
	return "", 0, nil, fmt.Errorf("SOCKS version %d", ver[0])
}

// close stops listening and waits for the forwarded connections to end,
// as ssh does before it exits.
func (f *forwarder) close() {
	for _, ln := range f.lns {
		ln.Close()
	}
	for _, c := range f.closers {
		c()
	}
	f.wg.Wait()
}
