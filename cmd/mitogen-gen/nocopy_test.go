package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nocopyStruct is the shape thriftgo's fastgo backend gives a struct with
// a binary field (a string field beside it stays copied).
const nocopyStruct = `package x

import "github.com/cloudwego/gopkg/protocol/thrift"

type S struct {
	Data []byte
	Name string
}

func (p *S) FastWriteNocopy(b []byte, w thrift.NocopyWriter) (n int) {
	if n = len(p.FastAppend(b[:0])); n > len(b) {
		panic("buffer overflow. concurrency issue?")
	}
	return
}

func (p *S) FastAppend(b []byte) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = append(b, p.Data...)
	b = append(b, p.Name...)
	return append(b, 0)
}
`

// The pass gives a struct with a binary field a fastAppendNocopy that
// hands that field (not the string) to w, and makes FastWriteNocopy use it.
func TestNocopyRewrite(t *testing.T) {
	f := filepath.Join(t.TempDir(), "k-x.go")
	if err := os.WriteFile(f, []byte(nocopyStruct), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := nocopyFileRewrite(f, map[string]map[string]bool{"S": {"Data": true}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{
		"if n = len(p.fastAppendNocopy(b[:0:len(b)], w)); n > len(b) {",
		"func (p *S) fastAppendNocopy(b []byte, w thrift.NocopyWriter) []byte {",
		"b = appendNocopy(b, w, p.Data)",
		"func (p *S) FastAppend(b []byte) []byte {",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rewritten file lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "b = append(b, p.Name...)"); n != 2 {
		t.Errorf("the string field is appended %d times; want 2 (FastAppend and fastAppendNocopy copy it)", n)
	}
	if n := strings.Count(out, "b = append(b, p.Data...)"); n != 1 {
		t.Errorf("the binary field is copied in %d functions; want 1 (FastAppend)", n)
	}
}

// The pass fails loudly when FastWriteNocopy does not have the shape it
// rewrites.
func TestNocopyRejectsUnknownShape(t *testing.T) {
	src := strings.Replace(nocopyStruct, "if n = len(p.FastAppend(b[:0])); n > len(b) {", "if n = len(p.FastAppend(b[:0:0])); n > len(b) {", 1)
	f := filepath.Join(t.TempDir(), "k-x.go")
	if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := nocopyFileRewrite(f, map[string]map[string]bool{"S": {"Data": true}}); err == nil {
		t.Errorf("no error for a FastWriteNocopy of another shape")
	} else {
		t.Logf("%v", err)
	}
}
