// Command kitexgen regenerates examples/kitex/kitex_gen from echo.thrift
// with Kitex's own generator, run in-process through its tool SDK (the
// kitex command cannot be installed from the module proxy here, and need
// not be: the generator is a library). Run it from examples/kitex, as
// `go generate` does, or give -dir.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudwego/kitex/tool/cmd/kitex/sdk"
)

func main() {
	dir := flag.String("dir", ".", "the directory holding echo.thrift, where kitex_gen/ is written")
	module := flag.String("module", "github.com/seed-a176d0ab/mitogen-go",
		"the Go module dir is in (outside any module: the import path of dir itself)")
	flag.Parse()
	wd, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kitexgen:", err)
		os.Exit(1)
	}
	err = sdk.RunKitexTool(wd, nil,
		"-module", *module,
		"-gen-path", "kitex_gen",
		"echo.thrift")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kitexgen:", err)
		os.Exit(1)
	}
}
