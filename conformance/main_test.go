// Package conformance tests mitogen-go as a user and a peer see it: the
// built `mitogen` CLI and real agent processes, over the wire protocol of
// idl/mitogen.thrift.
package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mitogenBin is the CLI built for this test run.
var mitogenBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mitogen-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mitogenBin = filepath.Join(dir, "mitogen")
	// The CLI's tests run each command on its own chain, as --no-persist
	// does; persist_test.go turns the persistent master on where it tests it.
	os.Setenv("MITOGEN_PERSIST", "no")
	build := exec.Command("go", "build", "-o", mitogenBin, "github.com/seed-a176d0ab/mitogen-go/cmd/mitogen")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building mitogen: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
