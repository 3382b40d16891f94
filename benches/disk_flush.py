#!/usr/bin/env python3
"""How this machine's disk takes flushes: one writer against several at once.

Each writer thread writes 64 KiB into its own part of a file written with zeros beforehand
and calls fdatasync, in a loop, for 3 s; the run prints flushes per second (all threads) and
the median time of one write + flush. Sides alternate: 1, 2, 4 threads, twice.

    python3 benches/disk_flush.py [FILE]    (default: target/disk_flush.bin, 64 MiB)

If flushes from several threads overlapped in the device, a store could keep more than one
in flight and cut a request's wait; when they queue behind each other, it cannot.
"""
import os
import statistics
import sys
import threading
import time

SIZE = 64 << 20
CHUNK = 64 << 10


def prepare(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    zeros = b"\0" * (1 << 20)
    for i in range(SIZE >> 20):
        os.pwrite(fd, zeros, i << 20)
    os.fsync(fd)
    return fd


def run(fd, threads, secs=3.0):
    times, lock = [], threading.Lock()
    stop = time.monotonic() + secs
    part = SIZE // threads

    def writer(k):
        at, data, mine = k * part, os.urandom(CHUNK), []
        while time.monotonic() < stop:
            start = time.perf_counter()
            os.pwrite(fd, data, at)
            os.fdatasync(fd)
            mine.append(time.perf_counter() - start)
            at += CHUNK
            if at + CHUNK > (k + 1) * part:
                at = k * part
        with lock:
            times.extend(mine)

    workers = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(times) / secs, statistics.median(times) * 1000


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/disk_flush.bin"
    fd = prepare(path)
    try:
        for threads in [1, 2, 4, 1, 2, 4]:
            rate, p50 = run(fd, threads)
            print(f"{threads} thread(s): {rate:.0f} flushes/s, write + flush p50 {p50:.3f} ms")
    finally:
        os.close(fd)
        os.unlink(path)


if __name__ == "__main__":
    main()
