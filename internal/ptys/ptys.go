// Package ptys opens Linux pseudo-terminals with x/sys/unix: /dev/ptmx,
// unlocked with TIOCSPTLCK (grantpt has nothing to do on devpts), the slave
// found by the number TIOCGPTN gives.
package ptys

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Open opens a new pseudo-terminal: its master, left in the runtime's
// non-blocking mode (so reads and writes can be interrupted by Close and
// deadlines), and its slave's path.
func Open() (master *os.File, slavePath string, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, "", fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	var n int
	err = Control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlocking the pty: %w", err)
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		if err != nil {
			return fmt.Errorf("pty number: %w", err)
		}
		return nil
	})
	if err != nil {
		m.Close()
		return nil, "", err
	}
	return m, "/dev/pts/" + strconv.Itoa(n), nil
}

// OpenPair opens a new pseudo-terminal and its slave (without making it
// anybody's controlling terminal: O_NOCTTY).
func OpenPair() (master, slave *os.File, err error) {
	m, path, err := Open()
	if err != nil {
		return nil, nil, err
	}
	s, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("opening pty slave: %w", err)
	}
	return m, s, nil
}

// Control runs fn on f's descriptor, leaving its blocking mode as it is
// (f.Fd() would make it blocking).
func Control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
