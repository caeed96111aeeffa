// Package testproc holds the bodies of helper processes that tests run as
// their own binary (so that no extra program needs building).
package testproc

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// A test binary run with EnvSignalRecorder set becomes a process that
// records what happens to it, one line each, in that file: "ready" once its
// handlers are installed, "EOF" when its stdin ends, "HUP"/"TERM" for those
// signals. It writes "out" and "err" to stdout and stderr, and otherwise
// never ends by itself: it exits (status 3) only on the signal named by
// EnvSignalRecorderExitOn, after recording it.
const (
	EnvSignalRecorder       = "FAKESSH_TEST_SIGNAL_RECORDER"
	EnvSignalRecorderExitOn = "FAKESSH_TEST_SIGNAL_RECORDER_EXIT_ON"
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
