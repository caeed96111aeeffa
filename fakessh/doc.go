// Package fakessh runs unmodified programs that shell out to ssh (rsync,
// scp, sftp, git, scripts) against contexts a master already holds, so no
// ssh connection is made: each "ssh host command" the program starts runs
// command in a context of the master's choosing, with stdin, stdout and
// stderr relayed (flow-controlled, binary-safe) and the exact exit status
// returned, any number at once.
//
// # Use
//
// A Runner (or Run, or mitogen.Master.RunFakeSSH) runs the program with a
// private ssh first on its PATH; Default serves every ssh destination,
// Hosts the ones they name:
//
//	rn := &fakessh.Runner{Router: r, Default: local, Hosts: map[string]*core.Context{"db": pg},
//		Stdout: os.Stdout, Stderr: os.Stderr}
//	status, err := rn.Run(ctx, []string{"rsync", "-a", "src/", "db:/srv/dst/"})
//
// The ssh is the running binary itself, under the name "ssh": the program
// must call mitogen.Main first in main, which serves that role (SSHMain).
// Our ssh reads the command line as OpenSSH does (options it cannot honour
// are refused or ignored as documented in fakessh/sshargs), connects back
// to the run's private socket with the run's secret, and becomes a leaf
// context of the master, which admits nothing else through it. Wrappers
// named scp and sftp sit next to it (WrapperMain): they run the real
// programs with "-S <our ssh>", since both run their build's ssh by path.
//
// ssh's modes: -W host:port, -L and -D are connections the destination
// context makes (Agent.dial_tcp, asked for by the master on the ssh's
// behalf: FakeSSH.dial), -R a listener in the destination
// (Agent.listen_tcp via FakeSSH.listen) whose connections the ssh makes
// locally; -N runs nothing and never reads stdin; -f re-runs the ssh in
// the background and returns once its forwards and session are up; -O
// check, exit and stop answer as a running ControlMaster would. What
// cannot be honoured (unix-socket forwards, -w tunnels, -O forward/cancel/
// proxy) exits 255 with a message.
//
// With Runner.On the program runs in a context the master holds instead
// (`mitogen run --on`; see oncontext.go): that context serves the private
// socket with its own binary as the ssh, and its ssh invocations are served
// by the master's other contexts, under the same authority rules.
//
// # How it works
package fakessh
