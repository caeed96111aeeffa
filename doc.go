// Package mitogen is the front door of mitogen-go: start a master, reach
// contexts on this machine, on other hosts over ssh, as other users via
// sudo and through chains of those, call them, and run unmodified programs
// whose ssh invocations they serve (fakessh).
//
// It is a thin layer over the packages that do the work, which stay
// available for everything it does not cover: core (routing, calls, byte
// streams), agent (what a context serves; dialing chains), transport (the
// connection methods) and fakessh. The wire protocol, which peers in other
// languages speak, is idl/mitogen.thrift; its generated Go types (such as
// ProcessSpec and CallError) are package gen/mitogen, which shares this
// package's name: a file using both imports one under another name.
//
// # The embedding contract
//
// The agent a context runs is this very program: the local method re-runs
// the running binary, and the other methods copy it to the far side (once;
// it is cached there by its SHA-256) and run it. So a program using
// mitogen-go calls Main first thing in main, which serves the agent's (and
// fakessh's ssh's) role when the process was started in one, and returns
// otherwise:
//
//	func main() {
//		mitogen.Main()
//		// the program proper
//	}
//
// A test binary does the same in TestMain, before m.Run.
//
// # Concepts
//
// A master is the process at the root (context ID 0). A context is a
// process the master reaches, running the agent; it has an ID, a name for
// logs (such as "local.1" or "ssh:web1.3") and exactly one parent. A hop
// is one step from a context (or the master) to a new child: "local" (the
// same host and user), "ssh:[user@]host[:port]", "sudo[:user]", "su",
// "doas", "docker:", "kubectl:", ... or a method of your own (see package
// transport). A chain is a list of hops, each started by the context the
// previous one reached:
//
//	m, err := mitogen.NewMaster(mitogen.Config{})
//	...
//	defer m.Close()
//	pg, err := m.Connect(ctx, mitogen.SSH("web1", nil), mitogen.Sudo("postgres", nil))
//
// which is Python mitogen's router.sudo(via=router.ssh(hostname="web1")).
// A chain also continues from a context one holds (web.Connect(ctx,
// mitogen.Sudo("postgres", nil))), and hops can come as text
// (mitogen.Specs("ssh:web1", "sudo:postgres")...), as a command line gives
// them. Each hop's options go only to the context that starts it: an ssh
// identity file named in the second hop is read on the first hop's host.
//
// Routing. Every context runs a router. Messages (envelopes naming a
// destination context, a handle there, and a handle to reply to) travel
// hop by hop; contexts announce new children upward, so the master can
// reach any context and a context can reach its ancestors. Who may send
// what to whom is enforced at every router (idl/mitogen.thrift: AUTHORITY).
//
// Calls. A context serves the Agent service (ping, echo, read_file,
// start_process, connect, ...); ctx.Agent() is its typed client, and a
// call returns when the reply comes, ctx ends, or the context is gone:
//
//	data, err := pg.Agent().ReadFile(ctx, "/etc/hostname", 0)
//
// Services of your own are registered with core.Router.Serve in the
// context that serves them (an agent of your own built on core.Boot) and
// called with core.Context.CallFunction.
//
// Byte streams. core.Router.NewByteWriter and NewByteReader carry a byte
// stream between two contexts with credit-based flow control: at most a
// window of bytes is in flight, nothing is dropped, and both ends see an
// error if it breaks. Process stdio and fakessh are built on them.
//
// Ending. Context.Shutdown ends one context and those it started (its
// agent exits 0) and leaves every other context alone; Master.Close ends
// them all. A context whose parent goes away ends too.
//
// Processes. Package process runs a command in a context the way os/exec
// runs one here (process.Command(pg.Context, "pg_dump", ...), with Run,
// Output, Start and Wait), its stdio relayed as byte streams and its exit
// status reported; every agent serves it (Agent.start_process). RunFakeSSH
// runs a
// local program (rsync, scp, git, a script) with fakessh's ssh first on its
// PATH, so every ssh it starts runs its command in a context instead:
//
//	status, err := m.RunFakeSSH(ctx, pg, []string{"rsync", "-a", "dump/", "x:/srv/"}, nil)
//
// # Configuration
//
// Config.Core holds every limit and timing of the routers (frame size,
// queue bounds, stream window and chunk size, concurrent calls, shutdown
// grace): zero fields mean the defaults (core.DefaultConfig), and a value
// that makes no sense is an error from NewMaster, never silently changed.
// A fakessh run's own limits and timings (pre-authentication cap and
// timeout, boot and start timeouts) are FakeSSHOptions.Config, under the
// same rules. The process side's timings (process.Config: the start
// timeout, the steps of a process's ending) belong to the agents, which
// use process.DefaultConfig. Per-hop settings (ssh options, sudo password, ...) are the options
// structs of the connection methods, given with each hop.
package mitogen
