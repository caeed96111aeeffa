package fd

import (
	"context"
	"io"
	"os"
	"os/exec"
	"testing"
)

func TestSocketpairCarriesBytesBothWays(t *testing.T) {
	a, b, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := FileConn(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := FileConn(b)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	defer cb.Close()
	go ca.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(cb, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("%q %v", buf, err)
	}
}

func TestPTYIsATerminal(t *testing.T) {
	m, s, err := OpenPTY()
	if err != nil {
		t.Skipf("no ptys here: %v", err)
	}
	defer m.Close()
	defer s.Close()
	cmd := exec.Command("sh", "-c", "test -t 0 && echo tty")
	cmd.Stdin, cmd.Stdout = s, s
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _ := m.Read(buf)
	if string(buf[:n]) != "tty\r\n" {
		t.Fatalf("got %q", buf[:n])
	}
}

func TestLocalStartFailsClearly(t *testing.T) {
	_, err := (&Local{Exe: "/nonexistent/mitogen"}).Start(context.Background())
	if err == nil {
		t.Fatal("started a missing binary")
	}
	if _, statErr := os.Stat("/nonexistent"); statErr == nil {
		t.Skip("odd machine")
	}
}
