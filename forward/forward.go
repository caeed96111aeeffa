// Package forward relays TCP connections through contexts as pairs of
// byte streams (idl: Agent.dial_tcp, DialRequest): the dialer side, which
// an agent serves, and the peer side, which splices a local connection
// (ssh -W's stdio, a -L or -D client) onto a dialled one.
package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Limits of dial_tcp (idl: DialRequest).
const (
	DefaultDialTimeout = 30 * time.Second
	MaxDialTimeout     = 120 * time.Second
	maxHostLen         = 255
)

// Dialer serves Agent.dial_tcp, holding at most mitogen.MAX_DIALS
// connections at once. The zero value is ready to use.
type Dialer struct {
	mu      sync.Mutex
	held    int // connections (dialled or accepted)
	listens int // listen_tcp listeners
}

func dynamicHandle(h int32) bool { return h >= mitogen.FIRST_DYNAMIC_HANDLE && h != mitogen.IS_DEAD }

// CheckRequest validates req for a call vouched for by caller and returns
// the peer (see DialRequest).
func CheckRequest(req *mitogen.DialRequest, caller int32) (int32, error) {
	if req == nil {
		return 0, errors.New("dial_tcp: no DialRequest")
	}
	peer := req.PeerId
	if peer == 0 {
		peer = caller
	}
	switch {
	case req.Recv == nil:
		return 0, errors.New("dial_tcp: no recv end")
	case req.Recv.ContextId != peer:
		return 0, fmt.Errorf("dial_tcp: recv end names context %d, not the peer %d", req.Recv.ContextId, peer)
	case !dynamicHandle(req.Recv.Handle):
		return 0, fmt.Errorf("dial_tcp: recv handle %d is not a dynamic handle", req.Recv.Handle)
	case req.Recv.Window < mitogen.MIN_STREAM_WINDOW:
		return 0, fmt.Errorf("dial_tcp: recv window %d is below MIN_STREAM_WINDOW (%d)", req.Recv.Window, mitogen.MIN_STREAM_WINDOW)
	case req.Host == "" || len(req.Host) > maxHostLen || strings.IndexByte(req.Host, 0) >= 0:
		return 0, fmt.Errorf("dial_tcp: bad host (%d bytes)", len(req.Host))
	case req.Port < 1 || req.Port > 65535:
		return 0, fmt.Errorf("dial_tcp: bad port %d", req.Port)
	case req.TimeoutMs < 0:
		return 0, fmt.Errorf("dial_tcp: negative timeout %d ms", req.TimeoutMs)
	}
	return peer, nil
}

// CheckReply validates a dial_tcp reply from dialer (see DialRequest).
func CheckReply(rep *mitogen.DialReply, dialer int32) error {
	switch {
	case rep == nil || rep.Send == nil:
		return errors.New("dial_tcp: reply lacks the send end")
	case rep.Send.ContextId != dialer:
		return fmt.Errorf("dial_tcp: reply names context %d, not %d, which was asked", rep.Send.ContextId, dialer)
	case !dynamicHandle(rep.Send.Handle):
		return fmt.Errorf("dial_tcp: reply's send handle %d is not a dynamic handle", rep.Send.Handle)
	case rep.Send.Window < mitogen.MIN_STREAM_WINDOW:
		return fmt.Errorf("dial_tcp: reply's send window %d is below MIN_STREAM_WINDOW", rep.Send.Window)
	}
	return nil
}

func callError(err error) *mitogen.CallError {
	code := ""
	var errno syscall.Errno
	if errors.As(err, &errno) {
		code = unix.ErrnoName(errno)
	}
	var ne net.Error
	if code == "" && errors.As(err, &ne) && ne.Timeout() {
		code = "ETIMEDOUT"
	}
	return &mitogen.CallError{Message: err.Error(), Code: code}
}

// DialTCP serves Agent.dial_tcp for router r.
func (d *Dialer) DialTCP(ctx context.Context, r *core.Router, req *mitogen.DialRequest) (*mitogen.DialReply, error) {
	caller, ok := core.CallerID(ctx)
	if !ok {
		return nil, &mitogen.CallError{Message: "dial_tcp: no caller"}
	}
	peer, err := CheckRequest(req, caller)
	if err != nil {
		return nil, &mitogen.CallError{Message: err.Error(), Code: "EINVAL"}
	}
	if !d.take() {
		return nil, &mitogen.CallError{Message: fmt.Sprintf("dial_tcp: context %d holds %d connections already", r.ID(), mitogen.MAX_DIALS), Code: "EMFILE"}
	}
	release := d.give
	timeout := DefaultDialTimeout
	if req.TimeoutMs > 0 {
		timeout = min(time.Duration(req.TimeoutMs)*time.Millisecond, MaxDialTimeout)
	}
	addr := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
	conn, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", addr)
	if err != nil {
		release()
		return nil, callError(err)
	}
	life, cancel := connLife(r)
	w := r.NewByteWriter(life)
	if err := w.Connect(req.Recv); err != nil {
		cancel()
		w.Close()
		conn.Close()
		release()
		return nil, &mitogen.CallError{Message: err.Error()}
	}
	rd := r.NewByteReader(life, peer)
	go func() {
		defer release()
		defer cancel()
		splice(conn, rd, w)
	}()
	return &mitogen.DialReply{Send: rd.End(), LocalAddr: conn.LocalAddr().String(), RemoteAddr: conn.RemoteAddr().String()}, nil
}

// halfCloser is a connection whose write side can be closed alone.
type halfCloser interface {
	CloseWrite() error
}

// splice relays conn both ways through a byte-stream pair until both
// directions ended, or either failed; then everything is closed.
func splice(conn io.ReadWriteCloser, rd *core.ByteReader, w *core.ByteWriter) error {
	var once sync.Once
	var first error
	abort := func(err error) {
		once.Do(func() {
			first = err
			conn.Close()
			rd.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// From the connection into the stream.
		if _, err := w.ReadFrom(conn); err != nil {
			w.Close()
			abort(err)
			return
		}
		if err := w.Close(); err != nil {
			abort(err)
		}
	}()
	// From the stream into the connection.
	if _, err := rd.WriteTo(conn); err != nil {
		abort(err)
	} else if hc, ok := conn.(halfCloser); ok {
		if err := hc.CloseWrite(); err != nil {
			abort(err)
		}
	}
	<-done
	abort(nil)
	return first
}

// Conn is the peer's side of a dialled connection: a reader of the
// connection's bytes and a writer of bytes for it.
type Conn struct {
	rd *core.ByteReader
	w  *core.ByteWriter
	// Reply is the dialer's reply (its addresses).
	Reply *mitogen.DialReply
}

// Asker sends a dial request whose recv end is given and returns the
// reply; it fills in the rest (host, port, and who dials).
type Asker func(ctx context.Context, recv *mitogen.StreamEnd) (*mitogen.DialReply, error)

// Open has dialer (a context ID) open a connection through ask, with this
// router as the peer. life bounds the connection's streams.
func Open(ctx, life context.Context, r *core.Router, dialer int32, ask Asker) (*Conn, error) {
	rd := r.NewByteReader(life, dialer)
	rep, err := ask(ctx, rd.End())
	if err == nil {
		err = CheckReply(rep, dialer)
	}
	if err != nil {
		rd.Close()
		return nil, err
	}
	w := r.NewByteWriter(life)
	if err := w.Connect(rep.Send); err != nil {
		rd.Close()
		w.Close()
		return nil, err
	}
	return &Conn{rd: rd, w: w, Reply: rep}, nil
}

// Splice relays local both ways through c until both directions ended (the
// remote end's EOF half-closes local when it can; local's EOF ends the
// stream to the dialer) or either failed; then local and c are closed. It
// returns the first error.
func (c *Conn) Splice(local io.ReadWriteCloser) error {
	return splice(local, c.rd, c.w)
}

// Close abandons c without splicing.
func (c *Conn) Close() {
	c.rd.Close()
	c.w.Close()
}
