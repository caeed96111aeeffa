package main

import (
	"os"
	"testing"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
)

// envCLI makes the test binary the mitogen command: the tests run it as
// `mitogen ...` on a terminal of their own. It is also each context's agent
// and fakessh's ssh, through mitogen.Main, as the real binary is.
const envCLI = "MITOGEN_TEST_CLI"

func TestMain(m *testing.M) {
	mitogen.Main()
	if os.Getenv(envCLI) == "1" {
		os.Unsetenv(envCLI)
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}
