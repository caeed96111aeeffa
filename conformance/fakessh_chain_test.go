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

	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// fakessh across an ssh -> sudo chain: rsync, scp (both modes), sftp and
// git run as the unprivileged user behind an ssh hop.
func TestFakeSSHAcrossSSHThenSudo(t *testing.T) {
	testhosts.Require(t, "sudo", "rsync", "scp", "sftp", "git")
	testhosts.SudoUser(t, sudoUser, sudoPassword, true)
	k := testhosts.NewKeys(t)
	s := testhosts.Start(t, k, "127.0.0.1", "")
	// The default agent caches: root's on the ssh hop, the user's own behind sudo.
	base := []string{"run", "--via", s.Spec("root"), "--via", "sudo:" + sudoUser,
		"--identity", k.UserKey, "--ssh-option", "UserKnownHostsFile=" + k.KnownHosts}

	// A directory the unprivileged user owns, on this same machine.
	remote, err := os.MkdirTemp("/tmp", "mitogen-remote-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(remote) })
	u, _ := exec.Command("id", "-u", sudoUser).Output()
	uid, _ := strconv.Atoi(strings.TrimSpace(string(u)))
	os.Chown(remote, uid, uid)
	os.Chmod(remote, 0o755)

	local := t.TempDir()
	os.Chmod(local, 0o755)
	data := bytes.Repeat([]byte("mitogen\x00"), 100000)
	os.WriteFile(filepath.Join(local, "f.bin"), data, 0o644)

	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(mitogenBin, append(base, append([]string{"--"}, args...)...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
	}
	owner := func(p string) string {
		out, _ := exec.Command("stat", "-c", "%U", p).Output()
		return strings.TrimSpace(string(out))
	}

	run(local, "rsync", "-a", local+"/", "h:"+remote+"/rsync/")
	if got, _ := os.ReadFile(filepath.Join(remote, "rsync", "f.bin")); !bytes.Equal(got, data) || owner(filepath.Join(remote, "rsync", "f.bin")) != sudoUser {
		t.Fatalf("rsync copy wrong or not owned by %s (owner %s)", sudoUser, owner(filepath.Join(remote, "rsync", "f.bin")))
	}
	run(local, "scp", "-O", "-q", filepath.Join(local, "f.bin"), "h:"+remote+"/scp-legacy")
	run(local, "scp", "-q", filepath.Join(local, "f.bin"), "h:"+remote+"/scp-sftp")
	for _, f := range []string{"scp-legacy", "scp-sftp"} {
		if got, _ := os.ReadFile(filepath.Join(remote, f)); !bytes.Equal(got, data) {
			t.Fatalf("%s copy differs", f)
		}
	}
	batch := filepath.Join(local, "batch")
	os.WriteFile(batch, []byte(fmt.Sprintf("get %s/scp-sftp %s/back\n", remote, local)), 0o644)
	run(local, "sftp", "-b", batch, "h")
	if got, _ := os.ReadFile(filepath.Join(local, "back")); !bytes.Equal(got, data) {
		t.Fatal("sftp get differs")
	}
	// git: a bare repository owned by the user, cloned and pushed to over ssh URLs.
	run(local, "ssh", "h", "git init -q --bare -b main "+remote+"/repo.git")
	repo := filepath.Join(local, "clone")
	// As under Debian's sshd (AcceptEnv LANG LC_*), git's SendEnv
	// GIT_PROTOCOL is not accepted: protocol v0 does not tell an empty
	// repository's HEAD, so the clone names its branch itself.
	run(local, "git", "-c", "init.defaultBranch=main", "clone", "-q", "ssh://h"+remote+"/repo.git", repo)
	os.WriteFile(filepath.Join(repo, "README"), []byte("hi\n"), 0o644)
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	git("add", "README")
	git("commit", "-qm", "first")
	run(repo, "git", "push", "-q", "origin", "main")
	out, err := exec.Command("git", "--git-dir", remote+"/repo.git", "log", "--format=%s", "main").Output()
	if err != nil || string(out) != "first\n" {
		t.Fatalf("pushed log %q %v", out, err)
	}
}
