package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBoundedNested generates a package from an IDL with sets, nested
// containers, typedefs, enums and struct keys, checks that every container
// read got its size check, and runs hostile payloads against the result.
func TestBoundedNested(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a generated package")
	}
	// The output must live inside the module for `go test` to build it.
	dir, err := os.MkdirTemp(".", "tmpgen-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run("testdata/nested.thrift", dir); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, "nested")
	src, err := os.ReadFile(filepath.Join(pkg, "k-nested.go"))
	if err != nil {
		t.Fatal(err)
	}
	// 2 set/list + list<list>: 2, map+list: 2, map+set: 2, list+map: 2,
	// typedef list: 1, list<bool>: 1, map: 1, result list + args map: 2.
	if got, want := strings.Count(string(src), "checkContainerSize("), 14; got != want {
		t.Fatalf("%d size checks in generated code, want %d", got, want)
	}
	// Every container is allocated through makeSlice/makeMap (bounded
	// preallocation), none by a make of the declared size.
	if got := strings.Count(string(src), "= makeSlice[") + strings.Count(string(src), "= makeMap["); got != 14 {
		t.Errorf("%d bounded allocations in generated code, want 14", got)
	}
	if got := strings.Count(string(src), "= growOne("); got != strings.Count(string(src), "= makeSlice[") {
		t.Errorf("%d growOne calls for %d slices", got, strings.Count(string(src), "= makeSlice["))
	}
	for _, s := range []string{
		"p.Names = makeSlice[Names](sz)",               // typedef of a list
		"p.Blobs[i] = makeMap[map[string][]byte](sz0)", // map inside a list
		"checkContainerSize(sz, len(b)-off, 1)",        // list<bool>
		"checkContainerSize(sz0, len(b)-off, 4)",       // inner list<i32>
		"checkContainerSize(sz, len(b)-off, 9)",        // map<Leaf, double>
		"checkContainerSize(sz, len(b)-off, 3)",        // map<i16, byte>
		"checkContainerSize(sz0, len(b)-off, 1)",       // list<Leaf> inside map<string, list<Leaf>>
	} {
		if !strings.Contains(string(src), s) {
			t.Errorf("generated code lacks %s", s)
		}
	}
	if err := os.WriteFile(filepath.Join(pkg, "hostile_test.go"), []byte(hostileTest), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "test", "-count=1", "./"+filepath.ToSlash(pkg))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test of the generated package: %v\n%s", err, out)
	}
}

// TestBoundFileRejectsUnknownShape shows that the pass fails loudly when
// thriftgo's output does not have the shape it patches.
func TestBoundFileRejectsUnknownShape(t *testing.T) {
	for name, src := range map[string]string{
		"changed read": "\t\t_, sz, l, err = x.ReadListBeginChecked(b[off:])\n",
		"no make":      "\t\t_, sz, l, err = x.ReadListBegin(b[off:])\n\t\toff += l\n\t\tif err != nil {\n\t\t\tgoto ReadFieldError\n\t\t}\n\t\tp.X = nil\n\t\tfoo()\n",
		"stray make":   "\t\tp.X = make([]int32, n)\n",
		"no loop":      "\t\t_, sz, l, err = x.ReadListBegin(b[off:])\n\t\toff += l\n\t\tif err != nil {\n\t\t\tgoto ReadFieldError\n\t\t}\n\t\tp.X = make([]int32, sz)\n\t\tfor i := 0; i < n; i++ {\n\t\t}\n",
	} {
		f := filepath.Join(t.TempDir(), "k-x.go")
		if err := os.WriteFile(f, []byte("package x\nfunc f() {\n"+src+"}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := boundFile(f, &minSizer{}); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

const hostileTest = `package nested

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/cloudwego/gopkg/protocol/thrift"
)

func hostile(fid int16, ftyp thrift.TType, hdr ...byte) []byte {
	b := []byte{byte(ftyp), byte(fid >> 8), byte(fid)}
	b = append(b, hdr...)
	return append(b, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

func TestHostile(t *testing.T) {
	cases := map[string][]byte{
		"set":        hostile(1, thrift.SET, byte(thrift.STRING)),
		"listlist":   hostile(2, thrift.LIST, byte(thrift.LIST)),
		"map":        hostile(3, thrift.MAP, byte(thrift.STRING), byte(thrift.LIST)),
		"mapset":     hostile(4, thrift.MAP, byte(thrift.I64), byte(thrift.SET)),
		"listmap":    hostile(5, thrift.LIST, byte(thrift.MAP)),
		"typedef":    hostile(6, thrift.LIST, byte(thrift.STRING)),
		"bools":      hostile(7, thrift.LIST, byte(thrift.BOOL)),
		"structkeys": hostile(8, thrift.MAP, byte(thrift.STRUCT), byte(thrift.DOUBLE)),
	}
	// Inner containers: one outer element holding a huge inner list.
	inner := []byte{byte(thrift.LIST), 0, 2, byte(thrift.LIST), 0, 0, 0, 1, byte(thrift.I32)}
	inner = binary.BigEndian.AppendUint32(inner, 1<<31-1)
	cases["inner"] = append(inner, 0, 0, 0, 0, 0)
	for name, b := range cases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := new(Tree).FastRead(b)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: decoded without error", name)
			continue
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<16 {
			t.Errorf("%s: decoding allocated %d bytes", name, d)
		}
		t.Logf("%s: %v", name, err)
	}
	args := hostile(1, thrift.MAP, byte(thrift.I16), byte(thrift.BYTE))
	if _, err := new(SGetArgs).FastRead(args); err == nil {
		t.Error("args map: decoded without error")
	}
	res := hostile(0, thrift.LIST, byte(thrift.STRING))
	if _, err := new(SGetResult).FastRead(res); err == nil {
		t.Error("result list: decoded without error")
	}
	// A valid value still decodes.
	tr := &Tree{Tags: []string{"a"}, Grid: [][]int32{{1, 2}}, Forest: map[string][]*Leaf{"f": {{X: 1}}},
		Colors: map[int64][]Color{1: {Color_RED}}, Blobs: []map[string][]byte{{"k": []byte("v")}},
		Names: Names{"n"}, Flags: []bool{true}, Weights: map[*Leaf]float64{{X: 2}: 1.5}}
	buf := make([]byte, tr.BLength())
	tr.FastWriteNocopy(buf, nil)
	var got Tree
	if _, err := got.FastRead(buf); err != nil || len(got.Grid[0]) != 2 || got.Forest["f"][0].X != 1 {
		t.Fatalf("valid Tree: %v %+v", err, got)
	}
}
`
