package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// Only the argument annotated (mitogen.borrow = "true") is read with
// readBinaryBorrowed; the annotation on anything but a binary argument, or
// with another value, fails generation.
func TestBorrowAnnotation(t *testing.T) {
	gen := func(body string) (string, error) {
		dir := t.TempDir()
		idl := filepath.Join(dir, "b.thrift")
		if err := os.WriteFile(idl, []byte("namespace go b\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := run(config{idl: idl, out: filepath.Join(dir, "gen"), importPath: "example.com/b"}); err != nil {
			return "", err
		}
		out, err := os.ReadFile(filepath.Join(dir, "gen", "b", "k-b.go"))
		return string(out), err
	}
	src, err := gen(`service S {
  binary put(1: binary lent (mitogen.borrow = "true"), 2: binary kept)
  binary get(1: binary kept)
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(src, "readBinaryBorrowed("); n != 1 {
		t.Errorf("readBinaryBorrowed used %d times; want 1 (S.put's lent)", n)
	}
	if !strings.Contains(src, "p.Lent, l, err = readBinaryBorrowed(b[off:])") {
		t.Errorf("S.put's lent is not borrowed:\n%s", src)
	}
	for _, kept := range []string{"p.Kept, l, err = x.ReadBinary(b[off:])", "p.Success, l, err = x.ReadBinary(b[off:])"} {
		if !strings.Contains(src, kept) {
			t.Errorf("no %q: an unannotated field is no longer copied", kept)
		}
	}
	for name, body := range map[string]string{
		"string": "service S { void put(1: string s (mitogen.borrow = \"true\")) }\n",
		"false":  "service S { void put(1: binary s (mitogen.borrow = \"false\")) }\n",
		"list":   "service S { void put(1: list<binary> s (mitogen.borrow = \"true\")) }\n",
		"struct": "struct T { 1: binary b (mitogen.borrow = \"true\") }\n",
		"result": "exception E { 1: binary b (mitogen.borrow = \"true\") }\nservice S { void put() throws (1: E e) }\n",
	} {
		if _, err := gen(body); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// The generated decoder of a borrowed argument (Agent.echo's data) leaves a
// large value in the buffer it was read from, and copies a small one; an
// unannotated field (echo's result) is always copied. A length beyond the
// buffer is an error, as ReadBinary's.
func TestBorrowedDecoding(t *testing.T) {
	enc := func(c thrift.FastCodec) []byte {
		b := make([]byte, c.BLength())
		return b[:c.FastWriteNocopy(b, nil)]
	}
	for _, size := range []int{10, 16<<10 - 1, 16 << 10, 1 << 20} {
		data := bytes.Repeat([]byte{'x'}, size)
		buf := enc(&mitogen.AgentEchoArgs{Data: data})
		var args mitogen.AgentEchoArgs
		if _, err := args.FastRead(buf); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if !bytes.Equal(args.Data, data) {
			t.Fatalf("%d bytes: decoded differently", size)
		}
		inBuf := &buf[len(buf)-2] == &args.Data[len(args.Data)-1]
		if want := size >= 16<<10; inBuf != want {
			t.Errorf("%d bytes: argument left in the buffer: %v, want %v", size, inBuf, want)
		}
		if cap(args.Data) != len(args.Data) {
			t.Errorf("%d bytes: capacity %d reaches past the value (%d)", size, cap(args.Data), len(args.Data))
		}
		rbuf := enc(&mitogen.AgentEchoResult{Success: data})
		var res mitogen.AgentEchoResult
		if _, err := res.FastRead(rbuf); err != nil {
			t.Fatal(err)
		}
		if &rbuf[len(rbuf)-2] == &res.Success[len(res.Success)-1] {
			t.Errorf("%d bytes: an unannotated field was left in the buffer", size)
		}
	}
	buf := enc(&mitogen.AgentEchoArgs{Data: make([]byte, 1<<20)})
	var args mitogen.AgentEchoArgs
	if _, err := args.FastRead(buf[:len(buf)-100]); err == nil {
		t.Error("no error for a value cut short")
	}
}
