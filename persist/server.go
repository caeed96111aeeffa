package persist

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/core/wire"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/process"
)

// Defaults of Server.
const (
	// DefaultIdleTimeout is how long a master lives after its last client left.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultMaxClients is how many clients may be connected at once.
	DefaultMaxClients = 256
	// DefaultMaxChains is how many chains a master holds (or dials) at once.
	DefaultMaxChains = 64
)

// Lines the master writes on accepting a connection, before anything else.
const (
	greetPrefix  = "mitogen-persist 1 handle="
	refusePrefix = "mitogen-persist refused: "
	busyReason   = "busy"
	maxGreetLine = 128
)

// Timeouts of the master's side.
const (
	greetTimeout = 5 * time.Second
	bootTimeout  = 30 * time.Second
	dialTimeout  = 5 * time.Minute
	startTimeout = 60 * time.Second
)

// ErrRunning is returned by Serve when another master answers on the socket.
var ErrRunning = errors.New("a persistent master is already running")

// Server is a persistent master.
type Server struct {
	// Dir holds the socket; see PrepareDir.
	Dir string
	// IdleTimeout ends the master this long after its last client left
	// (default DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxClients caps the clients connected at once (default DefaultMaxClients).
	MaxClients int
	// MaxChains caps the chains held or being dialed (default
	// DefaultMaxChains); a request for one more is refused (CallError
	// EBUSY) until one goes.
	MaxChains int
	// Logger receives the master's log (default: discarded).
	Logger *slog.Logger
	// Dialer dials chains (default: an agent.Dialer with the defaults).
	Dialer *agent.Dialer
}

// server is the state of one Serve.
type server struct {
	*Server
	r      *core.Router
	handle int32
	ctx    context.Context

	mu      sync.Mutex
	members map[int32]bool
	clients int
	idleGen int
	idle    *time.Timer
	ended   bool // no idle countdown any more
	chains  map[string]*held
	runs    map[int32]*fakessh.Session // by client

	stopOnce sync.Once
	stopped  chan struct{}
	why      string
	wg       sync.WaitGroup
}

// held is a chain the master holds, or is dialing.
type held struct {
	name  string
	hops  []agent.Hop
	ready chan struct{} // closed when the dial is over
	chain []*core.Context
	err   error
}

// Serve runs the master until ctx ends, a client calls stop, or no client
// has been connected for IdleTimeout; then it removes its socket and shuts
// down every context it holds. ready, when not nil, is called once: with
// nil when the socket is listening, or with the error that keeps the
// master from starting (which Serve also returns).
func (s *Server) Serve(ctx context.Context, ready func(error)) (err error) {
	if ready == nil {
		ready = func(error) {}
	}
	var ln *net.UnixListener
	var ino uint64
	sock := filepath.Join(s.Dir, SocketName)
	defer func() {
		if ln == nil {
			ready(err)
		}
	}()
	if err := PrepareDir(s.Dir); err != nil {
		return err
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%w (socket %s)", ErrRunning, sock)
	}
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the stale socket %s: %w", sock, err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("persistent master: listening on %s: %w", sock, err)
	}
	l.SetUnlinkOnClose(false) // removed below, only while it is still ours
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		os.Remove(sock)
		return fmt.Errorf("persistent master: %w", err)
	}
	if st, err := os.Stat(sock); err == nil {
		ino = st.Sys().(*syscall.Stat_t).Ino
	}
	ln = l

	log := s.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg := core.DefaultConfig()
	agent.ApplyEnv(&cfg)
	cfg.Logger = log
	st := &server{Server: s, r: core.NewMaster(cfg), members: map[int32]bool{}, chains: map[string]*held{},
		runs: map[int32]*fakessh.Session{}, stopped: make(chan struct{})}
	st.ctx = st.r.Lifetime()
	st.handle = st.r.ServeOn(st.isMember, func(ctx context.Context, method string, args []byte) (thrift.FastCodec, error) {
		return mitogen.DispatchPersistentMaster(ctx, st, method, args)
	})
	st.mu.Lock()
	st.armIdleLocked()
	st.mu.Unlock()
	st.wg.Add(1)
	go func() { defer st.wg.Done(); st.accept(ln) }()
	log.Info("persistent master listening", "socket", sock, "pid", os.Getpid(), "idle_timeout", st.idleTimeout())
	ready(nil)

	select {
	case <-ctx.Done():
		st.stop("signal or cancel")
	case <-st.stopped:
	case <-st.r.Done():
		st.stop("router ended")
	}
	// The socket goes first, so that a client from now on starts a new
	// master instead of reaching this dying one.
	if cur, err := os.Stat(sock); err == nil && cur.Sys().(*syscall.Stat_t).Ino == ino {
		os.Remove(sock)
	}
	ln.Close()
	log.Info("persistent master ending", "why", st.why)
	st.r.Close() // SHUTDOWN to every chain and client; waits for their streams
	st.wg.Wait()
	st.mu.Lock()
	st.ended = true
	if st.idle != nil {
		st.idle.Stop()
	}
	st.mu.Unlock()
	return nil
}

func (st *server) idleTimeout() time.Duration {
	if st.IdleTimeout > 0 {
		return st.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (st *server) stop(why string) {
	st.stopOnce.Do(func() {
		st.mu.Lock()
		st.why = why
		st.mu.Unlock()
		close(st.stopped)
	})
}

// armIdleLocked starts the idle countdown (no client connected).
func (st *server) armIdleLocked() {
	if st.ended {
		return
	}
	st.idleGen++
	gen := st.idleGen
	d := st.idleTimeout()
	st.idle = time.AfterFunc(d, func() {
		st.mu.Lock()
		fire := st.clients == 0 && st.idleGen == gen
		st.mu.Unlock()
		if fire {
			st.stop(fmt.Sprintf("idle for %v", d))
		}
	})
}

func (st *server) isMember(m *wire.Message, _ *core.Stream) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.members[m.Auth]
}

func (st *server) accept(ln *net.UnixListener) {
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			st.admit(conn)
		}()
	}
}

// refuse tells a connection why it is refused and closes it.
func refuse(conn *net.UnixConn, why string) {
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = conn.Write([]byte(refusePrefix + why + "\n"))
	conn.Close()
}

// peerCred returns the credentials of a unix socket's peer.
func peerCred(conn *net.UnixConn) (*unix.Ucred, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return nil, err
	}
	return cred, cerr
}

// admit checks a connection and boots the client behind it as a leaf
// child; it returns when the client's stream has ended.
func (st *server) admit(conn *net.UnixConn) {
	log := st.r.Logger()
	cred, err := peerCred(conn)
	if err != nil {
		log.Warn("persistent master: refused a client", "err", fmt.Errorf("peer credentials: %w", err))
		refuse(conn, "no peer credentials")
		return
	}
	if int(cred.Uid) != os.Getuid() {
		why := fmt.Sprintf("peer uid %d is not the master's uid %d", cred.Uid, os.Getuid())
		log.Warn("persistent master: refused a client", "pid", cred.Pid, "why", why)
		refuse(conn, why)
		return
	}
	st.mu.Lock()
	if st.clients >= st.maxClients() {
		st.mu.Unlock()
		refuse(conn, busyReason)
		return
	}
	id := st.r.AllocateID()
	st.members[id] = true
	st.clients++
	st.idleGen++
	if st.idle != nil {
		st.idle.Stop()
	}
	st.mu.Unlock()
	defer func() {
		st.mu.Lock()
		delete(st.members, id)
		run := st.runs[id]
		delete(st.runs, id)
		st.clients--
		if st.clients == 0 {
			st.armIdleLocked()
		}
		st.mu.Unlock()
		if run != nil {
			run.Close()
		}
	}()
	_ = conn.SetWriteDeadline(time.Now().Add(greetTimeout))
	if _, err := conn.Write([]byte(greetPrefix + strconv.Itoa(int(st.handle)) + "\n")); err != nil {
		conn.Close()
		return
	}
	_ = conn.SetWriteDeadline(time.Time{})
	bootCtx, cancel := context.WithTimeout(st.ctx, bootTimeout)
	defer cancel()
	if _, _, err := st.r.StartChild(bootCtx, conn, id, fmt.Sprintf("client.%d(pid %d)", id, cred.Pid), core.Leaf()); err != nil {
		log.Debug("persistent master: client did not boot", "pid", cred.Pid, "err", err)
		return
	}
	for _, s := range st.r.Children() {
		if s.RemoteID() == id {
			select {
			case <-s.Done():
			case <-st.ctx.Done():
			}
			return
		}
	}
}

func (st *server) maxChains() int {
	if st.MaxChains > 0 {
		return st.MaxChains
	}
	return DefaultMaxChains
}

func (st *server) maxClients() int {
	if st.MaxClients > 0 {
		return st.MaxClients
	}
	return DefaultMaxClients
}

// callError makes a CallError for the client.
func callError(code, format string, args ...any) *mitogen.CallError {
	return &mitogen.CallError{Message: fmt.Sprintf(format, args...), Code: code}
}

// chainFor returns the held chain for pc and its key, dialing it when pc
// says so.
func (st *server) chainFor(ctx context.Context, pc *mitogen.PersistChain) (*held, string, error) {
	hops, key, err := decodeChain(pc)
	if err != nil {
		return nil, "", callError("EINVAL", "persistent master: bad chain: %v", err)
	}
	notHeld := callError("ENOTCONN", "persistent master holds no chain %s", chainName(hops))
	for {
		st.mu.Lock()
		h := st.chains[key]
		if h == nil {
			if !pc.Dial {
				st.mu.Unlock()
				return nil, "", notHeld
			}
			if max := st.maxChains(); len(st.chains) >= max {
				st.mu.Unlock()
				return nil, "", callError("EBUSY", "persistent master holds %d chains already (at most %d): stop it (mitogen master --stop) or use --no-persist", len(st.chains), max)
			}
			h = &held{name: chainName(hops), hops: hops, ready: make(chan struct{})}
			st.chains[key] = h
			st.mu.Unlock()
			st.dial(key, h)
			if h.err != nil {
				return nil, "", callError("", "%v", h.err)
			}
			return h, key, nil
		}
		st.mu.Unlock()
		select {
		case <-h.ready:
		case <-ctx.Done():
			return nil, "", ctx.Err()
		}
		if h.err == nil {
			return h, key, nil
		}
		// That dial failed (and was forgotten): try again, or report.
		if !pc.Dial {
			return nil, "", notHeld
		}
	}
}

// dial connects h's chain; a failed dial is forgotten at once.
func (st *server) dial(key string, h *held) {
	defer close(h.ready)
	d := st.Dialer
	if d == nil {
		d = &agent.Dialer{}
	}
	ctx, cancel := context.WithTimeout(st.ctx, dialTimeout)
	defer cancel()
	st.r.Logger().Info("persistent master: dialing", "chain", h.name)
	chain, err := d.Dial(ctx, st.r, h.hops)
	if err != nil {
		h.err = err
		st.shutdownChain(chain)
		st.mu.Lock()
		if st.chains[key] == h {
			delete(st.chains, key)
		}
		st.mu.Unlock()
		return
	}
	h.chain = chain
	// The first hop is a child of this router: when its stream ends, the
	// chain goes at once. A deeper hop's death shows on the next call.
	for _, s := range st.r.Children() {
		if s.RemoteID() == chain[0].ID() {
			go func() {
				select {
				case <-s.Done():
					st.forget(key, h, "its first context's stream ended")
				case <-st.ctx.Done():
				}
			}()
		}
	}
}

// forget drops h (if it is still the chain held for key) and shuts down
// what is left of it.
func (st *server) forget(key string, h *held, why string) {
	st.mu.Lock()
	mine := st.chains[key] == h
	if mine {
		delete(st.chains, key)
	}
	st.mu.Unlock()
	if mine {
		st.r.Logger().Info("persistent master: chain lost", "chain", h.name, "why", why)
		go st.shutdownChain(h.chain)
	}
}

// shutdownChain ends the contexts of a (partial) chain: its first context
// takes the others with it.
func (st *server) shutdownChain(chain []*core.Context) {
	if len(chain) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(st.ctx, 2*core.ChildShutdownGrace)
	defer cancel()
	_ = chain[0].Shutdown(ctx)
}

// gone reports whether err says the context called is gone.
func gone(err error) bool {
	var de *core.DeadError
	return errors.As(err, &de) && (de.Reason == mitogen.DeadReason_DISCONNECTED || de.Reason == mitogen.DeadReason_NO_ROUTE)
}

// use runs f on the last context of pc's chain; when that context turns
// out to be gone, the chain is forgotten and, if pc allows dialing, dialed
// again and f retried once.
func (st *server) use(ctx context.Context, pc *mitogen.PersistChain, f func(dest *core.Context) error) error {
	for attempt := 0; ; attempt++ {
		h, key, err := st.chainFor(ctx, pc)
		if err != nil {
			return err
		}
		dest := h.chain[len(h.chain)-1]
		err = f(dest)
		if err == nil || !gone(err) || attempt > 0 {
			return err
		}
		st.forget(key, h, err.Error())
	}
}

// StartProcess implements mitogen.PersistentMaster: the process starts in
// the chain's last context on the master's authority, driven only by the
// calling client.
func (st *server) StartProcess(ctx context.Context, pc *mitogen.PersistChain, spec *mitogen.ProcessSpec) (*mitogen.ProcessStarted, error) {
	caller, ok := core.CallerID(ctx)
	if !ok || spec == nil {
		return nil, callError("EINVAL", "start_process: malformed request")
	}
	sp := *spec
	sp.PeerId = caller
	sp.Handoff = nil // FD HANDOFF: only fakessh's master sets it, from an ssh's offer
	var started *mitogen.ProcessStarted
	err := st.use(ctx, pc, func(dest *core.Context) error {
		callCtx, cancel := context.WithTimeout(ctx, startTimeout)
		defer cancel()
		var err error
		started, err = dest.Agent().StartProcess(callCtx, &sp)
		if err != nil {
			return err
		}
		return process.CheckStarted(started, dest.ID())
	})
	if err != nil {
		return nil, asCallError(err)
	}
	return started, nil
}

// Ping implements mitogen.PersistentMaster.
func (st *server) Ping(ctx context.Context, pc *mitogen.PersistChain) error {
	if err := st.use(ctx, pc, func(dest *core.Context) error { return dest.Agent().Ping(ctx) }); err != nil {
		return asCallError(err)
	}
	return nil
}

// maxRunHosts bounds the hosts of an open_run.
const maxRunHosts = 64

// OpenRun implements mitogen.PersistentMaster: a fakessh run on this
// master for a program the caller runs, until the caller disconnects.
func (st *server) OpenRun(ctx context.Context, pc *mitogen.PersistChain, hosts map[string]*mitogen.PersistChain) (*mitogen.PersistRun, error) {
	caller, ok := core.CallerID(ctx)
	if !ok {
		return nil, callError("EINVAL", "open_run: no caller")
	}
	if len(hosts) > maxRunHosts {
		return nil, callError("EINVAL", "open_run: %d hosts (at most %d)", len(hosts), maxRunHosts)
	}
	st.mu.Lock()
	busy := st.runs[caller] != nil
	st.mu.Unlock()
	if busy {
		return nil, callError("EBUSY", "open_run: this client has a run open already")
	}
	// Each chain is checked alive (and dialed again if need be) now: a
	// run keeps the contexts it was opened with.
	last := func(pc *mitogen.PersistChain) (*core.Context, error) {
		var dest *core.Context
		err := st.use(ctx, pc, func(d *core.Context) error {
			dest = d
			return d.Agent().Ping(ctx)
		})
		return dest, err
	}
	rn := &fakessh.Runner{Router: st.r, Hosts: map[string]*core.Context{}}
	var err error
	if rn.Default, err = last(pc); err != nil {
		return nil, asCallError(err)
	}
	for name, hpc := range hosts {
		if rn.Hosts[name], err = last(hpc); err != nil {
			ce := asCallError(err)
			ce.Message = "host " + name + ": " + ce.Message
			return nil, ce
		}
	}
	sess, err := rn.Open(st.ctx)
	if err != nil {
		return nil, asCallError(err)
	}
	st.mu.Lock()
	if !st.members[caller] || st.runs[caller] != nil {
		st.mu.Unlock()
		sess.Close()
		return nil, callError("EBUSY", "open_run: this client left or has a run open already")
	}
	st.runs[caller] = sess
	st.mu.Unlock()
	return &mitogen.PersistRun{Dir: sess.Dir, Env: sess.Env}, nil
}

// asCallError passes a CallError on as a copy, and wraps anything else.
func asCallError(err error) *mitogen.CallError {
	var ce *mitogen.CallError
	if errors.As(err, &ce) {
		c := *ce
		return &c
	}
	return callError("", "%v", err)
}

// Status implements mitogen.PersistentMaster.
func (st *server) Status(context.Context) (*mitogen.PersistStatus, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	ps := &mitogen.PersistStatus{Pid: int32(os.Getpid()), Clients: int32(st.clients), IdleTimeoutMs: st.idleTimeout().Milliseconds()}
	for _, h := range st.chains {
		select {
		case <-h.ready:
			if h.err == nil {
				ps.Chains = append(ps.Chains, fmt.Sprintf("%s (context %d)", h.name, h.chain[len(h.chain)-1].ID()))
			}
		default:
			ps.Chains = append(ps.Chains, h.name+" (dialing)")
		}
	}
	sort.Strings(ps.Chains)
	return ps, nil
}

// Stop implements mitogen.PersistentMaster: the master ends after the reply.
// The client takes either the reply or the end of its stream for success.
func (st *server) Stop(context.Context) error {
	st.stop("stop requested")
	return nil
}
