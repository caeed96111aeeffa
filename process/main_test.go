package process

import (
	"os"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/internal/testproc"
)

// The test binary doubles as the helper processes the tests run.
func TestMain(m *testing.M) {
	if f := os.Getenv(testproc.EnvSignalRecorder); f != "" {
		os.Exit(testproc.SignalRecorder(f, os.Getenv(testproc.EnvSignalRecorderExitOn)))
	}
	os.Exit(m.Run())
}
