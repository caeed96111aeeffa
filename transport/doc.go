// Package transport defines how a context's byte stream comes to be: a
// Transport starts an agent somewhere and yields the stream to it, and a
// connection method turns a hop's spec and options into a Transport.
//
// # Specs
//
// A hop is written "kind[:arg]": "local", "ssh:[user@]host[:port]",
// "sudo[:user]", "su[:user]", "doas[:user]", "setns:pid=PID",
// "docker:[user@]container", "kubectl:pod", ... ParseSpec reads one with
// the methods of Default into a Spec, whose String gives the text back.
//
// # Methods and options
//
// Connection methods are plug-ins: a Method names a kind, parses the part
// of a spec after "kind:", declares its typed per-hop options and builds
// the Transport. Methods are kept in a Registry; the built-in ones
// register themselves into Default from their own packages
// (transport/ssh, transport/sudo, ...; "local" from this package), the way
// database/sql drivers do, and package agent imports them all. A program
// that wants another set builds its own Registry and registers the
// packages' exported Method values into it, or a Method of its own (see
// examples/custommethod):
//
//	methods, err := transport.NewRegistry(transport.LocalMethod, ssh.Method, mymethod.Method)
//
// A method's options are a struct whose fields carry `opt:"key"` tags
// (`opt:"key,secret"` for a password, which logs redact); they travel on
// the wire as a map of strings (EncodeOptions, DecodeOptions), only to
// the context that starts the hop, and a Validate method on the struct
// checks them before anything starts.
//
// # Starting agents
//
// Methods that cross to another host or user (ssh, sudo, su, doas,
// containers) run the POSIX sh script of package bootstrap, which runs
// the agent binary from a per-user cache or receives it first (once per
// binary version); "local" re-executes the binary directly. Either way the
// agent is started as "BINARY agent" and expects the Boot frame; a
// program serves that role by calling mitogen.Main first in main.
package transport
