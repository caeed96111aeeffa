package core

import (
	"context"
	"fmt"
	"sync"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Policy decides whether a message may be delivered to a handle. in is the
// stream it arrived on, nil for a message sent by this context itself.
type Policy func(m *wire.Message, in *Stream) bool

// Receiver is a handle with a bounded queue of the messages sent to it.
//
// A receiver waits on contexts: the ones named with WithPeer and every
// context that has sent it a message. When one of them disconnects, the
// receiver is failed at once with Dead{DISCONNECTED}; messages queued
// before that are still delivered first.
type Receiver struct {
	r        *Router
	handle   int32
	policy   Policy
	maxLen   int
	maxBytes int
	sink     func(m *wire.Message, in *Stream) // when set, takes messages instead of the queue
	before   func(m *wire.Message)             // when set, sees each accepted message before it is queued
	// keepFrame: queued messages keep their Frame (the buffer a stream read
	// them into), which the owner gives back to the router's pool.
	keepFrame bool

	mu     sync.Mutex
	q      []wire.Message
	head   int
	bytes  int
	notify chan struct{} // capacity 1: "the queue or err changed"
	err    error         // set once: no more messages will come
	peers  map[int32]struct{}
}

// ReceiverOption configures NewReceiver.
type ReceiverOption func(*Receiver)

// WithPeer makes the receiver fail when context id disconnects.
func WithPeer(id int32) ReceiverOption {
	return func(rc *Receiver) { rc.peers[id] = struct{}{} }
}

// WithPolicy restricts who may send to the receiver; others get Dead{REFUSED}.
func WithPolicy(p Policy) ReceiverOption { return func(rc *Receiver) { rc.policy = p } }

// WithQueueLimit overrides the router's receiver queue bounds.
func WithQueueLimit(messages, bytes int) ReceiverOption {
	return func(rc *Receiver) { rc.maxLen, rc.maxBytes = messages, bytes }
}

// withSink hands every message for the receiver to fn, on the delivering
// goroutine with no lock held, instead of queueing it: for a handle whose
// owner keeps its own bounded state (the byte streams). fn must not block
// on the owner; it applies its own sender policy (local senders included)
// and wakes the owner through notify (capacity 1), which the receiver also
// signals when it fails (disconnected peer, shutdown, Close; see failed).
func withSink(fn func(m *wire.Message, in *Stream), notify chan struct{}) ReceiverOption {
	return func(rc *Receiver) { rc.sink, rc.notify = fn, notify }
}

// withBeforeQueue has fn see each message the receiver's policy accepted,
// on the delivering goroutine (for a stream: before it reads its next
// frame), before the message is queued. fn must not block.
func withBeforeQueue(fn func(m *wire.Message)) ReceiverOption {
	return func(rc *Receiver) { rc.before = fn }
}

// NewReceiver allocates a dynamic handle and returns its receiver.
func (r *Router) NewReceiver(opts ...ReceiverOption) *Receiver {
	rc := &Receiver{
		r:        r,
		maxLen:   r.cfg.ReceiverQueueLen,
		maxBytes: r.cfg.ReceiverQueueBytes,
		notify:   make(chan struct{}, 1),
		peers:    make(map[int32]struct{}),
	}
	for _, o := range opts {
		o(rc)
	}
	r.mu.Lock()
	rc.handle = r.allocHandleLocked()
	r.addHandlerLocked(rc.handle, &handler{deliver: rc.put, policy: rc.policy, rc: rc})
	for id := range rc.peers {
		r.watchLocked(id, rc)
	}
	closed := r.closed
	r.mu.Unlock()
	if closed {
		rc.fail(&DeadError{Reason: mitogen.DeadReason_SHUTDOWN, Message: "router is shut down"})
	}
	return rc
}

// newReplyReceiver is NewReceiver(WithPeer(target),
// WithPolicy(r.ReplyPolicy(target)), WithQueueLimit(1, MaxFrameSize)) for
// the one reply to a call, made with less work: a call costs one.
func (r *Router) newReplyReceiver(target int32) *Receiver {
	rc := &Receiver{
		r:         r,
		maxLen:    1,
		maxBytes:  r.cfg.MaxFrameSize,
		notify:    make(chan struct{}, 1),
		peers:     map[int32]struct{}{target: {}},
		keepFrame: true,
	}
	rc.policy = r.ReplyPolicy(target)
	r.mu.Lock()
	rc.handle = r.allocHandleLocked()
	r.addHandlerLocked(rc.handle, &handler{deliver: rc.put, policy: rc.policy, rc: rc})
	r.watchLocked(target, rc)
	closed := r.closed
	r.mu.Unlock()
	if closed {
		rc.fail(&DeadError{Reason: mitogen.DeadReason_SHUTDOWN, Message: "router is shut down"})
	}
	return rc
}

// errReplyDone ends a reply receiver whose call has returned; nobody reads
// it (a reply arriving later is answered as for any closed handle).
var errReplyDone = &DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: "the call has returned"}

// closeReply is Close for a reply receiver, whose only reader is the call
// that closes it.
func (rc *Receiver) closeReply() {
	rc.r.mu.Lock()
	rc.r.removeHandlerLocked(rc.handle)
	rc.mu.Lock()
	for id := range rc.peers {
		rc.r.unwatchLocked(id, rc)
	}
	if rc.err == nil {
		rc.err = errReplyDone
	}
	rc.mu.Unlock()
	rc.r.mu.Unlock()
}

// Handle is the handle messages for this receiver are sent to.
func (rc *Receiver) Handle() int32 { return rc.handle }

// Router returns the router the receiver belongs to.
func (rc *Receiver) Router() *Router { return rc.r }

// put queues m; called by the router with no router lock held.
func (rc *Receiver) put(m *wire.Message, in *Stream) {
	if rc.sink != nil {
		rc.sink(m, in)
		return
	}
	if rc.before != nil {
		rc.before(m)
	}
	rc.mu.Lock()
	if rc.err != nil {
		rc.mu.Unlock()
		rc.r.bounce(m, &DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: fmt.Sprintf("handle %d of context %d is closed", rc.handle, rc.r.ID())})
		return
	}
	if len(rc.q)-rc.head >= rc.maxLen || (rc.bytes+len(m.Data) > rc.maxBytes && len(rc.q) > rc.head) {
		rc.mu.Unlock()
		rc.r.log.Warn("receiver queue full; message dropped", "handle", rc.handle, "msg", m.String())
		rc.r.bounce(m, &DeadError{Reason: mitogen.DeadReason_OVERFLOW, Message: fmt.Sprintf("handle %d of context %d is full", rc.handle, rc.r.ID())})
		return
	}
	msg := *m
	if !rc.keepFrame || in == nil {
		msg.Frame = nil
	}
	if rc.head > 0 && rc.head == len(rc.q) {
		rc.q, rc.head = rc.q[:0], 0
	}
	rc.q = append(rc.q, msg)
	rc.bytes += len(m.Data)
	_, known := rc.peers[m.Src]
	if !known && m.Src != rc.r.ID() {
		rc.peers[m.Src] = struct{}{}
	}
	rc.mu.Unlock()
	if !known && m.Src != rc.r.ID() {
		rc.r.watch(m.Src, rc)
	}
	rc.wake()
}

func (rc *Receiver) wake() {
	select {
	case rc.notify <- struct{}{}:
	default:
	}
}

// fail ends the receiver with err once the queue is drained.
func (rc *Receiver) fail(err error) {
	rc.mu.Lock()
	if rc.err == nil {
		rc.err = err
	}
	rc.mu.Unlock()
	rc.wake()
}

// failed returns why the receiver ended, or nil.
func (rc *Receiver) failed() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.err
}

// TryGet returns the next queued message without waiting.
func (rc *Receiver) TryGet() (wire.Message, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.popLocked()
}

func (rc *Receiver) popLocked() (wire.Message, bool) {
	if rc.head == len(rc.q) {
		return wire.Message{}, false
	}
	m := rc.q[rc.head]
	rc.q[rc.head] = wire.Message{}
	rc.head++
	rc.bytes -= len(m.Data)
	return m, true
}

// Get waits for the next message. A dead message is returned as its
// *DeadError; once the receiver has failed (peer disconnected, shutdown,
// closed) and the queue is empty, Get returns that error.
func (rc *Receiver) Get(ctx context.Context) (wire.Message, error) {
	for {
		rc.mu.Lock()
		m, ok := rc.popLocked()
		err := rc.err
		rc.mu.Unlock()
		if ok {
			if m.IsDead() {
				return m, deadFromMessage(&m)
			}
			return m, nil
		}
		if err != nil {
			return wire.Message{}, err
		}
		select {
		case <-rc.notify:
		case <-ctx.Done():
			return wire.Message{}, ctx.Err()
		}
	}
}

// Close unregisters the handle. Messages arriving later are answered with
// Dead{SENDER_CLOSED}; a Get in progress returns ErrSenderClosed.
func (rc *Receiver) Close() {
	rc.r.mu.Lock()
	rc.r.removeHandlerLocked(rc.handle)
	for id := range rc.peersSnapshot() {
		rc.r.unwatchLocked(id, rc)
	}
	rc.r.mu.Unlock()
	rc.fail(&DeadError{Reason: mitogen.DeadReason_SENDER_CLOSED, Message: fmt.Sprintf("receiver %d closed", rc.handle)})
}

func (rc *Receiver) peersSnapshot() map[int32]struct{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[int32]struct{}, len(rc.peers))
	for id := range rc.peers {
		out[id] = struct{}{}
	}
	return out
}
