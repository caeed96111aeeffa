package fd

import (
	"net"
	"os"
	"testing"
)

// A stream joined from two pipes, and a started agent's stream, hand their
// descriptors to core (core.SyscallConns), which then reads and writes
// them directly; a stream that is not plain descriptors does not.
func TestSyscallConns(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	j := Join(r, w)
	defer j.Close()
	pc := j.(*pipeConn)
	rd, wr, err := pc.SyscallConns()
	if err != nil || rd == nil || wr == nil {
		t.Fatalf("pipe pair: %v", err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, err := (&pipeConn{r: a, w: b}).SyscallConns(); err == nil {
		t.Errorf("an in-memory pipe claimed descriptors")
	}
	s1, s2, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c, err := FileConn(s1)
	if err != nil {
		t.Fatal(err)
	}
	p := &ProcConn{ReadWriteCloser: c}
	defer c.Close()
	if rd, wr, err := p.SyscallConns(); err != nil || rd == nil || wr == nil {
		t.Errorf("agent socket: %v", err)
	}
}
