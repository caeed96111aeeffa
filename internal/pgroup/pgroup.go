// Package pgroup signals the process group of a child that leads its own
// group (started with Setpgid) without ever hitting another group that
// reused its ID.
//
// A process group's ID is its leader's PID. Once the leader is reaped and
// the group has no member left, the kernel may hand that number to a new
// process, which may lead a group of its own (any child started with
// Setpgid does): a kill(-pgid) sent then hits a stranger. On a busy machine
// (pid_max 32768, builds forking thousands of processes a minute) the PID
// space wraps within a minute, so a late signal (an ending's escalation, a
// shutdown's last SIGKILL, a START timeout after the process exited)
// would sooner or later kill an innocent group.
//
// A Leader therefore learns of its child's exit without reaping it
// (waitid WNOWAIT): while the leader is an unreaped zombie its PID, and so
// the group ID, cannot be reused, and signals to the group are safe. The
// owner reaps it (Reap) once it will signal the group no more; Signal after
// that is a no-op.
package pgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrReaped is Signal's error once the leader was reaped: the group's ID
// is no longer this group's to signal.
var ErrReaped = errors.New("pgroup: the group's leader was reaped; not signalling its ID")

// Leader is a started child that leads its own process group.
type Leader struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}

	mu       sync.Mutex
	reaped   bool          // no signal once set: set before the reap
	reapDone chan struct{} // closed once Wait returned
	waitErr  error         // Wait's result, valid once reapDone is closed
}

// Watch watches cmd, started with SysProcAttr.Setpgid (so that its PID is
// its group's ID). Nothing else may wait for cmd: the Leader reaps it.
func Watch(cmd *exec.Cmd) *Leader {
	l := &Leader{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), reapDone: make(chan struct{})}
	go l.watch()
	return l
}

// watch waits for the leader to exit, leaving it unreaped.
func (l *Leader) watch() {
	defer close(l.exited)
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, l.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return // exited (or not ours to wait for: Reap's Wait says why)
		}
	}
}

// Pid is the leader's PID, the group's ID.
func (l *Leader) Pid() int { return l.pid }

// Exited is closed when the leader has exited (it may be unreaped still).
func (l *Leader) Exited() <-chan struct{} { return l.exited }

// Signal sends sig to the group, unless the leader was reaped.
func (l *Leader) Signal(sig syscall.Signal) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reaped {
		return ErrReaped
	}
	if err := syscall.Kill(-l.pid, sig); err != nil {
		return fmt.Errorf("signalling process group %d: %w", l.pid, err)
	}
	return nil
}

// Reap waits for the leader to exit, reaps it (once) and returns what
// exec.Cmd.Wait said (which also waits for exec's copying of stdio, if
// any). From the moment Reap is called the group is no longer signalled.
func (l *Leader) Reap() error {
	<-l.exited
	l.mu.Lock()
	first := !l.reaped
	l.reaped = true
	l.mu.Unlock()
	if first {
		l.waitErr = l.cmd.Wait()
		close(l.reapDone)
	}
	<-l.reapDone
	return l.waitErr
}

// Reaped reports whether Reap was called (the group is signalled no more).
func (l *Leader) Reaped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reaped
}

// MembersAlive reports whether any process of the group other than its
// exited leader is alive (not a zombie). Once the leader is reaped, or when
// /proc cannot tell (not mounted, another PID namespace's), it answers
// from kill(-pgid, 0), which counts zombies and, after the reap, cannot
// tell this group from a newer one with the same ID.
func (l *Leader) MembersAlive() bool {
	l.mu.Lock()
	reaped := l.reaped
	l.mu.Unlock()
	if !reaped {
		if alive, ok := procMembersAlive(l.pid); ok {
			return alive
		}
	}
	return syscall.Kill(-l.pid, 0) != syscall.ESRCH
}

// procMembersAlive scans /proc for a live process (other than the leader)
// in group pgid. ok is false when /proc cannot answer: it does not show
// the leader itself (it must, as an unreaped process) in group pgid.
func procMembersAlive(pgid int) (alive, ok bool) {
	if _, pg, err := stat(pgid); err != nil || pg != pgid {
		return false, false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false, false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == pgid {
			continue
		}
		state, pg, err := stat(pid)
		if err == nil && pg == pgid && state != 'Z' && state != 'X' {
			return true, true
		}
	}
	return false, true
}

// stat returns the state and process group of pid from /proc/pid/stat.
func stat(pid int) (state byte, pgrp int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold anything
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	// After ") ": state ppid pgrp ...
	f := strings.Fields(s[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	pgrp, err = strconv.Atoi(f[2])
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: pgrp: %w", pid, err)
	}
	return f[0][0], pgrp, nil
}
