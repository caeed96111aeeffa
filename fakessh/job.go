package fakessh

import (
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/internal/pgroup"
)

// SignalError is the cause (context.Cause) of a Runner.Run context
// cancelled because the run itself received a signal (SIGHUP, SIGINT,
// SIGTERM): Run passes that signal on to the program's process group,
// cleans up and returns 128+N, the status a shell reports for it.
type SignalError struct{ Signal syscall.Signal }

func (e *SignalError) Error() string { return "received " + unix.SignalName(e.Signal) }

// Job control. The program runs in a process group of its own. When the
// run holds the foreground of its controlling terminal (one of its stdin,
// stdout or stderr, in that order of preference), it lends the terminal to
// the program as a shell lends it to a job: the program's group is put in
// the terminal's foreground before it runs (so ^C, ^Z and SIGWINCH reach it
// and it may read the terminal), and the run takes the terminal and its
// modes back when the program stops and when it ends, on every path. A run
// started in the background lends nothing, until it is brought to the
// foreground (fg).
//
// When the program stops (^Z: SIGTSTP, or SIGTTIN/SIGTTOU), the run takes
// the terminal back and stops itself with the same signal, so that the
// shell that started it sees a stopped job; when continued (fg, bg) it
// lends the terminal again if it got the foreground, and continues the
// program. SIGTSTP, SIGCONT and SIGWINCH the run itself receives are
// passed on to the program's group.

// terminal is the run's controlling terminal, which it may lend to the
// program.
type terminal struct {
	fd    int
	mu    sync.Mutex
	modes *unix.Termios // the terminal's modes when the run last held it
	prog  *unix.Termios // the program's modes when it last stopped
	lent  bool          // the program's group holds the foreground by our doing
}

// controllingTerminal returns the first of files that is the run's
// controlling terminal (a terminal whose foreground group it may ask), or
// nil.
func controllingTerminal(files ...any) *terminal {
	for _, x := range files {
		f, ok := x.(*os.File)
		if !ok || f == nil {
			continue
		}
		fd := int(f.Fd())
		if _, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil {
			continue
		}
		return &terminal{fd: fd}
	}
	return nil
}

// lendAtStart says whether the program is to start in the terminal's
// foreground (SysProcAttr.Foreground): when the run holds it now. The
// terminal's modes are kept, to be restored.
func (t *terminal) lendAtStart() bool {
	if t == nil || !t.foreground() {
		return false
	}
	modes, err := unix.IoctlGetTermios(t.fd, unix.TCGETS)
	if err != nil {
		return false
	}
	t.mu.Lock()
	t.modes, t.lent = modes, true
	t.mu.Unlock()
	return true
}

// foreground reports whether this process's group holds the terminal.
func (t *terminal) foreground() bool {
	pg, err := unix.IoctlGetInt(t.fd, unix.TIOCGPGRP)
	return err == nil && pg == unix.Getpgrp()
}

// takeBack, if the terminal is lent to the program, puts this process's
// group back in its foreground with the modes it had when the run lent it;
// keep says whether to remember the program's modes, to give them back on
// lend. A terminal not lent (the run is a background job) is left alone.
func (t *terminal) takeBack(keep bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.lent {
		return
	}
	t.lent = false
	if keep {
		if m, err := unix.IoctlGetTermios(t.fd, unix.TCGETS); err == nil {
			t.prog = m
		}
	}
	withoutTTOU(func() {
		_ = unix.IoctlSetPointerInt(t.fd, unix.TIOCSPGRP, unix.Getpgrp())
		_ = unix.IoctlSetTermios(t.fd, unix.TCSETS, t.modes)
	})
}

// lend puts process group pgid in the terminal's foreground, with the
// program's own modes if it stopped before; the run must hold it.
func (t *terminal) lend(pgid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, err := unix.IoctlGetTermios(t.fd, unix.TCGETS); err == nil {
		t.modes = m
	}
	t.lent = true
	withoutTTOU(func() {
		if t.prog != nil {
			_ = unix.IoctlSetTermios(t.fd, unix.TCSETS, t.prog)
		}
		_ = unix.IoctlSetPointerInt(t.fd, unix.TIOCSPGRP, pgid)
	})
}

// withoutTTOU runs f with SIGTTOU blocked on its thread: a process not in
// its terminal's foreground may then set the terminal's foreground group
// and modes (the kernel would otherwise stop it with SIGTTOU).
func withoutTTOU(f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set, old unix.Sigset_t
	bits := uint(unsafe.Sizeof(set.Val[0])) * 8
	n := uint(syscall.SIGTTOU) - 1
	set.Val[n/bits] |= 1 << (n % bits)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, &old); err != nil {
		f()
		return
	}
	defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	f()
}

// jobControl passes job-control events between the run and the program's
// process group (see above) until stop is called.
type jobControl struct {
	group *pgroup.Leader
	term  *terminal // nil when no terminal is lent
	sigs  chan os.Signal
	done  chan struct{}
	ended chan struct{}
	once  sync.Once
}

// newJobControl starts listening for the signals job control acts on;
// called before the program starts, so that none of its stops is missed.
func newJobControl(term *terminal) *jobControl {
	jc := &jobControl{term: term, sigs: make(chan os.Signal, 8), done: make(chan struct{}), ended: make(chan struct{})}
	signal.Notify(jc.sigs, syscall.SIGCHLD, syscall.SIGTSTP, syscall.SIGCONT, syscall.SIGWINCH)
	return jc
}

// watch starts job control for the started program's group; without it
// (the program did not start), stop only stops listening.
func (jc *jobControl) watch(group *pgroup.Leader) {
	jc.group = group
	go jc.run()
}

// stop ends job control; the program is not watched for stops after it
// returns (so that it may be reaped).
func (jc *jobControl) stop() {
	jc.once.Do(func() {
		signal.Stop(jc.sigs)
		close(jc.done)
		if jc.group != nil {
			<-jc.ended
		}
	})
}

func (jc *jobControl) run() {
	defer close(jc.ended)
	jc.checkStopped() // a stop before the first SIGCHLD was read
	for {
		select {
		case <-jc.done:
			return
		case s := <-jc.sigs:
			switch s {
			case syscall.SIGCHLD:
				jc.checkStopped()
			case syscall.SIGTSTP:
				// Asked to stop: the program stops, and the run follows it
				// (checkStopped) once it has.
				_ = jc.group.Signal(syscall.SIGTSTP)
			case syscall.SIGCONT:
				jc.resume()
			case syscall.SIGWINCH:
				_ = jc.group.Signal(syscall.SIGWINCH)
			}
		}
	}
}

// Codes of a SIGCHLD siginfo (si_code), and where its si_pid and si_status
// are (the Linux layout: after si_signo, si_errno, si_code and padding).
const (
	cldStopped   = 5
	siPidOffset  = 16
	siStatOffset = 24
)

// checkStopped collects the program's stops (waitid WSTOPPED, which leaves
// its exit for pgroup) and follows a job-control stop.
func (jc *jobControl) checkStopped() {
	for {
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PID, jc.group.Pid(), &info, unix.WSTOPPED|unix.WNOHANG, nil); err != nil {
			return
		}
		p := unsafe.Pointer(&info)
		if *(*int32)(unsafe.Add(p, siPidOffset)) == 0 {
			return // no stop to report
		}
		if info.Code != cldStopped {
			continue
		}
		switch sig := syscall.Signal(*(*int32)(unsafe.Add(p, siStatOffset))); sig {
		case syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
			jc.suspend(sig)
		}
	}
}

// suspend takes the terminal back from the stopped program, stops the run
// with the program's stop signal, and, once continued, resumes the
// program.
func (jc *jobControl) suspend(sig syscall.Signal) {
	if jc.term != nil {
		jc.term.takeBack(true)
	}
	stopSelf(sig)
	jc.resume()
}

// stopSelf stops this process with sig (a stop signal) and returns once
// it is continued. The signal's default action is put in place for the
// moment (the runtime keeps a handler of its own for a signal that was
// ever passed to signal.Notify, even after signal.Reset) and sent to this
// thread, which then stops before the call returns (a process-wide kill
// may be taken by another thread a moment later). Where that fails, the
// process stops with SIGSTOP.
func stopSelf(sig syscall.Signal) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// struct sigaction as the kernel takes it (handler, flags, restorer,
	// mask: 32 bytes on 64-bit Linux); all zero is SIG_DFL.
	var dfl, old [4]uint64
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&dfl)),
		uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		_ = unix.Tgkill(unix.Getpid(), unix.Gettid(), syscall.SIGSTOP)
		return
	}
	_ = unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
	_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
}

// resume lends the terminal to the program again if the run holds its
// foreground, and continues the program.
func (jc *jobControl) resume() {
	if jc.term != nil && jc.term.foreground() {
		jc.term.lend(jc.group.Pid())
	}
	_ = jc.group.Signal(syscall.SIGCONT)
}
