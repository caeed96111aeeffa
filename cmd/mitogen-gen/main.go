// Command mitogen-gen generates the Go package gen/mitogen from idl/mitogen.thrift.
//
// It runs thriftgo in-process (no external binary) with the fastgo backend, so
// the generated types carry FastRead/FastWriteNocopy/BLength and depend only on
// cloudwego/gopkg, and adds dispatch.go through an in-process plugin: the
// well-known handle table, CALL_FUNCTION method names, typed clients and
// server-side dispatchers for every service. It then bounds every container
// decoder thriftgo generated (see bounds.go): no declared list, set or map
// size is trusted beyond what the remaining payload can hold. Output is
// deterministic.
//
// Usage:
//
//	mitogen-gen [-idl idl/mitogen.thrift] [-out gen]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudwego/thriftgo/plugin"
	"github.com/cloudwego/thriftgo/sdk"
)

// importPrefix is the Go import path that the -out directory corresponds to.
const importPrefix = "github.com/seed-a176d0ab/mitogen-go/gen"

func main() {
	idl := flag.String("idl", "idl/mitogen.thrift", "Thrift IDL to generate from")
	out := flag.String("out", "gen", "output directory (its Go import path is "+importPrefix+")")
	flag.Parse()
	if err := run(*idl, *out); err != nil {
		fmt.Fprintf(os.Stderr, "mitogen-gen: %v\n", err)
		os.Exit(1)
	}
}

func run(idl, out string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(idl); err != nil {
		return fmt.Errorf("reading IDL: %w (run from the repository root or pass -idl)", err)
	}
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	opts := "fastgo:no_default_serdes,naming_style=golint,reserve_comments,no_processor,package_prefix=" + importPrefix
	dp := &dispatchPlugin{out: absOut}
	if err := sdk.RunThriftgoAsSDK(wd, []plugin.SDKPlugin{dp}, "-g", opts, "-o", absOut, idl); err != nil {
		return fmt.Errorf("thriftgo: %w", err)
	}
	if dp.ast == nil {
		return fmt.Errorf("thriftgo did not run the mitogen-dispatch plugin")
	}
	return boundDecoding(dp.dir, dp.ast)
}
