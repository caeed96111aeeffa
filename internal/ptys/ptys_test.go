package ptys

import (
	"io"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Bytes written to the slave come out of the master (through the line
// discipline, which turns "\n" into "\r\n"), and the slave is a terminal.
func TestOpenPair(t *testing.T) {
	m, s, err := OpenPair()
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	defer m.Close()
	defer s.Close()
	if _, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS); err != nil {
		t.Fatalf("the slave is not a terminal: %v", err)
	}
	if _, err := s.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(m, buf, len("hello\r\n"))
	if err != nil || !strings.HasPrefix(string(buf[:n]), "hello\r\n") {
		t.Fatalf("read %q, %v; want \"hello\\r\\n\"", buf[:n], err)
	}
}
