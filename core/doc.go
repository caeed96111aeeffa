// Package core is mitogen-go's message layer: one Router per context that
// moves envelopes between byte streams by destination, enforces the
// authority rules of idl/mitogen.thrift, delivers messages to handles,
// makes and serves calls, and carries flow-controlled byte streams.
// Package mitogen (the module root) is the front door; this package is
// what it is built on, for programs that need more.
//
// # Contexts and routers
//
// Every process in a mitogen tree is a context with a numeric ID; the
// master is 0 and hands out every other ID. NewMasterChecked starts the
// master's router; an agent's router comes from Boot, which reads the Boot
// frame its parent sent on the new stream and answers Ready:
//
//	r, err := core.NewMasterChecked(core.Config{}) // zero fields: defaults
//	...
//	defer r.Close()
//
// StartChild makes a freshly started agent's stream a child of a router
// (package agent does this for the connection methods). A Context is a
// handle on another context, for calls and messages:
//
//	c := r.Context(id, "name")
//	err := c.Agent().Ping(ctx)
//
// # Routing
//
// A router delivers a message addressed to its own context to the handle
// it names, and forwards any other message on the stream leading to its
// destination: a child stream when the destination was announced from
// below (ADD_ROUTE), else the parent stream. When a stream ends, every
// context behind it is gone: waiters on them fail at once, and the news
// (DEL_ROUTE) spreads up and down the tree. Senders are checked at every
// hop (AUTHORITY): a child can only speak for the contexts below it.
//
// # Handles and receivers
//
// A handle is a numbered mailbox in a context. NewReceiver allocates one
// with a bounded queue; Get waits for the next message, or fails when a
// peer it watches is gone, the router shuts down, or its ctx ends.
// Context.Send sends to a handle of another context. A message that cannot
// be delivered is answered with a dead message (Dead{reason}), which Get
// returns as a *DeadError (IsDead reports one).
//
// # Calls
//
// Calls are Thrift method calls carried in messages: Serve registers a
// service (the generated Dispatch<Service> function) for CALL_FUNCTION, and
// Context.CallFunction, or the generated <Service>Client over a Context,
// calls it. Only a context's ancestors may call it (and send it SHUTDOWN);
// ServeOn serves a service on a new handle under a policy of one's own.
//
// # Byte streams
//
// A ByteWriter in one context sends a stream of bytes to a ByteReader in
// another, with credit-based flow control: the reader grants a window
// (Config.StreamWindow), the writer never has more than that in flight,
// nothing is dropped, and a failure ends both ends with an error.
//
//	br := reader.NewByteReader(ctx, writerID) // in the reading context
//	end := br.End()                           // sent to the writer somehow
//	bw := writer.NewByteWriter(ctx)           // in the writing context
//	err := bw.Connect(end)
//	_, err = io.Copy(bw, src)                 // and br is an io.Reader
//	err = bw.Close()                          // the reader sees io.EOF
//
// # Ending
//
// A context ends cleanly when its parent sends it SHUTDOWN: it stops what
// it started, shuts its children down, fails every waiter with
// Dead{SHUTDOWN} and closes its streams. Context.Shutdown does that to one
// context (and its subtree) and waits for its route to go;
// Router.Shutdown and Router.Close do it to this router's whole subtree. A
// parent stream that ends without SHUTDOWN is a broken one (Router.Err).
//
// # Limits
//
// Every queue in this package has a bound, and every wait ends with its
// context.Context, the death of the peer it waits on, or the router's
// shutdown. The bounds and timings are the fields of Config, whose zero
// values mean the defaults of DefaultConfig; Validate refuses nonsense.
package core
