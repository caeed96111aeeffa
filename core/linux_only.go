//go:build !linux

package core

// mitogen-go runs on Linux only: its transports, ptys, descriptor passing
// and process handling use Linux system calls. This undefined name stops a
// build for another system with a message that says so.
var _ = mitogen_go_builds_on_linux_only
