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
	if err := run(config{idl: "testdata/nested.thrift", out: dir}); err != nil {
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

// TestUserIDL generates a user's IDL (an include, plain i32 constants, a
// service whose signatures use the included file's types) into a module
// of its own, outside this one, and runs tests there: the generated
// packages build, the included file's package is generated and referred
// to by its import path, the constants are not handles, the typed client
// and dispatcher round-trip, an unknown method is a
// *thrift.ApplicationException of type UNKNOWN_METHOD, and containers of
// included types are bounded.
func TestUserIDL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a generated module")
	}
	mod := t.TempDir()
	idl, err := filepath.Abs("testdata/user/catalog.thrift")
	if err != nil {
		t.Fatal(err)
	}
	writeModule(t, mod, "example.com/catalog")
	if err := run(config{idl: idl, out: filepath.Join(mod, "gen"), module: "example.com/catalog"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"usersvc/dispatch.go", "usersvc/bounds.go", "usersvc/nocopy.go", "usercommon/common.go", "usercommon/dispatch.go", "usercommon/bounds.go", "usercommon/nocopy.go"} {
		if _, err := os.Stat(filepath.Join(mod, "gen", f)); err != nil {
			t.Errorf("not generated: %v", err)
		}
	}
	disp, err := os.ReadFile(filepath.Join(mod, "gen", "usersvc", "dispatch.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(disp), `"example.com/catalog/gen/usercommon"`) {
		t.Errorf("dispatch.go does not import the included package by its path:\n%s", disp)
	}
	if err := os.WriteFile(filepath.Join(mod, "gen", "usersvc", "user_test.go"), []byte(userTest), 0o644); err != nil {
		t.Fatal(err)
	}
	goIn(t, mod, "vet", "./...")
	goIn(t, mod, "test", "-count=1", "./...")
}

// writeModule makes dir a Go module named path with this module's
// requirements and checksums, so that it builds from the module cache.
func writeModule(t *testing.T, dir, path string) {
	t.Helper()
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(gomod), "\n")
	if !ok {
		t.Fatal("go.mod has one line")
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+path+"\n"+rest), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile("../../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
}

// goIn runs the go command in dir, offline (from the module cache).
func goIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	t.Logf("go %s: %s", strings.Join(args, " "), out)
}

const userTest = `package usersvc

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/cloudwego/gopkg/protocol/thrift"

	"example.com/catalog/gen/usercommon"
)

type catalog struct{}

func (catalog) Find(ctx context.Context, q *Query, mood usercommon.Mood) ([]*usercommon.Item, error) {
	if q.Prefix == "none" {
		return nil, &usercommon.NotFound{What: q.Prefix}
	}
	return []*usercommon.Item{{Name: q.Prefix + "1", Tags: usercommon.Tags{"t"}, Mood: mood}}, nil
}

func (catalog) Get(ctx context.Context, name string) (*usercommon.Item, error) {
	return &usercommon.Item{Name: name}, nil
}

func (catalog) Touch(ctx context.Context, tags usercommon.Tags) error {
	return errors.New("touch failed")
}

// local is a Caller that encodes, dispatches and decodes in-process.
type local struct{}

func (local) CallFunction(ctx context.Context, method string, args, result thrift.FastCodec) error {
	b := make([]byte, args.BLength())
	args.FastWriteNocopy(b, nil)
	res, err := DispatchCatalog(ctx, catalog{}, method, b)
	if err != nil {
		return err
	}
	out := make([]byte, res.BLength())
	res.FastWriteNocopy(out, nil)
	_, err = result.FastRead(out)
	return err
}

func TestConstantsAreNotHandles(t *testing.T) {
	if MAX_RETRIES != 3 || DEFAULT_TIMEOUT_MS != 250 {
		t.Fatalf("constants %d %d", MAX_RETRIES, DEFAULT_TIMEOUT_MS)
	}
	if hs := WellKnownHandles(); len(hs) != 0 {
		t.Errorf("WellKnownHandles() = %v, want none", hs)
	}
	if n := HandleName(DEFAULT_TIMEOUT_MS); n != "" {
		t.Errorf("HandleName(%d) = %q", DEFAULT_TIMEOUT_MS, n)
	}
}

func TestClient(t *testing.T) {
	c := &CatalogClient{Caller: local{}}
	ctx := context.Background()
	items, err := c.Find(ctx, &Query{Prefix: "p", Seen: []*usercommon.Item{{Name: "s"}}, ByTag: map[string]usercommon.Tags{"k": {"v"}}}, usercommon.Mood_BUSY)
	if err != nil || len(items) != 1 || items[0].Name != "p1" || items[0].Mood != usercommon.Mood_BUSY || items[0].Tags[0] != "t" {
		t.Fatalf("Find: %v %+v", err, items)
	}
	var nf *usercommon.NotFound
	if _, err := c.Find(ctx, &Query{Prefix: "none"}, usercommon.Mood_CALM); !errors.As(err, &nf) || nf.What != "none" {
		t.Fatalf("Find(none): %v", err)
	}
	if it, err := c.Get(ctx, "g"); err != nil || it.Name != "g" {
		t.Fatalf("Get: %v %+v", err, it)
	}
	if err := c.Touch(ctx, usercommon.Tags{"x"}); err == nil || IsUnknownMethod(err) {
		t.Fatalf("Touch: %v", err)
	}
}

func TestUnknownMethod(t *testing.T) {
	_, err := DispatchCatalog(context.Background(), catalog{}, "Catalog:nope", nil)
	var ae *thrift.ApplicationException
	if !errors.As(err, &ae) || ae.TypeID() != thrift.UNKNOWN_METHOD {
		t.Fatalf("unknown method gave %T %v, want an ApplicationException UNKNOWN_METHOD", err, err)
	}
	if !IsUnknownMethod(err) || !usercommon.IsUnknownMethod(err) {
		t.Fatal("IsUnknownMethod is false")
	}
	t.Log(err)
}

func TestHostileIncludedContainers(t *testing.T) {
	for name, b := range map[string][]byte{
		"seen":   {byte(thrift.LIST), 0, 2, byte(thrift.STRUCT), 0x7f, 0xff, 0xff, 0xff, 0, 0, 0},
		"by_tag": {byte(thrift.MAP), 0, 3, byte(thrift.STRING), byte(thrift.LIST), 0x7f, 0xff, 0xff, 0xff, 0, 0, 0},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := new(Query).FastRead(b)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: decoded", name)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<16 {
			t.Errorf("%s: decoding allocated %d bytes", name, d)
		}
	}
}
`

// TestHandleMarks shows that only constants marked (mitogen.handle =
// "true"), through their typedef or (thriftgo only) on themselves, are
// well-known handles, whatever their value or name, and that a malformed
// mark is an error.
func TestHandleMarks(t *testing.T) {
	const head = "namespace go marks\ntypedef i32 Handle (mitogen.handle = \"true\")\ntypedef Handle Alias\n"
	gen := func(body string) (string, error) {
		dir := t.TempDir()
		idl := filepath.Join(dir, "marks.thrift")
		if err := os.WriteFile(idl, []byte(head+body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := run(config{idl: idl, out: filepath.Join(dir, "gen"), importPath: "example.com/marks"}); err != nil {
			return "", err
		}
		b, err := os.ReadFile(filepath.Join(dir, "gen", "marks", "dispatch.go"))
		return string(b), err
	}
	src, err := gen(`const Handle FIRST = 7
const Alias SECOND = 5000
const i32 THIRD = 9 (mitogen.handle = "true")
const i32 MAX_RETRIES = 3
const i32 IS_DEAD = 999
const i32 TIMEOUT_MS = 250
`)
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(src, "func WellKnownHandles")
	end := strings.Index(src, "// HandleName")
	if start < 0 || end < start {
		t.Fatalf("no handle table in\n%s", src)
	}
	table := strings.Fields(src[start:end])
	want := []string{"func", "WellKnownHandles()", "[]int32", "{", "return", "[]int32{", "FIRST,", "THIRD,", "SECOND,", "}", "}"}
	if strings.Join(table, " ") != strings.Join(want, " ") {
		t.Errorf("handle table %q, want %q", table, want)
	}
	for name, body := range map[string]string{
		"false":      "const i32 A = 1 (mitogen.handle = \"false\")\n",
		"not i32":    "const string A = \"x\" (mitogen.handle = \"true\")\n",
		"i64 handle": "typedef i64 Wide (mitogen.handle = \"true\")\nconst Wide A = 1\n",
	} {
		if _, err := gen(body); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestOutImportPath checks how -import and -module give the import path
// of the output directory.
func TestOutImportPath(t *testing.T) {
	mod := t.TempDir()
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("// x\nmodule example.com/m // the module\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bare := t.TempDir()
	for _, c := range []struct {
		out, wd, imp, module string
		want                 string // "" for an error
	}{
		{out: filepath.Join(mod, "a", "gen"), want: "example.com/m/a/gen"},
		{out: mod, want: "example.com/m"},
		{out: filepath.Join(mod, "gen"), module: "example.com/m", want: "example.com/m/gen"},
		{out: filepath.Join(mod, "gen"), module: "example.com/other"},
		{out: filepath.Join(bare, "x", "gen"), wd: bare, module: "example.com/new", want: "example.com/new/x/gen"},
		{out: filepath.Join(bare, "gen"), wd: filepath.Join(bare, "sub"), module: "example.com/new"},
		{out: filepath.Join(bare, "gen"), wd: bare},
		{out: filepath.Join(bare, "gen"), imp: "example.com/any/gen", want: "example.com/any/gen"},
		{out: filepath.Join(bare, "gen"), imp: "example.com/any/gen", module: "example.com/other"},
		{out: filepath.Join(bare, "gen"), imp: "../gen"},
		{out: filepath.Join(bare, "gen"), imp: "example.com/a b"},
	} {
		got, err := outImportPath(c.out, c.wd, c.imp, c.module)
		if c.want == "" {
			if err == nil {
				t.Errorf("%+v: %q, want an error", c, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%+v: %q, %v; want %q", c, got, err, c.want)
		}
	}
}

// TestSharedNamespaceRefused: two IDL files of one generation that name
// the same Go package would overwrite each other's dispatch.go; that is
// an error.
func TestSharedNamespaceRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.thrift"), []byte("namespace go same\nstruct A { 1: i32 x }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.thrift"), []byte("include \"a.thrift\"\nnamespace go same\nstruct B { 1: a.A a }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run(config{idl: filepath.Join(dir, "b.thrift"), out: filepath.Join(dir, "gen"), importPath: "example.com/x"})
	if err == nil || !strings.Contains(err.Error(), "share the Go package") {
		t.Fatalf("got %v, want a shared-package error", err)
	}
}
