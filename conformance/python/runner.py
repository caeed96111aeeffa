#!/usr/bin/python3
"""Conformance runner: a mitogen master written in Python from the IDL alone.

usage: runner.py --agent MITOGEN --gen DIR --cases DIR [--only NAME]...

DIR (--gen) holds the package `thrift --gen py` made from idl/mitogen.thrift;
the Thrift library is Debian's python3-thrift. No code is shared with the Go
implementation. For each case in the JSON files of --cases (their format is
described in conformance/cases/README.md) the runner starts `MITOGEN agent`
as a child over its stdin/stdout, boots it as context 1, runs the case's
steps and prints one line: "PASS <name>" or "FAIL <name>: <what differed>".
The last line is "N passed, N failed"; the exit status is 1 if any failed.
"""
import argparse
import collections
import glob
import hashlib
import json
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import time

from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol
from thrift.transport.TTransport import TMemoryBuffer

AGENT_ID = 1  # the ID this master gives the agent in Boot
MASTER = 0
CHUNK_OVERHEAD = 64  # credit charged per byte-stream chunk on top of its length
MAX_FRAME = 16 << 20  # what we announce in Boot.max_frame_size and enforce
DEFAULT_WINDOW = 4 << 20
DEFAULT_TIMEOUT = 20.0
WARN_LEVEL = 4  # slog WARN: a quiet case fails on a FORWARD_LOG at or above it

W = None  # the generated package (mitogen_wire), imported in main


class Fail(Exception):
    """A case failed; the message says what differed."""


# ---- byte specs (see README.md) ----

def spec_bytes(spec):
    if not isinstance(spec, dict):
        raise Fail("case error: byte spec must be an object, got %r" % (spec,))
    if "text" in spec:
        return spec["text"].encode()
    if "hex" in spec:
        return bytes.fromhex(re.sub(r"\s+", "", spec["hex"]))
    if "repeat" in spec:
        unit, size = spec["repeat"].encode(), spec["size"]
        return (unit * (size // len(unit) + 1))[:size]
    if "seq" in spec:
        lo, hi = spec["seq"]
        return "".join("%d\n" % i for i in range(lo, hi + 1)).encode()
    raise Fail("case error: unknown byte spec %r" % (spec,))


def is_bytespec(v):
    return isinstance(v, dict) and bool(set(v) & {"text", "hex", "repeat", "seq", "sha256"})


def spec_digest(spec):
    if "sha256" in spec:
        return spec["sha256"], spec["size"]
    b = spec_bytes(spec)
    return hashlib.sha256(b).hexdigest(), len(b)


def show(b, n=60):
    b = bytes(b)
    return repr(b[:n]) + ("... (%d bytes)" % len(b) if len(b) > n else "")


# ---- JSON values <-> generated Thrift objects ----

def to_thrift(cls, value):
    obj = cls()
    fields = {s[2]: s for s in cls.thrift_spec if s}
    for k, v in value.items():
        if k not in fields:
            raise Fail("case error: %s has no field %r" % (cls.__name__, k))
        _, ttype, _, targs, _ = fields[k]
        setattr(obj, k, convert(ttype, targs, v))
    return obj


def convert(ttype, targs, v):
    if ttype == TType.STRUCT:
        return to_thrift(targs[0], v)
    if ttype == TType.STRING:
        return spec_bytes(v) if is_bytespec(v) or targs == "BINARY" else v
    if ttype in (TType.LIST, TType.SET):
        return [convert(targs[0], targs[1], x) for x in v]
    if ttype == TType.MAP:
        return {convert(targs[0], targs[1], k): convert(targs[2], targs[3], x) for k, x in v.items()}
    return v


def match(expected, actual, path="value"):
    """Returns a list of differences between expected (JSON, a subset) and actual."""
    if expected is None:
        return [] if actual is None else ["%s: want none, got %r" % (path, actual)]
    if is_bytespec(expected):
        if not isinstance(actual, (bytes, bytearray)):
            return ["%s: want bytes, got %r" % (path, actual)]
        want = spec_digest(expected)
        got = (hashlib.sha256(actual).hexdigest(), len(actual))
        if want != got:
            return ["%s: want %d bytes (sha256 %s), got %s" % (path, want[1], want[0][:16], show(actual))]
        return []
    if isinstance(expected, dict):
        out = []
        for k, v in expected.items():
            if not hasattr(actual, k):
                out.append("%s: no field %s" % (path, k))
            else:
                out += match(v, getattr(actual, k), path + "." + k)
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return ["%s: want %r, got %r" % (path, expected, actual)]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += match(e, a, "%s[%d]" % (path, i))
        return out
    return [] if expected == actual else ["%s: want %r, got %r" % (path, expected, actual)]


def encode(obj):
    buf = TMemoryBuffer()
    obj.write(TBinaryProtocol(buf))
    return buf.getvalue()


def decode(cls, data):
    obj = cls()
    obj.read(TBinaryProtocol(TMemoryBuffer(data)))
    return obj


def dead_text(env):
    try:
        d = decode(W.ttypes.Dead, env.data)
        return "Dead{%s: %s}" % (W.ttypes.DeadReason._VALUES_TO_NAMES.get(d.reason, d.reason), d.message)
    except Exception as e:  # a malformed dead message is shown as such
        return "malformed Dead (%s)" % e


def env_text(env):
    return "Envelope(dst=%s src=%s auth=%s handle=%s reply_to=%s len=%d)" % (
        env.dst_id, env.src_id, env.auth_id, env.handle, env.reply_to, len(env.data or b""))


# ---- the stream to the agent ----

class Conn:
    """Frames over the agent's stdin/stdout. Every wait ends at self.deadline."""

    def __init__(self, proc):
        self.proc = proc
        self.wfd, self.rfd = proc.stdin.fileno(), proc.stdout.fileno()
        os.set_blocking(self.wfd, False)
        self.out = bytearray()
        self.inbuf = bytearray()
        self.frames = collections.deque()
        self.queued = 0
        self.deadline = time.monotonic() + DEFAULT_TIMEOUT

    def send(self, env):
        body = encode(env)
        self.out += struct.pack(">I", len(body))
        self.out += body
        self._pump(block=False)

    def flush(self):
        while self.out:
            self._pump(block=True)

    def recv(self):
        while not self.frames:
            self._pump(block=True)
        env = self.frames.popleft()
        self.queued -= len(env.data or b"")
        return env

    def poll(self, seconds):
        """Returns the next frame if one arrives within seconds, else None."""
        if not self.frames:
            self._pump(block=True, limit=seconds)
        if not self.frames:
            return None
        return self.recv()

    def _pump(self, block, limit=None):
        timeout = 0
        if block:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise Fail("timed out waiting for the agent")
            if limit is not None:
                timeout = min(timeout, limit)
        r, w, _ = select.select([self.rfd], [self.wfd] if self.out else [], [], timeout)
        if w:
            try:
                with memoryview(self.out) as mv:
                    n = os.write(self.wfd, mv[:1 << 20])
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                raise Fail("the agent closed its stdin (it exited?)")
            del self.out[:n]
        if r:
            data = os.read(self.rfd, 1 << 20)
            if not data:
                raise Fail("the agent closed its stdout (it exited?)")
            self.inbuf += data
            self._parse()

    def _parse(self):
        while len(self.inbuf) >= 4:
            (n,) = struct.unpack(">I", self.inbuf[:4])
            if n > MAX_FRAME:
                raise Fail("agent sent a frame of %d bytes, above Boot.max_frame_size %d" % (n, MAX_FRAME))
            if len(self.inbuf) < 4 + n:
                return
            body = bytes(self.inbuf[4:4 + n])
            del self.inbuf[:4 + n]
            try:
                env = decode(W.ttypes.Envelope, body)
            except Exception as e:
                raise Fail("agent sent a frame that does not decode as Envelope: %s" % e)
            self.frames.append(env)
            self.queued += len(env.data or b"")
            if self.queued > 256 << 20:
                raise Fail("more than 256 MiB from the agent queued unread")


# ---- one case ----

class Session:
    def __init__(self, binary, timeout):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary, "agent"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr)
        self.conn = Conn(self.proc)
        self.conn.deadline = time.monotonic() + timeout
        self.next_handle = W.constants.FIRST_DYNAMIC_HANDLE
        self.queues = {}  # handles this runner allocated -> frames received there
        self.logs = []
        self.warnings = []
        self.strays = []
        self.seqid = 0

    def alloc(self):
        h = self.next_handle
        self.next_handle += 1
        self.queues[h] = collections.deque()
        return h

    def send(self, **fields):
        env = W.ttypes.Envelope(dst_id=AGENT_ID, src_id=MASTER, auth_id=MASTER, handle=0, reply_to=0, data=b"")
        for k, v in fields.items():
            setattr(env, k, v)
        self.conn.send(env)

    def dispatch(self, env):
        """Files a frame no step is waiting for at the moment."""
        if env.dst_id != MASTER:
            self.strays.append("frame for context %d: %s" % (env.dst_id, env_text(env)))
        elif env.handle == W.constants.FORWARD_LOG:
            try:
                rec = decode(W.ttypes.LogRecord, env.data)
                attrs = " ".join("%s=%s" % (a.key, a.value) for a in rec.attrs or [])
                self.logs.append("agent log level %d: %s %s" % (rec.level, rec.message, attrs))
                if rec.level >= WARN_LEVEL:
                    self.warnings.append(self.logs[-1])
            except Exception as e:
                self.strays.append("malformed FORWARD_LOG (%s)" % e)
        elif env.handle in self.queues:
            self.queues[env.handle].append(env)
        else:
            self.strays.append("frame for handle %d, which this master never gave out: %s" % (env.handle, env_text(env)))

    def wait(self, h):
        while not self.queues[h]:
            self.dispatch(self.conn.recv())
        return self.queues[h].popleft()

    def boot(self):
        h = self.alloc()
        boot = W.ttypes.Boot(context_id=AGENT_ID, parent_id=MASTER, parent_ids=[MASTER], name="python-runner",
                             log_level=4, max_frame_size=MAX_FRAME)
        self.send(dst_id=AGENT_ID, handle=W.constants.BOOTSTRAP, reply_to=h, data=encode(boot))
        env = self.wait(h)
        ready = decode(W.ttypes.Ready, env.data)
        if ready.context_id != AGENT_ID:
            raise Fail("Ready names context %r, not %d" % (ready.context_id, AGENT_ID))

    def close(self):
        """Sends SHUTDOWN, the clean end of a context: the agent must close its
        end of the stream and exit with status 0. Returns a problem or None."""
        problem = None
        end = time.monotonic() + 15
        try:
            self.conn.deadline = end
            self.send(handle=W.constants.SHUTDOWN)
            self.conn.flush()
        except Fail:
            pass  # the agent is gone already: its exit status tells
        try:
            # Read every frame up to the agent's exit: its last log records
            # count for a quiet case.
            while time.monotonic() < end:
                try:
                    env = self.conn.recv()
                except Fail:
                    break
                if env.handle == W.constants.FORWARD_LOG:
                    self.dispatch(env)
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.proc.wait(timeout=max(0.1, end - time.monotonic()))
            if self.proc.returncode != 0:
                problem = "agent exited with status %d after SHUTDOWN" % self.proc.returncode
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by PID
            self.proc.wait()
            problem = "agent did not exit within 15s of SHUTDOWN (killed)"
        self.proc.stdout.close()
        return problem

    def diagnostics(self):
        self.stderr.seek(0)
        err = self.stderr.read()[-1500:].decode(errors="replace").strip()
        lines = ["    agent log: " + l for l in self.logs[-8:]]
        if err:
            lines += ["    agent stderr: " + l for l in err.splitlines()[-10:]]
        return lines

    def resolve(self, v, ctx):
        if isinstance(v, str):
            if v == "agent":
                return AGENT_ID
            if v in ctx:
                return ctx[v]
            raise Fail("case error: unknown symbol %r" % v)
        return v

    def frame_from(self, spec, ctx):
        fields = {}
        for k in ("dst_id", "src_id", "auth_id", "handle", "reply_to"):
            if k in spec:
                fields[k] = self.resolve(spec[k], ctx)
        d = spec.get("data")
        if d is None:
            fields["data"] = b""
        elif "struct" in d:
            fields["data"] = encode(to_thrift(getattr(W.ttypes, d["struct"]), d.get("value", {})))
        else:
            fields["data"] = spec_bytes(d)
        return fields

    # ---- steps ----

    def step_send(self, step):
        self.send(**self.frame_from(step["frame"], {}))

    def call(self, method, args=None, args_raw=None, payload_raw=None, frame=None):
        """Sends one CALL_FUNCTION; returns (reply envelope, stock client, seqid or None)."""
        service, _, bare = method.rpartition(":")
        self.seqid += 1
        seqid = self.seqid
        buf = TMemoryBuffer()
        client = W.Agent.Client(TBinaryProtocol(TMemoryBuffer()), TMultiplexedProtocol(TBinaryProtocol(buf), service or "Agent"))
        client._seqid = seqid
        client.want_name = None if payload_raw is not None else bare
        if payload_raw is not None:
            data, seqid = spec_bytes(payload_raw), None
        elif args_raw is not None:
            TBinaryProtocol(buf).writeMessageBegin(method, TMessageType.CALL, seqid)
            data = buf.getvalue() + spec_bytes(args_raw)
        else:
            if service != "Agent" or not hasattr(W.Agent, bare + "_args"):
                raise Fail("case error: %s is not a method of the generated Agent client" % method)
            args_cls = getattr(W.Agent, bare + "_args")
            obj = to_thrift(args_cls, args or {})
            getattr(client, "send_" + bare)(**{s[2]: getattr(obj, s[2]) for s in args_cls.thrift_spec if s})
            data = buf.getvalue()
        h = self.alloc()
        fields = dict(handle=W.constants.CALL_FUNCTION, reply_to=h, data=data)
        fields.update({k: self.resolve(v, {}) for k, v in (frame or {}).items()})
        self.send(**fields)
        return self.wait(h), client, seqid

    def outcome(self, reply, client, seqid):
        """Decodes a reply as the stock client does: ('returns', v), ('throws', e) or ('exception', x)."""
        if reply.reply_to == W.constants.IS_DEAD:
            return ("dead", decode(W.ttypes.Dead, reply.data))
        p = TBinaryProtocol(TMemoryBuffer(reply.data))
        try:
            name, mtype, rseqid = p.readMessageBegin()
        except Exception as e:
            raise Fail("reply is not a Thrift message: %s (%s)" % (e, show(reply.data)))
        if seqid is not None and rseqid != seqid:
            raise Fail("reply seqid %d, want the call's %d" % (rseqid, seqid))
        if mtype == TMessageType.EXCEPTION:
            x = TApplicationException()
            x.read(p)
            return ("exception", x)
        if mtype != TMessageType.REPLY:
            raise Fail("reply message type %d, want REPLY or EXCEPTION" % mtype)
        if client.want_name is not None and name != client.want_name:
            raise Fail("REPLY names method %r, want %r (the bare name of the method called)" % (name, client.want_name))
        recv = getattr(client, "recv_" + name, None)
        if recv is None:
            raise Fail("REPLY names method %r: the stock client has no recv_%s (replies carry the bare method name)" % (name, name))
        client._iprot = TBinaryProtocol(TMemoryBuffer(reply.data))
        try:
            return ("returns", recv())
        except TApplicationException as x:
            return ("exception", x)
        except W.ttypes.CallError as e:
            return ("throws", e)

    def step_call(self, step):
        reply, client, seqid = self.call(step["method"], step.get("args"), step.get("args_raw"),
                                         step.get("payload_raw"), step.get("frame"))
        kind, value = self.outcome(reply, client, seqid)
        exp = step["expect"]
        what = {"dead": lambda: dead_text(reply), "exception": lambda: "EXCEPTION %s: %s" % (
            TAPP_NAMES.get(value.type, value.type), value.message),
            "throws": lambda: "declared exception %r" % (value,), "returns": lambda: "REPLY %s" % show(value, 80)
            if isinstance(value, bytes) else "REPLY %r" % (value,)}[kind]
        if "dead" in exp:
            if kind != "dead" or value.reason != W.ttypes.DeadReason._NAMES_TO_VALUES[exp["dead"]]:
                raise Fail("%s: want a dead message Dead{%s}, got %s" % (step["method"], exp["dead"], what()))
        elif "exception" in exp:
            if kind != "exception" or value.type != getattr(TApplicationException, exp["exception"]):
                raise Fail("%s: want EXCEPTION %s, got %s" % (step["method"], exp["exception"], what()))
        elif "throws" in exp:
            if kind != "throws":
                raise Fail("%s: want declared exception %r, got %s" % (step["method"], exp["throws"], what()))
            diffs = match(exp["throws"], value, "exception")
            if diffs:
                raise Fail("%s: %s" % (step["method"], "; ".join(diffs)))
        elif "returns" in exp:
            if kind != "returns":
                raise Fail("%s: want a REPLY, got %s" % (step["method"], what()))
            diffs = match(exp["returns"], value, "result")
            if diffs:
                raise Fail("%s: %s" % (step["method"], "; ".join(diffs)))
        else:
            raise Fail("case error: call step expects nothing")

    def step_process(self, step):
        T = W.ttypes
        reply, client, seqid = self.call("Agent:start_process", {"spec": step["spec"]})
        kind, ps = self.outcome(reply, client, seqid)
        if kind != "returns":
            raise Fail("start_process: want ProcessStarted, got %s %r" % (kind, ps))
        exp = step["expect"]
        stdin = spec_bytes(step.get("stdin", {"text": ""}))
        chunk_max = step.get("stdin_chunk", 256 << 10)
        mode = step.get("stdin_mode", "credit")
        h_out, h_err, h_cred, h_ctl = self.alloc(), self.alloc(), self.alloc(), self.alloc()
        start = T.Control(kind=T.ControlKind.START,
                          stdout=T.StreamEnd(context_id=MASTER, handle=h_out, window=step.get("stdout_window", DEFAULT_WINDOW)),
                          stderr=T.StreamEnd(context_id=MASTER, handle=h_err, window=step.get("stderr_window", DEFAULT_WINDOW)),
                          stdin_credit=T.StreamEnd(context_id=MASTER, handle=h_cred, window=0),
                          control_handle=h_ctl)
        ctx = {"stdin": ps.stdin.handle, "control": ps.control_handle}
        for end, fields in step.get("start", {}).items():
            for k, v in fields.items():
                setattr(getattr(start, end), k, self.resolve(v, ctx))
        self.send(handle=ps.control_handle, data=encode(start))
        readers = {h_out: Reader("stdout", start.stdout.window), h_err: Reader("stderr", start.stderr.window)}
        problems = []
        credit, sent, stdin_done, stdin_dead = ps.stdin.window, 0, False, None
        injects = list(step.get("inject", []))
        exit_msg = ctl_dead = None

        def send_chunk(data):
            self.send(handle=ps.stdin.handle, reply_to=h_cred, data=data)

        def fire_injects(upto):
            while injects and injects[0]["after_stdin_bytes"] <= upto:
                self.send(**self.frame_from(injects.pop(0)["frame"], ctx))

        if mode == "overrun":
            send_chunk(b"x" * (ps.stdin.window - CHUNK_OVERHEAD + 1))  # costs window + 1
        if exp.get("refused"):
            return self.refused(ps, start, readers, h_ctl, h_cred)
        while exit_msg is None and ctl_dead is None:
            while mode == "credit" and not stdin_done and stdin_dead is None:
                fire_injects(sent)
                if sent == len(stdin):
                    break
                if credit <= CHUNK_OVERHEAD:
                    break
                n = min(chunk_max, credit - CHUNK_OVERHEAD, len(stdin) - sent)
                send_chunk(stdin[sent:sent + n])
                credit -= n + CHUNK_OVERHEAD
                sent += n
            if not stdin_done and stdin_dead is None and (mode != "credit" or sent == len(stdin)):
                fire_injects(sent)
                self.send(handle=ps.stdin.handle, reply_to=W.constants.IS_DEAD,
                          data=encode(T.Dead(reason=T.DeadReason.SENDER_CLOSED, message="end of stdin")))
                stdin_done = True
            env = self.conn.recv()
            if env.dst_id != MASTER:
                self.dispatch(env)
            elif env.handle == h_cred:
                if env.reply_to == W.constants.IS_DEAD:
                    stdin_dead = dead_text(env)
                else:
                    c = decode(T.Credit, env.data)
                    if not c.bytes or c.bytes <= 0:
                        problems.append("Credit of %r bytes" % c.bytes)
                    else:
                        credit += c.bytes
            elif env.handle in readers:
                grant = readers[env.handle].take(env, problems)
                if grant:
                    self.send(dst_id=env.src_id, handle=env.reply_to, data=encode(T.Credit(bytes=grant)))
            elif env.handle == h_ctl:
                if env.reply_to == W.constants.IS_DEAD:
                    ctl_dead = dead_text(env)
                else:
                    c = decode(T.Control, env.data)
                    if c.kind != T.ControlKind.EXIT:
                        problems.append("control message of kind %r, want EXIT" % c.kind)
                        continue
                    exit_msg = c
                    for r in readers.values():
                        if not r.ended:
                            problems.append("EXIT arrived before %s ended" % r.name)
            else:
                self.dispatch(env)

        exit_text = ("EXIT status %r signal %r note %r" % (exit_msg.exit_status, exit_msg.signal, exit_msg.note)
                     if exit_msg else "control handle got " + ctl_dead)
        if exit_msg is None:
            raise Fail("no EXIT: %s" % exit_text)
        for name, h in (("stdout", h_out), ("stderr", h_err)):
            if name in exp:
                problems += readers[h].check(exp[name])
        if "exit_status" in exp and exit_msg.exit_status != exp["exit_status"]:
            problems.append("want exit status %d, got %s" % (exp["exit_status"], exit_text))
        if exp.get("exit") == "error" and exit_msg.exit_status == 0 and not exit_msg.note:
            problems.append("the stream error must show in EXIT (nonzero status or a note), got %s" % exit_text)
        if stdin_dead and mode == "credit" and sent < len(stdin):
            problems.append("stdin ended by the agent after %d of %d bytes: %s" % (sent, len(stdin), stdin_dead))
        if problems:
            raise Fail("; ".join(problems))


    def refused(self, ps, start, readers, h_ctl, h_cred):
        """A START that must be refused: the process is ended and nothing, not
        even EXIT, goes to the handles START named; the agent lives on."""
        T = W.ttypes
        self.send(handle=ps.stdin.handle, reply_to=W.constants.IS_DEAD,
                  data=encode(T.Dead(reason=T.DeadReason.SENDER_CLOSED, message="end of stdin")))
        problems = []

        def take(env):
            if env.dst_id == MASTER and (env.handle in readers or env.handle == h_ctl):
                what = {h_ctl: "control"}.get(env.handle) or readers[env.handle].name
                text = dead_text(env) if env.reply_to == W.constants.IS_DEAD else env_text(env)
                if env.handle == h_ctl and env.reply_to != W.constants.IS_DEAD:
                    c = decode(T.Control, env.data)
                    text = "Control kind %r status %r note %r" % (c.kind, c.exit_status, c.note)
                problems.append("START must be refused, but its %s handle got %s" % (what, text))
            elif env.dst_id == MASTER and env.handle == h_cred:
                pass  # the stdin stream may be ended or refused
            else:
                self.dispatch(env)

        while not process_gone(ps.pid):
            try:
                env = self.conn.poll(0.05)
            except Fail as e:
                raise Fail("%s; the process (pid %d) is still running: a refused START ends it%s" % (
                    e, ps.pid, "; " + "; ".join(problems) if problems else ""))
            if env is not None:
                take(env)
        # A round trip: whatever the agent sent before it has arrived.
        reply, client, seqid = self.call("Agent:ping")
        if self.outcome(reply, client, seqid)[0] != "returns":
            problems.append("no REPLY to ping after the refused START")
        for h in list(readers) + [h_ctl]:
            while self.queues[h]:
                take(self.queues[h].popleft())
        if problems:
            raise Fail("; ".join(problems))


def process_gone(pid):
    """Whether process pid has exited (a zombie counts: it awaits its reaper)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


class Reader:
    """The runner's end of one of the process's output streams."""

    def __init__(self, name, window):
        self.name, self.granted = name, window
        self.used = self.total = 0
        self.hash = hashlib.sha256()
        self.head = bytearray()
        self.ended = False

    def take(self, env, problems):
        if self.ended:
            problems.append("%s: frame after the end of the stream: %s" % (self.name, env_text(env)))
            return 0
        if env.reply_to == W.constants.IS_DEAD:
            self.ended = True
            d = decode(W.ttypes.Dead, env.data)
            if d.reason != W.ttypes.DeadReason.SENDER_CLOSED:
                problems.append("%s ended with %s" % (self.name, dead_text(env)))
            return 0
        data = env.data or b""
        if not data:
            problems.append("%s: empty chunk (chunks are never empty)" % self.name)
        if not env.reply_to:
            problems.append("%s: chunk without the writer's credit handle in reply_to" % self.name)
        cost = len(data) + CHUNK_OVERHEAD
        self.used += cost
        if self.used > self.granted:
            problems.append("%s: writer exceeded its credit (%d > %d)" % (self.name, self.used, self.granted))
        self.total += len(data)
        self.hash.update(data)
        if len(self.head) < 256:
            self.head += data[:256]
        self.granted += cost
        return cost if env.reply_to else 0

    def check(self, spec):
        want = spec_digest(spec)
        got = (self.hash.hexdigest(), self.total)
        if want == got:
            return []
        return ["%s: want %d bytes (sha256 %s), got %d bytes (sha256 %s) starting %s" % (
            self.name, want[1], want[0][:16], got[1], got[0][:16], show(self.head, 40))]


TAPP_NAMES = {getattr(TApplicationException, n): n for n in dir(TApplicationException)
              if n.isupper() and isinstance(getattr(TApplicationException, n), int)}


def run_case(binary, case):
    s = Session(binary, float(case.get("timeout_s", DEFAULT_TIMEOUT)))
    problem = None
    try:
        s.boot()
        for i, step in enumerate(case["steps"]):
            try:
                getattr(s, "step_" + step["op"])(step)
            except Fail as e:
                raise Fail("step %d (%s): %s" % (i + 1, step["op"], e))
        s.conn.flush()
        if s.strays:
            raise Fail("unexpected frames: " + "; ".join(s.strays[:5]))
    except Fail as e:
        problem = str(e)
    except Exception as e:  # a bug or a decoding error: report, go on with the next case
        problem = "%s: %s" % (type(e).__name__, e)
    closing = s.close()
    if problem is None:
        problem = closing
    # Checked after close, which reads every frame up to the agent's exit.
    if problem is None and case.get("quiet") and s.warnings:
        problem = "the agent logged %d warnings or errors in a quiet case: %s" % (len(s.warnings), s.warnings[0])
    return problem, s.diagnostics()


def main():
    global W
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", required=True)
    ap.add_argument("--gen", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("--only", action="append", default=[])
    a = ap.parse_args()
    sys.path.insert(0, a.gen)
    import mitogen_wire
    from mitogen_wire import Agent, constants, ttypes
    W = mitogen_wire
    W.Agent, W.constants, W.ttypes = Agent, constants, ttypes
    passed = failed = 0
    for path in sorted(glob.glob(os.path.join(a.cases, "*.json"))):
        with open(path) as f:
            cases = json.load(f)["cases"]
        for case in cases:
            if a.only and case["name"] not in a.only:
                continue
            t0 = time.monotonic()
            problem, diag = run_case(a.agent, case)
            if problem is None:
                passed += 1
                print("PASS %s (%.2fs)" % (case["name"], time.monotonic() - t0), flush=True)
            else:
                failed += 1
                print("FAIL %s: %s" % (case["name"], problem), flush=True)
                print("    rule: %s" % case.get("rule", ""))
                for line in diag:
                    print(line)
                sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
