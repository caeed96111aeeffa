package fakessh

import (
	"fmt"
	"io"
	"net"
	"os"
)

// EnvTestHog makes the test binary a process that opens that many
// connections to the run's socket, sends nothing, prints "ready" and holds
// them until its stdin ends.
const EnvTestHog = "FAKESSH_TEST_HOG"

// Hog is the body of that process.
func Hog(n int) int {
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("unix", os.Getenv(EnvSocket))
		if err != nil {
			fmt.Fprintln(os.Stderr, "hog:", err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// WantPty is wantPty, for tests.
var WantPty = wantPty
