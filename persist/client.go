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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudwego/gopkg/protocol/thrift"
	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// ErrNoMaster says that no persistent master answers in the directory.
var ErrNoMaster = errors.New("no persistent master is running")

// Timeouts of the client's side.
const (
	// busyPatience bounds how long a client retries a master that is at
	// its cap of clients.
	busyPatience = 30 * time.Second
	// lockPatience bounds how long a client waits for another client
	// starting a master.
	lockPatience = 2 * time.Minute
)

// Client is a connection to a persistent master: a leaf child context of
// it, allowed to call its PersistentMaster service.
type Client struct {
	r   *core.Router
	svc *mitogen.PersistentMasterClient
}

// Router is the client's own router (to relay a started process).
func (c *Client) Router() *core.Router { return c.r }

// Service is the master's PersistentMaster service.
func (c *Client) Service() *mitogen.PersistentMasterClient { return c.svc }

// Close leaves the master.
func (c *Client) Close() error { return c.r.Close() }

// Done is closed when the connection to the master has ended.
func (c *Client) Done() <-chan struct{} { return c.r.Done() }

// Stop asks the master to end, and waits (within ctx) until it has closed
// this client's stream, which it does after its contexts have ended.
func (c *Client) Stop(ctx context.Context) error {
	err := c.svc.Stop(ctx)
	select {
	case <-c.r.Done():
		return nil
	case <-ctx.Done():
		if err != nil {
			return err
		}
		return fmt.Errorf("the master did not end: %w", ctx.Err())
	}
}

// Dial connects to the master in dir. It fails with an error wrapping
// ErrNoMaster when none answers there (no socket, a socket nobody listens
// on: a master that died, or a master that ends as this client connects);
// it refuses a directory CheckDir refuses. logger receives the client
// router's log (nil: warnings to stderr).
func Dial(dir string, logger *slog.Logger) (*Client, error) {
	if err := CheckDir(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w (%v)", ErrNoMaster, err)
		}
		return nil, err
	}
	sock := filepath.Join(dir, SocketName)
	deadline := time.Now().Add(busyPatience)
	pause := 20 * time.Millisecond
	for {
		conn, handle, err := greet(sock)
		if err == errBusy && time.Now().Before(deadline) {
			time.Sleep(pause)
			pause = min(2*pause, 500*time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		cfg := core.DefaultConfig()
		agent.ApplyEnv(&cfg)
		cfg.Logger = logger
		if cfg.Logger == nil {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		}
		r, err := core.Boot(conn, cfg, nil)
		if err != nil {
			return nil, fmt.Errorf("joining the persistent master at %s: %w", sock, err)
		}
		return &Client{r: r, svc: &mitogen.PersistentMasterClient{Caller: handleCaller{r: r, handle: handle}}}, nil
	}
}

var errBusy = errors.New("the persistent master is busy")

// greet connects to sock and reads the master's first line.
func greet(sock string) (net.Conn, int32, error) {
	conn, err := net.Dial("unix", sock)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, 0, fmt.Errorf("%w (%s: %v)", ErrNoMaster, sock, err)
		}
		return nil, 0, fmt.Errorf("connecting to the persistent master: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(greetTimeout + bootTimeout))
	line, err := readLine(conn, maxGreetLine)
	if err != nil {
		conn.Close()
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) {
			// The connection ended before the greeting was whole (a live
			// master always writes a whole line before it closes): the
			// master was dying as we connected (its listener closed with
			// our connection still queued, or the connection closed
			// before its greeting). A master that died is no master. A
			// master that dies so on its start is reported all the same:
			// Ensure dials the master it started once, and returns this
			// error then.
			return nil, 0, fmt.Errorf("%w (%s: the master ended as this client connected: %v)", ErrNoMaster, sock, err)
		}
		return nil, 0, fmt.Errorf("the persistent master at %s said nothing usable: %w", sock, err)
	}
	if why, ok := strings.CutPrefix(line, refusePrefix); ok {
		conn.Close()
		if why == busyReason {
			return nil, 0, errBusy
		}
		return nil, 0, fmt.Errorf("the persistent master at %s refused this client: %s", sock, why)
	}
	hs, ok := strings.CutPrefix(line, greetPrefix)
	h, err := strconv.ParseInt(hs, 10, 32)
	if !ok || err != nil || int32(h) < mitogen.FIRST_DYNAMIC_HANDLE {
		conn.Close()
		return nil, 0, fmt.Errorf("the persistent master at %s greeted with %q (another version of mitogen?)", sock, line)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, int32(h), nil
}

// readLine reads up to max bytes through a newline, one byte at a time
// (what follows is the master's Boot frame, not ours to buffer).
func readLine(r io.Reader, max int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < max {
		if _, err := io.ReadFull(r, one); err != nil {
			if len(b) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", fmt.Errorf("line longer than %d bytes", max)
}

// handleCaller calls the service the master serves on a handle.
type handleCaller struct {
	r      *core.Router
	handle int32
}

func (h handleCaller) CallFunction(ctx context.Context, method string, args, result thrift.FastCodec) error {
	return h.r.CallAt(ctx, core.CallTarget{Context: mitogen.MASTER_ID, Handle: h.handle}, method, args, result)
}

// Ensure connects to the master in dir, starting one with start when none
// answers. Concurrent callers start one master: they take turns on a lock
// in dir, and each looks again for a master once it holds it. start must
// return once the new master listens (or failed to). A socket nobody
// listens on is removed before start.
func Ensure(ctx context.Context, dir string, logger *slog.Logger, start func(ctx context.Context) error) (*Client, error) {
	c, err := Dial(dir, logger)
	if err == nil || !errors.Is(err, ErrNoMaster) {
		return c, err
	}
	if err := PrepareDir(dir); err != nil {
		return nil, err
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err = Dial(dir, logger)
	if err == nil || !errors.Is(err, ErrNoMaster) {
		return c, err
	}
	if err := os.Remove(filepath.Join(dir, SocketName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the stale socket of a dead master: %w", err)
	}
	if err := start(ctx); err != nil {
		return nil, fmt.Errorf("starting the persistent master: %w", err)
	}
	return Dial(dir, logger)
}

// lockDir takes the lock of dir, waiting for at most lockPatience.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("persistent master lock: %w", err)
	}
	deadline := time.Now().Add(lockPatience)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("persistent master lock: %w", err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("persistent master lock %s: held by another client for %v", f.Name(), lockPatience)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
