package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
)

// exitedOrGone reports whether pid has exited: a zombie, or gone.
func exitedOrGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// claimPID tries to start a stranger (sleep, leading its own process
// group, as any child started with Setpgid does) with PID want, steering
// the kernel's next PID through /proc/sys/kernel/ns_last_pid (root). It
// returns the stranger, or nil when want could not be had in tries
// attempts (taken, or another process forked in between).
func claimPID(t *testing.T, want, tries int) *exec.Cmd {
	t.Helper()
	for range tries {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(want-1)), 0); err != nil {
			skipOutsideCI(t, "cannot steer PIDs (/proc/sys/kernel/ns_last_pid): "+err.Error())
		}
		cmd := exec.Command("sleep", "1000")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == want {
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			return cmd
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return nil
}

func skipOutsideCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("MITOGEN_CI") != "" {
		t.Fatalf("CI must be able to run this test: %s", why)
	}
	t.Skipf("skipping: %s", why)
}

// A process side never signals a process group ID that may have been
// reused. Here the process exits at once and the ending comes later (a
// protocol error before START; a start timeout or the client's departure
// are the same): by then a stranger may lead a new group with that ID, as
// happens within a minute on a machine that forks a lot (pid_max 32768).
// The stranger is made to take the ID at once (ns_last_pid); it must not
// be hung up. The process side keeps the ID reserved instead (the exited
// leader stays unreaped until the ending is over), so the stranger cannot
// have it until then; once the process side is done it can, and is left
// alone.
func TestEndingNeverSignalsAReusedGroup(t *testing.T) {
	if os.Getuid() != 0 {
		skipOutsideCI(t, "needs root to steer PIDs")
	}
	p := newPair(t)
	started, err := StartProcess(context.Background(), p.master, &mitogen.ProcessSpec{Argv: []string{"true"}, PeerId: p.clientID})
	if err != nil {
		t.Fatal(err)
	}
	pid := int(started.Pid)
	waitFor(t, "the process to exit", func() bool { return exitedOrGone(pid) })
	stranger := claimPID(t, pid, 20)
	if stranger != nil {
		t.Logf("a stranger took PID %d (the process's group ID) while the process side still owned the process", pid)
	}
	rc := p.rawClient(t, started)
	rc.send(&mitogen.Control{Kind: mitogen.ControlKind_SIGNAL, SignalNumber: int32(syscall.SIGUSR1)}) // before START: ended
	expectBounce(t, rc, "a START after the ending", rc.start)
	if stranger == nil {
		// The ID was reserved throughout; now it is free, and nothing
		// signals it any more.
		if stranger = claimPID(t, pid, 50); stranger == nil {
			skipOutsideCI(t, fmt.Sprintf("could not steer a new process to PID %d even once it was free", pid))
		}
	}
	_ = stranger.Process.Signal(syscall.SIGKILL) // fails if it is gone already
	err = stranger.Wait()
	ws, _ := stranger.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the stranger leading group %d ended with %v before the test killed it: the process side signalled a reused group ID", pid, err)
	}
}
