package fakessh

import (
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/fakessh/sshargs"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// noPtyLine is what OpenSSH says (at its INFO level: not with -q) when it
// wanted a pty but stdin is not a terminal. Its log lines on stderr end
// in "\r\n".
const noPtyLine = "Pseudo-terminal will not be allocated because stdin is not a terminal.\r\n"

// wantPty decides, as OpenSSH's ssh.c does, whether the session gets a
// pty: -t, -tt and -T (else -o RequestTTY) ask; with none of them, a
// session with no command (a login shell) asks. Unless forced (-tt,
// RequestTTY=force), a pty needs stdin to be a terminal; when one was
// asked for and stdin is not, ssh says so (unless quiet).
func wantPty(inv *sshargs.Invocation, stdinTTY bool) (pty, warn bool) {
	const (
		auto = iota
		no
		yes
		force
	)
	mode := auto
	switch {
	case inv.TTY < 0:
		mode = no
	case inv.TTY == 1:
		mode = yes
	case inv.TTY > 1:
		mode = force
	default:
		switch strings.ToLower(inv.Options["requesttty"]) {
		case "no":
			mode = no
		case "yes":
			mode = yes
		case "force":
			mode = force
		}
	}
	pty = mode == yes || mode == force
	if len(inv.Command) == 0 && !inv.Subsystem {
		pty = mode != no
	}
	if mode == no {
		pty = false
	}
	if !stdinTTY && mode != force {
		return false, pty
	}
	return pty, false
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// windowSize reads fd's window size; zero when it has none.
func windowSize(fd int) *mitogen.WindowSize {
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return &mitogen.WindowSize{}
	}
	return &mitogen.WindowSize{Rows: int32(ws.Row), Cols: int32(ws.Col), WidthPx: int32(ws.Xpixel), HeightPx: int32(ws.Ypixel)}
}

// rawMode puts terminal fd in the raw mode ssh uses for a pty session
// (every byte passed on as typed: no echo, no signals from ^C/^Z, no
// output processing) and returns the function that restores its modes.
func rawMode(fd int) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}, err
	}
	raw := *old
	raw.Iflag |= unix.IGNPAR
	raw.Iflag &^= unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXANY | unix.IXOFF | unix.IUCLC
	raw.Lflag &^= unix.ISIG | unix.ICANON | unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ECHONL | unix.IEXTEN
	raw.Oflag &^= unix.OPOST
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETSW, &raw); err != nil {
		return func() {}, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETSW, old) }, nil
}

// watchWindow sends fd's window size on the returned channel each time
// SIGWINCH says it changed (the latest size only, when sizes come faster
// than they are taken), until stop is called.
func watchWindow(fd int) (sizes <-chan mitogen.WindowSize, stop func()) {
	out := make(chan mitogen.WindowSize, 1)
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, syscall.SIGWINCH)
	go func() {
		for {
			select {
			case <-sig:
				w := *windowSize(fd)
				select {
				case <-out: // replace a size not taken yet
				default:
				}
				out <- w
			case <-done:
				return
			}
		}
	}()
	return out, func() { signal.Stop(sig); close(done) }
}
