"""Anchor figures of Python mitogen (Debian python3-mitogen), for make bench.

Prints one JSON object: start_ms (router.local() + first call), rtt_us
(median no-op call round trip), echo_mbps (1 MiB echo, MB/s of payload).
Run with /usr/bin/python3.
"""
import json
import statistics
import sys
import time

import mitogen.master
import mitogen.utils


def noop():
    return None


def echo(x):
    return x


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    broker = mitogen.master.Broker()
    router = mitogen.master.Router(broker)
    try:
        t0 = time.perf_counter()
        if len(sys.argv) > 2:
            # ssh mode: HOST PORT IDENTITY [USER]
            ctx = router.ssh(hostname=sys.argv[2], port=int(sys.argv[3]),
                             username=sys.argv[5] if len(sys.argv) > 5 else "root",
                             identity_file=sys.argv[4],
                             python_path="/usr/bin/python3",
                             check_host_keys="ignore")
        else:
            ctx = router.local()
        ctx.call(noop)
        start_ms = (time.perf_counter() - t0) * 1000

        for _ in range(50):
            ctx.call(noop)
        rtts = []
        for _ in range(n):
            t = time.perf_counter()
            ctx.call(noop)
            rtts.append(time.perf_counter() - t)

        payload = b"x" * (1 << 20)
        ctx.call(echo, payload)
        k = 30
        t = time.perf_counter()
        for _ in range(k):
            ctx.call(echo, payload)
        echo_mbps = k * len(payload) / (time.perf_counter() - t) / 1e6
        print(json.dumps({
            "start_ms": start_ms,
            "rtt_us": statistics.median(rtts) * 1e6,
            "echo_mbps": echo_mbps,
        }))
    finally:
        broker.shutdown()
        broker.join()


if __name__ == "__main__":
    main()
