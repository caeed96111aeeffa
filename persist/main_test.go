package persist_test

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
)

// envRawDial makes the test binary a raw client: it connects to the
// socket named and prints the first line the master sends (for the test
// that runs it as another user).
const envRawDial = "PERSIST_TEST_RAW_DIAL"

// The test binary is also the agent of the contexts the masters start.
func TestMain(m *testing.M) {
	if sock := os.Getenv(envRawDial); sock != "" {
		os.Exit(rawDial(sock))
	}
	mitogen.Main()
	os.Exit(m.Run())
}

func rawDial(sock string) int {
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		return 3
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b := make([]byte, 128)
	n, err := c.Read(b)
	if n == 0 {
		fmt.Printf("read: %v\n", err)
		return 4
	}
	fmt.Print(string(b[:n]))
	return 0
}
