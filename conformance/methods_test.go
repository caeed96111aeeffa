package conformance

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// rootWith skips t unless this process is root and tools are installed
// (and fails it in CI).
func rootWith(t *testing.T, tools ...string) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("MITOGEN_CI") != "" {
			t.Fatal("CI must run this test as root")
		}
		t.Skip("skipping: needs root")
	}
	testhosts.Need(t, tools...)
}

// plainUser makes sure a local user exists with a home and password.
func plainUser(t *testing.T, name, password string) {
	t.Helper()
	if exec.Command("id", name).Run() != nil {
		if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v %s", err, out)
		}
	}
	chp := exec.Command("chpasswd")
	chp.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := chp.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v %s", err, out)
	}
}

// runCLIWithin is runCLI that fails the test rather than hang past limit.
func runCLIWithin(t *testing.T, limit time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, mitogenBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mitogen %q still running after %v (hung); stderr %q", args, limit, errb.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("mitogen %q: %v", args, err)
	return 0, "", ""
}

const suUser, suPassword = "mitogensu", "su-Pa55"

// An unprivileged user (reached with sudo from root) becomes another with
// the real su and that user's password, answered on su's stdin after its
// prompt on stderr. A wrong or missing password is a clear error at once.
func TestSuWithPassword(t *testing.T) {
	rootWith(t, "su", "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, false)
	plainUser(t, suUser, suPassword)
	via := "sudo:" + sudoUser + ",su:" + suUser
	st, out, errs := runCLIWithin(t, 2*time.Minute, "exec", "--via", via, "--su-password-file", passwordFile(t, suPassword), "--", "sh", "-c", "id -un; echo $HOME")
	if st != 0 || out != suUser+"\n/home/"+suUser+"\n" {
		t.Fatalf("status %d stdout %q stderr %q", st, out, errs)
	}
	if strings.Contains(errs, suPassword) {
		t.Fatal("the password appears in the output")
	}
	st, _, errs = runCLIWithin(t, 2*time.Minute, "exec", "--via", via, "--su-password-file", passwordFile(t, "not-it"), "--", "true")
	if st == 0 || !strings.Contains(errs, "wrong password") || strings.Contains(errs, "not-it") {
		t.Fatalf("wrong password: status %d stderr %q", st, errs)
	}
	st, _, errs = runCLIWithin(t, 2*time.Minute, "exec", "--via", via, "--", "true")
	if st == 0 || !strings.Contains(errs, "asks for a password") {
		t.Fatalf("no password: status %d stderr %q", st, errs)
	}
	// root needs none.
	st, out, errs = runCLIWithin(t, time.Minute, "exec", "--via", "su:"+suUser, "--", "id", "-un")
	if st != 0 || out != suUser+"\n" {
		t.Fatalf("root to %s: status %d %q %q", suUser, st, out, errs)
	}
}

// doasConf installs rules in /etc/doas.conf for the test, restoring what
// was there after.
func doasConf(t *testing.T, rules string) {
	t.Helper()
	const conf = "/etc/doas.conf"
	old, err := os.ReadFile(conf)
	had := err == nil
	if err := os.WriteFile(conf, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(conf, 0o600)
	t.Cleanup(func() {
		if had {
			os.WriteFile(conf, old, 0o600)
		} else {
			os.Remove(conf)
		}
	})
}

// The real doas (opendoas), asking the calling user's password on its
// terminal, as /etc/doas.conf permits.
func TestDoasWithPassword(t *testing.T) {
	rootWith(t, "doas", "sudo")
	testhosts.SudoUser(t, sudoUser, sudoPassword, false)
	doasConf(t, "permit nopass root\npermit "+sudoUser+" as root\n")
	via := "sudo:" + sudoUser + ",doas:root"
	st, out, errs := runCLIWithin(t, 2*time.Minute, "exec", "--via", via, "--doas-password-file", passwordFile(t, sudoPassword), "--", "id", "-un")
	if st != 0 || out != "root\n" {
		t.Fatalf("status %d stdout %q stderr %q", st, out, errs)
	}
	st, _, errs = runCLIWithin(t, 2*time.Minute, "exec", "--via", via, "--doas-password-file", passwordFile(t, "not-it"), "--", "true")
	if st == 0 || !strings.Contains(errs, "wrong password") || strings.Contains(errs, "not-it") {
		t.Fatalf("wrong password: status %d stderr %q", st, errs)
	}
	// A user doas.conf does not permit.
	plainUser(t, suUser, suPassword)
	st, _, errs = runCLIWithin(t, 2*time.Minute, "exec", "--via", "su:"+suUser+",doas:root", "--doas-password-file", passwordFile(t, suPassword), "--", "true")
	if st == 0 || !strings.Contains(errs, "not permitted") {
		t.Fatalf("user without a rule: status %d stderr %q", st, errs)
	}
	// root, with "permit nopass root".
	st, out, errs = runCLIWithin(t, time.Minute, "exec", "--via", "doas:"+sudoUser, "--", "id", "-un")
	if st != 0 || out != sudoUser+"\n" {
		t.Fatalf("root to %s: status %d %q %q", sudoUser, st, out, errs)
	}
}

// nsTarget starts a process in new network and UTS namespaces with its own
// hostname and returns its PID; it is killed by PID at cleanup.
func nsTarget(t *testing.T, hostname string) int {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "--uts", "--", "/bin/sh", "-c", "hostname "+hostname+" && echo ready && exec sleep 600")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("namespaced process: %q %v", line, err)
	}
	return cmd.Process.Pid
}

// setns:pid=N runs the agent inside the namespaces of process N: its
// hostname and network namespace are the target's, not ours.
func TestSetnsEntersNamespaces(t *testing.T) {
	rootWith(t, "unshare", "nsenter")
	pid := nsTarget(t, "mitogen-ns-test")
	targetNet, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
	ourNet, _ := os.Readlink("/proc/self/ns/net")
	if targetNet == ourNet {
		t.Fatal("unshare made no new network namespace")
	}
	cache := t.TempDir()
	for _, via := range []string{"setns:pid=" + strconv.Itoa(pid), "local,setns:pid=" + strconv.Itoa(pid)} {
		st, out, errs := runCLIWithin(t, time.Minute, "exec", "--via", via, "--agent-cache-dir", cache, "--", "sh", "-c", "hostname; readlink /proc/self/ns/net")
		if st != 0 || out != "mitogen-ns-test\n"+targetNet+"\n" {
			t.Fatalf("%s: status %d stdout %q (want hostname mitogen-ns-test and %s) stderr %q", via, st, out, targetNet, errs)
		}
	}
	// Only the namespaces asked for.
	st, out, errs := runCLIWithin(t, time.Minute, "exec", "--via", "setns:pid="+strconv.Itoa(pid), "--setns-namespaces", "uts", "--agent-cache-dir", cache, "--", "sh", "-c", "hostname; readlink /proc/self/ns/net")
	if st != 0 || out != "mitogen-ns-test\n"+ourNet+"\n" {
		t.Fatalf("uts only: status %d stdout %q stderr %q", st, out, errs)
	}
	// A process that does not exist.
	st, _, errs = runCLIWithin(t, time.Minute, "exec", "--via", "setns:pid=999999999", "--", "true")
	if st == 0 || !strings.Contains(errs, "setns:pid=999999999") {
		t.Fatalf("no such process: status %d stderr %q", st, errs)
	}
}

// stubRuntime writes a stand-in for a container runtime named name: it
// records its arguments (NUL-separated) in name.argv beside itself and
// runs, here, the command that follows "/bin/sh" in them, with its stdio,
// as the runtime would inside the container. "inspect" prints name.pid.
func stubRuntime(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	stub := `#!/bin/sh
for a in "$@"; do printf '%s\0' "$a"; done > "$0.argv"
if [ "$1" = inspect ]; then cat "$0.pid"; exit 0; fi
while [ $# -gt 0 ] && [ "$1" != /bin/sh ]; do shift; done
[ $# -gt 0 ] || { echo "stub: no command to run" >&2; exit 125; }
exec "$@"
`
	if err := os.WriteFile(p, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func stubArgv(t *testing.T, stub string) []string {
	t.Helper()
	b, err := os.ReadFile(stub + ".argv")
	if err != nil {
		t.Fatalf("the stub was not run: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// docker, podman, kubectl, lxc and lxd hops against stub runtimes (no
// container engine runs on these machines): the argument vector each
// runtime gets, and the exec contract (the command after the runtime's
// own arguments runs with the stream on its stdin and stdout) carried
// through to a working context.
func TestContainerMethodsWithStubs(t *testing.T) {
	dir := t.TempDir()
	cache := t.TempDir()
	cases := []struct {
		via   string
		stub  string
		flags []string
		want  []string // argv before "/bin/sh -c SCRIPT"
	}{
		{"docker:app@web", "docker", nil, []string{"exec", "--interactive", "--user=app", "--", "web"}},
		{"local,docker:web", "docker", []string{"--hop-option", "docker.args=--context=prod"}, []string{"--context=prod", "exec", "--interactive", "--", "web"}},
		{"podman:web", "podman", nil, []string{"exec", "--interactive", "--", "web"}},
		{"kubectl:pod-7", "kubectl", []string{"--kubectl-namespace", "ns1", "--kubectl-container", "side", "--kubeconfig", "/k/config", "--kubectl-context", "prod"},
			[]string{"--kubeconfig=/k/config", "--context=prod", "--namespace=ns1", "exec", "--stdin", "--container=side", "pod-7", "--"}},
		{"lxc:c1", "lxc-attach", nil, []string{"--clear-env", "--name", "c1", "--"}},
		{"lxd:c1", "lxc", nil, []string{"exec", "--mode=non-interactive", "c1", "--"}},
	}
	for _, c := range cases {
		stub := stubRuntime(t, dir, c.stub)
		os.Remove(stub + ".argv")
		kind := c.via[strings.LastIndex(c.via, ",")+1 : strings.Index(c.via[strings.LastIndex(c.via, ",")+1:], ":")+strings.LastIndex(c.via, ",")+1]
		args := append([]string{"exec", "--via", c.via, "--hop-option", kind + ".program=" + stub, "--agent-cache-dir", cache}, c.flags...)
		st, out, errs := runCLIWithin(t, time.Minute, append(args, "--", "sh", "-c", "echo in-$0", "ctx")...)
		if st != 0 || out != "in-ctx\n" {
			t.Fatalf("%s: status %d stdout %q stderr %q", c.via, st, out, errs)
		}
		argv := stubArgv(t, stub)
		n := len(c.want)
		if len(argv) != n+3 || !slices.Equal(argv[:n], c.want) || argv[n] != "/bin/sh" || argv[n+1] != "-c" || !strings.Contains(argv[n+2], "MITOGEN0") {
			t.Errorf("%s: %s got argv %q; want %q then /bin/sh -c <bootstrap>", c.via, c.stub, argv, c.want)
		}
	}
}

// setns:docker=NAME asks docker for the container's process, then enters
// its namespaces.
func TestSetnsFindsContainerProcess(t *testing.T) {
	rootWith(t, "unshare", "nsenter")
	pid := nsTarget(t, "mitogen-ns-docker")
	dir := t.TempDir()
	stub := stubRuntime(t, dir, "docker")
	os.WriteFile(stub+".pid", []byte(strconv.Itoa(pid)+"\n"), 0o644)
	st, out, errs := runCLIWithin(t, time.Minute, "exec", "--via", "setns:docker=web", "--hop-option", "setns.runtime_program="+stub,
		"--agent-cache-dir", t.TempDir(), "--", "hostname")
	if st != 0 || out != "mitogen-ns-docker\n" {
		t.Fatalf("status %d stdout %q stderr %q", st, out, errs)
	}
	if argv := stubArgv(t, stub); !slices.Equal(argv, []string{"inspect", "--format", "{{.State.Pid}}", "--", "web"}) {
		t.Fatalf("docker argv %q", argv)
	}
}

// The CLI lists the registered methods, and an unknown kind names them.
func TestMethodsListedAndUnknownKindNamesThem(t *testing.T) {
	st, out, errs := runCLIWithin(t, time.Minute, "methods")
	if st != 0 {
		t.Fatalf("mitogen methods: status %d stderr %q", st, errs)
	}
	for _, want := range []string{"local", "ssh:[user@]host[:port]", "sudo[:user]", "su[:user]", "doas[:user]", "setns:pid=PID", "docker:[user@]container", "podman:", "kubectl:pod", "lxc:container", "lxd:container", "password (string, secret)"} {
		if !strings.Contains(out, want) {
			t.Errorf("mitogen methods does not list %q:\n%s", want, out)
		}
	}
	st, _, errs = runCLIWithin(t, time.Minute, "exec", "--via", "ftp:host", "--", "true")
	if st == 0 || !strings.Contains(errs, "want one of doas, docker, kubectl, local, lxc, lxd, podman, setns, ssh, su, sudo") {
		t.Fatalf("unknown kind: status %d stderr %q", st, errs)
	}
	// A secret on the command line is refused; an option another method
	// owns is refused for this one.
	st, _, errs = runCLIWithin(t, time.Minute, "exec", "--hop-option", "sudo.password=hunter2", "--", "true")
	if st == 0 || !strings.Contains(errs, "@FILE") {
		t.Fatalf("secret on the command line: status %d stderr %q", st, errs)
	}
	st, _, errs = runCLIWithin(t, time.Minute, "exec", "--hop-option", "docker.identity=/k", "--", "true")
	if st == 0 || !strings.Contains(errs, `unknown option "identity"`) {
		t.Fatalf("ssh's option for docker: status %d stderr %q", st, errs)
	}
}
