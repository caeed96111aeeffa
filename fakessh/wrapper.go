package fakessh

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// WrapperMain is the body of fakessh's scp and sftp (the names in
// Wrapped): it runs the real program of that name, found on PATH without
// the run's directory, with "-S <our ssh>" added unless the command line
// names an ssh program already. It returns only on failure, with the exit
// status for os.Exit (127 when the real program is not found, as a shell
// reports it).
func WrapperMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "fakessh: wrapper started without a name")
		return 255
	}
	name := filepath.Base(args[0])
	if !slices.Contains(Wrapped, name) {
		fmt.Fprintf(os.Stderr, "fakessh: %s is not a program fakessh wraps\n", name)
		return 255
	}
	dir := os.Getenv(EnvDir)
	if dir == "" {
		fmt.Fprintf(os.Stderr, "%s: this is mitogen's fakessh wrapper, which only works under 'mitogen run'\n", name)
		return 255
	}
	real, err := lookPathSkipping(name, os.Environ(), dir)
	if err == nil && sameFile(real, dir) {
		err = fmt.Errorf("%s is fakessh's own", real)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: command not found on PATH (without %s): %v\n", name, dir, err)
		return 127
	}
	argv := programArgs(append([]string{name}, args[1:]...), filepath.Join(dir, "ssh"))
	argv[0] = args[0]
	if err := syscall.Exec(real, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "%s: running %s: %v\n", name, real, err)
		return 126
	}
	return 0
}

// sameFile reports whether p is the executable fakessh installed in dir
// (a PATH that names the run's directory twice, or a symlink to it).
func sameFile(p, dir string) bool {
	a, err1 := os.Stat(p)
	b, err2 := os.Stat(filepath.Join(dir, "ssh"))
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}
