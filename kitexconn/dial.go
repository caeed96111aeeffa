package kitexconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// The dial protocol (for peers in other languages). A listener named NAME
// in a context serves the service "Kitex/NAME" on CALL_FUNCTION (so only
// that context's parents may dial it) with one method, as if declared
//
//	service Kitex/NAME {
//	  mitogen.StreamEnd dial(1: mitogen.StreamEnd reader)
//	}
//
// The caller first makes a byte-stream reader for the listener's context
// and sends its StreamEnd (context_id must be the caller's own: the
// auth_id of the call). The listener makes a reader for the caller's
// context and a writer connected to the caller's reader, and replies with
// its reader's StreamEnd (context_id the listener's context), to which the
// caller connects a writer. Each direction is then an ordinary byte stream
// (idl/mitogen.thrift, BYTE STREAMS); closing the connection ends both
// (Dead{SENDER_CLOSED} to the peer's data handle, and to its credit handle
// once it has sent anything). A listener that is closed, or has MaxConns
// connections open, or Backlog waiting for longer than AcceptWait, answers
// with an exception (INTERNAL_ERROR) and keeps nothing; any other method of the service is
// UNKNOWN_METHOD. A connection whose dialer never
// connects its writer (its call timed out) holds one of MaxConns until the
// listener's side closes it (Kitex's server closes idle connections).

// ServicePrefix is the prefix of the CALL_FUNCTION service a listener
// serves: "Kitex/" + its name.
const ServicePrefix = "Kitex/"

// dialMethod is the one method of a listener's service.
const dialMethod = "dial"

// DefaultMaxConns is the most connections a listener has open at once
// unless told otherwise (ListenConfig.MaxConns).
const DefaultMaxConns = 256

// DefaultBacklog is how many dialed connections may wait for Accept unless
// told otherwise (ListenConfig.Backlog).
const DefaultBacklog = 64

// DefaultAcceptWait is how long a dial waits for room in a full backlog
// unless told otherwise (ListenConfig.AcceptWait).
const DefaultAcceptWait = 10 * time.Second

// ListenConfig tunes Listen. Zero fields take the defaults.
type ListenConfig struct {
	// MaxConns bounds the connections open at once (dialed and not yet
	// closed, accepted or not); a dial beyond it is refused.
	MaxConns int
	// Backlog bounds the connections waiting for Accept.
	Backlog int
	// AcceptWait is how long a dial that finds the backlog full waits
	// for room (an accept loop on a busy machine may lag behind a burst
	// of dials) before it is refused.
	AcceptWait time.Duration
}

// Listener is a net.Listener whose connections are dialed by a parent
// context over byte streams (see Dial): no port, no socket.
type Listener struct {
	r    *core.Router
	name string
	q    chan *Conn

	mu     sync.Mutex
	open   int // connections not yet closed, accepted or queued
	max    int
	wait   time.Duration // for room in q
	closed bool
	done   chan struct{}
}

// validName reports whether name can name a listener.
func validName(name string) error {
	if name == "" || strings.ContainsAny(name, ":\x00") || len(name) > 200 {
		return fmt.Errorf("kitexconn: invalid listener name %q (1-200 bytes, no ':')", name)
	}
	return nil
}

// Listen makes context r listen as name: parents of the context may then
// Dial it. The listener closes when the router shuts down.
func Listen(r *core.Router, name string) (*Listener, error) {
	return ListenConfig{}.Listen(r, name)
}

// Listen is Listen with lc's limits.
func (lc ListenConfig) Listen(r *core.Router, name string) (*Listener, error) {
	l, err := lc.listen(r, name)
	if err != nil {
		return nil, err
	}
	r.OnShutdown(func() { l.Close() })
	return l, nil
}

// listen makes the listener without closing it at shutdown.
func (lc ListenConfig) listen(r *core.Router, name string) (*Listener, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if lc.MaxConns <= 0 {
		lc.MaxConns = DefaultMaxConns
	}
	if lc.Backlog <= 0 {
		lc.Backlog = DefaultBacklog
	}
	if lc.AcceptWait <= 0 {
		lc.AcceptWait = DefaultAcceptWait
	}
	l := &Listener{r: r, name: name, q: make(chan *Conn, lc.Backlog), max: lc.MaxConns, wait: lc.AcceptWait, done: make(chan struct{})}
	r.Serve(ServicePrefix+name, l.serve)
	return l, nil
}

// serve is the listener's CALL_FUNCTION service.
func (l *Listener) serve(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
	if _, m, _ := strings.Cut(method, ":"); m != dialMethod {
		return nil, thrift.NewApplicationException(thrift.UNKNOWN_METHOD,
			fmt.Sprintf("kitexconn: listener %q serves no method %q (only %q)", l.name, method, dialMethod))
	}
	var a dialArgs
	if _, err := a.FastRead(args); err != nil {
		return nil, thrift.NewProtocolExceptionWithErr(err)
	}
	caller, ok := core.CallerID(ctx)
	if !ok {
		return nil, errors.New("kitexconn: dial without a caller")
	}
	if a.Reader == nil || a.Reader.ContextId != caller {
		return nil, fmt.Errorf("kitexconn: listener %q: the dialer's reader end %v is not in the calling context %d", l.name, a.Reader, caller)
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return nil, fmt.Errorf("kitexconn: listener %q of context %d is closed", l.name, l.r.ID())
	case l.open >= l.max:
		l.mu.Unlock()
		return nil, fmt.Errorf("kitexconn: listener %q of context %d has %d connections open, its limit", l.name, l.r.ID(), l.max)
	}
	l.open++
	l.mu.Unlock()

	c, err := l.accept(caller, a.Reader)
	if err != nil {
		l.release()
		return nil, err
	}
	select {
	case l.q <- c:
	default:
		t := time.NewTimer(l.wait)
		defer t.Stop()
		select {
		case l.q <- c:
		case <-t.C:
			c.Close()
			return nil, fmt.Errorf("kitexconn: listener %q of context %d has %d connections waiting to be accepted, its limit, and accepted none in %v",
				l.name, l.r.ID(), cap(l.q), l.wait)
		case <-l.done:
			c.Close()
			return nil, fmt.Errorf("kitexconn: listener %q of context %d is closed", l.name, l.r.ID())
		case <-ctx.Done():
			c.Close()
			return nil, fmt.Errorf("kitexconn: listener %q of context %d: %w", l.name, l.r.ID(), ctx.Err())
		}
	}
	// Close may have run between the check and the send: its drain has
	// then finished, so take the connection back.
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		l.drain()
		return nil, fmt.Errorf("kitexconn: listener %q of context %d is closed", l.name, l.r.ID())
	}
	return &dialResult{Success: c.br.End()}, nil
}

// accept makes the listener's end of a connection from caller, whose
// reader is at reader.
func (l *Listener) accept(caller int32, reader *mitogen.StreamEnd) (*Conn, error) {
	parent := l.r.Lifetime()
	rd, rctx := newDeadline(parent)
	wd, wctx := newDeadline(parent)
	br := l.r.NewByteReader(rctx, caller)
	bw := l.r.NewByteWriter(wctx)
	if err := bw.Connect(reader); err != nil {
		br.Close()
		bw.Close()
		rd.cancel(errClosed)
		wd.cancel(errClosed)
		return nil, fmt.Errorf("kitexconn: listener %q: %w", l.name, err)
	}
	var once sync.Once
	return newConn(l.r, br, bw, rd, wd, addr{l.r.ID(), l.name}, addr{caller, l.name}, func() { once.Do(l.release) }), nil
}

func (l *Listener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

// Accept implements net.Listener: it waits for the next connection dialed
// to this listener.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.q:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "mitogen", Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Close implements net.Listener: dials are refused from now on, and
// connections not yet accepted are closed. Accepted ones stay open.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.done)
	l.mu.Unlock()
	l.drain()
	return nil
}

func (l *Listener) drain() {
	for {
		select {
		case c := <-l.q:
			c.Close()
		default:
			return
		}
	}
}

// Addr implements net.Listener: this context and the listener's name.
func (l *Listener) Addr() net.Addr { return addr{l.r.ID(), l.name} }

// String describes the listener (Kitex prints its options: this keeps it
// from reading the listener's fields while dials change them).
func (l *Listener) String() string { return "kitexconn.Listener(" + l.Addr().String() + ")" }

// Dial opens a connection to the listener called name in context c (see
// Listen), from the context of c's router; ctx bounds the dial only. The
// connection lives until closed, or until either context goes away or
// shuts down.
func Dial(ctx context.Context, c *core.Context, name string) (*Conn, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	r := c.Router()
	parent := r.Lifetime()
	rd, rctx := newDeadline(parent)
	wd, wctx := newDeadline(parent)
	br := r.NewByteReader(rctx, c.ID())
	fail := func(err error) (*Conn, error) {
		br.Close()
		rd.cancel(errClosed)
		wd.cancel(errClosed)
		return nil, fmt.Errorf("kitexconn: dial %q in %s: %w", name, c, err)
	}
	var res dialResult
	if err := c.CallFunction(ctx, ServicePrefix+name+":"+dialMethod, &dialArgs{Reader: br.End()}, &res); err != nil {
		return fail(err)
	}
	if res.Success == nil || res.Success.ContextId != c.ID() {
		// Not a listener's answer: nothing to tell.
		return fail(fmt.Errorf("the reply's reader end %v is not in the dialed context", res.Success))
	}
	bw := r.NewByteWriter(wctx)
	if err := bw.Connect(res.Success); err != nil {
		bw.Close()
		return fail(err)
	}
	return newConn(r, br, bw, rd, wd, addr{r.ID(), name}, addr{c.ID(), name}, nil), nil
}

// dialArgs is the argument struct of dial: {1: StreamEnd reader}.
type dialArgs struct {
	Reader *mitogen.StreamEnd
}

func (a *dialArgs) BLength() int {
	n := 1 // STOP
	if a.Reader != nil {
		n += 3 + a.Reader.BLength()
	}
	return n
}

func (a *dialArgs) FastWriteNocopy(b []byte, w thrift.NocopyWriter) int {
	return len(a.fastAppend(b[:0]))
}

func (a *dialArgs) fastAppend(b []byte) []byte {
	if a.Reader != nil {
		b = append(b, byte(thrift.STRUCT), 0, 1)
		b = a.Reader.FastAppend(b)
	}
	return append(b, byte(thrift.STOP))
}

func (a *dialArgs) FastRead(b []byte) (int, error) {
	return readOneStruct(b, 1, func() *mitogen.StreamEnd { a.Reader = mitogen.NewStreamEnd(); return a.Reader })
}

// dialResult is the result struct of dial: {0: StreamEnd success}.
type dialResult struct {
	Success *mitogen.StreamEnd
}

func (r *dialResult) BLength() int {
	n := 1
	if r.Success != nil {
		n += 3 + r.Success.BLength()
	}
	return n
}

func (r *dialResult) FastWriteNocopy(b []byte, w thrift.NocopyWriter) int {
	if r.Success != nil {
		b = append(b[:0], byte(thrift.STRUCT), 0, 0)
		b = r.Success.FastAppend(b)
		return len(append(b, byte(thrift.STOP)))
	}
	b[0] = byte(thrift.STOP)
	return 1
}

func (r *dialResult) FastRead(b []byte) (int, error) {
	return readOneStruct(b, 0, func() *mitogen.StreamEnd { r.Success = mitogen.NewStreamEnd(); return r.Success })
}

// readOneStruct decodes a struct whose only known field is a StreamEnd
// with field ID id, skipping any other field.
func readOneStruct(b []byte, id int16, field func() *mitogen.StreamEnd) (int, error) {
	x := thrift.BinaryProtocol{}
	off := 0
	for {
		typ, fid, l, err := x.ReadFieldBegin(b[off:])
		off += l
		if err != nil {
			return off, err
		}
		if typ == thrift.STOP {
			return off, nil
		}
		if fid == id && typ == thrift.STRUCT {
			l, err = field().FastRead(b[off:])
		} else {
			l, err = x.Skip(b[off:], typ)
		}
		off += l
		if err != nil {
			return off, err
		}
	}
}
