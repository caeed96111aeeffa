package fakessh_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/fakessh"
	"github.com/seed-a176d0ab/mitogen-go/gen/mitogen"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
	"github.com/seed-a176d0ab/mitogen-go/internal/testproc"
)

// runUnder runs argv under fakessh with dest as the default destination.
func runUnder(t *testing.T, dest *core.Context, hosts map[string]*core.Context, stdin []byte, argv ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Hosts: hosts, Exe: os.Args[0],
		Stdin: bytes.NewReader(stdin), Stdout: &out, Stderr: &errb}
	status, err := rn.Run(ctxT(t, 120*time.Second), argv)
	if err != nil {
		t.Fatalf("Run %q: %v (stderr: %s)", argv, err, errb.String())
	}
	return status, out.String(), errb.String()
}

// forChains runs f through one local context and through a local,local chain.
func forChains(t *testing.T, f func(t *testing.T, dest *core.Context)) {
	for _, hops := range []int{1, 2} {
		t.Run(fmt.Sprintf("hops=%d", hops), func(t *testing.T) {
			_, dest := chain(t, hops)
			f(t, dest)
		})
	}
}

func TestExitStatusAndStderr(t *testing.T) {
	forChains(t, func(t *testing.T, dest *core.Context) {
		for _, code := range []int{0, 1, 7} {
			st, out, errs := runUnder(t, dest, nil, nil, "ssh", "anyhost", fmt.Sprintf("echo out; echo err >&2; exit %d", code))
			if st != code || out != "out\n" || errs != "err\n" {
				t.Errorf("exit %d: got status %d, stdout %q, stderr %q", code, st, out, errs)
			}
		}
		st, _, errs := runUnder(t, dest, nil, nil, "ssh", "anyhost", "kill -9 $$")
		if st != 255 || errs != "" {
			t.Errorf("killed remote: status %d, stderr %q; want 255 and, as OpenSSH, no line", st, errs)
		}
	})
}

func TestStdinToRemote(t *testing.T) {
	forChains(t, func(t *testing.T, dest *core.Context) {
		dir := t.TempDir()
		data := make([]byte, 3<<20+17)
		rand.Read(data)
		f := filepath.Join(dir, "f")
		st, _, errs := runUnder(t, dest, nil, data, "ssh", "h", "cat > '"+f+"'")
		if st != 0 {
			t.Fatalf("status %d: %s", st, errs)
		}
		got, err := os.ReadFile(f)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("remote file differs (%d bytes, %v)", len(got), err)
		}
		// And back, binary-safe, through stdout.
		st, out, _ := runUnder(t, dest, nil, nil, "ssh", "h", "cat '"+f+"'")
		if st != 0 || out != string(data) {
			t.Fatalf("cat back: status %d, %d bytes", st, len(out))
		}
	})
}

func TestConcurrentInvocations(t *testing.T) {
	_, dest := chain(t, 1)
	// Each ssh's stderr goes to its own file, so a failure says which ssh
	// failed and why.
	script := `for i in 1 2 3 4 5 6 7 8; do ssh host$i "sleep 0.3; echo \$((i*0+$i))" > out.$i 2> err.$i & done; wait; cat out.1 out.2 out.3 out.4 out.5 out.6 out.7 out.8`
	dir := t.TempDir()
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Dir: dir}
	var out, errb bytes.Buffer
	rn.Stdout, rn.Stderr = &out, &errb
	st, err := rn.Run(ctxT(t, 120*time.Second), []string{"sh", "-c", script})
	if got := out.String(); err != nil || st != 0 || got != "1\n2\n3\n4\n5\n6\n7\n8\n" {
		var why strings.Builder
		for i := 1; i <= 8; i++ {
			o, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out.%d", i)))
			e, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("err.%d", i)))
			if len(e) > 0 || string(o) != fmt.Sprintf("%d\n", i) {
				fmt.Fprintf(&why, "\nssh host%d: stdout %q, stderr %q", i, o, e)
			}
		}
		t.Fatalf("status %d, %v, outputs %q, program stderr %q%s", st, err, got, errb.String(), why.String())
	}
}

func TestHostMapping(t *testing.T) {
	r, a := chain(t, 1)
	b := chainOn(t, r, 1)
	st, out, errs := runUnder(t, a, map[string]*core.Context{"other": b}, nil, "sh", "-c",
		"ssh other 'echo $PPID'; ssh other 'echo $PPID'; ssh x 'echo $PPID'")
	lines := strings.Fields(out)
	if st != 0 || len(lines) != 3 {
		t.Fatalf("status %d out %q err %q", st, out, errs)
	}
	if lines[0] != lines[1] || lines[0] == lines[2] {
		t.Fatalf("host 'other' and the default went to the wrong agents: %v", lines)
	}
}

func TestOptionGrammar(t *testing.T) {
	_, dest := chain(t, 1)
	st, out, errs := runUnder(t, dest, nil, nil, "ssh", "-G", "example")
	if st != 0 || !strings.Contains(out, "hostname example") {
		t.Errorf("-G: status %d out %q err %q", st, out, errs)
	}
	st, _, errs = runUnder(t, dest, nil, nil, "ssh", "-V")
	if st != 0 || !strings.Contains(errs, "OpenSSH") {
		t.Errorf("-V: status %d err %q", st, errs)
	}
	st, _, errs = runUnder(t, dest, nil, nil, "ssh", "-Z", "h")
	if st != 255 || errs == "" {
		t.Errorf("-Z: status %d err %q", st, errs)
	}
	// -l names the context's own user (another one would be a sudo hop).
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	st, out, _ = runUnder(t, dest, nil, nil, "ssh", "-tt", "-o", "BatchMode=yes", "-p22", "-l", me.Username, "h", "-q", "echo", "a  b")
	if st != 0 || out != "a b\r\n" { // -tt: a pty, whose output processing makes "\n" "\r\n"
		t.Errorf("options after host: status %d out %q", st, out)
	}
}

func TestRemoteCommandDiesWithRun(t *testing.T) {
	_, dest := chain(t, 1)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0]}
	ctx := ctxT(t, 60*time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rn.Run(ctx, []string{"ssh", "h", "echo $$ > " + pidFile + "; exec sleep 300"})
	}()
	var pid int
	for i := 0; i < 500 && pid == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		fmt.Sscan(string(b), &pid)
	}
	if pid == 0 {
		t.Fatal("remote command never started")
	}
	// Kill the program (our ssh): the remote command must go too.
	ssh := processesWith("ssh", "h", "echo $$ > "+pidFile+"; exec sleep 300")
	if len(ssh) != 1 {
		t.Fatalf("found ssh processes %v; want one", ssh)
	}
	syscall.Kill(ssh[0], syscall.SIGKILL)
	<-done
	for i := 0; i < 500; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("remote command %d outlived its ssh", pid)
}

// makeTree builds a tree with the awkward cases rsync users have.
func makeTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "dir with spaces", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "dir with spaces", "file name"), []byte("spaces\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "new\nline"), []byte("newline in name\n"), 0o600))
	must(os.WriteFile(filepath.Join(root, "empty"), nil, 0o644))
	big := make([]byte, 8<<20+3)
	rand.Read(big)
	must(os.WriteFile(filepath.Join(root, "dir with spaces", "sub", "large.bin"), big, 0o644))
	must(os.Symlink("dir with spaces/file name", filepath.Join(root, "link")))
	must(os.Symlink("/nonexistent/target", filepath.Join(root, "dangling")))
	must(os.WriteFile(filepath.Join(root, "hard1"), []byte("hardlinked\n"), 0o644))
	must(os.Link(filepath.Join(root, "hard1"), filepath.Join(root, "hard2")))
}

// treeSig describes a tree: names, types, modes, contents, link targets,
// and which names share an inode.
func treeSig(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%q %v", rel, info.Mode())
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %d %x", len(b), b[:min(len(b), 16)])
			st := info.Sys().(*syscall.Stat_t)
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range inodes {
		sort.Strings(names)
		lines = append(lines, "hardlinks "+strings.Join(names, ","))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestRsync(t *testing.T) {
	testhosts.Need(t, "rsync")
	forChains(t, func(t *testing.T, dest *core.Context) {
		src, dst := t.TempDir(), t.TempDir()
		makeTree(t, src)
		st, _, errs := runUnder(t, dest, nil, nil, "rsync", "-aH", src+"/", "anyhost:"+dst+"/")
		if st != 0 {
			t.Fatalf("rsync push: status %d: %s", st, errs)
		}
		if a, b := treeSig(t, src), treeSig(t, dst); a != b {
			t.Fatalf("pushed tree differs:\n%s\n---\n%s", a, b)
		}
		back := t.TempDir()
		st, _, errs = runUnder(t, dest, nil, nil, "rsync", "-aH", "anyhost:"+dst+"/", back+"/")
		if st != 0 {
			t.Fatalf("rsync pull: status %d: %s", st, errs)
		}
		if a, b := treeSig(t, src), treeSig(t, back); a != b {
			t.Fatalf("pulled tree differs:\n%s\n---\n%s", a, b)
		}
	})
}

func TestScpBothModes(t *testing.T) {
	testhosts.Need(t, "scp")
	forChains(t, func(t *testing.T, dest *core.Context) {
		src := filepath.Join(t.TempDir(), "src file")
		data := make([]byte, 1<<20+5)
		rand.Read(data)
		if err := os.WriteFile(src, data, 0o640); err != nil {
			t.Fatal(err)
		}
		for _, mode := range [][]string{{"-O"}, {}} {
			dst := filepath.Join(t.TempDir(), "copy")
			args := append([]string{"scp", "-q"}, mode...)
			st, _, errs := runUnder(t, dest, nil, nil, append(args, src, "anyhost:"+dst)...)
			if st != 0 {
				t.Fatalf("scp %v: status %d: %s", mode, st, errs)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
				t.Fatalf("scp %v: copy differs", mode)
			}
		}
	})
}

func TestSftpBatch(t *testing.T) {
	testhosts.Need(t, "sftp")
	forChains(t, func(t *testing.T, dest *core.Context) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "up"), []byte("uploaded\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		remote := t.TempDir()
		batch := filepath.Join(dir, "batch")
		os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s/up\nmkdir %s/d\nls %s\nget %s/up %s/down\n",
			filepath.Join(dir, "up"), remote, remote, remote, remote, dir)), 0o644)
		st, out, errs := runUnder(t, dest, nil, nil, "sftp", "-b", batch, "anyhost")
		if st != 0 {
			t.Fatalf("sftp: status %d: %s %s", st, out, errs)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "down")); string(got) != "uploaded\n" {
			t.Fatalf("sftp round trip: %q", got)
		}
		if _, err := os.Stat(filepath.Join(remote, "d")); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	})
}

func TestGitCloneAndPush(t *testing.T) {
	testhosts.Need(t, "git")
	forChains(t, func(t *testing.T, dest *core.Context) {
		base := t.TempDir()
		bare := filepath.Join(base, "repo.git")
		gitenv := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "HOME=" + base}
		run := func(dir string, args ...string) {
			t.Helper()
			cmd := exec.Command("git", args...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), gitenv...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		run(base, "init", "-q", "--bare", "-b", "main", bare)
		seed := filepath.Join(base, "seed")
		run(base, "init", "-q", "-b", "main", seed)
		os.WriteFile(filepath.Join(seed, "README"), []byte("hello\n"), 0o644)
		run(seed, "add", "README")
		run(seed, "commit", "-qm", "first")
		run(seed, "push", "-q", bare, "main")

		clone := filepath.Join(base, "clone")
		var mu sync.Mutex
		mu.Lock()
		defer mu.Unlock()
		env := append(os.Environ(), gitenv...)
		rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Env: env, Dir: base}
		var errb bytes.Buffer
		rn.Stderr = &errb
		if st, err := rn.Run(ctxT(t, 60*time.Second), []string{"git", "clone", "-q", "ssh://anyhost" + bare, clone}); st != 0 || err != nil {
			t.Fatalf("git clone: %d %v %s", st, err, errb.String())
		}
		if b, _ := os.ReadFile(filepath.Join(clone, "README")); string(b) != "hello\n" {
			t.Fatalf("clone content %q", b)
		}
		os.WriteFile(filepath.Join(clone, "NEW"), []byte("pushed\n"), 0o644)
		run(clone, "add", "NEW")
		run(clone, "commit", "-qm", "second")
		rn.Dir = clone
		if st, err := rn.Run(ctxT(t, 60*time.Second), []string{"git", "push", "-q", "origin", "main"}); st != 0 || err != nil {
			t.Fatalf("git push: %d %v %s", st, err, errb.String())
		}
		out, err := exec.Command("git", "--git-dir", bare, "log", "--format=%s", "main").Output()
		if err != nil || string(out) != "second\nfirst\n" {
			t.Fatalf("bare repo log %q %v", out, err)
		}
	})
}

func TestLoginModeRunsUserShell(t *testing.T) {
	_, dest := chain(t, 1)
	st, out, errs := runUnder(t, dest, nil, []byte("echo in-login-shell; exit 5\n"), "ssh", "h")
	if st != 5 || out != "in-login-shell\n" {
		t.Fatalf("status %d out %q err %q", st, out, errs)
	}
}

// Many short ssh invocations at once: contexts end (and are announced
// with DEL_ROUTE) while others are still booting. Every one must work.
func TestManyShortInvocations(t *testing.T) {
	_, dest := chain(t, 1)
	const n = 48
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); ssh host$i "echo \$((0+$i))" > out.$i 2> err.$i & done; wait`, n)
	dir := t.TempDir()
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Dir: dir}
	var errb bytes.Buffer
	rn.Stderr = &errb
	st, err := rn.Run(ctxT(t, 180*time.Second), []string{"sh", "-c", script})
	var why strings.Builder
	for i := 1; i <= n; i++ {
		o, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out.%d", i)))
		e, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("err.%d", i)))
		if len(e) > 0 || string(o) != fmt.Sprintf("%d\n", i) {
			fmt.Fprintf(&why, "\nssh host%d: stdout %q, stderr %q", i, o, e)
		}
	}
	if err != nil || st != 0 || why.Len() > 0 {
		t.Fatalf("status %d, %v, program stderr %q%s", st, err, errb.String(), why.String())
	}
}

// processesWith lists the processes whose command line has argv[0] named
// name (a base name) and contains every one of words.
func processesWith(name string, words ...string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
		if filepath.Base(args[0]) != name {
			continue
		}
		all := true
		for _, w := range words {
			all = all && slices.Contains(args, w)
		}
		if all {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid is a live process (a zombie is not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// When the fake ssh dies mid-transfer, the remote rsync ends the way it
// would under sshd (stdin EOF, SIGHUP) and removes its temporary file,
// rather than being SIGKILLed and leaving it behind.
func TestRsyncSurvivesSSHDeath(t *testing.T) {
	testhosts.Need(t, "rsync")
	_, dest := chain(t, 1)
	src, dst := t.TempDir(), t.TempDir()
	// 300 MB, sparse: nothing to write here; rate-limited so that it is
	// still in flight when its ssh is killed.
	f, err := os.Create(filepath.Join(src, "file"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(300 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0]}
	var errb bytes.Buffer
	rn.Stderr = &errb
	done := make(chan int, 1)
	go func() {
		st, _ := rn.Run(ctxT(t, 300*time.Second), []string{"rsync", "--bwlimit=20000", filepath.Join(src, "file"), "anyhost:" + dst + "/"})
		done <- st
	}()
	temps := func() []string {
		m, _ := filepath.Glob(filepath.Join(dst, ".file.*"))
		return m
	}
	var sshPIDs, remotePIDs []int
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if len(temps()) > 0 {
			sshPIDs = processesWith("ssh", "anyhost", dst+"/")
			remotePIDs = processesWith("rsync", "--server", dst+"/")
			break
		}
		select {
		case st := <-done:
			t.Fatalf("rsync ended (status %d) before its temporary file appeared: %s", st, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("rsync's temporary file never appeared")
		}
	}
	if len(sshPIDs) != 1 || len(remotePIDs) == 0 {
		t.Fatalf("found ssh processes %v and remote rsyncs %v; want one and some", sshPIDs, remotePIDs)
	}
	if err := syscall.Kill(sshPIDs[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if st := <-done; st == 0 {
		t.Fatal("rsync succeeded although its ssh was killed")
	}
	for _, pid := range remotePIDs {
		for deadline := time.Now().Add(60 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("remote rsync %d still running", pid)
			}
		}
	}
	if left := temps(); len(left) > 0 {
		t.Fatalf("the remote rsync left %v behind", left)
	}
}

// A process of the run that opens more connections to the run's socket
// than the pre-authentication cap and sends nothing does not keep the
// run's ssh out: it gets in once the idle ones time out.
func TestSSHGetsPastIdleConnections(t *testing.T) {
	_, dest := chain(t, 1)
	dir := t.TempDir()
	script := `mkfifo hold; "$HOG" < hold > hog.out & exec 3> hold
while [ ! -s hog.out ]; do sleep 0.05; done
ssh h echo ok; st=$?; exec 3>&-; wait; exit $st`
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Dir: dir,
		Env: append(os.Environ(), "HOG="+os.Args[0], fakessh.EnvTestHog+"=100")}
	var out, errb bytes.Buffer
	rn.Stdout, rn.Stderr = &out, &errb
	st, err := rn.Run(ctxT(t, 120*time.Second), []string{"sh", "-c", script})
	if err != nil || st != 0 || out.String() != "ok\n" {
		t.Fatalf("status %d, %v, stdout %q, stderr %q", st, err, out.String(), errb.String())
	}
}

// Our ssh killed by SIGTERM exits 255 and, as OpenSSH 9.2 (measured:
// its "Killed by signal" line is at its VERBOSE level), says so only
// with -v: nothing by default nor with -q.
func TestSSHKilledBySignal(t *testing.T) {
	_, dest := chain(t, 1)
	for _, q := range []string{"-x", "-q", "-v"} {
		want := ""
		if q == "-v" {
			want = "Killed by signal 15.\r\n"
		}
		dir := t.TempDir()
		script := `ssh ` + q + ` h 'echo started; exec sleep 300' > out 2> err & pid=$!
while [ ! -s out ]; do sleep 0.05; done
kill -TERM $pid; wait $pid; echo $? > status`
		rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0], Dir: dir}
		if st, err := rn.Run(ctxT(t, 120*time.Second), []string{"sh", "-c", script}); err != nil || st != 0 {
			t.Fatalf("%s: status %d, %v", q, st, err)
		}
		status, _ := os.ReadFile(filepath.Join(dir, "status"))
		errs, _ := os.ReadFile(filepath.Join(dir, "err"))
		if string(status) != "255\n" || string(errs) != want {
			t.Errorf("ssh %s killed by SIGTERM: status %q, stderr %q; want 255 and %q", q, status, errs, want)
		}
	}
}

// A context shutting down ends its processes as sshd would, and within the
// time its parent grants: a process that ignores SIGHUP and SIGTERM sees
// both and is still killed, not orphaned.
func TestAgentShutdownEndsProcesses(t *testing.T) {
	r, dest := chain(t, 1)
	rec := filepath.Join(t.TempDir(), "record")
	started, err := dest.Agent().StartProcess(ctxT(t, 60*time.Second), &mitogen.ProcessSpec{Argv: []string{os.Args[0]},
		Env: map[string]string{testproc.EnvSignalRecorder: rec}})
	if err != nil {
		t.Fatal(err)
	}
	pid := int(started.Pid)
	// Should the test fail, the process is killed: through a pidfd, which
	// names this process, not whatever has its PID by then.
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		t.Cleanup(func() { _ = unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0); unix.Close(fd) })
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(rec); strings.Contains(string(b), "ready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process never became ready")
		}
	}
	r.Close()
	for deadline := time.Now().Add(60 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(rec)
			t.Fatalf("process %d outlived its context (it saw %q)", pid, b)
		}
	}
	if b, _ := os.ReadFile(rec); !strings.Contains(string(b), "HUP\n") || !strings.Contains(string(b), "TERM\n") {
		t.Fatalf("the process saw %q; want HUP and TERM before SIGKILL", b)
	}
}

// An ssh that left the program's process group (setsid) is still ended
// with the run: its context is disconnected, and so its remote command
// goes. Before, the run forgot its members before disconnecting them and
// the remote command outlived the run.
func TestDetachedSSHEndsWithRun(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	_, dest := chain(t, 1)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	remote := "echo $$ > " + pidFile + "; exec sleep 300"
	rn := &fakessh.Runner{Router: dest.Router(), Default: dest, Exe: os.Args[0]}
	script := `setsid -f ssh h "$1" </dev/null >/dev/null 2>&1; while [ ! -s "$2" ]; do sleep 0.05; done`
	st, err := rn.Run(ctxT(t, 60*time.Second), []string{"sh", "-c", script, "sh", remote, pidFile})
	if err != nil || st != 0 {
		t.Fatalf("run: status %d, %v", st, err)
	}
	var pid int
	b, _ := os.ReadFile(pidFile)
	fmt.Sscan(string(b), &pid)
	if pid == 0 {
		t.Fatal("remote command never started")
	}
	defer func() {
		for _, p := range processesWith("ssh", "h", remote) {
			syscall.Kill(p, syscall.SIGKILL)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}()
	for i := 0; i < 1000; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("remote command %d outlived the run", pid)
}
