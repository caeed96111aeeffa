package fakessh_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/fakessh/sshargs"
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

// OpenSSH's pty decision (ssh.c): -t/-tt/-T, else RequestTTY, else a pty
// for a session with no command; without a terminal on stdin only a forced
// one, with a warning when one was wanted.
func TestWantPty(t *testing.T) {
	for _, c := range []struct {
		args      []string
		tty       bool
		pty, warn bool
	}{
		{[]string{"h", "cmd"}, true, false, false},
		{[]string{"h"}, true, true, false},
		{[]string{"h"}, false, false, true},
		{[]string{"-T", "h"}, true, false, false},
		{[]string{"-T", "h"}, false, false, false},
		{[]string{"-t", "h", "cmd"}, true, true, false},
		{[]string{"-t", "h", "cmd"}, false, false, true},
		{[]string{"-tt", "h", "cmd"}, false, true, false},
		{[]string{"-s", "h", "sftp"}, true, false, false},
		{[]string{"-t", "-s", "h", "sftp"}, true, true, false},
		{[]string{"-o", "RequestTTY=force", "h", "cmd"}, false, true, false},
		{[]string{"-o", "RequestTTY=yes", "h", "cmd"}, false, false, true},
		{[]string{"-o", "RequestTTY=no", "h"}, true, false, false},
		{[]string{"-o", "RequestTTY=auto", "h"}, true, true, false},
		{[]string{"-T", "-o", "RequestTTY=force", "h", "cmd"}, false, false, false},
	} {
		inv, err := sshargs.Parse(c.args)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if pty, warn := fakessh.WantPty(inv, c.tty); pty != c.pty || warn != c.warn {
			t.Errorf("%q with a terminal %v: pty %v warn %v; want %v %v", c.args, c.tty, pty, warn, c.pty, c.warn)
		}
	}
}
