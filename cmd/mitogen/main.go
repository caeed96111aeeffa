// Command mitogen is mitogen-go's command-line interface.
//
//	mitogen exec [--via SPEC]... -- CMD [ARG...]
//	mitogen run  [--via SPEC]... [--host NAME=SPEC[,SPEC...]]... -- PROGRAM [ARG...]
//	mitogen ping [--via SPEC]... [-n N]
//	mitogen master [--check | --stop]
//	mitogen methods
//	mitogen agent
//
// "mitogen agent" and, invoked under the name "ssh" (as fakessh puts it on a
// program's PATH), fakessh's ssh are served by mitogen.Main, the entry every
// program embedding mitogen-go calls first.
package main

import (
	"fmt"
	"os"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/agent"
)

const usage = `usage: mitogen COMMAND [OPTIONS]

Commands:
  exec   run a command in a context, with stdio relayed and its exit status
  run    run a program whose ssh invocations are served by contexts (fakessh)
  ping   measure the round trip of a no-op call to a context
  master start, check (--check) or stop (--stop) the persistent master that
         holds the chains of exec and ping for reuse (opt out: --no-persist)
  methods  list the connection methods, their hop syntax and options
  agent  the entry point of a context's agent (started by mitogen itself)

SPEC is one hop, KIND[:ARG]: local | ssh:[user@]host[:port] | sudo[:user] |
su[:user] | doas[:user] | setns:pid=PID | docker:[user@]container |
podman:[user@]container | kubectl:pod | lxc:container | lxd:container
Run 'mitogen COMMAND --help' for a command's options.
`

func main() {
	// Started as a context's agent or as fakessh's ssh, this binary
	// serves that and exits.
	mitogen.Main()
	agent.TuneRuntime()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "exec":
		return cmdExec(args[1:])
	case "run":
		return cmdRun(args[1:])
	case "ping":
		return cmdPing(args[1:])
	case "master":
		return cmdMaster(args[1:])
	case "methods":
		return cmdMethods(os.Stdout)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "mitogen: unknown command %q\n\n%s", args[0], usage)
	return 2
}
