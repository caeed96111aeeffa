package fakessh_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// scp and sftp started by another program (by name, from a shell) go
// through fakessh too: the host name resolves nowhere, so only our ssh can
// serve it (the real scp/sftp would run /usr/bin/ssh, which fails).
func TestNestedScpSftp(t *testing.T) {
	testhosts.Need(t, "scp", "sftp")
	forChains(t, func(t *testing.T, dest *core.Context) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		data := make([]byte, 256<<10+3)
		rand.Read(data)
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		remote := t.TempDir()
		batch := filepath.Join(dir, "batch")
		os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s/sftp\n", src, remote)), 0o644)
		script := fmt.Sprintf("scp -q -O %s nosuch.invalid:%s/legacy && scp -q %s nosuch.invalid:%s/scp && sftp -q -b %s nosuch.invalid",
			src, remote, src, remote, batch)
		st, out, errs := runUnder(t, dest, nil, nil, "sh", "-c", script)
		if st != 0 {
			t.Fatalf("sh -c scp/sftp: status %d: %s %s", st, out, errs)
		}
		for _, f := range []string{"legacy", "scp", "sftp"} {
			if got, _ := os.ReadFile(filepath.Join(remote, f)); !bytes.Equal(got, data) {
				t.Errorf("%s: copy differs (%d bytes)", f, len(got))
			}
		}
	})
}

// echoServer listens on loopback and echoes every connection; it returns
// the port.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeLocalPort returns a loopback TCP port nobody listens on now.
func freeLocalPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ssh -W host:port connects from the destination context: stdin goes to
// the connection, the connection's bytes to stdout, and ssh exits 0 when
// both ended.
func TestStdioForward(t *testing.T) {
	forChains(t, func(t *testing.T, dest *core.Context) {
		port := echoServer(t)
		data := make([]byte, 1<<20+7)
		rand.Read(data)
		st, out, errs := runUnder(t, dest, nil, data, "ssh", "-W", fmt.Sprintf("127.0.0.1:%d", port), "h")
		if st != 0 || out != string(data) {
			t.Fatalf("ssh -W: status %d, %d bytes back (want %d), stderr %q", st, len(out), len(data), errs)
		}
		// A port nobody listens on: ssh's message and status 255.
		st, _, errs = runUnder(t, dest, nil, nil, "ssh", "-W", fmt.Sprintf("127.0.0.1:%d", freeLocalPort(t)), "h")
		if st != 255 || !strings.Contains(errs, "stdio forwarding failed") {
			t.Fatalf("ssh -W to a closed port: status %d, stderr %q; want 255 and ssh's message", st, errs)
		}
	})
}

// ssh -f -N -L: ssh goes to the background once the forward listens; the
// forwarded port reaches the echo server from the destination context; -N
// runs nothing, so the commands on its stdin never run.
func TestLocalForwardBackgroundNoCommand(t *testing.T) {
	testhosts.Need(t, "socat")
	forChains(t, func(t *testing.T, dest *core.Context) {
		port, lport := echoServer(t), freeLocalPort(t)
		dir := t.TempDir()
		marker := filepath.Join(dir, "ran")
		os.WriteFile(filepath.Join(dir, "cmds"), []byte("touch "+marker+"\n"), 0o644)
		script := fmt.Sprintf(`ssh -f -N -L 127.0.0.1:%d:127.0.0.1:%d h < cmds || exit 9
printf 'ping through -L\n' | socat -t 30 - TCP:127.0.0.1:%d`, lport, port, lport)
		rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Dir: dir}
		var out, errb bytes.Buffer
		rn.Stdout, rn.Stderr = &out, &errb
		st, err := rn.Run(ctxT(t, 120*time.Second), []string{"sh", "-c", script})
		if err != nil || st != 0 || out.String() != "ping through -L\n" {
			t.Fatalf("status %d (%v), stdout %q, stderr %q", st, err, out.String(), errb.String())
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatal("ssh -N ran the commands on its stdin")
		}
	})
}

// ssh -N without -f waits (until killed) and never executes its stdin; its
// forwards work meanwhile.
func TestNoCommandIgnoresStdin(t *testing.T) {
	testhosts.Need(t, "socat")
	_, dest := chain(t, 1)
	port, lport := echoServer(t), freeLocalPort(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	os.WriteFile(filepath.Join(dir, "cmds"), []byte("touch "+marker+"\n"), 0o644)
	script := fmt.Sprintf(`ssh -q -N -L %d:127.0.0.1:%d h < cmds & pid=$!
i=0
until out=$(printf 'up\n' | socat -t 30 - TCP:127.0.0.1:%d 2>/dev/null) && [ "$out" = up ]; do
	i=$((i+1)); if [ $i -gt 600 ]; then kill $pid; echo "the forward never came up" >&2; exit 1; fi; sleep 0.1
done
test -e %s && echo "ran while up"
kill $pid; wait $pid; echo "ssh status $?"`, lport, port, lport, marker)
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Dir: dir}
	var out, errb bytes.Buffer
	rn.Stdout, rn.Stderr = &out, &errb
	st, err := rn.Run(ctxT(t, 120*time.Second), []string{"sh", "-c", script})
	if err != nil || st != 0 || out.String() != "ssh status 255\n" {
		t.Fatalf("status %d (%v), stdout %q, stderr %q", st, err, out.String(), errb.String())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("ssh -N ran the commands on its stdin")
	}
}

// ssh -f -N -R: the destination context listens; each connection it
// accepts is connected from the ssh's side to the target.
func TestRemoteForward(t *testing.T) {
	testhosts.Need(t, "socat")
	forChains(t, func(t *testing.T, dest *core.Context) {
		port, rport := echoServer(t), freeLocalPort(t)
		script := fmt.Sprintf(`ssh -f -N -R 127.0.0.1:%d:127.0.0.1:%d h || exit 9
printf 'one\n' | socat -t 30 - TCP:127.0.0.1:%d && printf 'two\n' | socat -t 30 - TCP:127.0.0.1:%d`, rport, port, rport, rport)
		st, out, errs := runUnder(t, dest, nil, nil, "sh", "-c", script)
		if st != 0 || out != "one\ntwo\n" {
			t.Fatalf("status %d, stdout %q, stderr %q", st, out, errs)
		}
		// A port already taken: ssh's warning (the session goes on), or
		// status 255 with ExitOnForwardFailure.
		st, _, errs = runUnder(t, dest, nil, nil, "ssh", "-R", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", port, port), "h", "echo ran")
		if st != 0 || !strings.Contains(errs, fmt.Sprintf("Warning: remote port forwarding failed for listen port %d", port)) {
			t.Fatalf("-R on a taken port: status %d, stderr %q", st, errs)
		}
		st, _, errs = runUnder(t, dest, nil, nil, "ssh", "-o", "ExitOnForwardFailure=yes", "-R", fmt.Sprintf("%d:127.0.0.1:%d", port, port), "h", "echo ran")
		if st != 255 || !strings.Contains(errs, "remote port forwarding failed") {
			t.Fatalf("-R on a taken port with ExitOnForwardFailure: status %d, stderr %q", st, errs)
		}
	})
}

// ssh -D: a SOCKS proxy whose connections are made by the destination
// context (curl speaks SOCKS5 to it, with the host name resolved remotely).
func TestDynamicForward(t *testing.T) {
	testhosts.Need(t, "curl")
	_, dest := chain(t, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello via socks\n") }))
	t.Cleanup(srv.Close)
	dport := freeLocalPort(t)
	script := fmt.Sprintf(`ssh -f -N -D %d h || exit 9
curl -sS --max-time 60 --socks5-hostname 127.0.0.1:%d %s/ && curl -sS --max-time 60 --socks5 127.0.0.1:%d %s/`, dport, dport, srv.URL, dport, srv.URL)
	st, out, errs := runUnder(t, dest, nil, nil, "sh", "-c", script)
	if st != 0 || out != "hello via socks\nhello via socks\n" {
		t.Fatalf("status %d, stdout %q, stderr %q", st, out, errs)
	}
}

// ssh -f with a command: ssh returns once the command started, and the
// command runs on in the background; without a command (and without -N or
// forwards) ssh refuses as OpenSSH does.
func TestBackgroundCommand(t *testing.T) {
	_, dest := chain(t, 1)
	f := filepath.Join(t.TempDir(), "f")
	script := fmt.Sprintf(`ssh -f h 'echo from-background > %s.tmp && mv %s.tmp %s' || exit 9
echo parent-returned
ssh h 'i=0; until [ -e %s ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 1; sleep 0.05; done; cat %s'`, f, f, f, f, f)
	st, out, errs := runUnder(t, dest, nil, nil, "sh", "-c", script)
	if st != 0 || out != "parent-returned\nfrom-background\n" {
		t.Fatalf("status %d, stdout %q, stderr %q", st, out, errs)
	}
	st, _, errs = runUnder(t, dest, nil, nil, "ssh", "-f", "h")
	if st != 255 || !strings.Contains(errs, "Cannot fork into background without a command to execute.") {
		t.Fatalf("ssh -f h: status %d, stderr %q", st, errs)
	}
}

// ssh -O answers as a mux master would; what fakessh does not do exits
// 255 with a message, never silently.
func TestControlCommandsAndUnsupported(t *testing.T) {
	_, dest := chain(t, 1)
	for _, c := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"-O", "check", "h"}, 0, "Master running (pid="},
		{[]string{"-O", "exit", "h"}, 0, "Exit request sent."},
		{[]string{"-O", "stop", "h"}, 0, "Stop listening request sent."},
		{[]string{"-O", "forward", "-L", "1:h:2", "h"}, 255, "fakessh"},
		{[]string{"-O", "bogus", "h"}, 255, "Invalid multiplex command."},
		{[]string{"-w", "0:0", "h", "true"}, 255, "fakessh"},
		{[]string{"-L", "/tmp/sock:h:22", "h", "true"}, 255, "fakessh"},
		{[]string{"-W", "nocolon", "h"}, 255, "Bad stdio forwarding specification"},
	} {
		st, _, errs := runUnder(t, dest, nil, nil, append([]string{"ssh"}, c.args...)...)
		if st != c.status || !strings.Contains(errs, c.stderr) {
			t.Errorf("ssh %q: status %d, stderr %q; want %d and %q", c.args, st, errs, c.status, c.stderr)
		}
	}
}
