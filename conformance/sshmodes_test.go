package conformance

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// Host B is reachable only from host A (network namespaces the test makes).
// Under `mitogen run --via ssh:A`, a real OpenSSH client reaches B's sshd
// with `ProxyCommand ssh -W %h:%p gw` (our ssh, dialling from the context
// on A), and through `ssh -f -N -L` (the forward's connections dialled from
// A too; -N never runs the commands on its stdin).
func TestSSHStdioAndLocalForwardThroughNetnsContext(t *testing.T) {
	testhosts.Require(t, "ip", "ssh")
	k := testhosts.NewKeys(t)
	nsA, nsB := fmt.Sprintf("mwA%d", os.Getpid()%10000), fmt.Sprintf("mwB%d", os.Getpid()%10000)
	testhosts.Netns(t, nsA)
	testhosts.Netns(t, nsB)
	testhosts.Veth(t, "", "10.232.1.1/24", nsA, "10.232.1.2/24")
	testhosts.Veth(t, nsA, "10.232.2.1/24", nsB, "10.232.2.2/24")
	a := testhosts.Start(t, k, "10.232.1.2", nsA)
	b := testhosts.Start(t, k, "10.232.2.2", nsB)
	if out, err := exec.Command("ssh", append(b.SSHArgs(), "-o", "ConnectTimeout=2", "-l", "root", b.Addr, "true")...).CombinedOutput(); err == nil {
		t.Fatalf("host B is reachable directly; the test would prove nothing (%s)", out)
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	os.WriteFile(filepath.Join(dir, "cmds"), []byte("touch "+marker+"\n"), 0o644)
	lport := freeTCPPort(t)
	quote := func(args []string) string { return "'" + strings.Join(args, "' '") + "'" }
	// The real client, by path: "ssh" on the program's PATH is fakessh's.
	real := func(args ...string) string { return "/usr/bin/ssh " + quote(args) }
	script := strings.Join([]string{
		real(append([]string{"-o", "ProxyCommand=ssh -W %h:%p gw"}, append(b.SSHArgs(), "-l", "root", b.Addr, "echo via-W; ip -o -4 addr show")...)...),
		fmt.Sprintf("ssh -f -N -L 127.0.0.1:%d:%s:%d gw < cmds || exit 9", lport, b.Addr, b.Port),
		real("-p", fmt.Sprint(lport), "-i", k.UserKey, "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
			"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1", "echo via-L; ip -o -4 addr show"),
	}, "\n")
	args := append([]string{"run", "--via", a.Spec("root")}, sshFlags(k, t.TempDir())...)
	cmd := exec.Command(mitogenBin, append(args, "--", "sh", "-c", script)...)
	cmd.Dir = dir
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("mitogen run still running after 5 minutes: %s", out)
	}
	if err != nil {
		t.Fatalf("mitogen run: %v\n%s", err, out)
	}
	s := string(out)
	iW, iL := strings.Index(s, "via-W"), strings.Index(s, "via-L")
	if iW < 0 || iL < iW || !strings.Contains(s[iW:iL], "10.232.2.2") || !strings.Contains(s[iL:], "10.232.2.2") {
		t.Fatalf("did not reach B through -W and -L:\n%s", s)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("ssh -N ran the commands on its stdin")
	}
}

// freeTCPPort returns a loopback port nobody listens on now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
