package fakessh_test

import (
	"bytes"
	"os"
	"regexp"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"

	"strings"
	"testing"
)

const noPtyLine = "Pseudo-terminal will not be allocated because stdin is not a terminal.\r\n"

// -t without a local terminal: as OpenSSH, no pty and a line on stderr
// (none with -q); -tt forces the pty; -T and a command ask for none.
func TestTTYRequestWithoutTerminal(t *testing.T) {
	_, dest := chain(t, 1)
	st, out, errs := runUnder(t, dest, nil, nil, "ssh", "-t", "h", "tty")
	if st != 1 || out != "not a tty\n" || errs != noPtyLine {
		t.Errorf("-t: status %d, stdout %q, stderr %q; want 1, \"not a tty\", OpenSSH's line", st, out, errs)
	}
	st, out, errs = runUnder(t, dest, nil, nil, "ssh", "-q", "-t", "h", "tty")
	if st != 1 || out != "not a tty\n" || errs != "" {
		t.Errorf("-q -t: status %d, stdout %q, stderr %q; want 1, \"not a tty\", nothing", st, out, errs)
	}
	st, out, errs = runUnder(t, dest, nil, nil, "ssh", "-tt", "h", "tty; exit 6")
	if st != 6 || !regexp.MustCompile(`^/dev/pts/\d+\r\n$`).MatchString(out) || errs != "Connection to h closed.\r\n" {
		t.Errorf("-tt: status %d, stdout %q, stderr %q; want 6, a pts device, OpenSSH's closing line", st, out, errs)
	}
	st, out, errs = runUnder(t, dest, nil, nil, "ssh", "-qtt", "h", "tty >/dev/null && echo pty")
	if st != 0 || out != "pty\r\n" || errs != "" {
		t.Errorf("-qtt: status %d, stdout %q, stderr %q", st, out, errs)
	}
	// No command and no terminal: OpenSSH wants a pty and says it gets none.
	st, out, errs = runUnder(t, dest, nil, []byte("tty; exit 0\n"), "ssh", "h")
	if st != 0 || out != "not a tty\n" || errs != noPtyLine {
		t.Errorf("login: status %d, stdout %q, stderr %q", st, out, errs)
	}
	st, out, errs = runUnder(t, dest, nil, nil, "ssh", "-T", "h", "tty")
	if st != 1 || out != "not a tty\n" || errs != "" {
		t.Errorf("-T: status %d, stdout %q, stderr %q", st, out, errs)
	}
}

// A pty's output and exit status arrive whole: many lines, then the status.
func TestForcedPtyOutputWhole(t *testing.T) {
	_, dest := chain(t, 1)
	st, out, _ := runUnder(t, dest, nil, nil, "ssh", "-qtt", "h", "seq 1 20000; exit 9")
	lines := strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n")
	if st != 9 || len(lines) != 20000 || lines[19999] != "20000" {
		last := lines[len(lines)-1]
		if len(last) > 40 {
			last = "..." + last[len(last)-40:]
		}
		t.Fatalf("status %d, %d lines (last %q)", st, len(lines), last)
	}
}

// Quiet as OpenSSH: `ssh -q` killed by SIGTERM prints nothing (and exits
// 255); nor does ssh without -q (OpenSSH says "Killed by signal" only
// with -v).
func TestSignalledSSHIsQuiet(t *testing.T) {
	_, dest := chain(t, 1)
	for _, q := range []string{"-q", "-x"} {
		script := `ssh ` + q + ` h 'echo up; exec sleep 1000' > out 2> err & p=$!
while ! grep -q up out; do sleep 0.05; done
kill -TERM $p; wait $p; echo "status=$?"; cat err`
		dir := t.TempDir()
		st, out, errs := runUnderIn(t, dest, dir, "sh", "-c", script)
		if st != 0 || out != "status=255\n" {
			t.Errorf("ssh %s killed by SIGTERM: %q (program stderr %q); want status 255 and no message", q, out, errs)
		}
	}
}

// runUnderIn runs argv under fakessh in dir, with no input.
func runUnderIn(t *testing.T, dest *core.Context, dir string, argv ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Dir: dir, Stdout: &out, Stderr: &errb}
	status, err := rn.Run(ctxT(t, 120*time.Second), argv)
	if err != nil {
		t.Fatalf("Run %q: %v (stderr: %s)", argv, err, errb.String())
	}
	return status, out.String(), errb.String()
}
