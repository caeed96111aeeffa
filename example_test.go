package mitogen_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	mitogen "github.com/seed-a176d0ab/mitogen-go"
	"github.com/seed-a176d0ab/mitogen-go/process"
	"github.com/seed-a176d0ab/mitogen-go/transport/ssh"
	"github.com/seed-a176d0ab/mitogen-go/transport/sudo"
)

// A program embedding mitogen-go calls Main first: when this binary was
// started as a context's agent or as fakessh's ssh, Main serves that and
// exits; otherwise it returns and the program goes on.
func ExampleMain() {
	// func main() {
	mitogen.Main()
	// ... the program proper: NewMaster, Connect, calls ...
	// }
}

// Start a master, start a context on this machine (this binary re-run as
// its agent) and call it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	local, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}
	if err := local.Agent().Ping(ctx); err != nil {
		log.Fatal(err)
	}
	out, err := local.Agent().Echo(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s answered %q\n", local.Name(), out)
	// Output: local.1 answered "hello"
}

// A chain: the master starts the first context, which starts the second.
// Messages to the second are routed through the first.
func ExampleMaster_Connect_chain() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	inner, err := m.Connect(ctx, mitogen.Local(), mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}
	// The same, one hop at a time: Connect on a context continues from it.
	first, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}
	second, err := first.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range []*mitogen.Context{inner, second} {
		out, err := c.Agent().Echo(ctx, []byte("through a hop"))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s\n", out)
	}
	// Output:
	// through a hop
	// through a hop
}

// fakessh runs an unmodified program whose ssh invocations are served by
// a context: here a shell script's "ssh anyhost echo hi" runs "echo hi" in
// a local context instead of connecting anywhere.
func ExampleMaster_RunFakeSSH() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	local, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}

	status, err := m.RunFakeSSH(ctx, local, []string{"sh", "-c", "ssh anyhost echo hi; ssh anyhost exit 3"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit status", status)
	// Output:
	// hi
	// exit status 3
}

// fakessh in a child context: the program runs in one context (web1) and
// its ssh invocations are served by another (web2), reached by the master
// on its own; web1 never connects to web2 itself.
func ExampleFakeSSHOptions_on() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	web1, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}
	web2, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}
	status, err := m.RunFakeSSH(ctx, nil, []string{"sh", "-c", "ssh web2 echo hi; ssh elsewhere true 2>/dev/null; echo $?"},
		&mitogen.FakeSSHOptions{On: web1, Hosts: map[string]*mitogen.Context{"web2": web2}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit status", status)
	// Output:
	// hi
	// 255
	// exit status 0
}

// Shut one context down without touching the others or the master.
func ExampleContext_Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	a, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}
	b, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}

	if err := a.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("a:", a.Agent().Ping(ctx) != nil)
	fmt.Println("b:", b.Agent().Ping(ctx) == nil)
	// Output:
	// a: true
	// b: true
}

// Python mitogen's router.sudo(via=router.ssh(hostname="web1")): ssh to a
// host, then sudo to a user there. Each hop's options go only to the
// context that starts it (the ssh options to the master, the sudo options
// to the ssh context). Needs sshd and sudo, so it is compiled, not run.
func ExampleSudo() {
	ctx := context.Background()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	pg, err := m.Connect(ctx,
		mitogen.SSH("admin@web1", &ssh.Options{ConnectTimeout: 10}),
		mitogen.Sudo("postgres", &sudo.Options{Login: true}))
	if err != nil {
		log.Fatal(err)
	}
	data, err := pg.Agent().ReadFile(ctx, "/var/lib/postgresql/.psqlrc", 1<<20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes\n", len(data))
}

// The same chain from text specs, as a command line gives them, and a
// second hop from an existing context.
func ExampleSpecs() {
	ctx := context.Background()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	web, err := m.Connect(ctx, mitogen.Specs("ssh:admin@web1:2222")...)
	if err != nil {
		log.Fatal(err)
	}
	root, err := web.Connect(ctx, mitogen.Sudo("", nil)) // root on web1
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(root.Agent().Ping(ctx))
}

// Examples of running a process in a context (stdio relayed, exit status
// returned) belong here, next to RunFakeSSH.

// Running a command in a context, os/exec style: stdin, stdout and stderr
// are relayed with flow control, and the exit status comes back exactly.
func Example_process() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := mitogen.NewMaster(mitogen.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	local, err := m.Connect(ctx, mitogen.Local())
	if err != nil {
		log.Fatal(err)
	}

	cmd := process.CommandContext(ctx, local.Context, "sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3")
	cmd.Stdin = strings.NewReader("hello\n")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *process.ExitError
	if errors.As(err, &exit) {
		fmt.Println("exit status", exit.ExitCode())
	}
	fmt.Printf("stdout %q, stderr %q\n", stdout.String(), stderr.String())
	// Output:
	// exit status 3
	// stdout "HELLO\n", stderr "oops\n"
}
