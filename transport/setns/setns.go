// Package setns starts agents inside the namespaces of a running process
// (a container's, usually) with nsenter(1) from util-linux, as root. It
// runs nsenter rather than calling setns(2) itself: a Go process is
// multithreaded, and the kernel refuses to move a multithreaded process
// into another mount or user namespace, so a separate single-threaded
// program does it. The agent bootstrap then runs with the target's
// /bin/sh, filesystem root and working directory.
package setns

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// Options are the settings of a setns hop.
type Options struct {
	// Namespaces limits which namespaces are entered (of mnt, uts, ipc,
	// net, pid, cgroup, user, time); empty means all of the target's that
	// differ from the caller's (nsenter --all). The filesystem root and
	// working directory are the target's when mnt is entered.
	Namespaces []string `opt:"namespaces"`
	// RuntimeProgram is the docker or podman binary that finds a
	// container's process (default "docker" or "podman").
	RuntimeProgram string `opt:"runtime_program"`
	// CacheDir overrides the agent cache directory inside the target.
	CacheDir string `opt:"cache_dir"`
	// Program is the nsenter binary (default "nsenter").
	Program string `opt:"program"`
}

var nsFlags = map[string]string{
	"mnt": "--mount", "uts": "--uts", "ipc": "--ipc", "net": "--net",
	"pid": "--pid", "cgroup": "--cgroup", "user": "--user", "time": "--time",
}

// Validate checks the options.
func (o *Options) Validate() error {
	for _, ns := range o.Namespaces {
		if nsFlags[ns] == "" {
			return fmt.Errorf("namespace %q: want mnt, uts, ipc, net, pid, cgroup, user or time", ns)
		}
	}
	return nil
}

// Method is the "setns" connection method; the package registers it into
// transport.Default. The target is a process ID or a container whose main
// process a runtime names:
//
//	setns:pid=1234
//	setns:docker=CONTAINER   (docker inspect --format {{.State.Pid}} CONTAINER)
//	setns:podman=CONTAINER   (podman inspect --format {{.State.Pid}} CONTAINER)
var Method = transport.Method{
	Kind:       transport.KindSetns,
	Syntax:     "setns:pid=PID|docker=CONTAINER|podman=CONTAINER",
	Summary:    "the namespaces of a running process or container on the same host, with nsenter (as root)",
	Parse:      parse,
	NewOptions: func() any { return new(Options) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		by, target, _ := strings.Cut(spec.Host, "=")
		return &Transport{By: by, Target: target, Opts: *opts.(*Options), Agent: agent}, nil
	},
}

func init() { transport.Register(Method) }

func parse(arg string) (transport.Spec, error) {
	by, target, ok := strings.Cut(arg, "=")
	if !ok || target == "" {
		return transport.Spec{}, fmt.Errorf("want pid=PID, docker=CONTAINER or podman=CONTAINER")
	}
	switch by {
	case "pid":
		if n, err := strconv.Atoi(target); err != nil || n < 1 || strconv.Itoa(n) != target {
			return transport.Spec{}, fmt.Errorf("bad process ID %q", target)
		}
	case "docker", "podman":
		if strings.ContainsAny(target, " \t\n/:@[]") || strings.HasPrefix(target, "-") {
			return transport.Spec{}, fmt.Errorf("bad container name %q", target)
		}
	default:
		return transport.Spec{}, fmt.Errorf("unknown target %q", by)
	}
	return transport.Spec{Kind: transport.KindSetns, Host: by + "=" + target}, nil
}

// Transport is a setns hop.
type Transport struct {
	// By is "pid", "docker" or "podman"; Target the PID or container.
	By, Target string
	Opts       Options
	Agent      *bootstrap.Agent
}

func (t *Transport) String() string { return "setns:" + t.By + "=" + t.Target }

// Args returns nsenter's arguments for running script in process pid's
// namespaces.
func (t *Transport) Args(pid int, script string) []string {
	args := []string{"--target", strconv.Itoa(pid)}
	mnt := len(t.Opts.Namespaces) == 0
	if mnt {
		args = append(args, "--all")
	}
	for _, ns := range t.Opts.Namespaces {
		args = append(args, nsFlags[ns])
		mnt = mnt || ns == "mnt"
	}
	if mnt {
		args = append(args, "--root", "--wd")
	}
	return append(args, "--", "/bin/sh", "-c", script)
}

// LeaderPID finds the target's process ID.
func (t *Transport) LeaderPID(ctx context.Context) (int, error) {
	if t.By == "pid" {
		return strconv.Atoi(t.Target)
	}
	prog := t.Opts.RuntimeProgram
	if prog == "" {
		prog = t.By
	}
	out, err := exec.CommandContext(ctx, prog, "inspect", "--format", "{{.State.Pid}}", "--", t.Target).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return 0, fmt.Errorf("%s: finding the process of container %s: %v %s", t, t.Target, err, msg)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid < 1 {
		return 0, fmt.Errorf("%s: container %s has no running process (%s inspect said %q)", t, t.Target, prog, strings.TrimSpace(string(out)))
	}
	return pid, nil
}

// Start implements transport.Transport.
func (t *Transport) Start(ctx context.Context) (transport.Conn, error) {
	pid, err := t.LeaderPID(ctx)
	if err != nil {
		return nil, err
	}
	script, err := t.Agent.Script(t.Opts.CacheDir)
	if err != nil {
		return nil, err
	}
	prog := t.Opts.Program
	if prog == "" {
		prog = "nsenter"
	}
	return bootstrap.Start(ctx, bootstrap.Command{
		Cmd:   exec.Command(prog, t.Args(pid, script)...),
		Agent: t.Agent,
		Classify: bootstrap.Classifier(t.String(), "nsenter", []bootstrap.Failure{
			{Match: "operation not permitted", Kind: "not permitted (setns needs root)"},
			{Match: "no such process", Kind: "no such process"},
			{Match: "no such file", Kind: "no such process or namespace"},
		}),
	})
}
