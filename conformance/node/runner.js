#!/usr/bin/env node
// Conformance runner: a mitogen master written in Node.js from the IDL alone.
//
// usage: node runner.js --agent MITOGEN --gen DIR --cases DIR [--only NAME]...
//
// DIR (--gen) holds what `thrift --gen js:node` made from idl/mitogen.thrift;
// the Thrift library is npm's thrift, pinned in package.json (its callback
// API: the 0.17 compiler's promise API needs thrift.Q, which 0.24 dropped).
// No code is shared with the Go implementation. For each case in the JSON
// files of --cases (format: conformance/cases/README.md) the runner starts
// `MITOGEN agent` as a child over its stdin/stdout, boots it as context 1,
// runs the case's steps and prints "PASS <name>" or "FAIL <name>: <what
// differed>". The last line is "N passed, N failed"; exit status 1 if any
// failed.
"use strict";

const { spawn } = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");
const thrift = require("thrift");

const { Thrift, TBinaryProtocol, TBufferedTransport, Multiplexer } = thrift;

const AGENT_ID = 1; // the ID this master gives the agent in Boot
const MASTER = 0;
const CHUNK_OVERHEAD = 64; // credit charged per chunk on top of its length
const MAX_FRAME = 16 << 20; // announced in Boot.max_frame_size and enforced
const DEFAULT_WINDOW = 4 << 20;
const DEFAULT_TIMEOUT = 20;
const WARN_LEVEL = 4; // slog WARN: a quiet case fails on a FORWARD_LOG at or above it

let A; // generated Agent service module
let T; // generated types and constants

class Fail extends Error {}

// ---- byte specs (see README.md) ----

function isBytespec(v) {
  return v !== null && typeof v === "object" && !Buffer.isBuffer(v) && !Array.isArray(v) &&
    ["text", "hex", "repeat", "seq", "sha256"].some((k) => k in v);
}

function specBytes(spec) {
  if ("text" in spec) return Buffer.from(spec.text, "utf8");
  if ("hex" in spec) return Buffer.from(spec.hex.replace(/\s+/g, ""), "hex");
  if ("repeat" in spec) {
    const unit = Buffer.from(spec.repeat, "utf8");
    const out = Buffer.alloc(spec.size);
    for (let off = 0; off < spec.size; off += unit.length) unit.copy(out, off, 0, Math.min(unit.length, spec.size - off));
    return out;
  }
  if ("seq" in spec) {
    const parts = [];
    for (let i = spec.seq[0]; i <= spec.seq[1]; i++) parts.push(i + "\n");
    return Buffer.from(parts.join(""), "utf8");
  }
  throw new Fail("case error: unknown byte spec " + JSON.stringify(spec));
}

function specDigest(spec) {
  if ("sha256" in spec) return [spec.sha256, spec.size];
  const b = specBytes(spec);
  return [sha256(b), b.length];
}

function sha256(b) {
  return crypto.createHash("sha256").update(b).digest("hex");
}

function show(b, n = 60) {
  const s = JSON.stringify(b.subarray(0, n).toString("latin1"));
  return b.length > n ? s + "... (" + b.length + " bytes)" : s;
}

// JSON case values -> values the generated constructors take: byte specs
// become Buffers; generated constructors wrap nested structs themselves.
function jsValue(v) {
  if (isBytespec(v)) return specBytes(v);
  if (Array.isArray(v)) return v.map(jsValue);
  if (v !== null && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) o[k] = jsValue(v[k]);
    return o;
  }
  return v;
}

function plain(v) {
  if (v !== null && typeof v === "object" && typeof v.toNumber === "function" && v.buffer) return v.toNumber(true); // Int64
  return v;
}

function match(expected, actual, where) {
  actual = plain(actual);
  if (expected === null) return actual === null || actual === undefined ? [] : [`${where}: want none, got ${JSON.stringify(actual)}`];
  if (isBytespec(expected)) {
    if (!Buffer.isBuffer(actual)) return [`${where}: want bytes, got ${JSON.stringify(actual)}`];
    const [h, n] = specDigest(expected);
    if (h !== sha256(actual) || n !== actual.length) return [`${where}: want ${n} bytes (sha256 ${h.slice(0, 16)}), got ${show(actual)}`];
    return [];
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) return [`${where}: want ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`];
    return expected.flatMap((e, i) => match(e, actual[i], `${where}[${i}]`));
  }
  if (typeof expected === "object") {
    if (actual === null || typeof actual !== "object") return [`${where}: want a struct, got ${JSON.stringify(actual)}`];
    return Object.keys(expected).flatMap((k) => (k in actual ? match(expected[k], actual[k], `${where}.${k}`) : [`${where}: no field ${k}`]));
  }
  return expected === actual ? [] : [`${where}: want ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`];
}

function encode(obj) {
  let out = Buffer.alloc(0);
  const t = new TBufferedTransport(undefined, (buf) => { out = buf; });
  obj.write(new TBinaryProtocol(t));
  t.flush();
  return out;
}

// reading runs f on a protocol over data, as the library's own receivers do.
function reading(data, f) {
  let result;
  TBufferedTransport.receiver((trans) => { result = f(new TBinaryProtocol(trans)); })(data);
  return result;
}

function decode(Cls, data) {
  return reading(data, (p) => { const o = new Cls(); o.read(p); return o; });
}

function deadText(env) {
  try {
    const d = decode(T.Dead, env.data);
    const name = Object.keys(T.DeadReason).find((k) => T.DeadReason[k] === d.reason) || d.reason;
    return `Dead{${name}: ${d.message}}`;
  } catch (e) {
    return `malformed Dead (${e.message})`;
  }
}

function envText(e) {
  return `Envelope(dst=${e.dst_id} src=${e.src_id} auth=${e.auth_id} handle=${e.handle} reply_to=${e.reply_to} len=${(e.data || []).length})`;
}

// ---- the stream to the agent ----

class Conn {
  constructor(child, timeoutSec) {
    this.child = child;
    this.pending = [];
    this.pendingLen = 0;
    this.frames = [];
    this.queued = 0;
    this.waiter = null;
    this.err = null;
    this.timer = setTimeout(() => this.fail(new Fail("timed out waiting for the agent")), timeoutSec * 1000);
    child.stdout.on("data", (b) => this.onData(b));
    child.stdout.on("end", () => this.fail(new Fail("the agent closed its stdout (it exited?)")));
    child.stdin.on("error", (e) => this.fail(new Fail("writing to the agent: " + e.message)));
  }

  fail(e) {
    if (!this.err) this.err = e;
    this.wake();
  }

  wake() {
    if (this.waiter && (this.frames.length || this.err)) {
      const w = this.waiter;
      this.waiter = null;
      if (this.frames.length) w.resolve(this.take());
      else w.reject(this.err);
    }
  }

  take() {
    const env = this.frames.shift();
    this.queued -= (env.data || []).length;
    return env;
  }

  onData(b) {
    this.pending.push(b);
    this.pendingLen += b.length;
    let buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingLen);
    let off = 0;
    while (buf.length - off >= 4) {
      const n = buf.readUInt32BE(off);
      if (n > MAX_FRAME) {
        this.fail(new Fail(`agent sent a frame of ${n} bytes, above Boot.max_frame_size ${MAX_FRAME}`));
        return;
      }
      if (buf.length - off < 4 + n) break;
      try {
        const env = decode(T.Envelope, buf.subarray(off + 4, off + 4 + n));
        this.frames.push(env);
        this.queued += (env.data || []).length;
      } catch (e) {
        this.fail(new Fail("agent sent a frame that does not decode as Envelope: " + e.message));
        return;
      }
      off += 4 + n;
    }
    buf = buf.subarray(off);
    this.pending = buf.length ? [buf] : [];
    this.pendingLen = buf.length;
    if (this.queued > 256 << 20) this.fail(new Fail("more than 256 MiB from the agent queued unread"));
    this.wake();
  }

  send(env) {
    if (this.err) throw this.err;
    const body = encode(env);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    this.child.stdin.write(Buffer.concat([len, body]));
  }

  recv() {
    if (this.frames.length) return Promise.resolve(this.take());
    if (this.err) return Promise.reject(this.err);
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
  }

  // poll resolves to the next frame if one arrives within ms, else null.
  poll(ms) {
    if (this.frames.length) return Promise.resolve(this.take());
    if (this.err) return Promise.reject(this.err);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waiter && this.waiter.resolve === done) this.waiter = null;
        resolve(null);
      }, ms);
      const done = (env) => { clearTimeout(timer); resolve(env); };
      this.waiter = { resolve: done, reject: (e) => { clearTimeout(timer); reject(e); } };
    });
  }

  stop() {
    clearTimeout(this.timer);
  }
}

// ---- one case ----

class Reader {
  constructor(name, window) {
    this.name = name;
    this.granted = window;
    this.used = 0;
    this.total = 0;
    this.hash = crypto.createHash("sha256");
    this.head = Buffer.alloc(0);
    this.ended = false;
  }

  take(env, problems) {
    if (this.ended) {
      problems.push(`${this.name}: frame after the end of the stream: ${envText(env)}`);
      return 0;
    }
    if (env.reply_to === T.IS_DEAD) {
      this.ended = true;
      const d = decode(T.Dead, env.data);
      if (d.reason !== T.DeadReason.SENDER_CLOSED) problems.push(`${this.name} ended with ${deadText(env)}`);
      return 0;
    }
    const data = env.data || Buffer.alloc(0);
    if (!data.length) problems.push(`${this.name}: empty chunk (chunks are never empty)`);
    if (!env.reply_to) problems.push(`${this.name}: chunk without the writer's credit handle in reply_to`);
    const cost = data.length + CHUNK_OVERHEAD;
    this.used += cost;
    if (this.used > this.granted) problems.push(`${this.name}: writer exceeded its credit (${this.used} > ${this.granted})`);
    this.total += data.length;
    this.hash.update(data);
    if (this.head.length < 256) this.head = Buffer.concat([this.head, data.subarray(0, 256)]);
    this.granted += cost;
    return env.reply_to ? cost : 0;
  }

  check(spec) {
    const [h, n] = specDigest(spec);
    const got = this.hash.copy().digest("hex");
    if (h === got && n === this.total) return [];
    return [`${this.name}: want ${n} bytes (sha256 ${h.slice(0, 16)}), got ${this.total} bytes (sha256 ${got.slice(0, 16)}) starting ${show(this.head, 40)}`];
  }
}

class Session {
  constructor(binary, timeoutSec) {
    this.stderrPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mitogen-node-")), "stderr");
    this.stderrFd = fs.openSync(this.stderrPath, "w+");
    this.child = spawn(binary, ["agent"], { stdio: ["pipe", "pipe", this.stderrFd] });
    this.exited = new Promise((resolve) => this.child.on("exit", (code, sig) => resolve({ code, sig })));
    this.conn = new Conn(this.child, timeoutSec);
    this.nextHandle = T.FIRST_DYNAMIC_HANDLE;
    this.queues = new Map();
    this.logs = [];
    this.warnings = [];
    this.strays = [];
    // The stock client, multiplexed as Apache's Multiplexer does it: its
    // "connection" is this runner, which puts each CALL in an envelope.
    this.mux = new Multiplexer();
    this.rpc = {
      transport: TBufferedTransport,
      protocol: TBinaryProtocol,
      seqId2Service: {},
      client: {},
      payload: null,
      write(buf) { this.payload = buf; },
    };
  }

  alloc() {
    const h = this.nextHandle++;
    this.queues.set(h, []);
    return h;
  }

  send(fields) {
    this.conn.send(new T.Envelope(Object.assign({ dst_id: AGENT_ID, src_id: MASTER, auth_id: MASTER, handle: 0, reply_to: 0, data: Buffer.alloc(0) }, fields)));
  }

  dispatch(env) {
    if (env.dst_id !== MASTER) {
      this.strays.push(`frame for context ${env.dst_id}: ${envText(env)}`);
    } else if (env.handle === T.FORWARD_LOG) {
      try {
        const rec = decode(T.LogRecord, env.data);
        const attrs = (rec.attrs || []).map((a) => `${a.key}=${a.value}`).join(" ");
        this.logs.push(`agent log level ${rec.level}: ${rec.message} ${attrs}`);
        if (rec.level >= WARN_LEVEL) this.warnings.push(this.logs[this.logs.length - 1]);
      } catch (e) {
        this.strays.push(`malformed FORWARD_LOG (${e.message})`);
      }
    } else if (this.queues.has(env.handle)) {
      this.queues.get(env.handle).push(env);
    } else {
      this.strays.push(`frame for handle ${env.handle}, which this master never gave out: ${envText(env)}`);
    }
  }

  async wait(h) {
    const q = this.queues.get(h);
    while (!q.length) this.dispatch(await this.conn.recv());
    return q.shift();
  }

  async boot() {
    const h = this.alloc();
    const boot = new T.Boot({ context_id: AGENT_ID, parent_id: MASTER, parent_ids: [MASTER], name: "node-runner", log_level: 4, max_frame_size: MAX_FRAME });
    this.send({ handle: T.BOOTSTRAP, reply_to: h, data: encode(boot) });
    const ready = decode(T.Ready, (await this.wait(h)).data);
    if (ready.context_id !== AGENT_ID) throw new Fail(`Ready names context ${ready.context_id}, not ${AGENT_ID}`);
  }

  // close sends SHUTDOWN, the clean end of a context: the agent must close
  // its end of the stream and exit with status 0.
  async close() {
    this.conn.stop();
    try {
      this.send({ handle: T.SHUTDOWN });
    } catch (e) {
      // the agent is gone already: its exit status tells
    }
    this.child.stdout.resume();
    let timer;
    const limit = new Promise((resolve) => { timer = setTimeout(() => resolve(null), 15000); });
    const eof = new Promise((resolve) => { if (this.child.stdout.readableEnded) resolve(); else this.child.stdout.on("close", resolve); });
    await Promise.race([eof, limit]);
    this.child.stdin.end();
    const r = await Promise.race([this.exited, limit]);
    clearTimeout(timer);
    fs.closeSync(this.stderrFd);
    if (r === null) {
      this.child.kill("SIGKILL"); // our own child, by PID
      await this.exited;
      return "agent did not exit within 15s of SHUTDOWN (killed)";
    }
    if (r.code !== 0) return `agent exited with ${r.code === null ? "signal " + r.sig : "status " + r.code} after SHUTDOWN`;
    return null;
  }

  diagnostics() {
    const out = this.logs.slice(-8).map((l) => "    agent log: " + l);
    let err = "";
    try { err = fs.readFileSync(this.stderrPath).subarray(-1500).toString().trim(); } catch (e) { /* gone */ }
    fs.rmSync(path.dirname(this.stderrPath), { recursive: true, force: true });
    if (err) out.push(...err.split("\n").slice(-10).map((l) => "    agent stderr: " + l));
    return out;
  }

  resolve(v, ctx) {
    if (typeof v === "string") {
      if (v === "agent") return AGENT_ID;
      if (v in ctx) return ctx[v];
      throw new Fail("case error: unknown symbol " + v);
    }
    return v;
  }

  frameFrom(spec, ctx) {
    const f = {};
    for (const k of ["dst_id", "src_id", "auth_id", "handle", "reply_to"]) if (k in spec) f[k] = this.resolve(spec[k], ctx);
    const d = spec.data;
    if (!d) f.data = Buffer.alloc(0);
    else if ("struct" in d) f.data = encode(new T[d.struct](jsValue(d.value || {})));
    else f.data = specBytes(d);
    return f;
  }

  // ---- steps ----

  async step_send(step) {
    this.send(this.frameFrom(step.frame, {}));
  }

  // call sends one CALL_FUNCTION and returns the outcome as the stock client
  // reports it: ["returns", v], ["throws", e], ["exception", x] or ["dead", Dead].
  async call(method, step) {
    const i = method.lastIndexOf(":");
    const service = i >= 0 ? method.slice(0, i) : "";
    const bare = method.slice(i + 1);
    const rpc = this.rpc;
    const client = rpc.client.Agent || this.mux.createClient("Agent", A, rpc);
    let outcome = null;
    const done = (err, value) => {
      if (err instanceof Thrift.TApplicationException) outcome = ["exception", err];
      else if (T.CallError && err instanceof T.CallError) outcome = ["throws", err];
      else if (err) outcome = ["exception", new Thrift.TApplicationException(Thrift.TApplicationExceptionType.MISSING_RESULT, String(err))];
      else outcome = ["returns", value === undefined ? null : value];
    };
    let data;
    let seqid = null;
    if (step.payload_raw) {
      data = specBytes(step.payload_raw);
    } else if (step.args_raw) {
      seqid = ++this.mux.seqid;
      let head;
      const t = new TBufferedTransport(undefined, (b) => { head = b; });
      new TBinaryProtocol(t).writeMessageBegin(method, Thrift.MessageType.CALL, seqid);
      t.flush();
      data = Buffer.concat([head, specBytes(step.args_raw)]);
      rpc.seqId2Service[seqid] = "Agent";
      client._reqs[seqid] = done;
    } else {
      if (service !== "Agent" || typeof client[bare] !== "function" || typeof client["send_" + bare] !== "function") {
        throw new Fail(`case error: ${method} is not a method of the generated Agent client`);
      }
      const args = jsValue(step.args || {});
      // The generated method's parameters are the IDL arguments in order, then the callback.
      const names = /^function\s*\(([^)]*)\)/.exec(client[bare].toString())[1].split(",").map((x) => x.trim()).filter((x) => x && x !== "callback");
      for (const k of Object.keys(args)) if (!names.includes(k)) throw new Fail(`case error: ${method} has no argument ${k}`);
      rpc.payload = null;
      client[bare](...names.map((n) => args[n]), done);
      data = rpc.payload;
      seqid = this.mux.seqid;
    }
    const h = this.alloc();
    const fields = { handle: T.CALL_FUNCTION, reply_to: h, data };
    for (const [k, v] of Object.entries(step.frame || {})) fields[k] = this.resolve(v, {});
    this.send(fields);
    const reply = await this.wait(h);
    if (reply.reply_to === T.IS_DEAD) return [["dead", decode(T.Dead, reply.data)], reply];
    reading(reply.data, (p) => {
      let header;
      try {
        header = p.readMessageBegin();
      } catch (e) {
        throw new Fail(`reply is not a Thrift message: ${e.message} (${show(reply.data)})`);
      }
      if (seqid !== null && header.rseqid !== seqid) throw new Fail(`reply seqid ${header.rseqid}, want the call's ${seqid}`);
      if (header.mtype === Thrift.MessageType.EXCEPTION) {
        delete client._reqs[header.rseqid];
        delete rpc.seqId2Service[header.rseqid];
        const x = new Thrift.TApplicationException();
        x.read(p);
        outcome = ["exception", x];
        return;
      }
      if (header.mtype !== Thrift.MessageType.REPLY) throw new Fail(`reply message type ${header.mtype}, want REPLY or EXCEPTION`);
      if (!step.payload_raw && header.fname !== bare) throw new Fail(`REPLY names method '${header.fname}', want '${bare}' (the bare name of the method called)`);
      // As the library's connection dispatches: by the reply's method name.
      const svc = rpc.seqId2Service[header.rseqid];
      const c = svc ? rpc.client[svc] : client;
      delete rpc.seqId2Service[header.rseqid];
      const recv = c["recv_" + header.fname];
      if (!recv) throw new Fail(`REPLY names method '${header.fname}': the stock client has no recv_${header.fname} (replies carry the bare method name)`);
      const dummy = -header.rseqid;
      c._reqs[dummy] = (err, value) => {
        const cb = c._reqs[header.rseqid];
        delete c._reqs[header.rseqid];
        if (cb) cb(err, value);
      };
      recv.call(c, p, header.mtype, dummy);
    });
    if (!outcome) throw new Fail("the stock client reported no result");
    return [outcome, reply];
  }

  async step_call(step) {
    const [[kind, value], reply] = await this.call(step.method, step);
    const exp = step.expect;
    const what = () => {
      if (kind === "dead") return deadText(reply);
      if (kind === "exception") return `EXCEPTION ${Object.keys(Thrift.TApplicationExceptionType).find((k) => Thrift.TApplicationExceptionType[k] === value.type)}: ${value.message}`;
      if (kind === "throws") return `declared exception ${JSON.stringify(value)}`;
      return "REPLY " + (Buffer.isBuffer(value) ? show(value, 80) : JSON.stringify(value));
    };
    const m = step.method;
    if ("dead" in exp) {
      if (kind !== "dead" || value.reason !== T.DeadReason[exp.dead]) throw new Fail(`${m}: want a dead message Dead{${exp.dead}}, got ${what()}`);
    } else if ("exception" in exp) {
      if (kind !== "exception" || value.type !== Thrift.TApplicationExceptionType[exp.exception]) throw new Fail(`${m}: want EXCEPTION ${exp.exception}, got ${what()}`);
    } else if ("throws" in exp) {
      if (kind !== "throws") throw new Fail(`${m}: want declared exception ${JSON.stringify(exp.throws)}, got ${what()}`);
      const d = match(exp.throws, value, "exception");
      if (d.length) throw new Fail(`${m}: ${d.join("; ")}`);
    } else if ("returns" in exp) {
      if (kind !== "returns") throw new Fail(`${m}: want a REPLY, got ${what()}`);
      const d = match(exp.returns, value, "result");
      if (d.length) throw new Fail(`${m}: ${d.join("; ")}`);
    } else {
      throw new Fail("case error: call step expects nothing");
    }
  }

  async step_process(step) {
    const [[kind, ps]] = await this.call("Agent:start_process", { args: { spec: step.spec } });
    if (kind !== "returns") throw new Fail(`start_process: want ProcessStarted, got ${kind} ${JSON.stringify(ps)}`);
    const exp = step.expect;
    const stdin = specBytes(step.stdin || { text: "" });
    const chunkMax = step.stdin_chunk || 256 << 10;
    const mode = step.stdin_mode || "credit";
    const [hOut, hErr, hCred, hCtl] = [this.alloc(), this.alloc(), this.alloc(), this.alloc()];
    const start = new T.Control({
      kind: T.ControlKind.START,
      stdout: new T.StreamEnd({ context_id: MASTER, handle: hOut, window: step.stdout_window || DEFAULT_WINDOW }),
      stderr: new T.StreamEnd({ context_id: MASTER, handle: hErr, window: step.stderr_window || DEFAULT_WINDOW }),
      stdin_credit: new T.StreamEnd({ context_id: MASTER, handle: hCred, window: 0 }),
      control_handle: hCtl,
    });
    const stdinHandle = ps.stdin.handle;
    const stdinWindow = plain(ps.stdin.window);
    const ctx = { stdin: stdinHandle, control: ps.control_handle };
    for (const [end, fields] of Object.entries(step.start || {})) {
      for (const [k, v] of Object.entries(fields)) start[end][k] = this.resolve(v, ctx);
    }
    this.send({ handle: ps.control_handle, data: encode(start) });
    const readers = new Map([[hOut, new Reader("stdout", plain(start.stdout.window))], [hErr, new Reader("stderr", plain(start.stderr.window))]]);
    const problems = [];
    let credit = stdinWindow;
    let sent = 0;
    let stdinDone = false;
    let stdinDead = null;
    const injects = (step.inject || []).slice();
    let exitMsg = null;
    let ctlDead = null;
    const sendChunk = (data) => this.send({ handle: stdinHandle, reply_to: hCred, data });
    const fireInjects = (upto) => {
      while (injects.length && injects[0].after_stdin_bytes <= upto) this.send(this.frameFrom(injects.shift().frame, ctx));
    };
    if (mode === "overrun") sendChunk(Buffer.alloc(stdinWindow - CHUNK_OVERHEAD + 1, "x")); // costs window + 1
    if (exp.refused) return this.refused(ps, readers, hCtl, hCred);
    while (exitMsg === null && ctlDead === null) {
      while (mode === "credit" && !stdinDone && stdinDead === null) {
        fireInjects(sent);
        if (sent === stdin.length || credit <= CHUNK_OVERHEAD) break;
        const n = Math.min(chunkMax, credit - CHUNK_OVERHEAD, stdin.length - sent);
        sendChunk(stdin.subarray(sent, sent + n));
        credit -= n + CHUNK_OVERHEAD;
        sent += n;
      }
      if (!stdinDone && stdinDead === null && (mode !== "credit" || sent === stdin.length)) {
        fireInjects(sent);
        this.send({ handle: stdinHandle, reply_to: T.IS_DEAD, data: encode(new T.Dead({ reason: T.DeadReason.SENDER_CLOSED, message: "end of stdin" })) });
        stdinDone = true;
      }
      const env = await this.conn.recv();
      if (env.dst_id !== MASTER) {
        this.dispatch(env);
      } else if (env.handle === hCred) {
        if (env.reply_to === T.IS_DEAD) {
          stdinDead = deadText(env);
        } else {
          const c = plain(decode(T.Credit, env.data).bytes);
          if (!(c > 0)) problems.push(`Credit of ${c} bytes`);
          else credit += c;
        }
      } else if (readers.has(env.handle)) {
        const grant = readers.get(env.handle).take(env, problems);
        if (grant) this.send({ dst_id: env.src_id, handle: env.reply_to, data: encode(new T.Credit({ bytes: grant })) });
      } else if (env.handle === hCtl) {
        if (env.reply_to === T.IS_DEAD) {
          ctlDead = deadText(env);
        } else {
          const c = decode(T.Control, env.data);
          if (c.kind !== T.ControlKind.EXIT) {
            problems.push(`control message of kind ${c.kind}, want EXIT`);
            continue;
          }
          exitMsg = c;
          for (const r of readers.values()) if (!r.ended) problems.push(`EXIT arrived before ${r.name} ended`);
        }
      } else {
        this.dispatch(env);
      }
    }
    const exitText = exitMsg ? `EXIT status ${exitMsg.exit_status} signal ${JSON.stringify(exitMsg.signal)} note ${JSON.stringify(exitMsg.note)}` : "control handle got " + ctlDead;
    if (!exitMsg) throw new Fail("no EXIT: " + exitText);
    if (exp.stdout) problems.push(...readers.get(hOut).check(exp.stdout));
    if (exp.stderr) problems.push(...readers.get(hErr).check(exp.stderr));
    if ("exit_status" in exp && exitMsg.exit_status !== exp.exit_status) problems.push(`want exit status ${exp.exit_status}, got ${exitText}`);
    if (exp.exit === "error" && exitMsg.exit_status === 0 && !exitMsg.note) problems.push("the stream error must show in EXIT (nonzero status or a note), got " + exitText);
    if (stdinDead && mode === "credit" && sent < stdin.length) problems.push(`stdin ended by the agent after ${sent} of ${stdin.length} bytes: ${stdinDead}`);
    if (problems.length) throw new Fail(problems.join("; "));
  }

  // refused checks a START that must be refused: the process is ended and
  // nothing, not even EXIT, goes to the handles START named; the agent lives on.
  async refused(ps, readers, hCtl, hCred) {
    this.send({ handle: ps.stdin.handle, reply_to: T.IS_DEAD, data: encode(new T.Dead({ reason: T.DeadReason.SENDER_CLOSED, message: "end of stdin" })) });
    const problems = [];
    const take = (env) => {
      if (env.dst_id === MASTER && (readers.has(env.handle) || env.handle === hCtl)) {
        const what = env.handle === hCtl ? "control" : readers.get(env.handle).name;
        let text = env.reply_to === T.IS_DEAD ? deadText(env) : envText(env);
        if (env.handle === hCtl && env.reply_to !== T.IS_DEAD) {
          const c = decode(T.Control, env.data);
          text = `Control kind ${c.kind} status ${c.exit_status} note ${JSON.stringify(c.note)}`;
        }
        problems.push(`START must be refused, but its ${what} handle got ${text}`);
      } else if (!(env.dst_id === MASTER && env.handle === hCred)) { // the stdin stream may be ended or refused
        this.dispatch(env);
      }
    };
    while (!processGone(ps.pid)) {
      let env;
      try {
        env = await this.conn.poll(50);
      } catch (e) {
        throw new Fail(`${e.message}; the process (pid ${ps.pid}) is still running: a refused START ends it${problems.length ? "; " + problems.join("; ") : ""}`);
      }
      if (env) take(env);
    }
    // A round trip: whatever the agent sent before it has arrived.
    const [[kind]] = await this.call("Agent:ping", {});
    if (kind !== "returns") problems.push("no REPLY to ping after the refused START");
    for (const h of [...readers.keys(), hCtl]) {
      const q = this.queues.get(h);
      while (q.length) take(q.shift());
    }
    if (problems.length) throw new Fail(problems.join("; "));
  }
}

// processGone tells whether process pid has exited (a zombie counts: it awaits its reaper).
function processGone(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 1).trim().split(" ")[0] === "Z";
  } catch (e) {
    return true;
  }
}

async function runCase(binary, c) {
  const s = new Session(binary, c.timeout_s || DEFAULT_TIMEOUT);
  let problem = null;
  try {
    await s.boot();
    for (let i = 0; i < c.steps.length; i++) {
      const step = c.steps[i];
      try {
        await s["step_" + step.op](step);
      } catch (e) {
        e.message = `step ${i + 1} (${step.op}): ${e.message}`;
        throw e;
      }
    }
    if (s.strays.length) throw new Fail("unexpected frames: " + s.strays.slice(0, 5).join("; "));
  } catch (e) {
    problem = e instanceof Fail ? e.message : `${e.name}: ${e.message}`;
  }
  const closing = await s.close();
  // Checked after close, which reads every frame up to the agent's exit.
  if (!problem && !closing && c.quiet && s.warnings.length) {
    problem = `the agent logged ${s.warnings.length} warnings or errors in a quiet case: ${s.warnings[0]}`;
  }
  return [problem || closing, s.diagnostics()];
}

async function main() {
  const opts = { only: [] };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, "");
    if (k === "only") opts.only.push(argv[i + 1]);
    else opts[k] = argv[i + 1];
  }
  if (!opts.agent || !opts.gen || !opts.cases) {
    console.error("usage: node runner.js --agent MITOGEN --gen DIR --cases DIR [--only NAME]...");
    process.exit(2);
  }
  A = require(path.resolve(opts.gen, "Agent.js"));
  T = require(path.resolve(opts.gen, "mitogen_types.js"));
  let passed = 0;
  let failed = 0;
  for (const file of fs.readdirSync(opts.cases).filter((f) => f.endsWith(".json")).sort()) {
    const cases = JSON.parse(fs.readFileSync(path.join(opts.cases, file), "utf8")).cases;
    for (const c of cases) {
      if (opts.only.length && !opts.only.includes(c.name)) continue;
      const t0 = process.hrtime.bigint();
      const [problem, diag] = await runCase(opts.agent, c);
      if (problem === null) {
        passed++;
        console.log(`PASS ${c.name} (${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(2)}s)`);
      } else {
        failed++;
        console.log(`FAIL ${c.name}: ${problem}`);
        console.log(`    rule: ${c.rule || ""}`);
        for (const l of diag) console.log(l);
      }
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(2);
});
