package bootstrap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// memoryFile returns a read-only descriptor of a sealed memfd holding the
// agent binary, made once per Agent. A command started with it as stdin
// can exec /proc/self/fd/0 whatever its user, home and mounts: the binary
// never touches a file system. The descriptor is close-on-exec here (a
// child gets it only as one of its stdio), no writable descriptor of it
// remains (so exec is not refused as ETXTBSY), and its seals forbid any
// change: a child cannot alter what the next child runs.
func (a *Agent) memoryFile() (*os.File, error) {
	a.memOnce.Do(func() { a.mem, a.memErr = makeMemoryFile(a.Path) })
	return a.mem, a.memErr
}

func makeMemoryFile(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("agent in memory: %w", err)
	}
	defer src.Close()
	// MFD_EXEC says the file is to be executed (kernels with
	// vm.memfd_noexec); older kernels refuse the flag: retry without.
	fd, err := unix.MemfdCreate("mitogen-agent", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("mitogen-agent", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("agent in memory: memfd_create: %w", err)
	}
	rw := os.NewFile(uintptr(fd), "memfd:mitogen-agent")
	defer rw.Close()
	if _, err := rw.ReadFrom(src); err != nil {
		return nil, fmt.Errorf("agent in memory: %w", err)
	}
	if _, err := unix.FcntlInt(rw.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		return nil, fmt.Errorf("agent in memory: sealing: %w", err)
	}
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", rw.Fd()), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("agent in memory: reopening read-only: %w", err)
	}
	return ro, nil
}
