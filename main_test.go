package mitogen_test

import (
	"os"
	"testing"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
)

// The test binary is its own agent and fakessh's ssh, as any program
// embedding mitogen-go is: Main serves those roles and returns otherwise.
func TestMain(m *testing.M) {
	mitogen.Main()
	os.Exit(m.Run())
}
