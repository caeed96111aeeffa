package fakessh

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

// Test helper: the test binary run with EnvTestSignalRecorder set becomes
// a process that records what happens to it, one line each, in that file:
// "ready" once its handlers are installed, "EOF" when its stdin ends,
// "HUP"/"TERM" for those signals. It writes "out" and "err" to stdout and
// stderr, and otherwise never ends by itself: it exits (status 3) only on
// the signal named by EnvTestSignalRecorderExitOn, after recording it.
const (
	EnvTestSignalRecorder       = "FAKESSH_TEST_SIGNAL_RECORDER"
	EnvTestSignalRecorderExitOn = "FAKESSH_TEST_SIGNAL_RECORDER_EXIT_ON"
)

// SignalRecorder is the body of the recording process.
func SignalRecorder(file, exitOn string) int {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	note := func(s string) { _, _ = f.WriteString(s + "\n") }
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	signal.Ignore(syscall.SIGPIPE)
	note("ready")
	fmt.Fprintln(os.Stdout, "out")
	fmt.Fprintln(os.Stderr, "err")
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		note("EOF")
	}()
	for sig := range sigs {
		name := map[os.Signal]string{syscall.SIGHUP: "HUP", syscall.SIGTERM: "TERM"}[sig]
		note(name)
		if name == exitOn {
			return 3
		}
	}
	return 0
}

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
