package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cloudwego/thriftgo/generator/golang"
	"github.com/cloudwego/thriftgo/parser"
)

// Borrowed arguments.
//
// A binary argument of a service method annotated (mitogen.borrow =
// "true"), as in
//
//	binary echo(1: binary data (mitogen.borrow = "true"))
//
// is decoded, when it is nocopyMin bytes or more, as the slice of the call's
// frame it lies in instead of a copy (readBinaryBorrowed). The handler may
// use it only until it returns; the router reads into the frame again once
// the reply is written (core.ServiceFunc), so a handler that returns the
// argument in its result (echo) has it written from where it came in. The
// annotation changes nothing on the wire.
//
// writeBorrow rewrites the argument struct's FastRead; like the other
// passes it fails generation when the code does not have the expected
// shape, and when the annotation marks anything but a binary argument.

// borrowAnnotation marks a borrowed argument.
const borrowAnnotation = "mitogen.borrow"

// borrowedArgs returns, per argument struct (Go name), the Go names of its
// borrowed fields.
func borrowedArgs(scope *golang.Scope) (map[string][]string, error) {
	// Anywhere else the annotation would do nothing: refuse it.
	ast := scope.AST()
	for _, group := range [][]*parser.StructLike{ast.Structs, ast.Unions, ast.Exceptions} {
		for _, st := range group {
			for _, fl := range st.Fields {
				if len(fl.Annotations.Get(borrowAnnotation)) > 0 {
					return nil, fmt.Errorf("%s.%s: %s marks only arguments of service methods", st.Name, fl.Name, borrowAnnotation)
				}
			}
		}
	}
	out := map[string][]string{}
	for _, svc := range scope.Services() {
		for _, f := range svc.Functions() {
			for _, a := range f.Arguments() {
				vs := a.Annotations.Get(borrowAnnotation)
				if len(vs) == 0 {
					continue
				}
				what := fmt.Sprintf("%s:%s argument %s", svc.Name, f.Name, a.Name)
				if len(vs) != 1 || vs[0] != "true" {
					return nil, fmt.Errorf("%s: annotation %s = %q: want exactly one, \"true\"", what, borrowAnnotation, vs)
				}
				if a.Type == nil || a.Type.Category != parser.Category_Binary {
					return nil, fmt.Errorf("%s: %s marks only binary arguments", what, borrowAnnotation)
				}
				st := string(f.ArgType().GoName())
				out[st] = append(out[st], string(f.ArgType().Field(a.Name).GoName()))
			}
		}
	}
	return out, nil
}

// writeBorrow rewrites the FastRead of each struct in borrowed (in the
// k-*.go files of dir) to read the borrowed fields with
// readBinaryBorrowed.
func writeBorrow(dir string, borrowed map[string][]string) error {
	if len(borrowed) == 0 {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "k-*.go"))
	if err != nil {
		return err
	}
	names := make([]string, 0, len(borrowed))
	for n := range borrowed {
		names = append(names, n)
	}
	sort.Strings(names)
	done := map[string]int{}
	for _, path := range files {
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		text := string(src)
		changed := false
		for _, st := range names {
			head := fmt.Sprintf("func (p *%s) FastRead(b []byte) (off int, err error) {", st)
			i := strings.Index(text, head)
			if i < 0 {
				continue
			}
			end := strings.Index(text[i:], "\n}\n")
			if end < 0 {
				return fmt.Errorf("borrowed arguments: %s: %s.FastRead has no end", filepath.Base(path), st)
			}
			body := text[i : i+end]
			for _, fld := range borrowed[st] {
				old := fmt.Sprintf("p.%s, l, err = x.ReadBinary(b[off:])", fld)
				if strings.Count(body, old) != 1 {
					return fmt.Errorf("borrowed arguments: %s.FastRead does not read %s with %q", st, fld, old)
				}
				body = strings.Replace(body, old, fmt.Sprintf("p.%s, l, err = readBinaryBorrowed(b[off:])", fld), 1)
				done[st]++
			}
			text = text[:i] + body + text[i+end:]
			changed = true
		}
		if changed {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				return err
			}
		}
	}
	for st, fs := range borrowed {
		if done[st] != len(fs) {
			return fmt.Errorf("borrowed arguments: found no FastRead of %s to rewrite", st)
		}
	}
	return nil
}
