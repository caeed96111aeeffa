package conformance

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// Ansible's user and its sudo password for the ssh -> sudo chain.
const ansibleUser, ansiblePassword = "mitogenans", "ans-Pa55"

// The transfer methods and pipelining settings exercised: one inventory
// host per combination, all served by the run's default context.
var ansibleHosts = func() []string {
	var hosts []string
	for _, m := range []string{"smart", "sftp", "scp", "piped"} {
		for _, p := range []bool{true, false} {
			hosts = append(hosts, fmt.Sprintf("%s-pipelining-%v ansible_ssh_transfer_method=%s ansible_pipelining=%v", m, p, m, p))
		}
	}
	return hosts
}()

// Ansible (Debian's ansible-core) runs a playbook with command, copy,
// fetch, template and become under `mitogen run`, through a local context
// and through ssh -> sudo, with every transfer method and pipelining on and
// off, and prints no warning: scp and sftp started by Ansible go through
// fakessh too.
func TestAnsiblePlaybookThroughChains(t *testing.T) {
	testhosts.Require(t, "sudo", "ansible-playbook", "scp", "sftp")
	testhosts.SudoUser(t, ansibleUser, ansiblePassword, false)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	for _, c := range []struct {
		name   string
		via    []string
		user   string
		become []string // extra vars for become
		// modesPending: the hop's umask is still 077 on this branch (issue
		// 10 item 3 is fixed elsewhere), so 0644 is not asserted.
		modesPending bool
	}{
		{"local", []string{"--via", "local"}, "root", nil, false},
		{"ssh-sudo", []string{"--via", s.Spec("root"), "--via", "sudo:" + ansibleUser}, ansibleUser, []string{"-e", "ansible_become_password=" + ansiblePassword}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			for _, f := range []string{"play.yml", "t.j2", "src.txt"} {
				b, err := os.ReadFile(filepath.Join("testdata", "ansible", f))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(dir, f), b, 0o644)
			}
			inv := "[all]\n" + strings.Join(ansibleHosts, "\n") + "\n[all:vars]\nansible_python_interpreter=/usr/bin/python3\n"
			os.WriteFile(filepath.Join(dir, "inventory"), []byte(inv), 0o644)
			// Where the far side writes: a directory its user owns.
			base, err := os.MkdirTemp("/tmp", "mitogen-ansible-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(base) })
			u, _ := exec.Command("id", "-u", c.user).Output()
			uid, _ := strconv.Atoi(strings.TrimSpace(string(u)))
			os.Chown(base, uid, uid)
			os.Chmod(base, 0o755)
			fetched := filepath.Join(dir, "fetched")

			// The default agent caches (each user's own).
			args := append(append([]string{"run"}, c.via...), "--identity", k.UserKey, "--ssh-option", "UserKnownHostsFile="+k.KnownHosts)
			args = append(args, "--", "ansible-playbook", "-i", "inventory", "play.yml", "-e", "base="+base, "-e", "fetched="+fetched)
			args = append(args, c.become...)
			cmd := exec.Command(mitogenBin, args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_FORKS=8", "ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "ansible-tmp"),
				"ANSIBLE_SSH_CONTROL_PATH_DIR="+filepath.Join(dir, "cp"), "ANSIBLE_RETRY_FILES_ENABLED=0", "ANSIBLE_CONFIG="+filepath.Join(dir, "none.cfg"),
				// Ansible's 12 s for a become prompt (and a connection) is
				// short for eight forks on a loaded 2-core machine.
				"ANSIBLE_TIMEOUT=120")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(10 * time.Minute):
				cmd.Process.Kill()
				<-done
				t.Fatalf("ansible-playbook under mitogen run still running after 10 minutes:\n%s", out.String())
			}
			if err != nil {
				t.Fatalf("ansible-playbook: %v\n%s", err, out.String())
			}
			if strings.Contains(out.String(), "[WARNING]") {
				t.Fatalf("ansible printed warnings:\n%s", out.String())
			}
			src, _ := os.ReadFile(filepath.Join(dir, "src.txt"))
			owner := func(p string) string {
				o, _ := exec.Command("stat", "-c", "%U", p).Output()
				return strings.TrimSpace(string(o))
			}
			pending := 0
			for _, h := range ansibleHosts {
				name := strings.Fields(h)[0]
				d := filepath.Join(base, name)
				if got, _ := os.ReadFile(filepath.Join(d, "copied.txt")); !bytes.Equal(got, src) || owner(filepath.Join(d, "copied.txt")) != c.user {
					t.Errorf("%s: copy: %q owned by %s", name, got, owner(filepath.Join(d, "copied.txt")))
				}
				if got, _ := os.ReadFile(filepath.Join(d, "templated.txt")); string(got) != "host "+name+" says hello\n" {
					t.Errorf("%s: template: %q", name, got)
				}
				if got, _ := os.ReadFile(filepath.Join(fetched, name+".txt")); !bytes.Equal(got, src) {
					t.Errorf("%s: fetch: %q", name, got)
				}
				// Copied and templated files get the far user's umask, as
				// under sshd (0644 with umask 022).
				for _, f := range []string{"copied.txt", "templated.txt", "become.txt"} {
					if st, err := os.Stat(filepath.Join(d, f)); err != nil || st.Mode().Perm() != 0o644 {
						if c.modesPending {
							pending++
						} else {
							t.Errorf("%s: %s: mode %v (%v), want 0644 as OpenSSH gives", name, f, st.Mode().Perm(), err)
						}
					}
				}
				if got, _ := os.ReadFile(filepath.Join(d, "become.txt")); string(got) != "as root\n" || owner(filepath.Join(d, "become.txt")) != "root" {
					t.Errorf("%s: copy with become: %q owned by %s", name, got, owner(filepath.Join(d, "become.txt")))
				}
			}
			if pending > 0 {
				t.Logf("%d files are not 0644 (the hop's umask fix is not on this branch; modes not asserted)", pending)
			}
			if t.Failed() {
				t.Logf("ansible output:\n%s", out.String())
			}
		})
	}
}
