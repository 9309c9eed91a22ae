#!/usr/bin/env python3
"""HTTP benchmark: this fileserver next to a baseline and copyparty, on loopback.

Run by hand (it is not a test):  python bench/bench_http.py  [--help]

Three servers: ours; the baseline, a minimal Bottle + waitress app serving a
directory (bench/baseline_app.py), the floor for our design; and copyparty.
They run on 127.0.0.1 with their data in one temporary directory, removed at
the end. Measured, with curl and wrk:

1. download and upload (PUT) of a big random file, median of N rounds; the
   order of the servers rotates every round; each upload's stored bytes are
   verified (sha256); each server's copy is downloaded and verified once,
   then the timed downloads go to /dev/null with status and size checked;
2. 4 KiB GETs per second (wrk -t2 -c16), median of N runs;
3. server memory growth while moving a huge file (upload then download):
   peak RSS (VmHWM) minus RSS before, from /proc/PID/status, fresh process;
4. a 1 MiB Range request at the end of the huge file against one at its
   start: end/start should be about 1.0 (the server seeks, it doesn't read).

The Markdown table is printed and written to bench/results/latest.md.
Needs: curl, wrk, copyparty (pip install copyparty), Linux /proc.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
MiB = 1 << 20
CHUNK = MiB
BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "latest.md"
BASELINE_APP = BENCH / "baseline_app.py"

# copyparty: anonymous read+write on one volume; quiet; plain HTTP only (it
# otherwise sniffs every connection for TLS and creates a certificate, an
# extra we don't have). Its default PUT checksum (sha512) stays on: we hash
# every upload (sha256) too.
COPYPARTY_FLAGS = ["-q", "--http-only", "--no-crt"]
# curl: no "Expect: 100-continue" round trip before uploads, for every server.
CURL = ["curl", "--silent", "--show-error", "--noproxy", "*", "-H", "Expect:"]
CURL_OUT = "%{http_code} %{time_total} %{size_download} %{size_upload}"
START_TIMEOUT = 30
STOP_TIMEOUT = 15


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- files --------------------------------------------------------------------------


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_of(path: Path, start: int = 0, length: int | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = float("inf") if length is None else length
        while left and (chunk := f.read(int(min(CHUNK, left)))):
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_times() -> list[int]:
    """The aggregate CPU line of /proc/stat: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:9]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- servers ------------------------------------------------------------------------


@dataclass
class Server:
    """A running server process and how to address files on it."""

    label: str
    proc: subprocess.Popen
    base: str  # URL that a file name is appended to
    data_dir: Path
    args: list[str]  # as shown in the report
    plain_files: bool  # keeps an upload as data_dir/<name> (else reports its sha256)

    def url(self, name: str) -> str:
        return self.base + name

    def rss(self) -> dict[str, int]:
        """VmRSS and VmHWM of the server process, in bytes."""
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
        return values

    def cpu(self) -> float:
        """The server process's CPU seconds so far (user + system)."""
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k != "FILESERVER_CONFIG" and not k.lower().endswith("_proxy")}
    return {**env, **extra}


def _spawn(cmd: list[str], log_path: Path, ready, **env: str) -> tuple[subprocess.Popen, str]:
    """Start ``cmd`` (output to ``log_path``) and poll until ``ready()`` returns a value.

    Fails, killing the process, if it dies or takes too long to be ready.
    """
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=_clean_env(**env))
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n"
                                   f"{log_path.read_text()[-2000:]}")
            value = ready()
            if value:
                return proc, value
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {START_TIMEOUT} s:\n"
                           f"{log_path.read_text()[-2000:]}")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def _printed_url(log_path: Path):
    """A ``ready()`` for a server that prints "serving URL " once it listens: the URL."""
    def ready():
        match = re.search(r"serving (http://\S+/) ", log_path.read_text(errors="replace"))
        return match and match.group(1)
    return ready


def start_ours(workdir: Path, tag: str) -> Server:
    data = workdir / f"ours-{tag}"
    log_path = workdir / f"ours-{tag}.log"
    args = ["--host", HOST, "--port", "0", "--data-dir", str(data), "--max-upload-size", "0"]
    proc, url = _spawn([sys.executable, "-m", "fileserver", "serve", *args], log_path,
                       _printed_url(log_path))
    shown = ["--host", HOST, "--port", "0", "--data-dir", "DIR", "--max-upload-size", "0"]
    return Server("ours", proc, url + "files/", data, shown, plain_files=False)


def start_baseline(workdir: Path, tag: str) -> Server:
    data = workdir / f"baseline-{tag}"
    log_path = workdir / f"baseline-{tag}.log"
    proc, url = _spawn([sys.executable, str(BASELINE_APP), str(data)], log_path,
                       _printed_url(log_path))
    return Server("baseline", proc, url + "files/", data, ["DIR"], plain_files=True)


def start_copyparty(workdir: Path, tag: str) -> Server:
    data = workdir / f"copyparty-{tag}"
    config = workdir / f"copyparty-{tag}-config"  # its salts etc., instead of ~/.config
    log_path = workdir / f"copyparty-{tag}.log"
    data.mkdir()
    config.mkdir()
    port = free_port()
    base = f"http://{HOST}:{port}/"

    def ready():
        try:
            with urllib.request.urlopen(base, timeout=2):
                return base
        except (urllib.error.URLError, OSError):
            return None

    args = [*COPYPARTY_FLAGS, "-i", HOST, "-p", str(port), "-v", f"{data}::rw"]
    proc, _ = _spawn([sys.executable, "-m", "copyparty", *args], log_path, ready,
                     XDG_CONFIG_HOME=str(config))
    shown = [*COPYPARTY_FLAGS, "-i", HOST, "-p", "PORT", "-v", "DIR::rw"]
    return Server("copyparty", proc, base, data, shown, plain_files=True)


#: The servers compared, in the order of the table's columns, and the column titles.
STARTERS = {"ours": start_ours, "baseline": start_baseline, "copyparty": start_copyparty}
TITLES = {"ours": "ours", "baseline": "baseline (bottle+waitress)", "copyparty": "copyparty"}
#: Speed ratios shown: (a, b) is a's speed / b's speed.
RATIOS = [("ours", "copyparty"), ("baseline", "copyparty"), ("ours", "baseline")]


# -- transfers ----------------------------------------------------------------------


@dataclass
class Transfer:
    status: int
    seconds: float
    downloaded: int
    uploaded: int


def curl(args: list[str], timeout: float) -> Transfer:
    result = subprocess.run([*CURL, "--max-time", str(int(timeout)), "-w", CURL_OUT, *args],
                            capture_output=True, text=True, timeout=timeout + 10)
    if result.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)} failed: {result.stderr.strip()}")
    status, seconds, down, up = result.stdout.split()
    return Transfer(int(status), float(seconds), int(float(down)), int(float(up)))


def upload(server: Server, source: Path, name: str, sha256: str, timeout: float,
           scratch: Path) -> float:
    """PUT ``source`` as ``name``, check what got stored; return curl's seconds."""
    response = scratch / "response"
    t = curl(["-T", str(source), "-o", str(response), server.url(name)], timeout)
    size = source.stat().st_size
    if t.status != 201 or t.uploaded != size:
        raise RuntimeError(f"{server.label}: PUT {name} -> {t.status}, sent {t.uploaded} of {size}")
    if server.plain_files:
        stored = server.data_dir / name
        got = (stored.stat().st_size, sha256_of(stored)) if stored.exists() else None
    else:  # ours reports what it hashed while storing
        info = json.loads(response.read_text())
        got = (info.get("size"), info.get("sha256"))
    if got != (size, sha256):
        raise RuntimeError(f"{server.label}: PUT {name} stored {got}, expected {(size, sha256)}")
    response.unlink(missing_ok=True)  # the baseline answers with an empty body
    return t.seconds


def download(server: Server, name: str, sha256: str | None, size: int, timeout: float,
             scratch: Path, range_: tuple[int, int] | None = None) -> float:
    """GET ``name`` (or an inclusive byte range of it) and check it; return seconds.

    With a ``sha256`` the body goes to a file and its bytes are verified;
    without, it goes to /dev/null (so the client's disk is not timed) and
    only the status and the size are checked.
    """
    out = scratch / "download" if sha256 else Path(os.devnull)
    extra = ["-r", f"{range_[0]}-{range_[1]}"] if range_ else []
    t = curl([*extra, "-o", str(out), server.url(name)], timeout)
    expected_status = 206 if range_ else 200
    ok = t.status == expected_status and t.downloaded == size
    if ok and sha256:
        ok = out.stat().st_size == size and sha256_of(out) == sha256
        out.unlink()
    if not ok:
        raise RuntimeError(f"{server.label}: GET {name} {extra} -> {t.status}, "
                           f"{t.downloaded} bytes; expected {expected_status} with {size} "
                           f"{'verified ' if sha256 else ''}bytes")
    return t.seconds


def wrk(url: str, seconds: int) -> float:
    """Requests per second from wrk; any error or non-2xx answer fails the run."""
    result = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", url],
                            capture_output=True, text=True, timeout=seconds + 60)
    text = result.stdout
    match = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"wrk {url} failed:\n{text}{result.stderr}")
    if "Non-2xx" in text or "Socket errors" in text:
        raise RuntimeError(f"wrk {url} saw errors:\n{text}")
    return float(match.group(1))


# -- the benchmark ------------------------------------------------------------------


def alternating(servers: list[Server], rounds: int):
    """(round, server) pairs; the order rotates each round, so each server goes first in turn."""
    for i in range(rounds):
        k = i % len(servers)
        for server in servers[k:] + servers[:k]:
            yield i, server


def transfer_tests(servers: list[Server], work: Path, opts) -> dict:
    big = work / "big.bin"
    small = work / "small.bin"
    size = opts.big_mib * MiB
    log(f"writing {opts.big_mib} MiB of random bytes")
    big_sha = random_file(big, size)
    small_sha = random_file(small, 4096)
    timeout = max(120, opts.big_mib)  # generous: about 1 MiB/s at worst
    results: dict = {s.label: {"download": [], "upload": [], "wrk": [], "cpu": {}}
                     for s in servers}

    def timed(server: Server, test: str, run):
        """``run()``'s result; the server's CPU seconds during it add up per test."""
        cpu = server.cpu()
        value = run()
        spent = results[server.label]["cpu"]
        spent[test] = spent.get(test, 0.0) + server.cpu() - cpu
        return value

    for server in servers:  # the files to read back, verified (also warms the servers up)
        upload(server, big, "big.bin", big_sha, timeout, work)
        upload(server, small, "small.bin", small_sha, timeout, work)
        download(server, "big.bin", big_sha, size, timeout, work)
        download(server, "small.bin", small_sha, 4096, timeout, work)

    for i, server in alternating(servers, opts.rounds):  # to /dev/null, size checked
        seconds = timed(server, "download",
                        lambda: download(server, "big.bin", None, size, timeout, work))
        log(f"download {i + 1}/{opts.rounds} {server.label}: {seconds:.2f} s")
        results[server.label]["download"].append(seconds)
    for i, server in alternating(servers, opts.rounds):
        seconds = timed(server, "upload",
                        lambda: upload(server, big, f"upload-{i}.bin", big_sha, timeout, work))
        log(f"upload {i + 1}/{opts.rounds} {server.label}: {seconds:.2f} s")
        results[server.label]["upload"].append(seconds)
    for i, server in alternating(servers, opts.rounds):
        rate = timed(server, "wrk", lambda: wrk(server.url("small.bin"), opts.wrk_seconds))
        log(f"wrk {i + 1}/{opts.rounds} {server.label}: {rate:.0f} req/s")
        results[server.label]["wrk"].append(rate)
    return results


def huge_file_tests(start, work: Path, huge: Path, huge_sha: str, opts) -> dict:
    """On a fresh server: RSS while moving the huge file, then Range at end vs start."""
    size = huge.stat().st_size
    timeout = max(300, size // MiB)
    server = start(work, "huge")
    try:
        small = work / "warm.bin"
        small_sha = random_file(small, 4096)
        upload(server, small, "warm.bin", small_sha, 60, work)  # warm up the code paths
        download(server, "warm.bin", small_sha, 4096, 60, work)
        before = server.rss()["VmRSS"]
        up = upload(server, huge, "huge.bin", huge_sha, timeout, work)
        down = download(server, "huge.bin", huge_sha, size, timeout, work)
        after = server.rss()
        log(f"{server.label}: moved {size // MiB} MiB (up {up:.1f} s, down {down:.1f} s); "
            f"RSS {before / MiB:.1f} -> peak {after['VmHWM'] / MiB:.1f} MiB")

        span = MiB
        ranges = {"start": (0, span - 1), "end": (size - span, size - 1)}
        digests = {k: sha256_of(huge, a, span) for k, (a, _) in ranges.items()}
        times: dict[str, list[float]] = {"start": [], "end": []}
        for k in ranges:  # one untimed request each
            download(server, "huge.bin", digests[k], span, 60, work, ranges[k])
        for i in range(opts.range_runs):
            for k in (("start", "end") if i % 2 == 0 else ("end", "start")):
                times[k].append(download(server, "huge.bin", digests[k], span, 60, work, ranges[k]))
        return {"before": before, "peak": after["VmHWM"],
                "range_start": statistics.median(times["start"]),
                "range_end": statistics.median(times["end"])}
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


# -- report -------------------------------------------------------------------------


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def tool_version(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    return " ".join((result.stdout or result.stderr).split()[:2])  # name and version


def steal_percent(before: list[int]) -> float:
    delta = [b - a for a, b in zip(before, cpu_times())]
    return 100 * delta[7] / max(1, sum(delta))


def report(transfers: dict, huge: dict, flags: dict, opts) -> str:
    labels = list(STARTERS)
    med = statistics.median
    mib = opts.big_mib
    down = {k: mib / med(transfers[k]["download"]) for k in labels}  # MiB/s
    up = {k: mib / med(transfers[k]["upload"]) for k in labels}
    gets = {k: med(transfers[k]["wrk"]) for k in labels}  # requests/s

    def row(test: str, cells: dict, speeds: dict | None = None) -> str:
        ratios = [f"{speeds[a] / speeds[b]:.2f}" if speeds else "—" for a, b in RATIOS]
        return "| " + " | ".join([test, *(cells[k] for k in labels), *ratios]) + " |"

    def mib_s(speeds: dict) -> dict:
        return {k: f"{v:.0f} MiB/s ({mib / v:.2f} s)" for k, v in speeds.items()}

    def cpu(test: str, per: float) -> dict:
        """Server CPU seconds of ``test``, per ``per`` units of what it moved."""
        return {k: f"{transfers[k]['cpu'][test] / per:.2f} s" for k in labels}

    gib = mib * opts.rounds / 1024
    thousand_gets = {k: sum(transfers[k]["wrk"]) * opts.wrk_seconds / 1000 for k in labels}
    moved = opts.huge_mib
    mem = {k: f"+{(v['peak'] - v['before']) / MiB:.1f} MiB ({v['before'] / MiB:.1f} → "
              f"{v['peak'] / MiB:.1f})" for k, v in huge.items()}
    rng = {k: f"{v['range_end'] / v['range_start']:.2f} ({v['range_end'] * 1000:.1f} / "
              f"{v['range_start'] * 1000:.1f} ms)" for k, v in huge.items()}
    header = [TITLES[k] for k in labels] + [f"{a}/{b}" for a, b in RATIOS]
    lines = [
        "| Test | " + " | ".join(header) + " |",
        "|---" * (1 + len(header)) + "|",
        row(f"Download {mib} MiB, curl, median of {opts.rounds}", mib_s(down), down),
        row(f"Upload {mib} MiB (PUT), curl, median of {opts.rounds}", mib_s(up), up),
        row(f"4 KiB GET, wrk -t2 -c16 -d{opts.wrk_seconds}s, median of {opts.rounds}",
            {k: f"{v:,.0f} req/s" for k, v in gets.items()}, gets),
        row("Server CPU per GiB downloaded (user + system)", cpu("download", gib)),
        row("Server CPU per GiB uploaded", cpu("upload", gib)),
        row("Server CPU per 1000 4 KiB GETs",
            {k: f"{transfers[k]['cpu']['wrk'] / thousand_gets[k]:.2f} s" for k in labels}),
        row(f"Server RSS growth moving {moved} MiB (up + down): peak − before; lower is better",
            mem),
        row(f"1 MiB Range at end / at start of {moved} MiB file, median of {opts.range_runs}; "
            "≈ 1.0 expected", rng),
        "",
        "Ratios a/b are a's speed / b's speed: ≥ 1.0 means a is at least as fast as b.",
        "",
        f"- ours: `fileserver serve {' '.join(flags['ours'])}` (fileserver "
        f"{version('fileserver')}, waitress {version('waitress')}, bottle {version('bottle')})",
        f"- baseline: `python bench/baseline_app.py {' '.join(flags['baseline'])}` (bottle "
        f"`static_file` and a streaming PUT; the same waitress settings as ours)",
        f"- copyparty {version('copyparty')}: `python -m copyparty {' '.join(flags['copyparty'])}`",
        f"- {tool_version(['curl', '--version'])}; {tool_version(['wrk', '-v'])}",
        f"- Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; loopback {HOST}; {time.strftime('%Y-%m-%d %H:%M')}",
        f"- machine noise: load average {opts.load:.2f} at the start, {os.getloadavg()[0]:.2f} at "
        f"the end (this run adds its own); CPU time stolen by the hypervisor during the run: "
        f"{steal_percent(opts.cpu):.0f}%",
    ]
    return "\n".join(lines) + "\n"


def publish(table: str, path: Path) -> None:
    """Print the table and keep it in ``path`` (bench/results/, git-ignored)."""
    print(table, end="")
    path.parent.mkdir(exist_ok=True)
    path.write_text(table)
    log(f"table written to {path}")


def _exit_cleanly(signum, frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second signal must not cut the cleanup short
    sys.exit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=200, help="download/upload file (200)")
    parser.add_argument("--huge-mib", type=int, default=1024, help="memory/range file (1024)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per comparison (3)")
    parser.add_argument("--wrk-seconds", type=int, default=10, help="duration of a wrk run (10)")
    parser.add_argument("--range-runs", type=int, default=15, help="timed Range requests (15)")
    opts = parser.parse_args()
    for tool in ("curl", "wrk"):
        if not shutil.which(tool):
            parser.error(f"{tool} is not installed")
    if importlib.util.find_spec("copyparty") is None:
        parser.error("copyparty is not installed (pip install copyparty)")

    opts.load, opts.cpu = os.getloadavg()[0], cpu_times()  # other work skews every number
    signal.signal(signal.SIGTERM, _exit_cleanly)
    work = Path(tempfile.mkdtemp(prefix="fileserver-bench-"))
    servers: list[Server] = []
    try:
        for start in STARTERS.values():  # one by one: a failed start stops those before it
            servers.append(start(work, "main"))
        flags = {s.label: s.args for s in servers}
        transfers = transfer_tests(servers, work, opts)
        for server in servers:
            server.stop()
            shutil.rmtree(server.data_dir, ignore_errors=True)
        for name in ("big.bin", "small.bin"):
            (work / name).unlink()

        log(f"writing {opts.huge_mib} MiB of random bytes")
        huge = work / "huge.bin"
        huge_sha = random_file(huge, opts.huge_mib * MiB)
        huge_results = {label: huge_file_tests(start, work, huge, huge_sha, opts)
                        for label, start in STARTERS.items()}
        table = report(transfers, huge_results, flags, opts)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    publish(table, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
