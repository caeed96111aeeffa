// Package bootstrap installs and starts the agent on a host that has only a
// POSIX shell: the master sends its own agent binary (gzip-compressed) over
// the new stream, the far side keeps it in a per-user 0700 cache keyed by
// its SHA-256, verifies it before every run, and execs it; the next
// connection finds it cached and sends nothing.
//
// A command that runs on this same host and keeps its stdio (sudo, doas:
// Command.Memory) is given the agent in memory instead: a sealed,
// read-only memfd as its stdin and the stream on a socket as its stdout.
// The agent then runs from /proc/self/fd with no file written anywhere, so
// accounts without a (writable) home and hosts with noexec /tmp work; the
// disk cache is the fallback when memory is not available.
//
// The exchange, after the transport (ssh, sudo) runs Script's command:
//
//	far side:  "MITOGEN0 memory\n"                  -> execs the agent from memory
//	       or: "MITOGEN0 cached\n"                  -> execs the cached agent
//	       or: "MITOGEN0 need <uname -sm>\n"        -> reads <size> bytes
//	master:    <size> bytes of gzip (only when asked, and only when the
//	           far side's OS and architecture match the agent's)
//
// after which the agent expects the Boot frame.
//
// The script sets umask 077 only while it makes the cache; the agent, and
// so every command it runs, keeps the umask the transport gave (022 from
// sshd or sudo unless the user's login files say otherwise).
package bootstrap

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
)

// Agent is an agent binary to install on other hosts.
type Agent struct {
	Path string

	once sync.Once
	gz   []byte
	hash string
	err  error

	memOnce sync.Once
	mem     *os.File // see memoryFile
	memErr  error
}

// Self is the running binary as an agent.
func Self() (*Agent, error) {
	p, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding own executable: %w", err)
	}
	if _, err := os.Stat(p); err != nil && runtime.GOOS == "linux" {
		// Running from memory ("/memfd:mitogen-agent (deleted)"): the
		// kernel still has the binary.
		p = "/proc/self/exe"
	}
	return &Agent{Path: p}, nil
}

func (a *Agent) load() error {
	a.once.Do(func() {
		b, err := os.ReadFile(a.Path)
		if err != nil {
			a.err = fmt.Errorf("reading agent binary: %w", err)
			return
		}
		sum := sha256.Sum256(b)
		a.hash = hex.EncodeToString(sum[:])
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		zw.Write(b)
		zw.Close()
		a.gz = buf.Bytes()
	})
	return a.err
}

// Hash is the SHA-256 of the binary, hex.
func (a *Agent) Hash() (string, error) {
	err := a.load()
	return a.hash, err
}

// CompressedSize is the number of bytes sent when the far side needs it.
func (a *Agent) CompressedSize() (int, error) {
	err := a.load()
	return len(a.gz), err
}

// LocalPlatform is this binary's OS and architecture as `uname -sm` prints them.
func LocalPlatform() string {
	osName := map[string]string{"linux": "Linux", "darwin": "Darwin", "freebsd": "FreeBSD"}[runtime.GOOS]
	if osName == "" {
		osName = runtime.GOOS
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "arm": "armv7l"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return osName + " " + arch
}

// platformMatches compares `uname -sm` output with ours, allowing the usual
// spellings of the same architecture.
func platformMatches(remote string) bool {
	norm := func(s string) string {
		s = strings.TrimSpace(s)
		s = strings.ReplaceAll(s, "amd64", "x86_64")
		s = strings.ReplaceAll(s, "arm64", "aarch64")
		return s
	}
	return norm(remote) == norm(LocalPlatform())
}

// Script returns the POSIX sh program that runs the cached agent or
// installs it. cacheDir overrides the cache directory (default
// ${XDG_CACHE_HOME:-$HOME/.cache}/mitogen-go); when it cannot be made or
// written (no home, a read-only one) or cannot hold programs (a noexec
// mount), $XDG_RUNTIME_DIR/mitogen-go (the user's own tmpfs, when the
// login has one) serves instead. When the command's stdin is
// a regular file (Command.Memory: the agent in a memfd, the stream on a
// socket as stdout), the program first runs the agent from it.
func (a *Agent) Script(cacheDir string) (string, error) {
	if err := a.load(); err != nil {
		return "", err
	}
	dir := `"${XDG_CACHE_HOME:-$HOME/.cache}/mitogen-go"`
	if cacheDir != "" {
		dir = ShellQuote(cacheDir)
	}
	return fmt.Sprintf(`if [ -f /proc/self/fd/0 ]; then
  exec 3<&0 0<&1
  if [ -x /proc/self/fd/3 ]; then echo "MITOGEN0 memory"; exec /proc/self/fd/3 agent; fi
  exec 3<&-
fi
M=$(umask)
umask 077
H=%s
D=
for C in %s ${XDG_RUNTIME_DIR:+"$XDG_RUNTIME_DIR/mitogen-go"}; do
  mkdir -p "$C" 2>/dev/null && chmod 700 "$C" 2>/dev/null && [ -w "$C" ] || continue
  if ! [ -x "$C/agent-$H" ]; then
    P="$C/.probe-$$"; : > "$P" && chmod 700 "$P" && [ -x "$P" ]; X=$?; rm -f "$P"
    [ "$X" = 0 ] || continue
  fi
  D=$C; break
done
[ -n "$D" ] || { echo "mitogen: cannot create agent cache $C" >&2; exit 97; }
F="$D/agent-$H"
if [ -f "$F" ] && [ "$(sha256sum < "$F" | cut -c1-64)" = "$H" ]; then
  echo "MITOGEN0 cached"
else
  echo "MITOGEN0 need $(uname -sm)"
  T="$F.$$"
  head -c %d | gzip -dc > "$T" || { rm -f "$T"; echo "mitogen: receiving the agent failed" >&2; exit 98; }
  if [ "$(sha256sum < "$T" | cut -c1-64)" != "$H" ]; then rm -f "$T"; echo "mitogen: agent checksum mismatch" >&2; exit 99; fi
  chmod 700 "$T" && mv -f "$T" "$F" || exit 99
fi
umask "$M"
exec "$F" agent
`, a.hash, dir, len(a.gz)), nil
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Handshake reads the far side's first line from r and, when it asks,
// sends the compressed agent to w. It returns the agent bytes sent.
func Handshake(ctx context.Context, r *bufio.Reader, w io.Writer, a *Agent) (int64, error) {
	return handshake(ctx, r, w, a, nil)
}

// handshake is Handshake calling begun, when not nil, as soon as the far
// side's first line has come (whatever it says).
func handshake(ctx context.Context, r *bufio.Reader, w io.Writer, a *Agent, begun func()) (int64, error) {
	if err := a.load(); err != nil {
		return 0, err
	}
	type res struct {
		line string
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		line, err := r.ReadString('\n')
		ch <- res{line, err}
	}()
	var got res
	select {
	case got = <-ch:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for the remote shell: %w", ctx.Err())
	}
	if begun != nil {
		begun()
	}
	if got.err != nil {
		return 0, fmt.Errorf("remote shell ended before the agent started: %w", got.err)
	}
	line := strings.TrimSpace(got.line)
	switch {
	case line == "MITOGEN0 cached", line == "MITOGEN0 memory":
		return 0, nil
	case strings.HasPrefix(line, "MITOGEN0 need "):
		platform := strings.TrimPrefix(line, "MITOGEN0 need ")
		if !platformMatches(platform) {
			return 0, &PlatformError{Remote: platform, Local: LocalPlatform()}
		}
		n, err := w.Write(a.gz)
		if err != nil {
			return int64(n), fmt.Errorf("sending the agent: %w", err)
		}
		return int64(n), nil
	}
	return 0, fmt.Errorf("unexpected output from the remote shell: %q (a login script printing to stdout?)", line)
}

// PlatformError says the far side cannot run this agent.
type PlatformError struct{ Remote, Local string }

func (e *PlatformError) Error() string {
	return fmt.Sprintf("remote host is %q (uname -sm) but this agent is built for %q; run mitogen built for the remote platform", e.Remote, e.Local)
}
