// Package ssh starts agents on other hosts with the system's OpenSSH
// client, so ~/.ssh/config, ProxyJump, ssh-agent keys and known_hosts work
// as they do for ssh. Nothing need be installed on the far host beyond a
// POSIX shell: see package bootstrap.
package ssh

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/seed-a176d0ab/mitogen-go/transport"
	"github.com/seed-a176d0ab/mitogen-go/transport/bootstrap"
)

// Options are the ssh settings of a hop. They travel only to the context
// that runs this ssh (see transport.DecodeOptions for the wire form).
type Options struct {
	// ConfigFile is passed as ssh -F.
	ConfigFile string `opt:"config_file"`
	// Options are extra -o KEY=VALUE settings.
	Options []string `opt:"options"`
	// Identity is passed as ssh -i. It is a path on the host where this
	// ssh runs (the previous hop's), read there, not on the master.
	Identity string `opt:"identity"`
	// ConnectTimeout in seconds (0: ssh's default).
	ConnectTimeout int `opt:"connect_timeout"`
	// HostKeyChecking is enforce, accept-new or ignore; empty leaves the
	// choice to ssh, so the user's ssh_config (StrictHostKeyChecking, per
	// host) applies as it does for a plain ssh. In BatchMode ssh's own
	// default ("ask") refuses unknown and changed host keys.
	HostKeyChecking string `opt:"host_key_checking"`
	// Password answers ssh's password or passphrase prompt; without one,
	// ssh runs in BatchMode.
	Password string `opt:"password,secret"`
	// CacheDir overrides the far side's agent cache directory.
	CacheDir string `opt:"cache_dir"`
	// Program is the ssh binary (default "ssh").
	Program string `opt:"program"`
}

// Validate checks the options' values.
func (o *Options) Validate() error {
	switch o.HostKeyChecking {
	case "", "enforce", "accept-new", "ignore":
	default:
		return fmt.Errorf("host key checking %q: want enforce, accept-new or ignore", o.HostKeyChecking)
	}
	if o.ConnectTimeout < 0 {
		return fmt.Errorf("connect timeout %d: want seconds >= 0", o.ConnectTimeout)
	}
	for _, opt := range o.Options {
		if k, _, ok := strings.Cut(opt, "="); !ok || k == "" || strings.HasPrefix(k, "-") {
			return fmt.Errorf("ssh option %q: want KEY=VALUE", opt)
		}
	}
	return nil
}

// Method is the "ssh" connection method; the package registers it into
// transport.Default.
var Method = transport.Method{
	Kind:    transport.KindSSH,
	Syntax:  "ssh:[user@]host[:port]",
	Summary: "another host, with the system's OpenSSH client (ssh_config, keys, ProxyJump apply)",
	Parse: func(arg string) (transport.Spec, error) {
		user, host, port, err := transport.SplitUserHost(arg, true)
		if err != nil {
			return transport.Spec{}, err
		}
		return transport.Spec{Kind: transport.KindSSH, User: user, Host: host, Port: port}, nil
	},
	NewOptions: func() any { return new(Options) },
	New: func(spec transport.Spec, opts any, agent *bootstrap.Agent) (transport.Transport, error) {
		return &Transport{Spec: spec, Opts: *opts.(*Options), Agent: agent}, nil
	},
}

func init() { transport.Register(Method) }

// Transport is an ssh hop.
type Transport struct {
	Spec  transport.Spec
	Opts  Options
	Agent *bootstrap.Agent
	// AgentBytesSent counts agent bytes sent by this transport.
	AgentBytesSent int64
}

func (t *Transport) String() string { return t.Spec.String() }

// Args returns ssh's arguments for running command on the host.
func (t *Transport) Args(command string) ([]string, error) {
	args := []string{"-T", "-e", "none", "-o", "ServerAliveInterval=15"}
	if t.Opts.Password == "" {
		args = append(args, "-o", "BatchMode=yes")
	} else {
		args = append(args, "-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1")
	}
	if err := t.Opts.Validate(); err != nil {
		return nil, err
	}
	switch t.Opts.HostKeyChecking {
	case "enforce":
		args = append(args, "-o", "StrictHostKeyChecking=yes")
	case "accept-new":
		args = append(args, "-o", "StrictHostKeyChecking=accept-new")
	case "ignore":
		args = append(args, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")
	}
	if t.Opts.ConfigFile != "" {
		args = append(args, "-F", t.Opts.ConfigFile)
	}
	if t.Opts.Identity != "" {
		args = append(args, "-i", t.Opts.Identity)
	}
	if t.Opts.ConnectTimeout > 0 {
		args = append(args, "-o", "ConnectTimeout="+strconv.Itoa(t.Opts.ConnectTimeout))
	}
	for _, o := range t.Opts.Options {
		args = append(args, "-o", o)
	}
	if t.Spec.Port != 0 {
		args = append(args, "-p", strconv.Itoa(t.Spec.Port))
	}
	if t.Spec.User != "" {
		args = append(args, "-l", t.Spec.User)
	}
	return append(args, "--", t.Spec.Host, command), nil
}

// Start implements transport.Transport.
func (t *Transport) Start(ctx context.Context) (transport.Conn, error) {
	script, err := t.Agent.Script(t.Opts.CacheDir)
	if err != nil {
		return nil, err
	}
	args, err := t.Args("/bin/sh -c " + bootstrap.ShellQuote(script))
	if err != nil {
		return nil, err
	}
	prog := t.Opts.Program
	if prog == "" {
		prog = "ssh"
	}
	c := bootstrap.Command{
		Cmd:      exec.Command(prog, args...),
		Agent:    t.Agent,
		Sent:     &t.AgentBytesSent,
		Classify: t.classify,
	}
	if t.Opts.Password != "" {
		c.Prompts = []bootstrap.Prompt{
			{Match: "password:", Answer: t.Opts.Password, Again: fmt.Sprintf("ssh to %s: authentication failed: wrong password", t.Spec.Host)},
			{Match: "passphrase for", Answer: t.Opts.Password, Again: fmt.Sprintf("ssh to %s: wrong key passphrase", t.Spec.Host)},
		}
	}
	return bootstrap.Start(ctx, c)
}

// classify names what failed from what ssh printed.
func (t *Transport) classify(stderr string, err error) error {
	kind := "the agent did not start"
	low := strings.ToLower(stderr)
	switch {
	case strings.Contains(low, "permission denied"), strings.Contains(low, "too many authentication failures"):
		kind = "authentication failed"
	case strings.Contains(low, "host key verification failed"), strings.Contains(low, "remote host identification has changed"), strings.Contains(low, "no matching host key"):
		kind = "host key verification failed"
	case strings.Contains(low, "could not resolve hostname"), strings.Contains(low, "connection refused"),
		strings.Contains(low, "no route to host"), strings.Contains(low, "timed out"), strings.Contains(low, "network is unreachable"),
		strings.Contains(low, "connection closed by"), strings.Contains(low, "connection reset"):
		kind = "host unreachable"
	}
	if stderr == "" {
		stderr = "(ssh printed nothing)"
	}
	return fmt.Errorf("ssh to %s: %s: %v\nssh said:\n%s", t.Spec, kind, err, stderr)
}
