/**
 * mitogen-go wire protocol.
 *
 * This file is the specification. Everything a peer needs to talk to a
 * mitogen-go context is declared here; the comments say who may send what
 * and what the receiver does with it. Go code in gen/ is generated from this
 * file by cmd/mitogen-gen; other languages can use any Thrift compiler.
 *
 * FRAMING. A connection between two contexts (a "stream") is a byte stream
 * carrying frames. A frame is a 4-byte big-endian unsigned length followed by
 * that many bytes holding one Envelope encoded with Thrift's binary protocol
 * (strict), which is exactly Apache Thrift's TFramedTransport. A receiver
 * checks the length against its maximum frame size (MAX_FRAME_SIZE by
 * default) before allocating anything and ends the stream on a violation.
 *
 * DECODING. No declared size is trusted. Before allocating for a list, set
 * or map, a decoder checks the declared element count n against the bytes
 * that remain in the payload after the container header: n * m must not
 * exceed them, where m is the smallest wire size of one element (for a map,
 * of one key plus one value): bool and byte 1, i16 2, i32 and enums 4, i64
 * and double 8, string and binary 4 (their length), struct, union and
 * exception 1 (the STOP byte), list and set 5, map 6. A violation (or a
 * negative count) is a protocol error (INVALID_DATA): the payload is refused
 * as malformed, and a call's caller gets an EXCEPTION of type
 * PROTOCOL_ERROR.
 *
 * CONTEXTS. Every context has a numeric ID. The master is MASTER_ID (0) and
 * allocates all other IDs. Each context except the master has exactly one
 * parent stream; its other streams lead to its children.
 *
 * ROUTING. A router delivers an envelope whose dst_id is its own context ID
 * to the handler registered on `handle`. Otherwise it forwards it on the
 * stream that leads to dst_id: a child stream when dst_id was announced by
 * ADD_ROUTE from below, else the parent stream. A message that can go nowhere
 * is answered with a dead message (see IS_DEAD) carrying Dead{NO_ROUTE}.
 *
 * AUTHORITY. auth_id names the context that vouches for a message; the
 * originator sets it to its own ID and nobody rewrites it. A router accepts a
 * message arriving on stream S only when both auth_id and src_id are
 * reachable through S: for a child stream, the IDs routed to that child; for
 * the parent stream, any ID not routed to one of its children. Anything else
 * is dropped and logged as forged. Handlers further restrict who may send to
 * them (the handle's policy); see CALL_FUNCTION.
 */
namespace go mitogen
namespace py mitogen_wire

/** The master's context ID. */
const i32 MASTER_ID = 0

/**
 * CALL_FUNCTION: run a method of a service declared in this file.
 *
 * Payload: a standard Thrift binary-protocol message of type CALL (or
 * ONEWAY) whose name is "Service:method" (Apache's TMultiplexedProtocol
 * naming, e.g. "Agent:ping"), followed by the method's argument struct, so
 * any Thrift library can encode it. The reply goes to (src_id, reply_to) as
 * a standard REPLY message with the result struct, or an EXCEPTION message
 * with a TApplicationException when the service or method is unknown or the
 * arguments do not decode. Either one carries the call's seqid and the bare
 * method name ("ping", not "Agent:ping"), exactly as Apache's multiplexed
 * servers reply, so stock generated clients (which look the reply up by the
 * bare name) decode it unmodified. A caller matches the reply on seqid and
 * name; mitogen-go's also accepts the full "Service:method" name that
 * earlier agents sent. A call with reply_to 0 expects no reply. Services
 * served on other handles (FakeSSH) follow the same rules.
 *
 * Policy: accepted only when auth_id is the receiving context's own ID or one
 * of its parents' IDs. A child can never make its parent (or the master) run
 * anything; the caller gets Dead{REFUSED}.
 */
const i32 CALL_FUNCTION = 101

/**
 * FORWARD_LOG: a LogRecord from any context, sent to the master, which
 * writes it through its slog handler with the context ID attached. Any
 * context may send it; the master accepts it only from its descendants.
 */
const i32 FORWARD_LOG = 102

/**
 * ADD_ROUTE: a RouteUpdate sent by a context to its parent when a new context
 * becomes reachable through it; the parent records "target via this stream"
 * and passes the update on to its own parent. Route updates travel hop by
 * hop: each router re-sends them as its own, so a receiver accepts one only
 * when src_id and auth_id are the context at the other end of the stream it
 * arrived on. ADD_ROUTE is accepted only on a child stream, and only for a
 * target not already routed elsewhere; the master accepts it only for an ID
 * it has allocated (Boot, ALLOCATE_ID or Agent.connect handed it out).
 */
const i32 ADD_ROUTE = 103

/**
 * DEL_ROUTE: a RouteUpdate announcing that a context is gone. Sent upward to
 * the parent and downward to every child. Each receiver removes the route and
 * tells every local receiver waiting on that context (Dead{DISCONNECTED}).
 * Like ADD_ROUTE it is accepted only from the neighbor itself (src_id and
 * auth_id are the context at the other end of the stream), and only from
 * the side the target is reached through: the child stream it is routed
 * through, or the parent for a target not routed below the receiver. It is
 * ignored when it names the receiver or one of its ancestors (their end is
 * the end of the parent stream).
 */
const i32 DEL_ROUTE = 104

/**
 * ALLOCATE_ID: an AllocateIDRequest sent to the master by a context that
 * needs IDs for children it starts itself; the master replies to reply_to
 * with an AllocateIDReply holding a block of fresh IDs. Only the master
 * serves it; descendants of the master may ask.
 */
const i32 ALLOCATE_ID = 105

/**
 * SHUTDOWN: an empty message asking the receiving context to stop: it kills
 * the processes it started, shuts its children down, answers every pending
 * waiter with Dead{SHUTDOWN} and exits. Accepted only from a parent.
 */
const i32 SHUTDOWN = 106

/**
 * BOOTSTRAP: the first frame a parent sends on a new stream, a Boot struct
 * telling the new context who it is. The child answers with a Ready frame to
 * (src_id, reply_to). No other frame is valid before Boot.
 */
const i32 BOOTSTRAP = 107

/**
 * IS_DEAD: a reply_to value marking a dead message. A dead message travels
 * to a handle that was waiting for something that will never come: its
 * payload is a Dead struct saying why. Dead messages are never answered.
 */
const i32 IS_DEAD = 999

/** Handles at or above this value are allocated dynamically by each context. */
const i32 FIRST_DYNAMIC_HANDLE = 1000

/** Default maximum frame size in bytes (length prefix excluded). */
const i32 MAX_FRAME_SIZE = 134217728

/** One message. The unit the router moves. */
struct Envelope {
  /** Context the message is for. */
  1: i32 dst_id
  /** Context that sent it. */
  2: i32 src_id
  /** Context that vouches for it (normally src_id); see AUTHORITY. */
  3: i32 auth_id
  /** Handle at dst_id that receives it. */
  4: i32 handle
  /** Handle at src_id expecting a reply; 0 for none; IS_DEAD for dead messages. */
  5: i32 reply_to
  /** The payload: a Thrift-encoded struct named by the handle's doc, or raw stream bytes. */
  6: binary data
}

/** Why a message is dead. */
enum DeadReason {
  /** Not otherwise specified. */
  UNKNOWN = 0
  /** No handler is registered on the destination handle. */
  UNKNOWN_HANDLE = 1
  /** No stream leads to the destination context. */
  NO_ROUTE = 2
  /** The handle's policy refused the sender. */
  REFUSED = 3
  /** The sender closed the stream of messages this handle was receiving. */
  SENDER_CLOSED = 4
  /** The context the receiver waited on disconnected. */
  DISCONNECTED = 5
  /** The context is shutting down. */
  SHUTDOWN = 6
  /** The receiver's bounded queue was full; the message was dropped. */
  OVERFLOW = 7
  /** The frame or payload could not be decoded. */
  MALFORMED = 8
}

/** Payload of a dead message (reply_to == IS_DEAD). */
struct Dead {
  1: DeadReason reason
  /** Human-readable detail, naming the contexts involved. */
  2: string message
  /** The context the failure concerns (e.g. the one that disconnected). */
  3: i32 context_id
}

/** Payload of BOOTSTRAP. */
struct Boot {
  /** The new context's ID. */
  1: i32 context_id
  /** Its parent's ID. */
  2: i32 parent_id
  /** All its ancestors' IDs, nearest first, ending with MASTER_ID. */
  3: list<i32> parent_ids
  /** A name for logs, e.g. "local.3" or "ssh:db". */
  4: string name
  /** slog level below which the agent forwards nothing. */
  5: i32 log_level
  /** Largest frame the parent accepts. */
  6: i32 max_frame_size
}

/** The child's answer to Boot. */
struct Ready {
  1: i32 context_id
  2: i32 pid
  /** The agent's version string. */
  3: string version
}

/** Payload of ADD_ROUTE and DEL_ROUTE. */
struct RouteUpdate {
  1: i32 target_id
  /** A name for logs. */
  2: string name
  /** For DEL_ROUTE: why it went away. */
  3: string reason
}

/** Payload of ALLOCATE_ID. */
struct AllocateIDRequest {
  1: i32 count
}

/** Reply to ALLOCATE_ID: IDs first .. first+count-1 belong to the asker. */
struct AllocateIDReply {
  1: i32 first
  2: i32 count
}

/** One key/value attribute of a log record. */
struct LogAttr {
  1: string key
  2: string value
}

/** Payload of FORWARD_LOG. */
struct LogRecord {
  /** Unix time in nanoseconds. */
  1: i64 time_unix_nano
  /** slog level (DEBUG -4, INFO 0, WARN 4, ERROR 8). */
  2: i32 level
  3: string message
  4: list<LogAttr> attrs
}

/**
 * BYTE STREAMS. A byte stream (process stdin/stdout/stderr, file data)
 * flows from a writer to a reader's data handle as messages whose payload is
 * the raw bytes (no Thrift encoding; never empty). The end of the stream is a
 * dead message to the data handle with Dead{SENDER_CLOSED}. Flow control is
 * by credit: the writer may have at most `window` unacknowledged bytes in
 * flight; the reader sends Credit messages to the writer's credit handle as
 * the bytes are consumed. A reader receiving more than it granted ends the
 * stream with an error. So every hop buffers at most one window per stream.
 */
typedef binary Chunk

/** Sent by a byte-stream reader to the writer's credit handle. */
struct Credit {
  /** Bytes consumed since the last Credit; the writer may send this many more. */
  1: i64 bytes
}

/** The description of one end of a byte stream, exchanged when setting it up. */
struct StreamEnd {
  /** The context holding this end. */
  1: i32 context_id
  /** Data handle (for a reader) or credit handle (for a writer). */
  2: i32 handle
  /** For a reader: the window it grants to the writer at the start. */
  3: i64 window
}

/**
 * A command to run under a context, the "slave" of fakessh and the target of
 * `mitogen exec`. Exactly one of argv, command, subsystem or login is used.
 */
struct ProcessSpec {
  /** Run argv[0] with these arguments, found on PATH. */
  1: list<string> argv
  /** Run this string with the user's shell as `$SHELL -c command` (ssh's way). */
  2: string command
  /** Run the named subsystem; "sftp" runs the host's sftp-server. */
  3: string subsystem
  /** Run the user's login shell. */
  4: bool login
  /** Extra environment variables. */
  5: map<string, string> env
  /** Working directory; empty for the user's home (ssh) or the agent's cwd. */
  6: string dir
  /** Free text describing who asked, for logs (e.g. "fakessh ssh #3 from rsync"). */
  7: string origin
  /**
   * The only context allowed to drive the process (send Control and stdin);
   * the default, 0, is the master. The master sets it when it starts a process on behalf
   * of a fakessh context, which may then drive that process and nothing else.
   */
  8: i32 peer_id
}

/** Reply of Process.start: the handles of the started process. */
struct ProcessStarted {
  /** The process's control handle: send Control messages here. */
  1: i32 control_handle
  /** The process's stdin data handle (a byte-stream reader end). */
  2: StreamEnd stdin
  3: i32 pid
}

/** What a Control message says. */
enum ControlKind {
  /**
   * Client -> process: begin. Carries the client's stdout and stderr reader
   * ends and its stdin credit handle. The process reads no output before it.
   */
  START = 1
  /** Process -> client: exit status; sent after stdout and stderr ended. */
  EXIT = 2
  /** Client -> process: send a signal (signal field). */
  SIGNAL = 3
}

/** Payload of messages to a control handle. */
struct Control {
  1: ControlKind kind
  /** START: where the process's stdout goes. */
  2: StreamEnd stdout
  /** START: where the process's stderr goes. */
  3: StreamEnd stderr
  /** START: the client's credit handle for the stdin stream it writes. */
  4: StreamEnd stdin_credit
  /** START: the client's control handle (receives EXIT). */
  5: i32 control_handle
  /** EXIT: 0-255, ssh-style: 255 when killed by a signal. */
  6: i32 exit_status
  /** EXIT: the signal name when killed by one, e.g. "KILL". */
  7: string signal
  /** EXIT: a one-line note for stderr, or an error starting/running the process. */
  8: string note
  /** SIGNAL: signal number to deliver. */
  9: i32 signal_number
}

/** An error a service method returns. */
exception CallError {
  1: string message
  /** errno-style name when one applies, e.g. "ENOENT". */
  2: string code
}

/** Spec for a context started under another: see Agent.connect. */
struct ConnectRequest {
  /** The ID the master allocated for the new context. */
  1: i32 context_id
  /** Transport spec, e.g. "local", "ssh:user@host:22", "sudo:postgres". */
  2: string spec
  /** Name for logs. */
  3: string name
  /** Transport options, key=value. */
  4: map<string, string> options
}

struct ConnectReply {
  1: i32 context_id
  2: i32 pid
}

/**
 * Methods every agent serves on CALL_FUNCTION (call names "Agent:ping",
 * ...; replies named "ping", ...). Callers must be the agent's parents (see
 * CALL_FUNCTION).
 */
service Agent {
  /** Does nothing; for measuring round trips. */
  void ping()
  /** Returns its argument. */
  binary echo(1: binary data)
  /**
   * Starts a child context of this one over the given transport, with the
   * ID the master allocated, adds its route and announces it upward with
   * ADD_ROUTE. Replies once the child answered Boot with Ready.
   */
  ConnectReply connect(1: ConnectRequest req) throws (1: CallError err)
  /** Starts a process; see ProcessSpec and Control. */
  ProcessStarted start_process(1: ProcessSpec spec) throws (1: CallError err)
  /** Sleeps, or until cancelled by the context's shutdown; for tests. */
  void sleep(1: i64 millis)
  /** Reads up to max bytes from a file; for tests and demos. */
  binary read_file(1: string path, 2: i64 max) throws (1: CallError err)
}

/** What a fakessh `ssh` asks the master to run for it. */
struct StartSlaveRequest {
  /** Destination host as the program named it (the ssh command line's host). */
  1: string host
  2: string user
  3: i32 port
  4: ProcessSpec spec
}

/**
 * Served by the master on a per-run handle (not CALL_FUNCTION) for the fake
 * `ssh` contexts of one fakessh run. The master checks the request, maps the
 * host to a context and calls Agent.start_process there on its own
 * authority: the fakessh context never calls the destination itself.
 */
service FakeSSH {
  ProcessStarted start_slave(1: StartSlaveRequest req) throws (1: CallError err)
}
