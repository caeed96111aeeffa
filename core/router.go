package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// handler is what a handle is bound to.
type handler struct {
	deliver func(m *wire.Message, in *Stream)
	policy  Policy
	rc      *Receiver // when the handle belongs to a Receiver
	// streamOnly: the handle acts on the stream a message arrived on
	// (ADD_ROUTE, ALLOCATE_ID, GRANT_IDS); a message this context sent to
	// itself has none and is refused.
	streamOnly bool
}

// Router moves messages for one context: see the package doc and the
// ROUTING and AUTHORITY sections of idl/mitogen.thrift.
type Router struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	id         int32
	parentIDs  []int32 // nearest first; empty for the master
	parent     *Stream
	children   map[*Stream]struct{}
	routes     map[int32]*Stream // context -> child stream it is reachable through
	handlers   map[int32]*handler
	nextHandle int32
	watchers   map[int32]map[*Receiver]struct{} // context -> receivers waiting on it
	gone       map[int32]string                 // contexts known to be dead, and why
	sameHost   map[int32]struct{}               // live contexts started on this machine (SetOnThisMachine)
	closing    bool                             // Shutdown has begun
	closed     bool                             // streams are being cut; nothing more is routed
	nextID     int32                            // master only: next context ID to allocate
	grants     map[*Stream]*grantSet            // ID blocks granted to a child stream's subtree (nil key: this context)
	stopAsked  bool                             // SHUTDOWN arrived: the parent stream may end cleanly
	exitErr    error                            // why the parent stream broke (nil: a clean end)

	frames    framePool
	calls     chan struct{} // semaphore bounding concurrent served calls
	jobs      chan func()   // hands a call to an idle worker (see runWorker)
	services  map[string]ServiceFunc
	ctx       context.Context // cancelled at shutdown
	cancel    context.CancelFunc
	done      chan struct{}
	onClosing map[int]func()
	nextHook  int
}

func newRouter(id int32, parents []int32, cfg Config) *Router {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		cfg:        cfg,
		id:         id,
		parentIDs:  parents,
		children:   make(map[*Stream]struct{}),
		routes:     make(map[int32]*Stream),
		handlers:   make(map[int32]*handler),
		nextHandle: mitogen.FIRST_DYNAMIC_HANDLE,
		watchers:   make(map[int32]map[*Receiver]struct{}),
		gone:       make(map[int32]string),
		sameHost:   make(map[int32]struct{}),
		grants:     make(map[*Stream]*grantSet),
		calls:      make(chan struct{}, cfg.MaxConcurrentCalls),
		jobs:       make(chan func()),
		services:   make(map[string]ServiceFunc),
		ctx:        ctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		nextID:     1,
	}
	r.log = cfg.Logger.With("context", id)
	r.installCoreHandlers()
	return r
}

// NewMaster returns the router of a master process (context MASTER_ID).
//
// It does not validate cfg (it cannot fail): zero fields take their
// defaults and a StreamWindow below MinStreamWindow is raised to it. New
// code calls NewMasterChecked, which refuses an invalid Config.
func NewMaster(cfg Config) *Router {
	if cfg.StreamWindow > 0 && cfg.StreamWindow < MinStreamWindow {
		cfg.StreamWindow = MinStreamWindow
	}
	return newRouter(mitogen.MASTER_ID, nil, cfg)
}

// NewMasterChecked is NewMaster after cfg.Validate: an invalid Config is
// an error (zero fields still mean their defaults).
func NewMasterChecked(cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newRouter(mitogen.MASTER_ID, nil, cfg), nil
}

// ID is this context's ID.
func (r *Router) ID() int32 { return r.id }

// IsMaster reports whether this is the master's router.
func (r *Router) IsMaster() bool { return r.id == mitogen.MASTER_ID && len(r.parentIDs) == 0 }

// ParentIDs lists this context's ancestors, nearest first.
func (r *Router) ParentIDs() []int32 { return slices.Clone(r.parentIDs) }

// Logger is the router's logger.
func (r *Router) Logger() *slog.Logger { return r.log }

// Config is the router's effective configuration.
func (r *Router) Config() Config { return r.cfg }

// Done is closed when the router has shut down.
func (r *Router) Done() <-chan struct{} { return r.done }

// Err reports why the router stopped once Done is closed: nil when it was
// told to SHUTDOWN or shut down locally (a clean end), else the error of the
// parent stream that ended first (a broken parent stream).
func (r *Router) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exitErr
}

// Lifetime is a context cancelled when the router shuts down.
func (r *Router) Lifetime() context.Context { return r.ctx }

// OnShutdown registers f to run (once) when the router shuts down, before
// its streams close; the returned function unregisters it. Called after
// shutdown, it runs f at once.
func (r *Router) OnShutdown(f func()) (remove func()) {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		f()
		return func() {}
	}
	if r.onClosing == nil {
		r.onClosing = make(map[int]func())
	}
	id := r.nextHook
	r.nextHook++
	r.onClosing[id] = f
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.onClosing, id)
	}
}

func (r *Router) allocHandleLocked() int32 {
	for {
		h := r.nextHandle
		r.nextHandle++
		if r.nextHandle < mitogen.FIRST_DYNAMIC_HANDLE {
			r.nextHandle = mitogen.FIRST_DYNAMIC_HANDLE
		}
		if _, used := r.handlers[h]; !used {
			return h
		}
	}
}

func (r *Router) addHandlerLocked(h int32, hd *handler) { r.handlers[h] = hd }

func (r *Router) removeHandlerLocked(h int32) { delete(r.handlers, h) }

// AddHandler binds a function to a handle (a well-known one, or 0 to
// allocate a dynamic one) and returns the handle. fn runs on the goroutine
// of the stream that delivered the message and must not block.
func (r *Router) AddHandler(h int32, policy Policy, fn func(m *wire.Message, in *Stream)) int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h == 0 {
		h = r.allocHandleLocked()
	}
	r.handlers[h] = &handler{deliver: fn, policy: policy}
	return h
}

// addStreamHandler binds fn to the well-known handle h for messages that
// arrive on a stream only (see handler.streamOnly).
func (r *Router) addStreamHandler(h int32, policy Policy, fn func(m *wire.Message, in *Stream)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers[h] = &handler{deliver: fn, policy: policy, streamOnly: true}
}

// RemoveHandler unbinds a handle.
func (r *Router) RemoveHandler(h int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.handlers, h)
}

func (r *Router) watchLocked(id int32, rc *Receiver) {
	if why, dead := r.gone[id]; dead {
		go rc.fail(&DeadError{Reason: mitogen.DeadReason_DISCONNECTED, Message: why, Context: id})
		return
	}
	if id == r.id {
		return
	}
	set := r.watchers[id]
	if set == nil {
		set = make(map[*Receiver]struct{})
		r.watchers[id] = set
	}
	set[rc] = struct{}{}
}

func (r *Router) watch(id int32, rc *Receiver) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.handlers[rc.handle]; !ok {
		return // closed meanwhile
	}
	r.watchLocked(id, rc)
}

func (r *Router) unwatchLocked(id int32, rc *Receiver) {
	if set := r.watchers[id]; set != nil {
		delete(set, rc)
		if len(set) == 0 && !r.keepWatchSetLocked(id) {
			delete(r.watchers, id)
		}
	}
}

// keepWatchSetLocked reports whether an empty set of watchers of id is
// kept for the next waiter (every call watches its target): id is a
// context this router routes to or a parent, whose set goes when it does
// (contextGone).
func (r *Router) keepWatchSetLocked(id int32) bool {
	if _, routed := r.routes[id]; routed {
		return true
	}
	return slices.Contains(r.parentIDs, id)
}

// streamForLocked returns the stream leading to dst, or nil.
func (r *Router) streamForLocked(dst int32) *Stream {
	if s, ok := r.routes[dst]; ok {
		return s
	}
	if _, dead := r.gone[dst]; dead {
		return nil
	}
	return r.parent
}

// authorized applies the AUTHORITY rules to a message that arrived on in.
func (r *Router) authorizedLocked(m *wire.Message, in *Stream) bool {
	reachable := func(id int32) bool {
		if in.isParent {
			_, viaChild := r.routes[id]
			return !viaChild && id != r.id
		}
		return r.routes[id] == in
	}
	return reachable(m.Auth) && reachable(m.Src)
}

// Send sends a message from this context. Src and Auth are set to this
// context's ID. It blocks while the outgoing stream's queue is full.
func (r *Router) Send(m *wire.Message) {
	m.Src = r.id
	m.Auth = r.id
	m.Frame = nil
	r.route(m, nil)
}

// route delivers or forwards m, which arrived on in (nil: sent locally).
func (r *Router) route(m *wire.Message, in *Stream) { r.routeOut(m, in, nil) }

// routeOut is route; out, when not nil, is the frame of m (sent locally
// and addressed elsewhere) as encodeOut made it.
func (r *Router) routeOut(m *wire.Message, in *Stream, out *frameOut) {
	r.mu.Lock()
	if in != nil && !r.authorizedLocked(m, in) {
		r.mu.Unlock()
		r.log.Error("dropping forged message", "stream", in.name, "msg", m.String())
		return
	}
	if in != nil && in.leaf && isRouteHandle(m.Handle) {
		r.mu.Unlock()
		r.log.Error("refusing a route update from a leaf context", "stream", in.name, "msg", m.String())
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_REFUSED, Message: fmt.Sprintf("context %d refused %s from leaf context %d", r.id, handleText(m.Handle), m.Src)})
		return
	}
	if m.Dst == r.id {
		h := r.handlers[m.Handle]
		r.mu.Unlock()
		r.deliver(m, in, h)
		return
	}
	outStream := r.streamForLocked(m.Dst)
	closed := r.closed
	r.mu.Unlock()
	if outStream == nil || outStream == in {
		why := fmt.Sprintf("context %d has no route to context %d", r.id, m.Dst)
		if closed {
			why = fmt.Sprintf("context %d is shut down", r.id)
		}
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_NO_ROUTE, Message: why, Context: m.Dst})
		return
	}
	var err error
	if out != nil {
		err = outStream.enqueueOut(out)
	} else if m.Frame != nil {
		// A frame read off a stream (in != nil) came from the pool and
		// goes back to it once written; a locally built one does not.
		err = outStream.enqueueFrame(in == nil, in != nil, m.Frame)
	} else if len(m.Data) < coalesceLimit {
		err = outStream.enqueue(in == nil, wire.Encode(m))
	} else {
		err = outStream.enqueue(in == nil, wire.AppendHeader(make([]byte, 0, wire.DataOffset), m), m.Data, wire.Trailer)
	}
	if err != nil {
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_DISCONNECTED, Message: fmt.Sprintf("stream to context %d closed: %v", outStream.remoteID, err), Context: m.Dst})
	}
}

func (r *Router) deliver(m *wire.Message, in *Stream, h *handler) {
	if h == nil {
		if !m.IsDead() {
			r.log.Debug("message for unknown handle", "msg", m.String())
		}
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_UNKNOWN_HANDLE, Message: fmt.Sprintf("context %d has no handle %d", r.id, m.Handle)})
		return
	}
	if h.streamOnly && in == nil {
		r.log.Error("refusing a local message to a stream-only handle", "msg", m.String())
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_REFUSED, Message: fmt.Sprintf("context %d refused %s from itself: it only takes messages from a stream", r.id, handleText(m.Handle))})
		return
	}
	if h.policy != nil && in != nil && !h.policy(m, in) {
		r.log.Warn("message refused by handle policy", "stream", in.name, "msg", m.String())
		r.bounce(m, &DeadError{Reason: mitogen.DeadReason_REFUSED, Message: fmt.Sprintf("context %d refused %s from context %d", r.id, handleText(m.Handle), m.Auth)})
		return
	}
	h.deliver(m, in)
}

func handleText(h int32) string {
	if n := mitogen.HandleName(h); n != "" {
		return n
	}
	return fmt.Sprintf("handle %d", h)
}

// bounce answers m with a dead message, unless m is itself dead or expects
// no reply.
func (r *Router) bounce(m *wire.Message, why *DeadError) {
	if m.IsDead() || m.ReplyTo == 0 {
		return
	}
	if why.Context == 0 && why.Reason != mitogen.DeadReason_NO_ROUTE {
		why.Context = m.Dst
	}
	r.SendDead(m.Src, m.ReplyTo, why)
}

// SendDead sends a dead message to (dst, handle).
func (r *Router) SendDead(dst, handle int32, why *DeadError) {
	r.Send(&wire.Message{Dst: dst, Handle: handle, ReplyTo: mitogen.IS_DEAD, Data: encodeDead(why)})
}

// HasParentAuth is the policy of CALL_FUNCTION and SHUTDOWN: the message is
// vouched for by this context or one of its parents.
func (r *Router) HasParentAuth(m *wire.Message, _ *Stream) bool {
	return m.Auth == r.id || slices.Contains(r.parentIDs, m.Auth)
}

// addChildStream registers a stream to a child whose context ID is
// s.remoteID. Below the master, that ID must have been granted to this
// context (see GRANT_IDS), or no router above would accept its route.
func (r *Router) addChildStream(s *Stream) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return fmt.Errorf("router of context %d is shutting down", r.id)
	}
	if r.reservedLocked(s.remoteID) {
		return fmt.Errorf("context %d cannot start a child with ID %d: it is its own or an ancestor's", r.id, s.remoteID)
	}
	if !r.IsMaster() && !r.grantedLocked(nil, s.remoteID) {
		return fmt.Errorf("context %d cannot start a child with ID %d: the master did not grant it that ID", r.id, s.remoteID)
	}
	if old, ok := r.routes[s.remoteID]; ok {
		return fmt.Errorf("context %d is already connected via %s", s.remoteID, old.name)
	}
	delete(r.gone, s.remoteID)
	r.children[s] = struct{}{}
	r.routes[s.remoteID] = s
	return nil
}

// streamEnded cleans up after a stream: every context reached through it is
// gone, and everyone waiting on one of them is told.
func (r *Router) streamEnded(s *Stream) {
	why := "stream closed"
	if err := s.Err(); err != nil {
		why = err.Error()
	}
	r.mu.Lock()
	var lost []int32
	if s.isParent {
		r.parent = nil
		if !r.closing && !r.stopAsked && r.exitErr == nil {
			r.exitErr = fmt.Errorf("parent stream ended without SHUTDOWN: %s", why)
		}
	} else {
		delete(r.children, s)
		delete(r.grants, s)
		for id, via := range r.routes {
			if via == s {
				lost = append(lost, id)
				delete(r.routes, id)
			}
		}
	}
	closed := r.closed
	r.mu.Unlock()
	slices.Sort(lost)
	for _, id := range lost {
		// A new stream may have claimed the ID meanwhile (a context started
		// again with it): then that context is not gone.
		r.contextGoneIf(id, fmt.Sprintf("context %d disconnected: %s", id, why), s, true, func() string {
			if _, routed := r.routes[id]; routed {
				return "routed again"
			}
			return ""
		})
	}
	if s.isParent && !closed {
		r.log.Debug("parent stream ended; shutting down", "why", why)
		r.Shutdown()
	}
}

// contextGone records that id is dead, fails its waiters and, when announce
// is set, tells the parent and the children with DEL_ROUTE, except on from,
// the stream the news came from (nil: none).
func (r *Router) contextGone(id int32, why string, from *Stream, announce bool) {
	r.contextGoneIf(id, why, from, announce, nil)
}

// contextGoneIf is contextGone when refuse, called under the router's lock,
// says nothing against it; it returns what refuse said.
func (r *Router) contextGoneIf(id int32, why string, from *Stream, announce bool, refuse func() string) string {
	r.mu.Lock()
	if refuse != nil {
		if no := refuse(); no != "" {
			r.mu.Unlock()
			return no
		}
	}
	if _, already := r.gone[id]; already {
		r.mu.Unlock()
		return ""
	}
	if len(r.gone) >= maxGone {
		for old := range r.gone { // forget one: the record is bounded
			delete(r.gone, old)
			break
		}
	}
	r.gone[id] = why
	delete(r.routes, id)
	delete(r.sameHost, id)
	waiters := r.watchers[id]
	delete(r.watchers, id)
	var targets []int32
	if announce {
		if r.parent != nil && r.parent != from {
			targets = append(targets, r.parent.remoteID)
		}
		for c := range r.children {
			if c != from {
				targets = append(targets, c.remoteID)
			}
		}
	}
	r.mu.Unlock()
	for rc := range waiters {
		rc.fail(&DeadError{Reason: mitogen.DeadReason_DISCONNECTED, Message: why, Context: id})
	}
	if len(waiters) > 0 || announce {
		r.log.Debug("context gone", "id", id, "why", why, "waiters", len(waiters))
	}
	if !announce {
		return ""
	}
	for _, t := range targets {
		if t == id {
			continue
		}
		r.Send(&wire.Message{Dst: t, Handle: mitogen.DEL_ROUTE, Data: marshal(&mitogen.RouteUpdate{TargetId: id, Reason: why})})
	}
	return ""
}

// SetOnThisMachine records that context id runs on this machine, in this
// network namespace: the dialer that started it says so, for hops that
// stay here (transport.Method.SameMachine) from contexts that are here.
// The record goes when the context is known to be gone; nothing is
// recorded for a context already gone. Only this router's own word counts:
// nothing a peer sends sets it.
func (r *Router) SetOnThisMachine(id int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, gone := r.gone[id]; gone || id == r.id || r.closing {
		return
	}
	r.sameHost[id] = struct{}{}
}

// OnThisMachine reports whether context id was recorded by
// SetOnThisMachine and is not known to be gone. This context itself is
// always on this machine.
func (r *Router) OnThisMachine(id int32) bool {
	if id == r.ID() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.sameHost[id]
	return ok
}

// Shutdown stops the router: every pending waiter fails with
// Dead{SHUTDOWN}, every stream is closed. Safe to call more than once.
func (r *Router) Shutdown() {
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		return
	}
	r.closing = true
	hooks := r.onClosing
	r.onClosing = nil
	var children []*Stream
	for s := range r.children {
		children = append(children, s)
	}
	r.mu.Unlock()
	r.cancel()
	// Local processes first, then the children: each is asked to SHUTDOWN
	// (which it does the same way) and given Config.ShutdownGrace to finish
	// before its stream is cut, so nothing started below outlives us.
	for _, f := range hooks {
		f()
	}
	// The grace runs from now whatever the children do: a SHUTDOWN stuck
	// behind a child that stopped reading waits in its own goroutine and
	// ends when that child's stream is cut below.
	expired := make(chan struct{})
	grace := time.AfterFunc(r.cfg.ShutdownGrace, func() { close(expired) })
	var sends sync.WaitGroup
	for _, c := range children {
		sends.Add(1)
		go func(id int32) {
			defer sends.Done()
			r.Send(&wire.Message{Dst: id, Handle: mitogen.SHUTDOWN})
		}(c.remoteID)
	}
	for _, c := range children {
		select {
		case <-c.Done():
		case <-expired:
		}
	}
	grace.Stop()

	r.mu.Lock()
	r.closed = true
	streams := make([]*Stream, 0, len(r.children)+1)
	for s := range r.children {
		streams = append(streams, s)
	}
	if r.parent != nil {
		streams = append(streams, r.parent)
	}
	var rcs []*Receiver
	for _, h := range r.handlers {
		if h.rc != nil {
			rcs = append(rcs, h.rc)
		}
	}
	r.mu.Unlock()
	for _, rc := range rcs {
		rc.fail(&DeadError{Reason: mitogen.DeadReason_SHUTDOWN, Message: fmt.Sprintf("context %d is shutting down", r.id)})
	}
	for _, s := range streams {
		s.close(fmt.Errorf("context %d shut down", r.id))
	}
	go func() {
		sends.Wait()
		for _, s := range streams {
			<-s.Done()
		}
		close(r.done)
	}()
}

// maxGone bounds how many dead contexts a router remembers (to answer
// waiters on them at once, and to stop routing to them upward).
const maxGone = 4096

// ChildShutdownGrace is the default Config.ShutdownGrace: how long a
// shutting-down router waits for its children to finish their own shutdown
// before cutting their streams.
const ChildShutdownGrace = 3 * time.Second

// Close shuts down and waits until every stream has ended.
func (r *Router) Close() error {
	r.Shutdown()
	<-r.done
	return nil
}

// Children lists the child streams.
func (r *Router) Children() []*Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Stream, 0, len(r.children))
	for s := range r.children {
		out = append(out, s)
	}
	return out
}

// CloseStream ends a stream; the contexts behind it are treated as gone.
func (r *Router) CloseStream(s *Stream, why string) { s.close(errors.New(why)) }
