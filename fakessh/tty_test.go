package fakessh_test

import (
	"regexp"

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
