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
 * READING. A peer must keep reading its streams. A router queues a bounded
 * number of bytes per stream for writing (16 MiB by default) and, when that
 * queue is full, stops reading the stream the next message for it came from
 * (backpressure). A stream whose peer then reads nothing for a while (30 s
 * by default: no write to it completes) is cut, and its contexts are gone
 * as if the stream had closed (DEL_ROUTE, Dead{DISCONNECTED} to waiters);
 * a leaf stream (see LEAF STREAMS) is cut as soon as its queue is full,
 * since everything sent to a leaf is bounded by windows it granted. So a
 * peer that stops reading delays the traffic of others by a bounded time
 * and never stalls its neighbour for good.
 *
 * AUTHORITY. auth_id names the context that vouches for a message; the
 * originator sets it to its own ID and nobody rewrites it. A router accepts a
 * message arriving on stream S only when both auth_id and src_id are
 * reachable through S: for a child stream, the IDs routed to that child; for
 * the parent stream, any ID not routed to one of its children and not the
 * receiver's own ID (a parent-stream frame may never claim to come from, or
 * be vouched for by, the context receiving it). Anything else is dropped and
 * logged as forged. Handlers further restrict who may send to them (the
 * handle's policy); see CALL_FUNCTION.
 *
 * ROUTE AUTHORITY. Routing state (routes, ID grants, dead contexts) changes
 * only on updates that can be true where they arrive; every other update is
 * refused: logged (at ERROR, one line per refused update) naming the stream it came on, not applied, not passed
 * on. The rules, per handle, are at ADD_ROUTE, DEL_ROUTE, ALLOCATE_ID and
 * GRANT_IDS. In short: no update ever concerns the receiver itself, one of
 * its ancestors (Boot.parent_ids) or MASTER_ID; a child stream may only speak
 * for IDs the master granted to the subtree behind it; the parent stream may
 * only speak for IDs not routed into one of the receiver's children.
 * ADD_ROUTE, ALLOCATE_ID and GRANT_IDS are judged by the stream they arrive
 * on, so a message a context sends to its own of these handles is refused
 * (Dead{REFUSED} when it has a reply_to) and changes nothing; DEL_ROUTE may
 * come from the context itself.
 *
 * LEAF STREAMS. A parent may admit a child as a leaf: a context that can have
 * no children (fakessh's `ssh` contexts are leaves). Nothing is ever routed
 * through a leaf but the leaf itself: a frame with handle ADD_ROUTE,
 * DEL_ROUTE, ALLOCATE_ID or GRANT_IDS arriving on a leaf's stream is refused
 * wherever it is addressed (answered with Dead{REFUSED} when it has a
 * reply_to). Leafness is local knowledge of the parent; nothing on the wire
 * announces it.
 */
namespace go mitogen
namespace py mitogen_wire

/** The master's context ID. */
const i32 MASTER_ID = 0

/**
 * A well-known handle number (an i32 on the wire, like every handle). The
 * constants of this type are the well-known handles, and only they: the
 * annotation marks them for mitogen-gen, whose WellKnownHandles and
 * HandleName list them. Other i32 constants are plain numbers.
 */
typedef i32 Handle (mitogen.handle = "true")

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
 * Errors, precisely: a name without "Service:" or naming a service or
 * method the context does not serve gives EXCEPTION UNKNOWN_METHOD (for
 * every service a context serves, users' services included); a
 * payload that is not a CALL or ONEWAY message, or arguments that do not
 * decode (see DECODING), give EXCEPTION PROTOCOL_ERROR; a service that
 * fails with a TApplicationException of its own has it sent as it is (its
 * type and message); any other failure that is not a declared exception
 * gives INTERNAL_ERROR. The EXCEPTION
 * carries the bare name and seqid as far as they could be read ("" and 0
 * when the message header itself is unreadable). A REPLY's result struct
 * always sets field 0 (success) for a non-void method, even when the value
 * is empty (an empty binary), so stock clients never report MISSING_RESULT.
 * Calls are served concurrently (at most a configured number at once;
 * beyond that the caller gets Dead{OVERFLOW}); replies may come in any order.
 *
 * Policy: accepted only when auth_id is the receiving context's own ID or one
 * of its parents' IDs. A child can never make its parent (or the master) run
 * anything; the caller gets Dead{REFUSED}.
 */
const Handle CALL_FUNCTION = 101

/**
 * FORWARD_LOG: a LogRecord from any context, sent to the master, which
 * writes it through its slog handler with the context ID attached. Any
 * context may send it; the master accepts it only from its descendants.
 *
 * UNPROMPTED FRAMES. Besides answers to handles the parent gave it (replies,
 * byte-stream data, credit and dead messages), a context sends its parent
 * only FORWARD_LOG, ADD_ROUTE, DEL_ROUTE and ALLOCATE_ID, calls to a
 * service the master named to it on a handle of the master's (FakeSSH.join
 * on the handle given in Agent.start_fakessh), and frames it forwards for
 * its descendants. A parent may ignore anything else.
 */
const Handle FORWARD_LOG = 102

/**
 * The largest FORWARD_LOG payload (an encoded LogRecord) in bytes. A sender
 * shortens a record that would be larger (truncating its message, keys and
 * values and dropping attrs, then adding the attr "log.truncated"="true");
 * the master refuses a larger payload before decoding it and logs that it
 * did, with the sender's context ID.
 */
const i32 MAX_LOG_RECORD = 65536

/**
 * ADD_ROUTE: a RouteUpdate sent by a context to its parent when a new context
 * (target_id) becomes reachable through it; the parent records "target via
 * this stream" and passes the update on to its own parent (the same
 * payload, sent as its own message), so that every router up to the master
 * learns the route. Route updates travel hop by hop: each router re-sends
 * them as its own, so a receiver takes one only when src_id and auth_id are
 * both the context at the other end of the stream it arrived on.
 *
 * Order: a context sends ADD_ROUTE for a child it started as the child's
 * Ready arrives, before it forwards any frame the child sent after Ready,
 * so that every router above knows the route before the child's first
 * message (e.g. a fake ssh's call to the master) reaches it; a frame that
 * overtook its route would be dropped as forged.
 *
 * A receiver R accepts ADD_ROUTE arriving on stream S only when all hold:
 *  - S is a child stream and not a leaf (see LEAF STREAMS);
 *  - target_id is not R's own ID, not in R's parent_ids, not MASTER_ID, and
 *    not the ID of S's own context (that route exists since Boot);
 *  - target_id is not already routed (through S or any other stream);
 *  - target_id lies in a block of IDs granted to S (see GRANT_IDS): the
 *    master records the blocks it grants per child stream, and every router
 *    below learns its share from GRANT_IDS, so every hop can check.
 * Otherwise R refuses it (logged with S's name; routes unchanged; not
 * passed on). A peer starting a child below the master therefore uses only
 * an ID the master granted to itself: from ALLOCATE_ID, or one the master
 * granted it with GRANT_IDS before asking it (Agent.connect) to start a child.
 */
const Handle ADD_ROUTE = 103

/**
 * DEL_ROUTE: a RouteUpdate announcing that a context (target_id) is gone.
 * The router that sees it go (the stream to it ended) records it dead, tells
 * every local receiver waiting on it (Dead{DISCONNECTED}) and sends DEL_ROUTE
 * to its parent and to every child but the one the target was behind. Each
 * router that accepts it does the same, never sending it back on the stream
 * it came from, and forwards it at most once per target.
 *
 * A receiver R accepts DEL_ROUTE arriving on stream S only when all hold:
 *  - src_id and auth_id are both the context at the other end of S (route
 *    updates travel hop by hop; see ADD_ROUTE);
 *  - target_id is not R's own ID, not in R's parent_ids, not MASTER_ID;
 *  - when S is a child stream: target_id is currently routed through S and
 *    is not the ID of S's own context (a context's own end is signalled by
 *    its stream ending, never by itself); S is not a leaf;
 *  - when S is the parent stream: target_id is not routed through any of
 *    R's children (only the side a context is reached through may say it is
 *    gone).
 * Otherwise R refuses it: logged with S's name, no route removed, no
 * waiter told, never passed on.
 */
const Handle DEL_ROUTE = 104

/**
 * ALLOCATE_ID: an AllocateIDRequest sent to the master by a context that
 * needs IDs for children it starts itself. Only the master serves it, and
 * only from a context reached through a child stream that is not a leaf.
 * count 0 (or outside 1..65536) asks for the default block of 32.
 *
 * The master allocates the block and grants it to the child stream the
 * request arrived on (see GRANT_IDS), then, in this order, sends GRANT_IDS
 * {holder_id: src_id} down that stream and replies to (src_id, reply_to)
 * with an AllocateIDReply. Because frames on one stream keep their order,
 * every router between the master and the asker has recorded the grant
 * before the asker sees the reply. The master grants at most 4096 blocks and
 * 1048576 IDs in all to one child stream; a request beyond that is answered
 * with Dead{REFUSED}.
 */
const Handle ALLOCATE_ID = 105

/**
 * SHUTDOWN: an empty message asking the receiving context to stop: it kills
 * the processes it started, shuts its children down, answers every pending
 * waiter with Dead{SHUTDOWN} and exits. Accepted only when auth_id is one
 * of the receiver's ancestors (Boot.parent_ids), as for CALL_FUNCTION: the
 * master, or any context above, may end any context below it, one at a
 * time, and everything else goes on.
 *
 * The sender learns that the context has ended from its route: the
 * context's parent sees its stream end and drops the route, and every
 * other router hears of it by DEL_ROUTE, so "the route to it is gone" is
 * the acknowledgement; nothing is sent back. A context that does not obey
 * keeps its route, and the sender decides how long to wait before cutting
 * the stream.
 *
 * It is the only clean end of a context: a parent ends a child by sending
 * SHUTDOWN (then, after the child closed its end or a grace period, closing
 * the stream). A parent stream that ends before SHUTDOWN arrived (EOF, reset,
 * a read or write error, a malformed frame) has broken: the context shuts
 * down all the same, and an agent process reports it with one line on
 * stderr and a non-zero exit status (0 only after SHUTDOWN).
 */
const Handle SHUTDOWN = 106

/**
 * BOOTSTRAP: the first frame a parent sends on a new stream, a Boot struct
 * telling the new context who it is. The child answers with a Ready frame to
 * (src_id, reply_to). No other frame is valid before Boot.
 *
 * The child refuses (and exits without Ready, non-zero, with one line on
 * stderr saying why) a Boot frame that is not exactly consistent:
 *  - the envelope's dst_id must equal Boot.context_id, and its src_id and
 *    auth_id must both equal Boot.parent_id; reply_to must not be 0 or IS_DEAD;
 *  - context_id must not be MASTER_ID (the master is never booted);
 *  - parent_ids must be non-empty, start with parent_id, end with MASTER_ID,
 *    hold no ID twice, and not contain context_id (so context_id differs from
 *    parent_id);
 *  - max_frame_size must not be negative (0 means MAX_FRAME_SIZE).
 */
const Handle BOOTSTRAP = 107

/**
 * GRANT_IDS: an IDGrant telling a context that IDs first .. first+count-1
 * belong to the subtree of holder_id, which may start children with them.
 * The master sends it when it grants IDs to a subtree (after ALLOCATE_ID, or
 * before asking a context below it to start a child with an ID it allocated,
 * e.g. Agent.connect); it travels hop by hop: each router sends it to the
 * next.
 *
 * A receiver R accepts GRANT_IDS only on its parent stream, with src_id and
 * auth_id both the parent's ID, count in 1..65536, first > 0 and the block
 * not containing R's own ID, any of R's parent_ids or MASTER_ID. Then:
 *  - holder_id is R itself: R records the block as its own (IDs it may give
 *    to children it starts);
 *  - holder_id is routed through R's child stream C (not a leaf): R records
 *    the block as granted to C and sends the same IDGrant to C's context
 *    (src_id and auth_id R's own ID);
 *  - otherwise it refuses it (logged, nothing recorded).
 * A router keeps at most 4096 blocks and 1048576 IDs per child stream (and
 * for itself); it refuses grants beyond that. A child stream's grants are
 * forgotten when the stream ends. IDs are never reused, so a grant is never
 * revoked while its stream lives.
 */
const Handle GRANT_IDS = 108

/**
 * IS_DEAD: a reply_to value marking a dead message. A dead message travels
 * to a handle that was waiting for something that will never come: its
 * payload is a Dead struct saying why. Dead messages are never answered.
 */
const Handle IS_DEAD = 999

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

/** Payload of GRANT_IDS. */
struct IDGrant {
  /** First ID of the block (> 0). */
  1: i32 first
  /** Number of IDs in the block, 1..65536. */
  2: i32 count
  /** The context the block is for: it, or children it starts, use the IDs. */
  3: i32 holder_id
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
 * the raw bytes (no Thrift encoding; never empty), each with reply_to set to
 * the writer's credit handle. Both ends are set up knowing each other: the
 * reader names the writer's context when it creates its data handle, and the
 * writer learns the reader's StreamEnd (context, data handle, window).
 *
 * Credit. Each data message with n payload bytes costs n + CHUNK_OVERHEAD
 * credit. The writer starts with the reader's window as credit, never sends a
 * message costing more than the credit it holds, and gains credit only from
 * Credit messages. The reader returns credit as the bytes are consumed: the
 * overhead when it takes a message from its queue, each payload byte when it
 * is read. It sends a Credit when at least a quarter of the window has
 * accumulated, and always before it waits on an empty queue, so a writer
 * that holds too little for its next message always gets it back. A reader
 * may return credit more often (e.g. after every message); a Credit is sent
 * with reply_to 0.
 *
 * Window. At least MIN_STREAM_WINDOW (CHUNK_OVERHEAD + 1: one message of one
 * byte); a writer refuses a reader end offering less. A window smaller than
 * a writer's usual message size just makes smaller messages.
 *
 * End. The writer ends the stream with a dead message to the data handle:
 * Dead{SENDER_CLOSED} is the normal end (EOF, after every byte sent before
 * it); any other reason is a failure the reader reports as an error. A reader
 * that stops early sends Dead{SENDER_CLOSED} to the writer's credit handle;
 * data arriving after the end is answered with Dead{SENDER_CLOSED}.
 *
 * Overrun. The reader queues at most what it granted (window plus every
 * Credit sent), and never drops a message. A message that would take the
 * writer past its credit is an overrun: the reader ends the stream with an
 * error (after the bytes accepted before it) and sends Dead{OVERFLOW} to the
 * writer's credit handle, whose next write fails. Credit the writer could not
 * be owed (zero, negative, undecodable, or more than it has in flight) ends
 * the stream too: the writer fails, and tells the reader with a dead message
 * to its data handle (Dead{MALFORMED} or Dead{OVERFLOW}).
 *
 * Senders. A data handle accepts messages (data or dead) only when src_id and
 * auth_id are the writer's context; a credit handle only when they are the
 * reader's context, or its own context's dead messages (bounces of its own
 * data). This holds for senders inside the handle's own context too. Anything
 * else is refused with Dead{REFUSED} (when it has a reply_to) and logged, or
 * ignored when it is itself a dead message, and leaves the stream unchanged:
 * a writer whose reader's context disconnects learns it from DEL_ROUTE.
 */
typedef binary Chunk

/** Credit charged for each data message on top of its payload length. */
const i32 CHUNK_OVERHEAD = 64

/** The smallest window a byte-stream reader may grant (CHUNK_OVERHEAD + 1). */
const i32 MIN_STREAM_WINDOW = 65

/**
 * Sent by a byte-stream reader to the writer's credit handle (the reply_to
 * of the data messages), with reply_to 0.
 */
struct Credit {
  /**
   * Credit returned since the last Credit (payload bytes consumed plus
   * CHUNK_OVERHEAD per message taken); the writer may send this much more.
   * Always positive, and never more than the writer has in flight.
   */
  1: i64 bytes
}

/** The description of one end of a byte stream, exchanged when setting it up. */
struct StreamEnd {
  /** The context holding this end. */
  1: i32 context_id
  /**
   * Data handle (for a reader: a dynamic handle) or credit handle (for a
   * writer; the reader learns it from the reply_to of the data messages).
   */
  2: i32 handle
  /** For a reader: the window it grants to the writer at the start, >= MIN_STREAM_WINDOW. */
  3: i64 window
}

/*
 * CONNECTIONS FOR USER SERVICES (package kitexconn). A context may serve
 * named listeners of two-way connections, each a pair of byte streams, for
 * a user's RPC framework (Kitex's client and server run over them as over
 * TCP). A listener called NAME is the CALL_FUNCTION service "Kitex/NAME"
 * with one method, as if declared
 *
 *   StreamEnd dial(1: StreamEnd reader)
 *
 * The caller sends its own reader end (context_id equal to the call's
 * auth_id, a dynamic handle, window >= MIN_STREAM_WINDOW; else the call
 * fails and nothing is kept). The listener creates its own reader (taking
 * data only from the caller) and a writer connected to the caller's
 * reader, and replies with its reader end; the caller then connects its
 * writer to that end. From then on each direction is an ordinary byte
 * stream (BYTE STREAMS): a normal end is the connection's half-close, a
 * failure ends both. A listener holds at most 256 connections and 64
 * waiting to be accepted; a closed or full listener answers INTERNAL_ERROR
 * and keeps nothing. Any other method of the service is UNKNOWN_METHOD.
 */

/**
 * A command to run under a context, the "slave" of fakessh and the target of
 * `mitogen exec`. Exactly one of argv, command, subsystem or login is used.
 *
 * ENDINGS. The process runs in its own process group. It ends the way a
 * command under sshd ends when its session goes away, whenever its client
 * (peer_id) disconnects, breaks the Control protocol (a bad START, or
 * anything but SIGNAL or WINDOW_CHANGE after START), or never sends START
 * (60 s): its stdin is closed (EOF; for a process on a pty, the pty's
 * master is closed: the pty hangs up) and its process group gets SIGHUP;
 * if any member of the group is still alive one step later it gets
 * SIGTERM, and one step after that SIGKILL. The step is 2 s. When the context running the process shuts
 * down, the same happens with a 1 s step, and the context does not exit
 * until the process has been reaped (two steps fit in the 3 s a parent
 * grants a shutting-down child). No EXIT is sent after such an ending.
 * This holds until EXIT is sent: also after the leader exited while
 * another member of its group holds stdout or stderr open (`cmd &`).
 * The group is signalled (ending, SIGNAL, the shutdown's last SIGKILL) only
 * while its leader is unreaped: the process side notices the leader's exit
 * without reaping it (waitid WNOWAIT) and reaps it only when it will signal
 * no more (EXIT sent, or the ending over), so that no signal can reach a
 * newer group that reused the ID.
 *
 * SSHD. command, subsystem and login run as sshd runs a session: with the
 * user's login shell from the password database (when /etc/shells lists
 * it; else /bin/sh, as for nologin accounts reached by sudo), in the home
 * directory for dir "~" ("/" when it is missing or closed), and with
 * sshd's environment and nothing of the agent's own: USER, LOGNAME, HOME
 * (the agent's $HOME, which its transport set), SHELL, PATH (sshd's
 * default: /usr/local/bin:/usr/bin:/bin:/usr/games, for uid 0
 * /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin),
 * MAIL=/var/mail/USER, SSH_CONNECTION and SSH_CLIENT, then env. The two
 * SSH_ variables are the agent's own when it has both (an ssh hop: the
 * real connection), else those of a connection from 127.0.0.1 (a random
 * port in 32768-60999) to 127.0.0.1 port 22. argv runs with the agent's
 * own environment plus env. Every process keeps the agent's umask, which
 * is the one its transport gave (the bootstrap's 077 is only for the
 * agent's cache).
 *
 * SESSION. As under sshd, the process leads a new session (setsid), so
 * its process group ID and session ID are its PID. Without a pty it has no
 * controlling terminal (it does not inherit the agent's). With one (pty),
 * the pty's slave is its controlling terminal and its stdin, stdout and
 * stderr (see PtyRequest).
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
   * of a fakessh context, or of a client of a persistent master (PersistentMaster),
   * which may then drive that process and nothing else.
   * The process's outputs and its EXIT go only to this context (see START).
   */
  8: i32 peer_id
  /** Run the process on a new pseudo-terminal (ssh -t); absent: on pipes. */
  9: optional PtyRequest pty
  /**
   * Zero-relay stdio (see FD HANDOFF at FdHandoff): set only by the master,
   * for a fakessh ssh on the master's own machine that offered its
   * descriptors. Absent: the process gets pipes and its stdio is relayed.
   */
  10: optional FdHandoff handoff
}

/**
 * A window size, as TIOCSWINSZ takes it. Each field must be 0-65535
 * (0: unknown); a value outside that is refused (start_process fails with
 * code "EINVAL"; a WINDOW_CHANGE carrying it is a protocol error).
 */
struct WindowSize {
  1: i32 rows
  2: i32 cols
  3: i32 width_px
  4: i32 height_px
}

/**
 * ssh's pty-req: the process runs on a new pseudo-terminal.
 *
 * The process side opens a pty, sets its window size (size; absent: 0x0),
 * and starts the process as the leader of a new session whose controlling
 * terminal is the pty's slave, which is also its stdin, stdout and stderr.
 * TERM is set to term (not set when term is empty) and SSH_TTY to the
 * slave's path (/dev/pts/N). term must be at most 64 bytes, each a
 * printable ASCII character other than space (0x21-0x7e); anything else
 * fails start_process with code "EINVAL".
 *
 * On the wire nothing else changes: everything the process writes (stdout
 * and stderr alike, after the pty's output processing, so "\n" arrives as
 * "\r\n") comes on the stdout stream; the stderr stream carries no data
 * and ends (Dead{SENDER_CLOSED}) at once after START. Stdin bytes are
 * written to the pty's master, so the line discipline applies (echo, ^C is
 * SIGINT to the pty's foreground group). The end of stdin (SENDER_CLOSED)
 * is not passed on (a pty has no end of input: a client that wants one
 * sends the EOF character, ^D), as under sshd. The output ends when no
 * process holds the slave open any more. In an ending (ENDINGS) the
 * master is closed instead of stdin (the pty hangs up: the kernel signals
 * SIGHUP to the pty's foreground group too), then SIGHUP, SIGTERM and
 * SIGKILL go to the process group as ever. Window changes: see
 * ControlKind.WINDOW_CHANGE.
 */
struct PtyRequest {
  /** The terminal type, e.g. "xterm-256color"; becomes TERM. */
  1: string term
  /** The initial window size. */
  2: optional WindowSize size
}

/**
 * FD HANDOFF. An extension that lets a process started for a fakessh ssh
 * on the same machine use the ssh's own stdin/stdout (and stderr) instead
 * of pipes relayed through the ssh, the master and the destination: the
 * descriptors move once, by SCM_RIGHTS over a unix socket, and no byte of
 * the session crosses a stream afterwards. Control (START, SIGNAL, EXIT)
 * and the ENDINGS stay as they are. Whenever any step below fails or does
 * not apply, the process gets pipes and everything is relayed as without
 * the extension (handed_off 0): handoff is an optimisation, never needed.
 *
 * 1. Offer (ssh -> master, StartSlaveRequest.offer). The ssh offers only
 *    for a session without a pty (ProcessSpec.pty absent; the process side
 *    never uses a handoff with a pty), reads stdin (no -n), and its
 *    stdin and stdout are each a FIFO or a socket (never a terminal or a
 *    file: a terminal given to another user's process could be injected
 *    into). It sets fds: 1 stdin | 2 stdout, plus 4 when its stderr is a
 *    FIFO or socket too (else stderr is relayed). It binds a listening
 *    AF_UNIX stream socket in the abstract namespace under the name
 *    socket ("mitogen-fd-" and 32 hex digits, chosen at random) and picks
 *    a random token (32 bytes). peer_pid and boot_id are not used in the
 *    offer (0 and "").
 * 2. Decision (master). The master forwards an offer only for a run on its
 *    own machine (the ssh joined through the run's unix socket; its pid is
 *    the SO_PEERCRED pid of that connection), only to a destination it
 *    knows to be on its own machine: one it started itself through hops
 *    that stay on the machine of the context starting them (local, sudo,
 *    su, doas), every hop of the chain from the master so. Behind any ssh,
 *    container or setns hop the offer is not sent (nothing a context says
 *    about itself, its boot ID included, makes it local). It never takes
 *    a handoff from ProcessSpec as the ssh sent it (it clears
 *    spec.handoff, then sets it
 *    from the offer: socket, token, fds, peer_pid = the ssh's pid, boot_id
 *    = the master's /proc/sys/kernel/random/boot_id). A malformed offer is
 *    dropped (the process is relayed).
 * 3. Proof and transfer (process side, in start_process, before the
 *    process starts). The process side uses the handoff only when boot_id
 *    equals its own and the fields are well formed (socket 1-100 bytes
 *    with the prefix above, token 16-64 bytes, fds 3 or 7). It connects to
 *    the abstract socket and requires the listener's SO_PEERCRED pid to be
 *    peer_pid (else it sends nothing); then it writes the token, and reads
 *    one byte 'F' with exactly popcount(fds) descriptors in one SCM_RIGHTS
 *    message (stdin, stdout, stderr order), within 5 s. Each must be a
 *    FIFO or a socket. Anything else: every descriptor received is closed
 *    and the process is relayed. The ssh sends its descriptors only on a
 *    connection that presented the token (compared in constant time), at
 *    most once, and drops (closes) connections that do not, each within
 *    5 s; it stops listening when start_slave returns.
 * 4. Reply. ProcessStarted.handed_off is the fds the process got directly.
 *    The master refuses (as a bad reply) a handed_off it did not ask for or
 *    with bits outside the handoff's fds; the ssh refuses one it did not
 *    send. The client still sends START with all its ends (same rules);
 *    for a handed-off stdin it ends its stdin stream at once (EOF), and
 *    the process side ignores that stream; a handed-off output's stream is
 *    ended at once by the process side (Dead{SENDER_CLOSED}, no bytes).
 *    EXIT is then sent when the leader exited and the relayed outputs (if
 *    any) ended: a member of the group still holding a handed-off output
 *    keeps the program's pipe open (as a local command would), not the
 *    session. On an ending the process side cannot close a handed-off
 *    stdin (the program holds it); SIGHUP, SIGTERM, SIGKILL apply as ever.
 *
 * What it grants. Only descriptors the ssh chose, of types that carry only
 * what the relay would have carried, reach only a process on the ssh's own
 * machine (the abstract socket lives in the ssh's network namespace, the
 * kernel vouches for the listener's pid), and only a process the master
 * started for that ssh's session (the token travels ssh -> master ->
 * destination over streams only). A destination on another machine cannot
 * connect at all, and a destination elsewhere never sees the socket name
 * or the token: the master sends the offer only to destinations it started
 * on its own machine (step 2), so a compromised far host learns nothing it
 * could pass to a local accomplice.
 */
struct FdHandoff {
  /** Abstract unix socket name (without the leading NUL byte). */
  1: string socket
  /** The secret the connecting side writes first. */
  2: binary token
  /** Which stdio: 1 stdin, 2 stdout, 4 stderr (3 or 7). */
  3: i32 fds
  /** The ssh's process ID as the master's kernel reports it (master sets). */
  4: i32 peer_pid
  /** The master's boot ID (master sets). */
  5: string boot_id
}

/**
 * Reply of Process.start: the handles of the started process.
 *
 * Validation (by whoever asked, before anything is sent to the handles):
 * stdin.context_id must be the context start_process was asked of (a
 * relay that let a trusted context pick it, as fakessh's ssh lets the
 * master, still refuses its own ID), and control_handle and stdin.handle
 * must be dynamic handles (>= FIRST_DYNAMIC_HANDLE and != IS_DEAD). A reply
 * failing this is refused as a failed start: it could otherwise aim START
 * at the asker's own well-known handles (SHUTDOWN, ADD_ROUTE), where local
 * delivery skips every policy. fakessh's master checks the reply of the
 * destination the same way before passing it to the ssh context.
 */
struct ProcessStarted {
  /** The process's control handle: send Control messages here. */
  1: i32 control_handle
  /** The process's stdin data handle (a byte-stream reader end). */
  2: StreamEnd stdin
  3: i32 pid
  /**
   * The stdio the process got directly from the ssh (FD HANDOFF): bits
   * 1 stdin, 2 stdout, 4 stderr; 0 (the default): all relayed.
   */
  4: i32 handed_off
}

/** What a Control message says. */
enum ControlKind {
  /**
   * Client -> process: begin. Carries the client's stdout and stderr reader
   * ends and its stdin credit handle. The process reads no output before it.
   *
   * Validation: stdout, stderr and stdin_credit must all be present, each
   * with context_id equal to the process's peer_id (the START's auth_id),
   * and each of their handles and control_handle must be a dynamic handle
   * (>= FIRST_DYNAMIC_HANDLE and != IS_DEAD); stdout's and stderr's
   * windows must be at least MIN_STREAM_WINDOW. A client can so aim the process's output and
   * EXIT only at handles of its own, never at another context nor at a
   * well-known handle (where local delivery skips the policy check). A
   * START that fails this is a protocol error: the process is ended (see
   * ENDINGS) and nothing, not even an EXIT, is sent to the handles it names.
   * The client learns of it when a later message to the process's control
   * or stdin handle sent with a reply_to bounces (Dead{UNKNOWN_HANDLE} or
   * Dead{SENDER_CLOSED}).
   *
   * START and SIGNAL are sent with reply_to 0 (or a handle of the client's
   * that wants to hear of a bounce). The process's stdout and stderr data
   * messages carry, as reply_to, the credit handles the client returns
   * Credit to; EXIT is sent to control_handle after both outputs ended.
   */
  START = 1
  /**
   * Process -> client: exit status; sent after stdout and stderr ended.
   * The relay succeeds only with EXIT and both outputs ended by
   * Dead{SENDER_CLOSED}: an output that fails instead (the process's
   * context disconnected, an overrun), before or after EXIT, fails the
   * relay (ssh status 255), as not every byte arrived.
   */
  EXIT = 2
  /** Client -> process: send a signal (signal field). */
  SIGNAL = 3
  /**
   * Client -> process: the client's terminal changed size (ssh's
   * window-change); window carries the new size. Accepted where SIGNAL is
   * (after START, before EXIT), sent with reply_to 0. For a process on a
   * pty the process side sets the pty's size (TIOCSWINSZ), and the kernel
   * signals SIGWINCH to the pty's foreground process group; for a process
   * without a pty it is ignored. A WINDOW_CHANGE without window, or with a
   * field outside 0-65535, is a protocol error (the process is ended, see
   * ENDINGS).
   */
  WINDOW_CHANGE = 4
}

/** Payload of messages to a control handle. */
struct Control {
  1: ControlKind kind
  /** START: where the process's stdout goes. */
  2: StreamEnd stdout
  /** START: where the process's stderr goes. */
  3: StreamEnd stderr
  /**
   * START: the client's credit handle for the stdin stream it writes
   * (context_id and handle; window is not used, send 0). A client with no
   * input still sends it, and ends stdin at once with Dead{SENDER_CLOSED}
   * to ProcessStarted.stdin.handle.
   */
  4: StreamEnd stdin_credit
  /** START: the client's control handle (receives EXIT). */
  5: i32 control_handle
  /** EXIT: 0-255, ssh-style: 255 when killed by a signal. */
  6: i32 exit_status
  /** EXIT: the signal name when killed by one, e.g. "KILL". */
  7: string signal
  /**
   * EXIT: a one-line note for stderr, or an error starting/running the
   * process. When the stdin stream failed (an overrun, a writer error: any
   * end but Dead{SENDER_CLOSED}), the process is killed before it can take
   * the truncated input for all of it, and EXIT carries status 255 and a
   * note beginning "fakessh: stdin stream failed:". The exception is a
   * stream ended by the client's departure or this context's shutdown
   * (Dead{DISCONNECTED}, Dead{NO_ROUTE}, Dead{SHUTDOWN}): that is an ending
   * (ProcessSpec ENDINGS: stdin EOF, then SIGHUP), not a kill.
   */
  8: string note
  /** SIGNAL: signal number to deliver. */
  9: i32 signal_number
  /** WINDOW_CHANGE: the new window size. */
  10: optional WindowSize window
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
  /**
   * Returns its argument. (The annotation is for mitogen-gen and changes
   * nothing on the wire: the Go agent's handler reads a large argument
   * where it arrived instead of copying it, and replies from there.)
   */
  binary echo(1: binary data (mitogen.borrow = "true"))
  /**
   * Starts a child context of this one over the given transport, with the
   * ID the master allocated, adds its route and announces it upward with
   * ADD_ROUTE. Replies once the child answered Boot with Ready.
   */
  ConnectReply connect(1: ConnectRequest req) throws (1: CallError err)
  /** Starts a process; see ProcessSpec and Control. */
  ProcessStarted start_process(1: ProcessSpec spec) throws (1: CallError err)
  /**
   * Runs a program in this context under fakessh (`mitogen run --on`):
   * the process of prog.spec, driven by the caller as for start_process
   * (same reply, Control and ENDINGS), with this context's fake `ssh`
   * first on its PATH and a private socket the fake ssh joins (see
   * FakeSSHProgram). Refused (CallError) when prog.spec has no argv, has
   * command, subsystem or login set, or prog.handle is not a dynamic
   * handle.
   */
  ProcessStarted start_fakessh(1: FakeSSHProgram prog) throws (1: CallError err)
  /** Sleeps, or until cancelled by the context's shutdown; for tests. */
  void sleep(1: i64 millis)
  /** Reads up to max bytes from a file; for tests and demos. */
  binary read_file(1: string path, 2: i64 max) throws (1: CallError err)
  /**
   * Opens a TCP connection from this context and relays it as a pair of
   * byte streams with one peer context; see DialRequest.
   */
  DialReply dial_tcp(1: DialRequest req) throws (1: CallError err)
  /**
   * Listens on a TCP port in this context and offers each connection to
   * one peer context as a pair of byte streams; see ListenRequest.
   */
  ListenReply listen_tcp(1: ListenRequest req) throws (1: CallError err)
}

/**
 * A program to run under fakessh in a context (Agent.start_fakessh), whose
 * ssh invocations the master serves with its other contexts.
 *
 * The context C asked (its parent's CALL_FUNCTION policy applies) prepares
 * what `mitogen run` prepares on the master's host: a private 0700
 * directory holding "owner" and `ssh` (C's own agent binary, which serves
 * as the fake ssh when run under that name), a unix socket in it, a fresh
 * secret, and the program's environment MITOGEN_FAKESSH_SOCKET,
 * MITOGEN_FAKESSH_SECRET, MITOGEN_FAKESSH_HANDLE (= handle) and PATH with
 * the directory first. Admission on the socket is the FakeSSH service's
 * (peer uid, secret, 64 waiting at most, 5 s each). For each admitted
 * connection C calls FakeSSH.join on (MASTER_ID, handle) and boots the fake
 * ssh as a LEAF child with the ID the master returned; it never uses an ID
 * of its own for it. When the program's process is done (EXIT sent or its
 * ending over), C closes the socket, ends the streams of the run's fake ssh
 * children and removes the directory. C does nothing else for the run: the
 * fake ssh contexts call the master's handle themselves, as on the master's
 * host.
 */
struct FakeSSHProgram {
  /** The program: argv only (found on the PATH above), dir, env, origin. */
  1: ProcessSpec spec
  /** The master's FakeSSH handle for this run (a dynamic handle). */
  2: i32 handle
}

/** Reply of FakeSSH.join. */
struct FakeSSHJoined {
  /** The ID the fake ssh is booted with (granted to the joining context). */
  1: i32 context_id
}

/**
 * Agent.listen_tcp: a TCP listener in the called context (the listener),
 * whose connections a peer context takes as byte-stream pairs (ssh -R).
 *
 * Peer and authority as for DialRequest (peer_id, or the caller's auth_id
 * when 0). Validation (else CallError "EINVAL", nothing bound):
 * notify_handle dynamic; bind_host at most 255 bytes without NUL ("" or
 * "localhost": the loopback address, as sshd without GatewayPorts);
 * port 0-65535 (0: any free port). A failed bind is a CallError with the
 * errno name ("EADDRINUSE", "EACCES"). At most MAX_LISTENS listeners per
 * context ("EMFILE").
 *
 * Each accepted connection: the listener creates a reader end accepting
 * only the peer (the connection's outgoing stream) and sends Accepted to
 * the peer's notify_handle (reply_to 0). The peer answers on
 * ListenReply.control_handle with ListenControl{ANSWER, conn_id, recv}:
 * recv is the peer's reader end for the connection's bytes (validated as
 * DialRequest.recv: the peer's context, a dynamic handle, a window >=
 * MIN_STREAM_WINDOW), or absent to refuse the connection. From then on
 * the streams behave as dial_tcp's (End rules of DialRequest). At most
 * MAX_PENDING_ACCEPTS connections wait for an answer at once and each for
 * at most 30 s; beyond either the connection is closed. Connections held
 * count against the context's MAX_DIALS; over it, new ones are closed at
 * once. An ANSWER for an unknown or already answered conn_id is ignored.
 *
 * The control handle accepts messages only from the peer (auth_id);
 * ListenControl{CLOSE} or the peer's disconnection closes the listener and
 * every connection still waiting for an answer (established ones go on
 * until they end).
 */
struct ListenRequest {
  1: string bind_host
  2: i32 port
  /** The context offered the connections; 0: the caller (auth_id). */
  3: i32 peer_id
  /** The peer's handle that receives Accepted messages. */
  4: i32 notify_handle
}

/** Reply of Agent.listen_tcp. */
struct ListenReply {
  /** Where the peer sends ListenControl messages. */
  1: i32 control_handle
  /** The port bound (the one asked, or the one chosen for port 0). */
  2: i32 port
}

/** Listener -> peer (notify_handle): a connection was accepted. */
struct Accepted {
  /** The listener's number for the connection, unique per listener. */
  1: i32 conn_id
  /** The listener's reader end for bytes to the connection (writer: the peer). */
  2: StreamEnd send
  /** The remote address of the connection, "host:port". */
  3: string remote_addr
}

/** What a ListenControl message says. */
enum ListenControlKind {
  /** Take (recv present) or refuse (recv absent) connection conn_id. */
  ANSWER = 1
  /** Close the listener. */
  CLOSE = 2
}

/** Peer -> listener (ListenReply.control_handle). */
struct ListenControl {
  1: ListenControlKind kind
  2: i32 conn_id
  3: StreamEnd recv
}

/** How many listen_tcp listeners a context holds at once. */
const i32 MAX_LISTENS = 64

/** How many accepted connections of one listener may await an ANSWER. */
const i32 MAX_PENDING_ACCEPTS = 64

/**
 * Agent.dial_tcp: a TCP connection made by the called context (the dialer)
 * and relayed as two byte streams (see BYTE STREAMS) between it and one
 * peer context: what ssh -W, -L and -D need from the far end.
 *
 * Peer. peer_id, or the call's auth_id when peer_id is 0. Only the callers
 * CALL_FUNCTION admits (the master and the dialer's parents) may ask; they
 * may name another context as the peer (the master does for a fakessh
 * ssh), which may then read and write this connection and nothing else.
 *
 * Validation, before anything is dialled (else CallError with code
 * "EINVAL", nothing sent):
 * recv present, recv.context_id equal to the peer, recv.handle a dynamic
 * handle (>= FIRST_DYNAMIC_HANDLE and != IS_DEAD), recv.window >=
 * MIN_STREAM_WINDOW; host 1-255 bytes without NUL; port 1-65535;
 * timeout_ms >= 0 (0: 30 s; capped at 120 s). A dialer holds at most
 * MAX_DIALS connections at once; one more is refused with code "EMFILE".
 * A failed connect is a CallError whose message says why and whose code is
 * the errno name when there is one ("ECONNREFUSED", "ETIMEDOUT", ...).
 *
 * Streams. Bytes from the TCP connection go to recv, written by the dialer
 * (credit handle: the reply_to of its data messages). Bytes for the
 * connection go to DialReply.send, a reader end in the dialer that accepts
 * data only from the peer. The asker checks the reply as for
 * ProcessStarted: send.context_id is the dialer, send.handle dynamic,
 * send.window >= MIN_STREAM_WINDOW; else the dial counts as failed.
 *
 * End. The TCP peer's EOF ends recv with Dead{SENDER_CLOSED}; the send
 * stream's normal end half-closes the connection (shutdown for writing).
 * The connection is closed when both directions ended normally, or at
 * once when either stream fails (an error reading or writing the socket
 * fails recv, a failed send stream or a reader that stops early closes
 * the socket), or when the peer's context disconnects.
 */
struct DialRequest {
  /** Host name or address, resolved by the dialer. */
  1: string host
  2: i32 port
  /** The context that drives the connection; 0: the caller (auth_id). */
  3: i32 peer_id
  /** The peer's reader end for the connection's bytes. */
  4: StreamEnd recv
  /** Connect timeout; 0 for the default (30 s). */
  5: i32 timeout_ms
}

/** Reply of Agent.dial_tcp. */
struct DialReply {
  /** The dialer's reader end for bytes to the connection (writer: the peer). */
  1: StreamEnd send
  /** The connection's local and remote addresses, "host:port". */
  2: string local_addr
  3: string remote_addr
}

/** How many dial_tcp connections a context holds at once. */
const i32 MAX_DIALS = 256

/** What a fakessh `ssh` asks the master to run for it. */
struct StartSlaveRequest {
  /** Destination host as the program named it (the ssh command line's host). */
  1: string host
  /**
   * The ssh user (user@host, -l, -o User=); empty: the destination
   * context's own. Another user than the one the destination context runs
   * as is served by a sudo hop from that context (made once per run and
   * user, shut down with the run) when `sudo -n -u USER true` succeeds
   * there; otherwise start_slave fails with CallError code "EACCES" and
   * the message "USER@HOST: Permission denied (...).", which the ssh
   * prints as it is and exits 255. A command never runs as another user.
   */
  2: string user
  3: i32 port
  /**
   * The process to start. The master clears argv (a fakessh ssh runs
   * commands as sshd does) and keeps of env only LANG and LC_* (what
   * Debian's sshd_config accepts: AcceptEnv LANG LC_*).
   */
  4: ProcessSpec spec
  /**
   * The ssh's offer of its own descriptors (FD HANDOFF at FdHandoff):
   * socket, token, fds. The master ignores spec.handoff.
   */
  5: optional FdHandoff offer
}

/**
 * Served by the master on a per-run handle (not CALL_FUNCTION) for the fake
 * `ssh` contexts of one fakessh run. The master checks the request, maps the
 * host to a context and calls Agent.start_process there on its own
 * authority: the fakessh context never calls the destination itself.
 *
 * Joining a run (local, not Thrift): a fake ssh connects to the run's unix
 * socket (MITOGEN_FAKESSH_SOCKET, in a private 0700 directory) and writes
 * the run's 64-hex-digit secret (MITOGEN_FAKESSH_SECRET) and "\n"; the
 * master checks the peer's uid (SO_PEERCRED) and the secret, then sends
 * BOOTSTRAP as to any child. At most 64 connections may be waiting to
 * present the secret, each for at most 5 s; over that the master writes
 * "busy\n" and closes at once, and the ssh retries with backoff (our ssh
 * for up to 30 s). A wrong secret or a bad peer is closed without a word.
 * The private directory holds "owner": "pid=N start=T pidns=NS" (T is
 * field 22 of /proc/N/stat); a run removes the directories of this user
 * whose owner is dead.
 */
service FakeSSH {
  /**
   * Callers: the run's fake ssh contexts only (for a run on a context C,
   * the IDs the master returned from join, and not C itself). The master
   * maps host to a context: the names it was given for the run, else its
   * default destination; a run on a context (`--on`) has no default unless
   * one was given, and an unknown host is refused ("Could not resolve
   * hostname"). spec.peer_id is set to the caller and spec.argv cleared.
   */
  ProcessStarted start_slave(1: StartSlaveRequest req) throws (1: CallError err)
  /**
   * Only for a run on a context C (Agent.start_fakessh), and only from C
   * itself (auth_id C; anyone else gets Dead{REFUSED} or a CallError): C
   * admitted a fake ssh (pid is its process ID there, for logs) and asks
   * for its context ID. The master allocates a fresh ID, grants it to C
   * (GRANT_IDS {holder_id C}, sent before the reply, so every router on the
   * way knows the grant when C's ADD_ROUTE for it comes up), records it as
   * a member of the run (a caller start_slave accepts) and returns it
   * (FakeSSHJoined.context_id). C
   * boots the fake ssh as a leaf child with exactly that ID. At most 65536
   * joins per run; beyond that, and after the run ended, it is refused.
   */
  FakeSSHJoined join(1: i32 pid) throws (1: CallError err)
  /**
   * The ID of the context serving host (the ssh command line's host), so
   * that the ssh can set up a reader end accepting only that context
   * before it asks to dial.
   */
  DestinationReply destination(1: string host) throws (1: CallError err)
  /**
   * Asks host's context to dial (Agent.dial_tcp) on the master's
   * authority, with the calling ssh context as the peer: the master sets
   * dial.peer_id to the caller and refuses a dial.recv naming another
   * context, then checks the reply as dial_tcp's asker does. For ssh -W,
   * -L and -D.
   */
  DialReply dial(1: FakeDialRequest req) throws (1: CallError err)
  /**
   * Asks host's context to listen (Agent.listen_tcp) on the master's
   * authority, with the calling ssh context as the peer (the master sets
   * listen.peer_id to the caller), and checks the reply's control_handle
   * is dynamic. For ssh -R.
   */
  ListenReply listen(1: FakeListenRequest req) throws (1: CallError err)
}

/**
 * One hop of a chain a persistent master is asked to hold: the hop's spec
 * ("ssh:user@host:22", "sudo:postgres") and its method's wire options (as
 * ConnectRequest.options), secrets included.
 */
struct PersistHop {
  1: string spec
  2: map<string, string> options
}

/**
 * Names the chain a request of PersistentMaster is for. The master holds
 * at most one chain per key, the key being every hop's spec and its
 * options without the secret ones (a secret does not tell chains apart).
 */
struct PersistChain {
  1: list<PersistHop> hops
  /**
   * When the master holds no live chain for the key: true dials it (with
   * the options given here, secrets included), false fails the call with
   * CallError{code: "ENOTCONN"}, so that a client asks its user for a
   * password only when the chain must really be dialed.
   */
  2: bool dial
}

/** What a persistent master reports of itself. */
struct PersistStatus {
  1: i32 pid
  /** Clients connected now (the asker included). */
  2: i32 clients
  /** The chains held, as "spec,spec,..." with the last context's ID. */
  3: list<string> chains
  /** The idle timeout: the master ends this long after its last client left. */
  4: i64 idle_timeout_ms
}

/**
 * A fakessh run a persistent master serves for a program its client runs
 * (see PersistentMaster.open_run).
 */
struct PersistRun {
  /** The run's private directory, holding fakessh's ssh: first on the program's PATH. */
  1: string dir
  /** KEY=VALUE variables for the program: the run's socket, secret and FakeSSH handle. */
  2: list<string> env
}

/**
 * Served by a persistent master (`mitogen master`, the ControlPersist idea
 * for contexts) on a dynamic handle, to its clients only: later `mitogen
 * exec/ping` of the same user reuse the contexts it holds.
 *
 * Joining (local, not Thrift): the master listens on a unix socket in a
 * directory owned by its user, mode 0700 (default
 * $XDG_RUNTIME_DIR/mitogen-go, else /tmp/mitogen-go-UID; the master and
 * its clients refuse a directory owned by anyone else or open to others).
 * On accept the master checks the peer's uid with SO_PEERCRED: any uid but
 * its own (root included, unless root runs the master) gets the line
 * "mitogen-persist refused: REASON\n" and is closed; so is a connection
 * over the cap of clients (256; the client retries for a while). An
 * accepted client gets "mitogen-persist 1 handle=N\n" (N: this service's
 * handle; at most 128 bytes with the newline), then BOOTSTRAP as any
 * child: the client becomes a leaf child context of the master, and the
 * handle's policy admits only such clients.
 *
 * The master calls the held chain's last context on its own authority and
 * sets ProcessSpec.peer_id to the caller, so a client drives its own
 * process and nothing else (as FakeSSH). A chain whose context died is
 * forgotten and dialed again on its next use (with dial set). The master
 * ends, shutting down every context it holds, on stop(), SIGTERM or
 * SIGINT, and when no client has been connected for the idle timeout; it
 * removes its socket first, so that a later client starts a new master.
 * A socket nobody listens on (a master that died) is removed by the next
 * client, which starts a new master under a lock (file "lock", flock) so
 * that concurrent clients start one.
 */
service PersistentMaster {
  /** Starts spec in the chain's last context, driven by the caller; see Agent.start_process. */
  ProcessStarted start_process(1: PersistChain chain, 2: ProcessSpec spec) throws (1: CallError err)
  /** Calls Agent.ping in the chain's last context. */
  void ping(1: PersistChain chain) throws (1: CallError err)
  /**
   * Opens a fakessh run (see FakeSSH) on the master: the ssh invocations
   * of a program the caller runs itself, with the returned directory first
   * on its PATH and the returned variables in its environment, go to the
   * last context of the chain named for their host in hosts (at most 64),
   * else of chain. Each chain is checked with Agent.ping first (and dialed
   * again when a context of it died). The run lasts until the caller
   * disconnects; a caller has at most one run open (CallError EBUSY).
   */
  PersistRun open_run(1: PersistChain chain, 2: map<string, PersistChain> hosts) throws (1: CallError err)
  PersistStatus status()
  /** Ends the master (after the reply) and every context it holds. */
  void stop()
}

/** What a fakessh `ssh` asks the master to listen for it. */
struct FakeListenRequest {
  /** Destination host as the program named it (the ssh command line's host). */
  1: string host
  2: ListenRequest listen
}

/** Reply of FakeSSH.destination. */
struct DestinationReply {
  1: i32 context_id
}

/** What a fakessh `ssh` asks the master to dial for it. */
struct FakeDialRequest {
  /** Destination host as the program named it (the ssh command line's host). */
  1: string host
  2: DialRequest dial
}
