package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// AnswerTimeout is how long an accepted connection waits for the peer's
// ANSWER (idl: ListenRequest).
const AnswerTimeout = 30 * time.Second

// CheckListenRequest validates req for a call vouched for by caller and
// returns the peer (see ListenRequest).
func CheckListenRequest(req *mitogen.ListenRequest, caller int32) (int32, error) {
	if req == nil {
		return 0, errors.New("listen_tcp: no ListenRequest")
	}
	peer := req.PeerId
	if peer == 0 {
		peer = caller
	}
	switch {
	case !dynamicHandle(req.NotifyHandle):
		return 0, fmt.Errorf("listen_tcp: notify handle %d is not a dynamic handle", req.NotifyHandle)
	case len(req.BindHost) > maxHostLen || strings.IndexByte(req.BindHost, 0) >= 0:
		return 0, fmt.Errorf("listen_tcp: bad bind host (%d bytes)", len(req.BindHost))
	case req.Port < 0 || req.Port > 65535:
		return 0, fmt.Errorf("listen_tcp: bad port %d", req.Port)
	}
	return peer, nil
}

// CheckListenReply validates a listen_tcp reply.
func CheckListenReply(rep *mitogen.ListenReply) error {
	switch {
	case rep == nil:
		return errors.New("listen_tcp: empty reply")
	case !dynamicHandle(rep.ControlHandle):
		return fmt.Errorf("listen_tcp: reply's control handle %d is not a dynamic handle", rep.ControlHandle)
	case rep.Port < 1 || rep.Port > 65535:
		return fmt.Errorf("listen_tcp: reply's port %d is not a port", rep.Port)
	}
	return nil
}

// take reserves one connection slot; false when MAX_DIALS are held.
func (d *Dialer) take() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held >= int(mitogen.MAX_DIALS) {
		return false
	}
	d.held++
	return true
}

func (d *Dialer) give() {
	d.mu.Lock()
	d.held--
	d.mu.Unlock()
}

// listener is one listen_tcp listener.
type listener struct {
	d       *Dialer
	r       *core.Router
	peer    int32
	notify  int32
	ln      net.Listener
	control *core.Receiver
	life    context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	next    int32
	pending map[int32]*pendingConn
	closed  bool
}

type pendingConn struct {
	conn   net.Conn
	rd     *core.ByteReader
	timer  *time.Timer
	life   context.Context // the connection's streams; ends with it or the router
	cancel context.CancelFunc
}

// ListenTCP serves Agent.listen_tcp for router r.
func (d *Dialer) ListenTCP(ctx context.Context, r *core.Router, req *mitogen.ListenRequest) (*mitogen.ListenReply, error) {
	caller, ok := core.CallerID(ctx)
	if !ok {
		return nil, &mitogen.CallError{Message: "listen_tcp: no caller"}
	}
	peer, err := CheckListenRequest(req, caller)
	if err != nil {
		return nil, &mitogen.CallError{Message: err.Error(), Code: "EINVAL"}
	}
	d.mu.Lock()
	if d.listens >= int(mitogen.MAX_LISTENS) {
		d.mu.Unlock()
		return nil, &mitogen.CallError{Message: fmt.Sprintf("listen_tcp: context %d holds %d listeners already", r.ID(), mitogen.MAX_LISTENS), Code: "EMFILE"}
	}
	d.listens++
	d.mu.Unlock()
	host := req.BindHost
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(req.Port))))
	if err != nil {
		d.mu.Lock()
		d.listens--
		d.mu.Unlock()
		return nil, callError(err)
	}
	life, cancel := context.WithCancel(context.Background())
	l := &listener{d: d, r: r, peer: peer, notify: req.NotifyHandle, ln: ln, life: life, cancel: cancel, pending: map[int32]*pendingConn{}}
	onlyPeer := func(m *wire.Message, _ *core.Stream) bool { return m.Auth == peer }
	l.control = r.NewReceiver(core.WithPeer(peer), core.WithPolicy(onlyPeer), core.WithQueueLimit(int(mitogen.MAX_PENDING_ACCEPTS)+4, 1<<20))
	go l.readControl()
	go l.accept()
	return &mitogen.ListenReply{ControlHandle: l.control.Handle(), Port: int32(ln.Addr().(*net.TCPAddr).Port)}, nil
}

// shut closes the listener and the connections awaiting an answer.
func (l *listener) shut() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	pend := l.pending
	l.pending = nil
	l.mu.Unlock()
	l.ln.Close()
	l.control.Close()
	for _, p := range pend {
		l.drop(p)
	}
	l.d.mu.Lock()
	l.d.listens--
	l.d.mu.Unlock()
	l.cancel()
}

// drop closes a connection that was never answered.
func (l *listener) drop(p *pendingConn) {
	p.timer.Stop()
	p.conn.Close()
	p.rd.Close()
	p.cancel()
	l.d.give()
}

// connLife is a connection's lifetime: until cancel, or the router's end.
func connLife(r *core.Router) (context.Context, context.CancelFunc) {
	life, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-r.Done():
			cancel()
		case <-life.Done():
		}
	}()
	return life, cancel
}

func (l *listener) accept() {
	defer l.shut()
	go func() {
		select {
		case <-l.r.Done():
			l.shut()
		case <-l.life.Done():
		}
	}()
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		l.mu.Lock()
		if l.closed || len(l.pending) >= int(mitogen.MAX_PENDING_ACCEPTS) || !l.d.take() {
			l.mu.Unlock()
			conn.Close()
			continue
		}
		l.next++
		id := l.next
		p := &pendingConn{conn: conn}
		p.life, p.cancel = connLife(l.r)
		p.rd = l.r.NewByteReader(p.life, l.peer)
		p.timer = time.AfterFunc(AnswerTimeout, func() { l.expire(id) })
		l.pending[id] = p
		l.mu.Unlock()
		l.r.Send(&wire.Message{Dst: l.peer, Handle: l.notify,
			Data: thrift.FastMarshal(&mitogen.Accepted{ConnId: id, Send: p.rd.End(), RemoteAddr: conn.RemoteAddr().String()})})
	}
}

// expire drops a connection whose answer did not come in time.
func (l *listener) expire(id int32) {
	l.mu.Lock()
	p := l.pending[id]
	delete(l.pending, id)
	l.mu.Unlock()
	if p != nil {
		l.drop(p)
	}
}

func (l *listener) readControl() {
	defer l.shut()
	for {
		m, err := l.control.Get(l.life)
		if err != nil {
			return
		}
		if m.IsDead() {
			return
		}
		var c mitogen.ListenControl
		if _, err := c.FastRead(m.Data); err != nil {
			l.r.Logger().Warn("listen_tcp: malformed ListenControl; closing the listener", "peer", l.peer, "err", err)
			return
		}
		switch c.Kind {
		case mitogen.ListenControlKind_CLOSE:
			return
		case mitogen.ListenControlKind_ANSWER:
			l.mu.Lock()
			p := l.pending[c.ConnId]
			delete(l.pending, c.ConnId)
			l.mu.Unlock()
			if p == nil {
				continue
			}
			p.timer.Stop()
			if c.Recv == nil {
				l.drop(p)
				continue
			}
			if _, err := CheckRequest(&mitogen.DialRequest{Host: "-", Port: 1, PeerId: l.peer, Recv: c.Recv}, l.peer); err != nil {
				l.r.Logger().Warn("listen_tcp: bad ANSWER; connection closed", "peer", l.peer, "err", err)
				l.drop(p)
				continue
			}
			w := l.r.NewByteWriter(p.life)
			if err := w.Connect(c.Recv); err != nil {
				w.Close()
				l.drop(p)
				continue
			}
			go func() {
				defer l.d.give()
				defer p.cancel()
				splice(p.conn, p.rd, w)
			}()
		default:
			l.r.Logger().Warn("listen_tcp: unknown ListenControl kind; closing the listener", "peer", l.peer, "kind", c.Kind)
			return
		}
	}
}
