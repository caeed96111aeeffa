package process

import (
	"os"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/agent"
	"github.com/seed-a176d0ab/mitogen-go/internal/testproc"
)

// The test binary doubles as the agent (serving this package's
// StartProcess) and as the helper processes the tests run.
func TestMain(m *testing.M) {
	if f := os.Getenv(testproc.EnvSignalRecorder); f != "" {
		os.Exit(testproc.SignalRecorder(f, os.Getenv(testproc.EnvSignalRecorderExitOn)))
	}
	if len(os.Args) > 1 && os.Args[1] == "agent" && os.Getenv("MITOGEN_TEST_AGENT") == "1" {
		os.Exit(agent.Run(nil, StartProcess))
	}
	os.Setenv("MITOGEN_TEST_AGENT", "1")
	os.Exit(m.Run())
}
