// Command mitogen-gen generates Go packages from a Thrift IDL for use over
// mitogen-go contexts: the types, typed clients and server-side dispatchers
// of every service. It generates gen/mitogen from idl/mitogen.thrift, and
// any user's IDL the same way.
//
// It runs thriftgo in-process (no external binary) with the fastgo backend, so
// the generated types carry FastRead/FastWriteNocopy/BLength and depend only on
// cloudwego/gopkg, and adds dispatch.go through an in-process plugin: the
// well-known handle table, CALL_FUNCTION method names, typed clients and
// server-side dispatchers for every service. It then bounds every container
// decoder thriftgo generated (see bounds.go): no declared list, set or map
// size is trusted beyond what the remaining payload can hold; and it makes
// FastWriteNocopy leave large binary fields to its NocopyWriter, as its
// name promises (see nocopy.go); and it decodes arguments annotated
// (mitogen.borrow = "true") without a copy (see borrow.go). Output is
// deterministic.
//
// Every IDL file the given one includes is generated too, each into the Go
// package its `namespace go` names, under -out; the generated code refers to
// the included packages by their import paths, which are -out's import path
// followed by the namespace's path.
//
// -out's Go import path is -import when given; otherwise it is -out's
// directory relative to the root of the module it lives in, after that
// module's path: the module is -module (its root is the directory of the
// nearest go.mod above -out, which must declare that module, or the current
// directory when there is none), or else the one the nearest go.mod above
// -out declares.
//
// Handles: a constant is a well-known handle (listed by WellKnownHandles and
// HandleName) only when it is marked so explicitly: its type is a typedef
// annotated (mitogen.handle = "true"), as in
//
//	typedef i32 Handle (mitogen.handle = "true")
//	const Handle CALL_FUNCTION = 101
//
// or the constant itself carries that annotation (thriftgo accepts
// annotations on constants; Apache's compiler does not, so IDLs shared with
// other languages use the typedef). Any other constant is a plain constant.
//
// Usage:
//
//	mitogen-gen [-idl idl/mitogen.thrift] [-out gen] [-import PATH | -module PATH]
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cloudwego/thriftgo/plugin"
	"github.com/cloudwego/thriftgo/sdk"
)

func main() {
	var c config
	flag.StringVar(&c.idl, "idl", "idl/mitogen.thrift", "Thrift IDL to generate from (the files it includes are generated too)")
	flag.StringVar(&c.out, "out", "gen", "output directory; each IDL file's package goes in the subdirectory its `namespace go` names")
	flag.StringVar(&c.importPath, "import", "", "Go import path of the -out directory (default: from -module or the nearest go.mod above -out)")
	flag.StringVar(&c.module, "module", "", "path of the Go module -out lives in (default: the module the nearest go.mod above -out declares)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "mitogen-gen: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "mitogen-gen: %v\n", err)
		os.Exit(1)
	}
}

// config is one generation's settings (the command's flags).
type config struct {
	idl, out   string
	importPath string // Go import path of out; "" to derive it
	module     string // module path out lives in; "" to read it from go.mod
}

func run(c config) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(c.idl); err != nil {
		return fmt.Errorf("reading IDL: %w (run from the repository root or pass -idl)", err)
	}
	absOut, err := filepath.Abs(c.out)
	if err != nil {
		return err
	}
	prefix, err := outImportPath(absOut, wd, c.importPath, c.module)
	if err != nil {
		return err
	}
	opts := "fastgo:no_default_serdes,naming_style=golint,reserve_comments,no_processor,package_prefix=" + prefix
	dp := &dispatchPlugin{}
	if err := sdk.RunThriftgoAsSDK(wd, []plugin.SDKPlugin{dp}, "-r", "-g", opts, "-o", absOut, c.idl); err != nil {
		return fmt.Errorf("thriftgo: %w", err)
	}
	if len(dp.pkgs) == 0 {
		return fmt.Errorf("thriftgo did not run the mitogen-dispatch plugin")
	}
	for _, p := range dp.pkgs {
		if err := boundDecoding(p.dir, p.ast, p.includes); err != nil {
			return fmt.Errorf("%s: %w", p.ast.Filename, err)
		}
		if err := writeNocopy(p.dir); err != nil {
			return fmt.Errorf("%s: %w", p.ast.Filename, err)
		}
		if err := writeBorrow(p.dir, p.borrowed); err != nil {
			return fmt.Errorf("%s: %w", p.ast.Filename, err)
		}
	}
	return nil
}

// outImportPath returns the Go import path of the directory out (absolute),
// from importPath when set, else from module and the go.mod files above
// out (see the package comment). wd is the current directory.
func outImportPath(out, wd, importPath, module string) (string, error) {
	if importPath != "" {
		if err := checkImportPath(importPath); err != nil {
			return "", fmt.Errorf("-import: %w", err)
		}
		if module != "" && importPath != module && !strings.HasPrefix(importPath, module+"/") {
			return "", fmt.Errorf("-import %s is not inside -module %s", importPath, module)
		}
		return importPath, nil
	}
	root, declared, err := findModule(out)
	if err != nil {
		return "", err
	}
	switch {
	case module == "" && root == "":
		return "", fmt.Errorf("no go.mod in %s or above: pass -module or -import", out)
	case module == "":
		module = declared
	case root != "" && declared != module:
		return "", fmt.Errorf("-out %s is in module %s (%s), not -module %s", out, declared, filepath.Join(root, "go.mod"), module)
	case root == "":
		root = wd
	}
	if err := checkImportPath(module); err != nil {
		return "", fmt.Errorf("module path: %w", err)
	}
	rel, err := filepath.Rel(root, out)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("-out %s is not inside the root %s of module %s", out, root, module)
	}
	return path.Join(module, filepath.ToSlash(rel)), nil
}

// checkImportPath rejects what cannot be a Go import path.
func checkImportPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, " \t\\\"'`,") || path.Clean(p) != p {
		return fmt.Errorf("%q is not a Go import path", p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == "." || e == ".." {
			return fmt.Errorf("%q is not a Go import path", p)
		}
	}
	return nil
}

// findModule finds the nearest go.mod in dir or above and returns its
// directory and the module path it declares; root is "" when there is none.
func findModule(dir string) (root, module string, err error) {
	for d := dir; ; d = filepath.Dir(d) {
		f, err := os.Open(filepath.Join(d, "go.mod"))
		if err == nil {
			module, err := moduleLine(f)
			f.Close()
			if err != nil {
				return "", "", fmt.Errorf("%s: %w", filepath.Join(d, "go.mod"), err)
			}
			return d, module, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
			return "", "", err
		}
		if filepath.Dir(d) == d {
			return "", "", nil
		}
	}
}

// moduleLine reads the module path from a go.mod file.
func moduleLine(f *os.File) (string, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			rest, _, _ = strings.Cut(rest, "//")
			m := strings.TrimSpace(rest)
			if uq, err := strconv.Unquote(m); err == nil {
				m = uq
			}
			if m == "" {
				break
			}
			return m, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no module line")
}
