package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/seed-a176d0ab/mitogen-go/transport"
)

// persistRow times the second and later `mitogen exec --via SPEC -- true`
// with a persistent master (its own, in a temporary directory, stopped
// after) against a fresh `ssh host true` to the same sshd and user, reps
// times each, and returns the row (medians).
func persistRow(mitogenBin, specText, identity string, reps int) (row, error) {
	spec, err := transport.ParseSpec(specText)
	if err != nil {
		return row{}, err
	}
	tmp, err := os.MkdirTemp("", "mitogen-bench-persist-")
	if err != nil {
		return row{}, err
	}
	defer os.RemoveAll(tmp)
	env := append(os.Environ(), "MITOGEN_PERSIST=", "MITOGEN_PERSIST_DIR="+tmp+"/p")
	mitogen := func(args ...string) error {
		cmd := exec.Command(mitogenBin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mitogen %q: %v: %s", args, err, out)
		}
		return nil
	}
	defer mitogen("master", "--stop")
	cacheDir := tmp + "/cache"
	if remoteTmp != "" {
		cacheDir = fmt.Sprintf("%s/persist-cache-%d", remoteTmp, time.Now().UnixNano())
	}
	execArgs := []string{"exec", "--via", specText, "--identity", identity, "--host-key-checking", "ignore",
		"--agent-cache-dir", cacheDir, "--", "true"}
	if err := mitogen(execArgs...); err != nil { // the first: starts the master, which logs in
		return row{}, err
	}
	sshArgs := []string{"-i", identity, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
	if spec.Port != 0 {
		sshArgs = append(sshArgs, "-p", fmt.Sprint(spec.Port))
	}
	if spec.User != "" {
		sshArgs = append(sshArgs, "-l", spec.User)
	}
	sshArgs = append(sshArgs, spec.Host, "true")
	var ours, fresh []time.Duration
	for i := 0; i < reps; i++ {
		t := time.Now()
		if err := mitogen(execArgs...); err != nil {
			return row{}, err
		}
		ours = append(ours, time.Since(t))
		t = time.Now()
		if out, err := exec.Command("ssh", sshArgs...).CombinedOutput(); err != nil {
			return row{}, fmt.Errorf("ssh %q: %v: %s", sshArgs, err, out)
		}
		fresh = append(fresh, time.Since(t))
	}
	return row{name: "second `mitogen exec --via ssh:h -- true`, persistent master", unit: "ms", ours: ms(median(ours)),
		anchor: ms(median(fresh)), anchorName: "OpenSSH `ssh h true`, fresh connection, same user", goal: "≤ 1/20"}, nil
}
