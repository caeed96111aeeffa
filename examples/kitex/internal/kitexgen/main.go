// Command kitexgen regenerates examples/kitex/kitex_gen from echo.thrift
// with Kitex's own generator, run in-process through its tool SDK (the
// kitex command cannot be installed from the module proxy here, and need
// not be: the generator is a library). Run it from examples/kitex, as
// `go generate` does.
package main

import (
	"fmt"
	"os"

	"github.com/cloudwego/kitex/tool/cmd/kitex/sdk"
)

func main() {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kitexgen:", err)
		os.Exit(1)
	}
	err = sdk.RunKitexTool(wd, nil,
		"-module", "github.com/seed-a176d0ab/mitogen-go",
		"-gen-path", "kitex_gen",
		"echo.thrift")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kitexgen:", err)
		os.Exit(1)
	}
}
