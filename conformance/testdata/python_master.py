"""An independent master written with Apache Thrift's Python library.

It runs `mitogen agent` (argv[1]) with pipes, boots it with a Boot frame,
and makes CALL_FUNCTION calls using Python code generated from
idl/mitogen.thrift by the Thrift compiler (argv[2] is where it was put),
proving that a client in another language needs nothing but the IDL.
Prints one line per check; exits non-zero on any failure.
"""
import subprocess
import sys

sys.path.insert(0, sys.argv[2])

from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.Thrift import TMessageType  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

from mitogen_wire import Agent, constants  # noqa: E402
from mitogen_wire.ttypes import Boot, Envelope, Ready  # noqa: E402


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


def call(stream, ctx, method, args, result_cls, reply_to):
    buf = TTransport.TMemoryBuffer()
    proto = TBinaryProtocol.TBinaryProtocol(buf)
    proto.writeMessageBegin(method, TMessageType.CALL, 7)
    args.write(proto)
    proto.writeMessageEnd()
    stream.send(Envelope(dst_id=ctx, src_id=0, auth_id=0, handle=constants.CALL_FUNCTION,
                         reply_to=reply_to, data=buf.getvalue()))
    reply = stream.recv()
    assert reply.handle == reply_to, reply
    proto = TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(reply.data))
    name, mtype, seq = proto.readMessageBegin()
    assert (name, mtype, seq) == (method, TMessageType.REPLY, 7), (name, mtype, seq)
    result = result_cls()
    result.read(proto)
    return result


def main():
    proc = subprocess.Popen([sys.argv[1], "agent"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    stream = Stream(proc)
    stream.send(Envelope(dst_id=5, src_id=0, auth_id=0, handle=constants.BOOTSTRAP, reply_to=1000,
                         data=encode(Boot(context_id=5, parent_id=0, parent_ids=[0], name="python",
                                          log_level=8, max_frame_size=1 << 20))))
    ready = decode(Ready, stream.recv().data)
    assert ready.context_id == 5, ready
    print("boot ok: agent pid", ready.pid)

    res = call(stream, 5, "Agent:echo", Agent.echo_args(data=b"\x00hello\xff"), Agent.echo_result, 1001)
    assert res.success == b"\x00hello\xff", res
    print("echo ok")

    res = call(stream, 5, "Agent:read_file", Agent.read_file_args(path="/nonexistent", max=10),
               Agent.read_file_result, 1002)
    assert res.err is not None and "no such file" in res.err.message, res
    print("declared exception ok:", res.err.message)

    # SHUTDOWN is the clean end; closing without it is a broken stream.
    stream.send(Envelope(dst_id=5, src_id=0, auth_id=0, handle=constants.SHUTDOWN))
    proc.stdin.close()
    proc.wait(timeout=10)
    print("agent exited with", proc.returncode)


if __name__ == "__main__":
    main()
