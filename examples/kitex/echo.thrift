// The example service of examples/kitex, compiled by Kitex's own generator
// (go generate: internal/kitexgen runs it in-process through its tool SDK)
// into kitex_gen/.
namespace go echo

struct EchoRequest {
  1: string message
  2: binary payload
}

struct EchoReply {
  /** The request's message, with who answered. */
  1: string message
  /** The request's payload, unchanged. */
  2: binary payload
  /** The uid of the process that answered. */
  3: i32 uid
  /** The host name of the process that answered. */
  4: string host
}

service Echo {
  EchoReply echo(1: EchoRequest req)
}
