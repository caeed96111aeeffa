// Package pipesize enlarges pipe buffers.
package pipesize

import (
	"os"

	"golang.org/x/sys/unix"
)

// Size is the capacity asked for a relayed process's pipes.
const Size = 1 << 20

// Grow asks for a Size pipe buffer on f, when f is a pipe: fewer, larger
// chunks. The kernel caps it at /proc/sys/fs/pipe-max-size; any failure
// keeps the default.
func Grow(f *os.File) {
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, Size) })
	}
}
