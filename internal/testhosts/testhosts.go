// Package testhosts makes real test hosts: OpenSSH servers on 127.0.0.1 or
// inside a network namespace, with generated host and user keys. Tests that
// use it need root and /usr/sbin/sshd; Require skips them with a clear
// message elsewhere (and fails them in CI, where MITOGEN_CI is set).
package testhosts

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Require skips t unless the process is root and the tools exist.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	skip := func(why string) {
		if os.Getenv("MITOGEN_CI") != "" {
			t.Fatalf("CI must be able to run this test: %s", why)
		}
		t.Skipf("skipping: %s", why)
	}
	if os.Getuid() != 0 {
		skip("needs root (sshd, sudo, network namespaces)")
	}
	Need(t, append([]string{"/usr/sbin/sshd", "ssh", "ssh-keygen"}, tools...)...)
}

// Need skips t unless the tools are installed (and fails it in CI).
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("MITOGEN_CI") != "" {
				t.Fatalf("%s is not installed; CI must have it (.ci/deps)", tool)
			}
			t.Skipf("%s is not installed (Debian: see .ci/deps); skipping", tool)
		}
	}
}

// Keys is a user key pair and a known_hosts file for the servers that
// share its host key.
type Keys struct {
	Dir        string
	UserKey    string // private key file
	HostKey    string
	KnownHosts string
}

// NewKeys generates keys in a temporary directory.
func NewKeys(t testing.TB) *Keys {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	k := &Keys{Dir: dir, UserKey: filepath.Join(dir, "user"), HostKey: filepath.Join(dir, "host"), KnownHosts: filepath.Join(dir, "known_hosts")}
	for _, f := range []string{k.UserKey, k.HostKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	return k
}

// Server is a running sshd.
type Server struct {
	Addr string // IP address it listens on
	Port int
	Keys *Keys
	Log  string // sshd's log file (-e: one line per login, "Accepted publickey for ...")
}

// Start runs sshd on addr (in network namespace netns when not empty),
// accepting Keys.UserKey for every user, and adds it to Keys.KnownHosts.
func Start(t testing.TB, k *Keys, addr, netns string) *Server {
	t.Helper()
	os.MkdirAll("/run/sshd", 0o755)
	port := freePort(t)
	dir := t.TempDir()
	auth := filepath.Join(dir, "authorized_keys")
	pub, err := os.ReadFile(k.UserKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(auth, pub, 0o644)
	os.Chmod(dir, 0o755)
	cfg := filepath.Join(dir, "sshd_config")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
AuthorizedKeysFile %s
PidFile none
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication yes
KbdInteractiveAuthentication no
MaxSessions 100
MaxStartups 100
Subsystem sftp internal-sftp
`, port, addr, k.HostKey, auth)), 0o644)
	args := []string{"/usr/sbin/sshd", "-D", "-e", "-f", cfg}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	logf, _ := os.Create(filepath.Join(dir, "sshd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	hostPub, _ := os.ReadFile(k.HostKey + ".pub")
	f, _ := os.OpenFile(k.KnownHosts, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	fmt.Fprintf(f, "[%s]:%d %s", addr, port, hostPub)
	f.Close()
	s := &Server{Addr: addr, Port: port, Keys: k, Log: filepath.Join(dir, "sshd.log")}
	// Wait until it accepts connections.
	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := exec.Command("ssh", append(s.SSHArgs(), "-l", "root", addr, "true")...)
		if netns != "" {
			probe = exec.Command("ip", append([]string{"netns", "exec", netns, "ssh"}, append(s.SSHArgs(), "-l", "root", addr, "true")...)...)
		}
		if out, err := probe.CombinedOutput(); err == nil {
			break
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Fatalf("sshd on %s:%d does not accept logins: %v %s\nsshd log:\n%s", addr, port, err, out, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// SSHArgs are ssh options that reach this server with the test keys.
func (s *Server) SSHArgs() []string {
	return []string{"-p", fmt.Sprint(s.Port), "-i", s.Keys.UserKey, "-o", "UserKnownHostsFile=" + s.Keys.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"}
}

// Spec is the mitogen hop spec for user on this server.
func (s *Server) Spec(user string) string {
	return fmt.Sprintf("ssh:%s@%s:%d", user, s.Addr, s.Port)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Netns creates a network namespace for the test and removes it after.
func Netns(t testing.TB, name string) {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// Veth links namespace a (or the host when "") and b with addresses aAddr
// and bAddr (CIDR).
func Veth(t testing.TB, a, aAddr, b, bAddr string) {
	t.Helper()
	ifa, ifb := "v"+short(a, b)+"a", "v"+short(a, b)+"b"
	run(t, "ip", "link", "add", ifa, "type", "veth", "peer", "name", ifb)
	t.Cleanup(func() { exec.Command("ip", "link", "del", ifa).Run() })
	place := func(ns, ifc, addr string) {
		if ns != "" {
			run(t, "ip", "link", "set", ifc, "netns", ns)
			run(t, "ip", "-n", ns, "addr", "add", addr, "dev", ifc)
			run(t, "ip", "-n", ns, "link", "set", ifc, "up")
		} else {
			run(t, "ip", "addr", "add", addr, "dev", ifc)
			run(t, "ip", "link", "set", ifc, "up")
		}
	}
	place(a, ifa, aAddr)
	place(b, ifb, bAddr)
}

func short(a, b string) string {
	s := strings.NewReplacer("-", "", "_", "").Replace(a + b)
	if len(s) > 8 {
		s = s[len(s)-8:]
	}
	return s
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// SudoUser makes sure a local user exists with a home directory and the
// given password, and that sudo lets it run anything as anyone after
// asking that password, under "Defaults requiretty" when requiretty is set.
func SudoUser(t testing.TB, name, password string, requiretty bool) {
	t.Helper()
	if _, err := exec.LookPath("sudo"); err != nil {
		Require(t, "sudo")
	}
	if exec.Command("id", name).Run() != nil {
		run(t, "useradd", "-m", "-s", "/bin/sh", name)
	}
	chp := exec.Command("chpasswd")
	chp.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := chp.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v %s", err, out)
	}
	rule := fmt.Sprintf("%s ALL=(ALL:ALL) ALL\n", name)
	if requiretty {
		rule = fmt.Sprintf("Defaults:%s requiretty\n", name) + rule
	}
	file := "/etc/sudoers.d/mitogen-test-" + name
	if err := os.WriteFile(file, []byte(rule), 0o440); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("visudo", "-c", "-f", file).CombinedOutput(); err != nil {
		t.Fatalf("sudoers rule rejected: %v %s", err, out)
	}
}
