package kitexconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/gopkg/bufiox"

	"github.com/seed-a176d0ab/mitogen-go/core"
)

// Conn is a net.Conn over a pair of mitogen byte streams: one from this
// context to the peer, one back. What Write returns has been queued on a
// lossless stream; Read returns the peer's bytes in order, io.EOF after
// the peer closed, or the error that ended the stream (which the peer sees
// too).
//
// Deadlines: a Read or Write still waiting when its deadline passes
// returns an error whose Timeout() is true (errors.Is os.ErrDeadlineExceeded),
// and that direction of the connection is then failed for good, as its
// stream may have stopped mid-message; a deadline that passes while no
// Read (Write) waits has no lasting effect. Kitex closes a connection after
// any timeout, so this is all it needs.
type Conn struct {
	br    *core.ByteReader
	bw    *core.ByteWriter
	local addr
	peer  addr

	rd, wd deadline

	wmu    sync.Mutex // held by Write; Close takes it to end the stream cleanly
	closed atomic.Bool
	broken atomic.Bool     // a Read or Write failed: the pool must not reuse it
	done   func()          // releases the listener's slot; once
	life   context.Context // the router's lifetime
}

// newConn wraps a connected stream pair; rd and wd guard the contexts br
// and bw were made with, and done (if not nil) runs once at Close.
func newConn(r *core.Router, br *core.ByteReader, bw *core.ByteWriter, rd, wd deadline, local, peer addr, done func()) *Conn {
	return &Conn{br: br, bw: bw, rd: rd, wd: wd, local: local, peer: peer, done: done, life: r.Lifetime()}
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if err := c.rd.begin(); err != nil {
		return 0, c.opError("read", err)
	}
	n, err := c.br.Read(p)
	if err == io.EOF {
		c.rd.end()
		c.broken.Store(true)
		return n, io.EOF // as is: io.Copy and friends compare
	}
	if err != nil {
		if c.rd.end() {
			err = os.ErrDeadlineExceeded
		}
		c.broken.Store(true)
		return n, c.opError("read", err)
	}
	c.rd.end()
	return n, nil
}

// Write implements net.Conn.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if err := c.wd.begin(); err != nil {
		return 0, c.opError("write", err)
	}
	n, err := c.bw.Write(p)
	if err != nil {
		if c.wd.end() {
			err = os.ErrDeadlineExceeded
		}
		c.broken.Store(true)
		return n, c.opError("write", err)
	}
	c.wd.end()
	return n, nil
}

// opError returns err as a *net.OpError, whose Timeout() tells a deadline
// (Kitex's gonet transport asks err.(net.Error)); after this context's
// shutdown it wraps net.ErrClosed (which Kitex takes for a closed
// connection rather than an error to log).
func (c *Conn) opError(op string, err error) error {
	if c.closed.Load() {
		err = net.ErrClosed // Close ended the operation
	} else if c.life.Err() != nil && !errors.Is(err, net.ErrClosed) {
		// This context shut down, which closes every connection.
		err = fmt.Errorf("%w: context %d shut down (%v)", net.ErrClosed, c.local.context, err)
	}
	return &net.OpError{Op: op, Net: c.local.Network(), Source: c.local, Addr: c.peer, Err: err}
}

// Close ends both streams: the peer reads EOF after every byte written
// (or, when a Write is still waiting for credit, an error), and its writes
// fail. It never waits for the peer. Close after Close returns
// net.ErrClosed.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	c.br.Close()
	c.rd.cancel(errClosed)
	if !c.wmu.TryLock() {
		// A Write waits for credit: fail it (its reader is told), then
		// wait for it to return, which it does at once.
		c.wd.cancel(errClosed)
		c.wmu.Lock()
	}
	c.bw.Close()
	c.wmu.Unlock()
	c.wd.cancel(errClosed)
	if c.done != nil {
		c.done()
	}
	return nil
}

var errClosed = errors.New("connection closed")

// IsActive tells Kitex's connection pool whether the connection may be
// reused: not once closed, nor after a Read or Write failed.
func (c *Conn) IsActive() bool { return !c.closed.Load() && !c.broken.Load() }

// LocalAddr implements net.Conn: this context and the listener's name.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr implements net.Conn: the peer's context and the listener's
// name.
func (c *Conn) RemoteAddr() net.Addr { return c.peer }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rd.set(t); return nil }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// bufConn is a Conn with the buffered reader and writer Kitex's gonet
// transport asks a client connection for (its server wraps accepted
// connections itself).
type bufConn struct {
	*Conn
	r      *bufiox.DefaultReader
	w      *bufiox.DefaultWriter
	remote net.Addr
	closed atomic.Bool
}

// newBufConn wraps c; remote is the address Kitex dialed, which its
// connection pool looks the connection up by when it is put back.
func newBufConn(c *Conn, remote net.Addr) *bufConn {
	return &bufConn{Conn: c, r: bufiox.NewDefaultReader(c), w: bufiox.NewDefaultWriter(c), remote: remote}
}

// RemoteAddr is the address Kitex dialed (see Address).
func (b *bufConn) RemoteAddr() net.Addr { return b.remote }

// Reader is the connection's buffered reader (gonet reads through it).
func (b *bufConn) Reader() *bufiox.DefaultReader { return b.r }

// Writer is the connection's buffered writer (gonet writes through it).
func (b *bufConn) Writer() *bufiox.DefaultWriter { return b.w }

// Read reads through the buffered reader, which may hold bytes already.
func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Close releases the buffered reader and closes the connection.
func (b *bufConn) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	b.r.Release(nil)
	return b.Conn.Close()
}

// addr is the net.Addr of one end of a connection.
type addr struct {
	context int32
	name    string
}

// Network is "mitogen".
func (a addr) Network() string { return "mitogen" }

func (a addr) String() string { return fmt.Sprintf("context %d/%s", a.context, a.name) }

// dialedAddr is an address as Kitex dialed it.
type dialedAddr struct{ network, address string }

func (a dialedAddr) Network() string { return a.network }
func (a dialedAddr) String() string  { return a.address }

// deadline is one direction's deadline. The stream it guards was created
// with ctx, which it cancels (for good) when the deadline passes while an
// operation waits.
type deadline struct {
	s *deadlineState
}

type deadlineState struct {
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	at      time.Time
	timer   *time.Timer
	waiting bool
	expired bool // the deadline passed while an operation waited
}

var errDeadline = errors.New("deadline passed while waiting")

// newDeadline returns a deadline and the context for the stream it guards.
func newDeadline(parent context.Context) (deadline, context.Context) {
	ctx, cancel := context.WithCancelCause(parent)
	return deadline{&deadlineState{ctx: ctx, cancel: cancel}}, ctx
}

// set changes the deadline; a waiting operation is held to the new one.
func (d deadline) set(t time.Time) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = t
	if s.waiting {
		s.armLocked()
	}
}

// armLocked starts (or stops) the timer for the deadline of a waiting
// operation.
func (s *deadlineState) armLocked() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if s.at.IsZero() {
		return
	}
	if !time.Now().Before(s.at) {
		s.expired = true
		s.cancel(errDeadline)
		return
	}
	s.timer = time.AfterFunc(time.Until(s.at), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.waiting && !s.at.IsZero() && !time.Now().Before(s.at) {
			s.expired = true
			s.cancel(errDeadline)
		}
	})
}

// begin starts an operation: an error when the deadline already passed
// (nothing changes) or the direction failed at an earlier deadline.
func (d deadline) begin() error {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expired {
		return os.ErrDeadlineExceeded
	}
	if !s.at.IsZero() && !time.Now().Before(s.at) {
		return os.ErrDeadlineExceeded
	}
	s.waiting = true
	s.armLocked()
	return nil
}

// end finishes an operation and tells whether its deadline passed while it
// waited.
func (d deadline) end() bool {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waiting = false
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	return s.expired
}

// cancel fails the direction's stream for good (Close).
func (d deadline) cancel(why error) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.cancel(why)
}
