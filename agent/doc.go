// Package agent is what every context serves, the Agent service of
// idl/mitogen.thrift (Service), and how a master reaches contexts
// (Dialer). Package mitogen (the module root) wraps both for the common
// cases.
//
// # The agent
//
// Run is the body of an agent process: it takes stdin and stdout as the
// stream to its parent, boots a router (core.Boot), serves Service on it
// and returns the exit status, 0 only after SHUTDOWN. A program does not
// call it itself: mitogen.Main does, when the process was started as an
// agent (argv[1] == "agent"), which is how every program embedding
// mitogen-go is its own agent. Service answers ping, echo, sleep,
// read_file, start_process (through its ProcessStarter) and connect, the
// last of which starts a child of this context with a connection method.
//
// # Reaching contexts
//
// A Dialer starts a chain of Hops: the first hop is started by the
// master's router, each next one by the context before it (through that
// context's Agent.connect). Each Hop carries its method's own options (a
// *ssh.Options, *sudo.Options, ...), which are checked before anything
// starts and sent only to the context that starts that hop:
//
//	d := &agent.Dialer{} // transport.Default's methods, this binary as the agent
//	chain, err := d.Dial(ctx, r, []agent.Hop{
//		{Spec: transport.Spec{Kind: transport.KindSSH, Host: "web1"}, Options: &ssh.Options{ConnectTimeout: 10}},
//		{Spec: transport.Spec{Kind: transport.KindSudo, User: "postgres"}},
//	})
//	pg := chain[len(chain)-1]
//
// DialFrom continues a chain from a context one already holds. Registry
// builds the transports of a set of methods (transport.Default unless
// told otherwise) around one agent binary, this one unless NewRegistry is
// given another.
//
// Importing this package registers every built-in connection method into
// transport.Default.
package agent
