#!/usr/bin/env python3
"""A request/response program that drives ssh, for make bench (issue 11).

Usage: roundtrips.py N SSH [ARGS...] -- runs `SSH ARGS... cat`, then sends
N short lines one at a time, each only after the previous one came back,
checks every echo, and prints the seconds the N round trips took (the
ssh's start-up is excluded: the clock starts after the first echo).
"""
import subprocess
import sys
import time


def main():
    n = int(sys.argv[1])
    ssh = sys.argv[2:]
    p = subprocess.Popen(ssh + ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    w, r = p.stdin, p.stdout

    def trip(i):
        line = b"request %d\n" % i
        w.write(line)
        got = b""
        while not got.endswith(b"\n"):
            chunk = r.read(len(line) - len(got))
            if not chunk:
                sys.exit("roundtrips: the command ended after %d round trips" % i)
            got += chunk
        if got != line:
            sys.exit("roundtrips: sent %r, got %r" % (line, got))

    trip(0)
    t0 = time.monotonic()
    for i in range(1, n + 1):
        trip(i)
    t = time.monotonic() - t0
    w.close()
    if p.wait() != 0:
        sys.exit("roundtrips: the command exited %d" % p.returncode)
    print("%.4f" % t)


main()
