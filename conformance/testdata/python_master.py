"""An independent master written with Apache Thrift's Python library.

It runs `mitogen agent` (argv[1]) with pipes, boots it with a Boot frame,
and makes CALL_FUNCTION calls through the stock client the Thrift compiler
generated from idl/mitogen.thrift (argv[2] is where it was put), wrapped in
TMultiplexedProtocol, over a small transport that carries our Envelope
framing: a client in another language needs nothing but the IDL.
Prints one line per check; exits non-zero on any failure.
"""
import io
import subprocess
import sys

sys.path.insert(0, sys.argv[2])

from thrift.protocol import TBinaryProtocol, TMultiplexedProtocol  # noqa: E402
from thrift.Thrift import TApplicationException  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

from mitogen_wire import Agent, constants  # noqa: E402
from mitogen_wire.ttypes import Boot, CallError, Envelope, Ready  # noqa: E402


def encode(obj):
    buf = TTransport.TMemoryBuffer()
    obj.write(TBinaryProtocol.TBinaryProtocol(buf))
    return buf.getvalue()


def decode(cls, data):
    obj = cls()
    obj.read(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(data)))
    return obj


class Stream:
    def __init__(self, proc):
        self.trans = TTransport.TFramedTransport(TTransport.TFileObjectTransport(proc.stdout))
        self.wtrans = TTransport.TFramedTransport(TTransport.TFileObjectTransport(proc.stdin))

    def send(self, env):
        self.wtrans.write(encode(env))
        self.wtrans.flush()

    def recv(self):
        env = Envelope()
        env.read(TBinaryProtocol.TBinaryProtocol(self.trans))
        return env


class EnvelopeTransport(TTransport.TTransportBase):
    """A TTransport that carries each message a Thrift client writes in one
    Envelope to CALL_FUNCTION of context ctx, and reads the reply from the
    Envelope that comes back to reply_to (skipping anything else the agent
    sends up, such as FORWARD_LOG)."""

    def __init__(self, stream, ctx, reply_to):
        self.stream, self.ctx, self.reply_to = stream, ctx, reply_to
        self.wbuf = io.BytesIO()
        self.rbuf = io.BytesIO()

    def isOpen(self):
        return True

    def write(self, buf):
        self.wbuf.write(buf)

    def flush(self):
        data, self.wbuf = self.wbuf.getvalue(), io.BytesIO()
        self.stream.send(Envelope(dst_id=self.ctx, src_id=0, auth_id=0, handle=constants.CALL_FUNCTION,
                                  reply_to=self.reply_to, data=data))

    def read(self, sz):
        got = self.rbuf.read(sz)
        if got:
            return got
        while True:
            env = self.stream.recv()
            if env.handle == self.reply_to:
                break
        self.rbuf = io.BytesIO(env.data)
        return self.rbuf.read(sz)


class ReplyCheckingProtocol(TBinaryProtocol.TBinaryProtocol):
    """TBinaryProtocol that checks each reply the way Apache's C++, Go and
    Node generated clients do (Python's generated recv_ methods do not):
    the reply must be named by the bare method the client called ("ping"
    for the "Agent:ping" that TMultiplexedProtocol wrote) and carry its
    seqid."""

    def writeMessageBegin(self, name, type, seqid):
        self.sent = (name, seqid)
        super().writeMessageBegin(name, type, seqid)

    def readMessageBegin(self):
        name, mtype, seqid = super().readMessageBegin()
        sent_name, sent_seq = self.sent
        bare = sent_name.split(":", 1)[-1]
        if name != bare:
            raise TApplicationException(TApplicationException.WRONG_METHOD_NAME,
                                        "reply named %r to a call of %r (want %r)" % (name, sent_name, bare))
        if seqid != sent_seq:
            raise TApplicationException(TApplicationException.BAD_SEQUENCE_ID,
                                        "reply seqid %d to call %d" % (seqid, sent_seq))
        return name, mtype, seqid


def main():
    proc = subprocess.Popen([sys.argv[1], "agent"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stream = Stream(proc)
    stream.send(Envelope(dst_id=5, src_id=0, auth_id=0, handle=constants.BOOTSTRAP, reply_to=1000,
                         data=encode(Boot(context_id=5, parent_id=0, parent_ids=[0], name="python",
                                          log_level=8, max_frame_size=1 << 20))))
    ready = decode(Ready, stream.recv().data)
    assert ready.context_id == 5, ready
    print("boot ok: agent pid", ready.pid)

    # The stock generated client, multiplexed as "Agent", over our framing.
    proto = ReplyCheckingProtocol(EnvelopeTransport(stream, 5, 1001))
    client = Agent.Client(TMultiplexedProtocol.TMultiplexedProtocol(proto, "Agent"))
    client.ping()
    print("ping ok")

    assert client.echo(b"\x00hello\xff") == b"\x00hello\xff"
    print("echo ok")

    try:
        client.read_file("/nonexistent", 10)
        raise AssertionError("read_file of a missing file returned")
    except CallError as err:
        assert "no such file" in err.message, err
        print("declared exception ok:", err.message)

    # SHUTDOWN is the clean end; closing without it is a broken stream.
    stream.send(Envelope(dst_id=5, src_id=0, auth_id=0, handle=constants.SHUTDOWN))
    proc.stdin.close()
    proc.wait(timeout=10)
    print("agent exited with", proc.returncode)


if __name__ == "__main__":
    main()
