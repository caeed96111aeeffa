package fd

import (
	"os"

	"github.com/seed-a176d0ab/mitogen-go/internal/ptys"
)

// OpenPTY opens a new pseudo-terminal pair. The slave is meant to become a
// child's controlling terminal (SysProcAttr Setsid+Setctty), so that
// programs that insist on a terminal for passwords (ssh, sudo with
// requiretty) get one while their stdin and stdout stay pipes.
func OpenPTY() (master, slave *os.File, err error) { return ptys.OpenPair() }
