package persist

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Files in a master's directory.
const (
	// SocketName is the master's unix socket.
	SocketName = "master.sock"
	// lockName is flocked by a client while it starts a master.
	lockName = "lock"
)

// EnvDir names the directory of the persistent master (default DefaultDir).
const EnvDir = "MITOGEN_PERSIST_DIR"

// DefaultDir is the directory of this user's persistent master:
// $MITOGEN_PERSIST_DIR, else $XDG_RUNTIME_DIR/mitogen-go when
// XDG_RUNTIME_DIR is set, else /tmp/mitogen-go-UID.
func DefaultDir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "mitogen-go")
	}
	return filepath.Join(os.TempDir(), "mitogen-go-"+strconv.Itoa(os.Getuid()))
}

// PrepareDir makes dir (mode 0700) when it does not exist, and checks it:
// a real directory (not a symlink), owned by this process's uid, with no
// access for group or others. Anything else is refused with an error that
// says what is wrong, because a socket in a directory someone else
// controls could be someone else's.
func PrepareDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("persistent master directory %s: %w", dir, err)
	}
	return CheckDir(dir)
}

// CheckDir checks dir as PrepareDir does, without creating it.
func CheckDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("persistent master directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("persistent master directory %s is not a directory (%s)", dir, st.Mode().Type())
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("persistent master directory %s: no owner information", dir)
	}
	if int(sys.Uid) != os.Getuid() {
		return fmt.Errorf("persistent master directory %s is owned by uid %d, not by this user (uid %d): refusing to use it", dir, sys.Uid, os.Getuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("persistent master directory %s has mode %o: it must be 0700 (chmod 700 %s)", dir, st.Mode().Perm(), dir)
	}
	return nil
}
