package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// ServiceFunc serves the methods of one IDL service: it decodes args for
// method, runs it and returns the result struct (gen: Dispatch<Service>).
// args is valid only until fn returns: its buffer (the frame the call came
// in) is read into again once the reply is written, so what fn keeps it
// must copy, as the generated decoders do — except for arguments annotated
// (mitogen.borrow = "true"), which they leave in the frame: a method may
// use those only until it returns (and may return them in its result,
// which is written before the frame is reused).
type ServiceFunc func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error)

// Serve makes this context answer CALL_FUNCTION requests for "service:*".
func (r *Router) Serve(service string, fn ServiceFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.services[service] = fn
}

// serveCall is the CALL_FUNCTION handler.
func (r *Router) serveCall(m *wire.Message, in *Stream) {
	method, typ, seq, n, err := thrift.Binary.ReadMessageBegin(m.Data)
	if err != nil || typ != thrift.CALL && typ != thrift.ONEWAY {
		if err == nil {
			err = fmt.Errorf("message type %d is not CALL", typ)
		}
		r.replyException(m, method, seq, thrift.PROTOCOL_ERROR, fmt.Sprintf("malformed CALL_FUNCTION: %v", err))
		return
	}
	svc, _, _ := strings.Cut(method, ":")
	r.mu.Lock()
	fn := r.services[svc]
	r.mu.Unlock()
	if fn == nil {
		r.replyException(m, method, seq, thrift.UNKNOWN_METHOD, fmt.Sprintf("context %d serves no service %q (method %q)", r.id, svc, method))
		return
	}
	r.runCall(m, method, typ, seq, m.Data[n:], fn)
}

type callerKey struct{}

// CallerID returns the context that vouched for (auth_id) the call being
// served with ctx.
func CallerID(ctx context.Context) (int32, bool) {
	id, ok := ctx.Value(callerKey{}).(int32)
	return id, ok
}

// runCall runs fn for the call in m on its own goroutine, bounded by
// MaxConcurrentCalls, and sends the REPLY or EXCEPTION.
func (r *Router) runCall(m *wire.Message, method string, typ thrift.TMessageType, seq int32, args []byte, fn ServiceFunc) {
	select {
	case r.calls <- struct{}{}:
	default:
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_OVERFLOW, Message: fmt.Sprintf("context %d is serving %d calls already", r.id, cap(r.calls))})
		return
	}
	frame := m.Frame
	req := *m
	req.Frame = nil
	r.runWorker(func() {
		defer func() { <-r.calls }()
		ctx := context.WithValue(r.ctx, callerKey{}, req.Auth)
		if frame != nil {
			// Once the reply is written (borrowed arguments may be in it,
			// and nothing else refers to the frame: fn copied what it
			// keeps), the frame's buffer can be read into again, so a
			// stream of large calls allocates none.
			defer r.frames.put(frame)
		}
		res, err := fn(ctx, method, args)
		if err != nil {
			code, text := int32(thrift.INTERNAL_ERROR), err.Error()
			var ae *thrift.ApplicationException
			if errors.As(err, &ae) {
				// Passed on as it is: a generated dispatcher's
				// UNKNOWN_METHOD, or any the service chose.
				code, text = ae.TypeID(), ae.Msg()
			} else if errors.As(err, new(*thrift.ProtocolException)) {
				code = thrift.PROTOCOL_ERROR
			}
			r.replyException(&req, method, seq, code, text)
			return
		}
		if req.ReplyTo == 0 || typ == thrift.ONEWAY {
			return
		}
		r.sendMessage(&wire.Message{Dst: req.Src, Handle: req.ReplyTo}, replyName(method), thrift.REPLY, seq, res)
	})
}

// workerIdle is how long a goroutine that served a call waits for the next
// before it ends.
const workerIdle = 10 * time.Second

// runWorker runs job on an idle goroutine that served an earlier call, or
// on a new one: a call then costs a hand-off, not a goroutine start and
// the growth of a fresh stack. Idle workers end after workerIdle, or when
// the router shuts down.
func (r *Router) runWorker(job func()) {
	select {
	case r.jobs <- job:
	default:
		go r.worker(job)
	}
}

func (r *Router) worker(job func()) {
	job()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case job = <-r.jobs:
			job()
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		case <-r.ctx.Done():
			return
		}
	}
}

// replyName is the message name of a REPLY or EXCEPTION to a call of
// method: the bare method name ("ping" for "Agent:ping"), as Apache's
// TMultiplexedProtocol servers reply, so stock generated clients, which look
// replies up by the bare name, decode them.
func replyName(method string) string {
	if _, m, ok := strings.Cut(method, ":"); ok {
		return m
	}
	return method
}

func (r *Router) replyException(m *wire.Message, method string, seq int32, code int32, text string) {
	r.log.Debug("CALL_FUNCTION failed", "method", method, "from", m.Src, "err", text)
	if m.ReplyTo == 0 {
		return
	}
	ex := thrift.NewApplicationException(code, text)
	name := replyName(method)
	b := make([]byte, thrift.Binary.MessageBeginLength(name)+ex.BLength())
	i := thrift.Binary.WriteMessageBegin(b, name, thrift.EXCEPTION, seq)
	ex.FastWrite(b[i:])
	r.Send(&wire.Message{Dst: m.Src, Handle: m.ReplyTo, Data: b})
}

// Context is a handle on another context, for calls and sends.
type Context struct {
	r    *Router
	id   int32
	name string
}

// Context returns a handle on context id.
func (r *Router) Context(id int32, name string) *Context {
	return &Context{r: r, id: id, name: name}
}

// ID is the context's ID.
func (c *Context) ID() int32 { return c.id }

// Name is the context's name for humans.
func (c *Context) Name() string { return c.name }

// Router is the local router the context is reached through.
func (c *Context) Router() *Router { return c.r }

func (c *Context) String() string {
	if c.name != "" {
		return fmt.Sprintf("context %d (%s)", c.id, c.name)
	}
	return fmt.Sprintf("context %d", c.id)
}

// Agent returns a typed client for the Agent service of this context.
func (c *Context) Agent() *mitogen.AgentClient { return &mitogen.AgentClient{Caller: c} }

// Send sends data to a handle of the context.
func (c *Context) Send(handle int32, data []byte) {
	c.r.Send(&wire.Message{Dst: c.id, Handle: handle, Data: data})
}

// CallFunction implements mitogen.Caller: one CALL_FUNCTION round trip. It
// returns when the reply arrives, ctx ends, the context disconnects or the
// local router shuts down, whichever is first. result.FastRead must copy
// what it keeps (generated code does): the buffer the reply was read into
// is reused once it returns.
func (c *Context) CallFunction(ctx context.Context, method string, args, result thrift.FastCodec) error {
	return c.r.call(ctx, c, CallTarget{Context: c.id, Handle: mitogen.CALL_FUNCTION}, method, args, result)
}

// CallTarget is where a call is sent: CALL_FUNCTION of a context, or a
// service served on a dynamic handle (see ServeOn).
type CallTarget struct {
	Context int32
	Handle  int32
}

// CallAt makes a call to a service served on any handle (result as for
// CallFunction).
func (r *Router) CallAt(ctx context.Context, t CallTarget, method string, args, result thrift.FastCodec) error {
	return r.call(ctx, r.Context(t.Context, ""), t, method, args, result)
}

func (r *Router) call(ctx context.Context, c *Context, t CallTarget, method string, args, result thrift.FastCodec) error {
	rc := r.newReplyReceiver(t.Context)
	defer rc.closeReply()
	seq := callSeq.Add(1)
	r.sendMessage(&wire.Message{Dst: t.Context, Handle: t.Handle, ReplyTo: rc.Handle()}, method, thrift.CALL, seq, args)
	m, err := rc.Get(ctx)
	if err != nil {
		return fmt.Errorf("call %s on %s: %w", method, c, err)
	}
	err = readReply(m.Data, method, seq, result)
	if m.Frame != nil {
		// Decoding copied what result keeps: the frame's buffer can be
		// read into again.
		r.frames.put(m.Frame)
	}
	if err != nil {
		return fmt.Errorf("call %s on %s: %w", method, c, err)
	}
	return nil
}

// replyPolicy is the policy of a handle waiting for one answer from
// context target: it takes messages from target, and dead messages that
// arrive on the stream leading to target (sent by a router on the way that
// could not deliver). Anyone else guessing the handle is refused, so a
// sibling can neither answer in target's place nor kill the wait.
func (r *Router) replyPolicy(target int32) Policy {
	return r.ReplyPolicy(target)
}

// ReplyPolicy is the policy of a handle that takes messages from context
// target only, and the dead messages a router on the way to target sends
// back on target's behalf (it could not deliver).
func (r *Router) ReplyPolicy(target int32) Policy {
	return func(m *wire.Message, in *Stream) bool {
		if m.Src == target {
			return true
		}
		if !m.IsDead() {
			return false
		}
		r.mu.Lock()
		toward := r.streamForLocked(target)
		r.mu.Unlock()
		return in == toward
	}
}

// callSeq numbers the calls this process makes (the seqid of each CALL).
var callSeq atomic.Int32

// readReply decodes the reply b to the call of method numbered seq into
// result. The reply must carry seq and the bare method name (or, as older
// agents sent, the full "Service:method"); an EXCEPTION is returned as its
// *thrift.ApplicationException.
func readReply(b []byte, method string, seq int32, result thrift.FastCodec) error {
	name, typ, gotSeq, n, err := thrift.Binary.ReadMessageBegin(b)
	if err != nil {
		return fmt.Errorf("malformed reply: %w", err)
	}
	if gotSeq != seq {
		return thrift.NewApplicationException(thrift.BAD_SEQUENCE_ID, fmt.Sprintf("reply has seqid %d, the call %d", gotSeq, seq))
	}
	if name != replyName(method) && name != method {
		return thrift.NewApplicationException(thrift.WRONG_METHOD_NAME, fmt.Sprintf("reply is for method %q", name))
	}
	switch typ {
	case thrift.REPLY:
		if _, err := result.FastRead(b[n:]); err != nil {
			return fmt.Errorf("malformed reply: %w", err)
		}
		return nil
	case thrift.EXCEPTION:
		ex := thrift.NewApplicationException(thrift.UNKNOWN_APPLICATION_EXCEPTION, "")
		if _, err := ex.FastRead(b[n:]); err != nil {
			return fmt.Errorf("malformed exception reply: %w", err)
		}
		return ex
	}
	return thrift.NewApplicationException(thrift.INVALID_MESSAGE_TYPE_EXCEPTION, fmt.Sprintf("reply has message type %d", typ))
}

// ServeOn serves a service on a new dynamic handle whose policy decides who
// may call, and returns the handle. Calls run on their own goroutines,
// bounded like CALL_FUNCTION's.
func (r *Router) ServeOn(policy Policy, fn ServiceFunc) int32 {
	var h int32
	h = r.AddHandler(0, policy, func(m *wire.Message, in *Stream) {
		method, typ, seq, n, err := thrift.Binary.ReadMessageBegin(m.Data)
		if err != nil || typ != thrift.CALL {
			r.replyException(m, method, seq, thrift.PROTOCOL_ERROR, fmt.Sprintf("malformed call on handle %d", h))
			return
		}
		r.runCall(m, method, typ, seq, m.Data[n:], fn)
	})
	return h
}

// Go runs a call asynchronously; the returned channel yields its error.
func (c *Context) Go(ctx context.Context, method string, args, result thrift.FastCodec) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.CallFunction(ctx, method, args, result) }()
	return ch
}
