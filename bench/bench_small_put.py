#!/usr/bin/env python3
"""Small uploads per second: 4 KiB PUTs to new names from 8 keep-alive clients.

Run by hand (it is not a test):  python bench/bench_small_put.py  [--help]

The same three servers as bench_http.py (ours with its defaults, fsync on;
the plain Bottle + waitress baseline; copyparty), one after another, the
order rotating each round. Each round, each server gets ``--seconds`` of
load from 8 clients (2 processes of 4 threads, one keep-alive connection
each, every PUT a new name); any answer but 200/201 fails the run. Printed:
median requests per second over the rounds, the ratios, and the server's CPU
seconds per thousand requests (utime + stime from /proc/PID/stat).
Needs: copyparty (pip install copyparty), Linux /proc.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import RATIOS, STARTERS, TITLES, cpu_seconds  # noqa: E402  (the same servers, started alike)

BODY = os.urandom(4096)


def _client(base: str, tag: str, seconds: float, counts: list, errors: list) -> None:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    deadline, n = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        conn.request("PUT", f"{parts.path}{tag}-{n}.bin", BODY,
                     {"Content-Type": "application/octet-stream"})
        reply = conn.getresponse()
        reply.read()
        if reply.status not in (200, 201):
            errors.append(f"{reply.status} {reply.reason}")
            break
        n += 1
    counts.append(n)
    conn.close()


def _process(base: str, tag: str, seconds: float, threads: int, out) -> None:
    counts, errors = [], []
    workers = [threading.Thread(target=_client, args=(base, f"{tag}t{i}", seconds, counts, errors))
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((sum(counts), errors))


def load(server, tag: str, seconds: float, processes: int = 2, threads: int = 4):
    """(requests per second, server CPU seconds per 1000 requests)."""
    out = multiprocessing.Queue()
    cpu = cpu_seconds(server.proc.pid)
    began = time.monotonic()
    procs = [multiprocessing.Process(target=_process,
                                     args=(server.base, f"{tag}p{i}", seconds, threads, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - began
    total = sum(n for n, _ in results)
    errors = [e for _, errs in results for e in errs]
    if errors:
        raise RuntimeError(f"{server.label}: {errors[:3]}")
    return total / elapsed, (cpu_seconds(server.proc.pid) - cpu) / total * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--servers", default="ours,baseline,copyparty")
    opts = parser.parse_args()
    names = opts.servers.split(",")
    rates = {n: [] for n in names}
    cpus = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-small-") as work:
        servers = {n: STARTERS[n](Path(work), "small") for n in names}
        try:
            for r in range(opts.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for n in order:
                    rate, cpu = load(servers[n], f"r{r}", opts.seconds)
                    rates[n].append(rate)
                    cpus[n].append(cpu)
                    print(f"round {r + 1} {n}: {rate:,.0f} PUT/s, "
                          f"{cpu:.2f} CPU s per 1000", flush=True)
        finally:
            for s in servers.values():
                s.stop()
    median = {n: statistics.median(v) for n, v in rates.items()}
    print(f"\n| 4 KiB PUT, new names, 8 keep-alive clients, median of {opts.rounds} | "
          + " | ".join(TITLES[n] for n in names) + " |")
    print("|---|" + "---|" * len(names))
    print("| PUT per second | " + " | ".join(f"{median[n]:,.0f}" for n in names) + " |")
    print("| server CPU s per 1000 PUTs | "
          + " | ".join(f"{statistics.median(cpus[n]):.2f}" for n in names) + " |")
    for a, b in RATIOS:
        if a in median and b in median:
            print(f"{a}/{b}: {median[a] / median[b]:.2f}")


if __name__ == "__main__":
    main()
