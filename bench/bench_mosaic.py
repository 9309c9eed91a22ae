#!/usr/bin/env python3
"""Mosaic benchmark: our server's photomosaics next to metapixel's, on one tile library.

Run by hand (it is not a test):  .venv/bin/python bench/bench_mosaic.py  [--help]

A library of distinct tiles is cut (seeded) from photographs that ship in
packages (bench/mosaic_data.py): JPEG files in a directory for
metapixel-prepare, the same files in a ZIP for our server. Source photos,
never in the library, are scaled to exactly cols*T x rows*T px (PNG), so both
tools cut the same grid of T px cells. With no repeat limit on either side
(metapixel --distance=0, ours max_repeats=0), no blending, PNG output:

1. library ingest: `metapixel-prepare DIR LIB` against one streamed
   `POST /mosaic/tiles` (multipart "zip") to a fresh store; tiles per second;
2. generation: `metapixel --metapixel SRC OUT` against `POST /mosaic`
   (multipart "image" + tile, cols, max_repeats=0, blend=0, format=png),
   wall time of the process / of the whole request on the client, median of
   N rounds per source, the two alternating (who goes first swaps per round);
3. quality of each mosaic against its source, both reduced to 2 x 2 samples
   per cell: mean CIE76 ΔE*ab and SSIM of L* (bench/mosaic_quality.py).

Ours runs on the embedded store, and with --backends also on CouchDB and
GridFS (started as bench/bench_backends.py does); metapixel runs once, next
to the embedded store. The Markdown tables are printed and written to
bench/results/mosaic.md. Needs metapixel and the photo packages (it says
what to install when one is missing); Linux /proc.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

import bench_backends as backends  # the database servers' setups, as bench_backends uses them
import mosaic_data as data
import mosaic_quality as quality
from bench_http import HOST, Server, _exit_cleanly, cpu_times, log, publish, steal_percent, version

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "mosaic.md"
BACKENDS = ("embedded", "couchdb", "gridfs")
INGEST_GOAL = 3.0  # ours tiles/s over metapixel-prepare's, embedded
CLK_TCK = os.sysconf("SC_CLK_TCK")
INGEST_TIMEOUT = 3600
GENERATE_TIMEOUT = 900
CHUNK = 1 << 20


class Unsupported(Exception):
    """The server has no mosaic support on this backend (501)."""


# -- our server over HTTP ----------------------------------------------------------------


def _request(root: str, method: str, path: str, timeout: float, body_parts=(),
             headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
    """One request, the body streamed from ``body_parts`` (bytes or Paths, sent
    in 1 MiB pieces); (status, response body, seconds from connect to the last
    byte of the response)."""
    url = urllib.parse.urlsplit(root)
    length = sum(len(p) if isinstance(p, bytes) else p.stat().st_size for p in body_parts)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.putrequest(method, path)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body_parts or method in ("POST", "PUT"):
            conn.putheader("Content-Length", str(length))
        conn.endheaders()
        for part in body_parts:
            if isinstance(part, bytes):
                conn.send(part)
            else:
                with open(part, "rb") as f:
                    while chunk := f.read(CHUNK):
                        conn.send(chunk)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - started
    finally:
        conn.close()


def post_form(root: str, path: str, fields: dict[str, str], files: list[tuple[str, Path, str]],
              timeout: float) -> tuple[int, bytes, float]:
    """multipart/form-data: text ``fields`` then ``files`` as (field, path, content type)."""
    boundary = "bench-" + uuid.uuid4().hex
    parts: list = []
    for key, value in fields.items():
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                     f"{value}\r\n".encode())
    for key, path_, ctype in files:
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"; "
                     f"filename=\"{path_.name}\"\r\nContent-Type: {ctype}\r\n\r\n".encode())
        parts.append(path_)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return _request(root, "POST", path, timeout, parts,
                    {"Content-Type": f"multipart/form-data; boundary={boundary}",
                     "Accept": "application/json"})


def _answer(status: int, body: bytes, what: str, expect: tuple[int, ...]) -> dict:
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {"error": body[:300].decode(errors="replace")}
    if status == 501:
        raise Unsupported(f"{what}: 501 {payload.get('error', '')}".strip())
    if status not in expect:
        raise RuntimeError(f"{what}: HTTP {status}: {str(payload.get('error', payload))[:300]}")
    return payload


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def root_of(server: Server) -> str:
    return server.base[:-len("files/")]


def ingest_ours(server: Server, library: data.Library) -> dict:
    cpu = cpu_seconds(server.proc.pid)
    status, body, seconds = post_form(root_of(server), "/mosaic/tiles", {},
                                      [("zip", library.zip_path, "application/zip")],
                                      INGEST_TIMEOUT)
    cpu = cpu_seconds(server.proc.pid) - cpu
    report = _answer(status, body, "POST /mosaic/tiles", (200, 201))
    skipped = report.get("skipped", [])
    if report.get("added") != library.count:
        reasons = "; ".join(f"{s.get('entry')}: {s.get('reason')}" for s in skipped[:3])
        raise RuntimeError(f"ingest added {report.get('added')} of {library.count} tiles "
                           f"({len(skipped)} skipped: {reasons})")
    return {"seconds": seconds, "tiles": report["added"], "cpu": cpu}


def generate_ours(server: Server, source: data.Source, tile: int, out: Path) -> dict:
    fields = {"tile": str(tile), "cols": str(source.cols), "max_repeats": "0", "blend": "0",
              "format": "png"}
    root = root_of(server)
    cpu = cpu_seconds(server.proc.pid)
    status, body, seconds = post_form(root, "/mosaic", fields,
                                      [("image", source.path, "image/png")], GENERATE_TIMEOUT)
    cpu = cpu_seconds(server.proc.pid) - cpu
    result = _answer(status, body, "POST /mosaic", (201,))
    if (result.get("cols"), result.get("rows")) != (source.cols, source.rows):
        raise RuntimeError(f"asked for {source.cols}x{source.rows} cells, got "
                           f"{result.get('cols')}x{result.get('rows')}")
    path = urllib.parse.urlsplit(urllib.parse.urljoin(root, result["url"]))
    status, image, fetch = _request(root, "GET", path.path + (f"?{path.query}" if path.query
                                                               else ""), GENERATE_TIMEOUT)
    if status != 200:
        raise RuntimeError(f"GET {result['url']}: HTTP {status}")
    out.write_bytes(image)
    _check_size(out, source, tile, "ours")
    return {"seconds": seconds, "cpu": cpu, "fetch": fetch, "tiles_used": result.get("tiles_used"),
            "server_seconds": result.get("seconds")}


def _check_size(path: Path, source: data.Source, tile: int, who: str) -> None:
    with Image.open(path) as image:
        want = (source.cols * tile, source.rows * tile)
        if image.size != want or image.format != "PNG":
            raise RuntimeError(f"{who}: mosaic of {source.name} is a {image.format} of "
                               f"{image.size}, expected a PNG of {want}")


# -- metapixel ---------------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_timed(cmd: list[str], home: Path, log_path: Path, timeout: float) -> tuple[float, float]:
    """(wall seconds, CPU seconds of it and its children) of a command run to its end."""
    env = {**{k: v for k, v in os.environ.items() if k != "HOME"}, "HOME": str(home)}
    cpu = _children_cpu()
    started = time.perf_counter()
    with open(log_path, "wb") as out:
        result = subprocess.run(cmd, check=False, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, timeout=timeout)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])}... exited with {result.returncode}: "
                           f"{log_path.read_text(errors='replace')[-500:]}")
    return seconds, _children_cpu() - cpu


@dataclass
class Metapixel:
    """metapixel with its own HOME (no ~/.metapixelrc of the user's applies)."""

    home: Path
    library: Path | None = None
    prepare_px: int = data.TILE_PX

    def prepare_cmd(self, tiles: Path, dest: Path) -> list[str]:
        return ["metapixel-prepare", f"--width={self.prepare_px}", f"--height={self.prepare_px}",
                str(tiles), str(dest)]

    def generate_cmd(self, tile: int, source: Path, out: Path, protocol: Path,
                     library: Path | None = None) -> list[str]:
        # The defaults spelt out (--search=local --metric=subpixel --scale=1) and
        # --distance=0: the same tile may sit anywhere, next to itself too.
        return ["metapixel", f"--library={library or self.library}", f"--width={tile}", f"--height={tile}",
                "--search=local", "--metric=subpixel", "--distance=0", "--scale=1",
                f"--out={protocol}", "--metapixel", str(source), str(out)]

    def prepare(self, library: data.Library, dest: Path) -> dict:
        dest.mkdir(parents=True)
        log_path = dest.parent / f"{dest.name}.log"
        seconds, cpu = _run_timed(self.prepare_cmd(library.directory, dest), self.home, log_path,
                                  INGEST_TIMEOUT)
        tables = dest / "tables.mxt"
        tiles = tables.read_text(errors="replace").count("(small-image ") if tables.exists() else 0
        if tiles != library.count:
            errors = log_path.read_text(errors="replace").count("Error running metapixel")
            raise RuntimeError(f"metapixel-prepare prepared {tiles} of {library.count} tiles "
                               f"({errors} errors)")
        self.library = dest
        return {"seconds": seconds, "tiles": tiles, "cpu": cpu}

    def generate(self, source: data.Source, tile: int, out: Path) -> dict:
        protocol = out.with_suffix(".protocol")
        seconds, cpu = _run_timed(self.generate_cmd(tile, source.path, out, protocol), self.home,
                                  out.with_suffix(".log"), GENERATE_TIMEOUT)
        _check_size(out, source, tile, "metapixel")
        text = protocol.read_text(errors="replace")
        if f"(size {source.cols} {source.rows})" not in text:
            raise RuntimeError(f"metapixel's protocol for {source.name} has another grid: "
                               f"{text[:80]!r}")
        used = {line.split('"')[1] for line in text.splitlines() if line.count('"') >= 2}
        return {"seconds": seconds, "cpu": cpu, "tiles_used": len(used)}


# -- one backend ---------------------------------------------------------------------------


@dataclass
class Run:
    """What was measured for one tool (metapixel, or ours on one backend)."""

    label: str
    ingest: list[dict] = field(default_factory=list)
    generate: dict[str, list[dict]] = field(default_factory=dict)  # source -> rounds
    quality: dict[str, dict[str, float]] = field(default_factory=dict)  # source -> metrics
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _measure_quality(run: Run, source: data.Source, out: Path, cross_check: list[int]) -> None:
    with Image.open(source.path) as src, Image.open(out) as mosaic:
        scores = quality.compare(src, mosaic, source.cols, source.rows)
        for samples in cross_check:
            extra = quality.compare(src, mosaic, source.cols, source.rows, samples)
            scores.update({f"{key}@{samples}": value for key, value in extra.items()})
        run.quality[source.name] = scores


def start_backend(name: str, work: Path) -> tuple[backends.Setup, Server]:
    setup = backends.SETUPS[name](work)
    try:
        backends.init_store(setup)
        return setup, backends.start_ours(setup, "mosaic")
    except BaseException:
        setup.close()
        raise


def run_embedded(library: data.Library, sources: list[data.Source], mp: Metapixel, ours: Run,
                 theirs: Run, work: Path, opts) -> None:
    """Ingest (fresh store and fresh metapixel library each round, alternating),
    then generation, ours and metapixel alternating."""
    setup = server = None
    try:
        for i in range(opts.ingest_rounds):
            if server is not None:  # a fresh store for each round
                server.stop()
                setup.close()
                shutil.rmtree(setup.work, ignore_errors=True)
                setup = server = None
            order = ["ours", "metapixel"] if i % 2 == 0 else ["metapixel", "ours"]
            for who in order:
                if who == "ours":
                    setup, server = start_backend("embedded", work / f"ingest-{i}")
                    result = ingest_ours(server, library)
                    ours.ingest.append(result)
                else:
                    previous = mp.library
                    result = mp.prepare(library, work / f"metapixel-lib-{i}")
                    theirs.ingest.append(result)
                    if previous is not None:
                        shutil.rmtree(previous, ignore_errors=True)
                log(f"ingest {i + 1}/{opts.ingest_rounds} {who}: {result['tiles']} tiles in "
                    f"{result['seconds']:.1f} s ({result['tiles'] / result['seconds']:.0f} tiles/s)")
        generate_rounds(server, sources, ours, opts, work, mp=mp, theirs=theirs)
    except Exception as exc:
        if setup is None:
            raise
        raise RuntimeError(f"{exc}\n--- our server's log ---\n"
                           f"{backends._tail(setup.work / 'ours-mosaic.log')}") from exc
    finally:
        if server is not None:
            server.stop()
        if setup is not None:
            setup.close()


def run_other(name: str, library: data.Library, sources: list[data.Source], ours: Run,
              work: Path, opts) -> None:
    setup, server = start_backend(name, work / name)
    try:
        result = ingest_ours(server, library)
        ours.ingest.append(result)
        log(f"{name}: ingest: {result['tiles']} tiles in {result['seconds']:.1f} s "
            f"({result['tiles'] / result['seconds']:.0f} tiles/s)")
        generate_rounds(server, sources, ours, opts, work)
    except Exception as exc:
        raise RuntimeError(f"{exc}\n--- our server's log ---\n"
                           f"{backends._tail(setup.work / 'ours-mosaic.log')}") from exc
    finally:
        server.stop()
        setup.close()


def generate_rounds(server: Server, sources: list[data.Source], ours: Run, opts, work: Path,
                    mp: Metapixel | None = None, theirs: Run | None = None) -> None:
    outputs = work / "outputs"
    outputs.mkdir(exist_ok=True)
    tag = ours.label.split()[-1].strip("()")
    for source in sources:
        for i in range(opts.rounds):
            order = [("ours", ours)] + ([("metapixel", theirs)] if mp else [])
            for who, run in (order if i % 2 == 0 else order[::-1]):
                stem = f"{source.name}-{'metapixel' if who == 'metapixel' else 'ours-' + tag}"
                out = outputs / f"{stem}-{i}.png"
                if who == "ours":
                    result = generate_ours(server, source, opts.tile, out)
                else:
                    result = mp.generate(source, opts.tile, out)
                run.generate.setdefault(source.name, []).append(result)
                log(f"{source.name} ({source.cols}x{source.rows}) {i + 1}/{opts.rounds} "
                    f"{run.label}: {result['seconds']:.2f} s, {result['tiles_used']} tiles used")
                if i == 0:
                    _measure_quality(run, source, out, opts.cross_check)
                    q = run.quality[source.name]
                    log(f"  ΔE {q['delta_e']:.2f}, SSIM(L*) {q['ssim_l']:.3f}")
                    if opts.save_images:
                        opts.save_images.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(out, opts.save_images / f"{stem}.png")
                out.unlink()


# -- report ----------------------------------------------------------------------------------


def _median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def report(theirs: Run, ours: list[Run], library: data.Library, sources: list[data.Source],
           mp: Metapixel, opts) -> str:
    med, mean = statistics.median, statistics.mean
    names = [s.name for s in sources]
    embedded = ours[0]

    def ingest_speed(run: Run) -> float | None:
        if not run.ingest:
            return None
        return med(r["tiles"] / r["seconds"] for r in run.ingest)

    def total_time(run: Run, key: str = "seconds") -> float | None:
        if any(n not in run.generate for n in names):
            return None
        return sum(_median(run.generate[n], key) for n in names)

    def agg(run: Run, key: str, how=mean) -> float | None:
        if any(n not in run.quality for n in names):
            return None
        return how(run.quality[n][key] for n in names)

    def failed(run: Run) -> str:
        return "not supported (501)" if run.error and run.error.startswith("501") else "failed"

    def tick(ok: bool) -> str:
        return "✓" if ok else "✗"

    rounds_ingest = (f"median of {opts.ingest_rounds}" if opts.ingest_rounds > 1 else "one run")
    mib = library.bytes / (1 << 20)
    rows: list[tuple[str, str, list[tuple[str, str]]]] = []

    # ingest
    mine = ingest_speed(theirs)
    cells = []
    for run in ours:
        speed = ingest_speed(run)
        if speed is None or mine is None:
            cells.append((failed(run), "—"))
            continue
        seconds = med(r["seconds"] for r in run.ingest)
        ratio = speed / mine
        mark = f" {tick(ratio >= INGEST_GOAL)}" if run is embedded else ""
        cells.append((f"{speed:.0f} tiles/s ({seconds:.1f} s)", f"**{ratio:.2f}**{mark}"))
    rows.append((f"Library ingest, {library.count:,} tiles: metapixel-prepare on the directory / "
                 f"ours `POST /mosaic/tiles` of the {mib:.0f} MiB ZIP; {rounds_ingest} "
                 f"(goal embedded ≥ {INGEST_GOAL:.0f}×)",
                 f"{mine:.0f} tiles/s ({med(r['seconds'] for r in theirs.ingest):.1f} s)"
                 if mine else "failed", cells))

    # generation time
    mine = total_time(theirs)
    cells = []
    for run in ours:
        t = total_time(run)
        if t is None or mine is None:
            cells.append((failed(run), "—"))
            continue
        ratio = mine / t
        note = f" {tick(ratio >= 1.0)}" if run is embedded else (
            f" ({1 / ratio:.1f}× metapixel's time)" if ratio < 1 else "")
        cells.append((f"{t:.2f} s", f"**{ratio:.2f}**{note}"))
    rows.append((f"Generation time, sum over {len(names)} sources of the median of {opts.rounds} "
                 f"(speed ours/metapixel; goal embedded ≥ 1.0)",
                 f"{mine:.2f} s" if mine else "failed", cells))

    # quality
    for key, title, lower in (("delta_e", "Mean ΔE*ab (CIE76) at 4 samples/cell, mean over "
                                          "sources; lower is better (ratio ours/metapixel; goal < 1)",
                               True),
                              ("ssim_l", "SSIM of L* at 4 samples/cell, mean over sources; higher "
                                         "is better (ratio ours/metapixel; goal > 1)", False)):
        mine = agg(theirs, key)
        cells = []
        for run in ours:
            value = agg(run, key)
            if value is None or mine is None:
                cells.append((failed(run), "—"))
                continue
            ratio = value / mine
            ok = ratio < 1 if lower else ratio > 1
            cells.append((f"{value:.3f}" if key == "ssim_l" else f"{value:.2f}",
                          f"**{ratio:.3f}** {tick(ok)}"))
        rows.append((title, (f"{mine:.3f}" if key == "ssim_l" else f"{mine:.2f}") if mine else
                     "failed", cells))

    # the same at other scales: no goal, a guard against tuning to one scale
    for samples in opts.cross_check:
        for key, what in (("delta_e", "mean ΔE*ab"), ("ssim_l", "SSIM of L*")):
            mine = agg(theirs, f"{key}@{samples}")
            cells = []
            for run in ours:
                value = agg(run, f"{key}@{samples}")
                digits = 3 if key == "ssim_l" else 2
                cells.append((failed(run), "—") if value is None or mine is None else
                             (f"{value:.{digits}f}", f"{value / mine:.3f}"))
            rows.append((f"Cross-check, no goal: {what} at {samples}×{samples} samples/cell "
                         f"({samples * samples} per cell), mean over sources",
                         "failed" if mine is None else
                         f"{mine:.{3 if key == 'ssim_l' else 2}f}", cells))

    # CPU: what the numbers above cost, less sensitive to other load on the machine
    for title, get in (
            (f"CPU seconds of the ingest ({rounds_ingest}): metapixel-prepare and its metapixel "
             f"processes / our server process, not the database server's (ratio "
             f"metapixel/ours: ≥ 1 means ours uses less)",
             lambda run: med(r["cpu"] for r in run.ingest) if run.ingest else None),
            (f"CPU seconds of generation, sum over sources of the median of {opts.rounds}: "
             f"metapixel / our server process (ratio metapixel/ours)",
             lambda run: total_time(run, "cpu"))):
        mine = get(theirs)
        cells = []
        for run in ours:
            value = get(run)
            cells.append((failed(run), "—") if value is None or mine is None else
                         (f"{value:.1f} s", f"{mine / value:.2f}"))
        rows.append((title, f"{mine:.1f} s" if mine else "failed", cells))

    header = ["Test", f"metapixel {metapixel_version()}"]
    for run in ours:
        header += [run.label, f"{run.label.split()[-1].strip('()')}/metapixel"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for title, first, cells in rows:
        lines.append("| " + " | ".join([title, first, *(c for pair in cells for c in pair)]) + " |")

    # per source
    lines += ["", f"Per source (T = {opts.tile} px; times: median of {opts.rounds}, wall / CPU):",
              ""]
    head = ["Source (cells)", "metapixel time", "ours embedded time", "speed ours/metapixel",
            "ΔE metapixel", "ΔE ours", "SSIM L* metapixel", "SSIM L* ours",
            "tiles used metapixel / ours"]
    others = [run for run in ours[1:]]
    head += [f"{run.label} time" for run in others]
    lines += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]

    def timing(run: Run, name: str) -> str:
        if name not in run.generate:
            return failed(run)
        return (f"{_median(run.generate[name], 'seconds'):.2f} s / "
                f"{_median(run.generate[name], 'cpu'):.2f} s")

    def metric(run: Run, name: str, key: str) -> str:
        if name not in run.quality:
            return "—"
        return f"{run.quality[name][key]:.{3 if key == 'ssim_l' else 2}f}"

    for source in sources:
        n = source.name
        speed = "—"
        if n in theirs.generate and n in embedded.generate:
            ratio = _median(theirs.generate[n], "seconds") / _median(embedded.generate[n], "seconds")
            speed = f"{ratio:.2f} {tick(ratio >= 1)}"
        de = ""
        if n in theirs.quality and n in embedded.quality:
            de = f" {tick(embedded.quality[n]['delta_e'] < theirs.quality[n]['delta_e'])}"
            ss = f" {tick(embedded.quality[n]['ssim_l'] > theirs.quality[n]['ssim_l'])}"
        else:
            ss = ""
        used = (f"{theirs.generate[n][0]['tiles_used'] if n in theirs.generate else '—'} / "
                f"{embedded.generate[n][0]['tiles_used'] if n in embedded.generate else '—'}")
        cells = [f"{n} ({source.cols}×{source.rows})", timing(theirs, n), timing(embedded, n),
                 speed, metric(theirs, n, "delta_e"), metric(embedded, n, "delta_e") + de,
                 metric(theirs, n, "ssim_l"), metric(embedded, n, "ssim_l") + ss, used]
        cells += [timing(run, n) for run in others]
        lines.append("| " + " | ".join(cells) + " |")
    for how_name, how in (("median", med), ("mean", mean)):
        cells = [f"**{how_name}**", "", "", ""]
        for run, key in ((theirs, "delta_e"), (embedded, "delta_e"), (theirs, "ssim_l"),
                         (embedded, "ssim_l")):
            value = agg(run, key, how)
            cells.append("—" if value is None else f"{value:.{3 if key == 'ssim_l' else 2}f}")
        cells += [""] * (1 + len(others))
        lines.append("| " + " | ".join(cells) + " |")

    # notes
    lines += ["", "Ratios are ours/metapixel: for ingest and generation, speeds (≥ 1.0: ours is "
              "at least as fast); for ΔE and SSIM, the values themselves.", ""]
    sample = sources[0]
    lines += [
        f"- library: {library.count:,} distinct {data.TILE_PX}×{data.TILE_PX} JPEG tiles "
        f"(quality {data.JPEG_QUALITY}) cut with seed {opts.seed} from {library.photos} packaged "
        f"photos ({data.versions()}); see bench/mosaic_data.py",
        "- sources, not in the library: " + ", ".join(
            f"{s.name} ({s.original.name}, {s.cols * opts.tile}×{s.rows * opts.tile} px PNG)"
            for s in sources),
        f"- metapixel: `HOME=EMPTY {' '.join(mp.prepare_cmd(Path('DIR'), Path('LIB')))}`; "
        f"`{' '.join(mp.generate_cmd(opts.tile, Path('SRC.png'), Path('OUT.png'), Path('P'), Path('LIB')))}` "
        f"(`--out` writes its protocol: the grid and tiles used are read from it)",
        f"- ours: `POST /mosaic` multipart image=@SRC.png, tile={opts.tile}, "
        f"cols={sample.cols}, max_repeats=0, blend=0, format=png; time = the whole request on "
        f"the client (upload, generation, storing the PNG, the JSON answer); CPU = our server "
        f"process's utime + stime over the request; the mosaic is then fetched by GET (not "
        f"timed in)",
        "- quality: source and mosaic reduced with Pillow `Image.reduce` (box average of sRGB "
        "values) to 2×2 samples per cell, sRGB→CIELAB D65; ΔE is CIE76; SSIM as scikit-image's "
        "defaults (7×7 uniform window, data range 100); see bench/mosaic_quality.py",
    ]
    for run in [theirs, *ours]:
        fetch = [r["fetch"] for rounds in run.generate.values() for r in rounds if "fetch" in r]
        server = [r["server_seconds"] for rounds in run.generate.values() for r in rounds
                  if r.get("server_seconds") is not None]
        if fetch:
            lines.append(f"- {run.label}: median GET of a finished mosaic {med(fetch):.2f} s"
                         + (f"; median time the server reports for its work (`seconds`) "
                            f"{med(server):.2f} s" if server else ""))
        for name, rounds in run.generate.items():
            times = [r["seconds"] for r in rounds]
            if len(times) > 1 and max(times) > 2 * med(times):
                lines.append(f"- {run.label}: {name} took " + ", ".join(f"{t:.2f}" for t in times)
                             + " s in its rounds, in this order (the median is in the tables)")
        if run.error:
            lines.append(f"- {run.label}: {run.error}")
        lines += [f"- {run.label}: {note}" for note in run.notes]
    if len(ours) > 1:
        lines.append("- couchdb / gridfs: one ingest each, into a fresh database on the test "
                     "servers bench_backends.py starts (express-pouchdb, SecantusDB), or "
                     "COUCHDB_URL / MONGODB_URI; metapixel's numbers are the ones measured next "
                     "to embedded")
    lines += [
        f"- fileserver {version('fileserver')} ({code_state(opts.git)}), Pillow {version('pillow')}, numpy "
        f"{version('numpy')}; Python {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs; loopback {HOST}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}",
        f"- machine noise: load average {opts.load:.2f} at the start, {os.getloadavg()[0]:.2f} at "
        f"the end (this run adds its own); CPU time stolen by the hypervisor during the run: "
        f"{steal_percent(opts.cpu):.0f}%",
    ]
    return "\n".join(lines) + "\n"


def git_state() -> str:
    """The commit measured, and whether the work tree differed from it."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(BENCH.parent), *args], check=False,
                              capture_output=True, text=True, timeout=10)

    try:
        head = git("describe", "--always")
        if head.returncode != 0:
            return "not a git checkout"
        changed = git("status", "--porcelain", "--", "fileserver", "plugins", "views").stdout
        return f"git {head.stdout.strip()}" + (" + uncommitted changes to the server's code"
                                               if changed.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "git ?"


def code_state(at_start: str) -> str:
    now = git_state()
    if now == at_start:
        return now
    return f"CHANGED DURING THE RUN: {at_start} at the start, {now} at the end"


def metapixel_version() -> str:
    try:
        out = subprocess.run(["metapixel", "--version"], check=False, capture_output=True, text=True,
                             timeout=10)
        return (out.stdout or out.stderr).split()[1]  # "metapixel 1.0.2"
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="embedded",
                        help=f"ours on these, comma-separated ({','.join(BACKENDS)}); "
                             "embedded always runs first (embedded)")
    parser.add_argument("--tiles", type=int, default=4800, help="tiles in the library (4800)")
    parser.add_argument("--seed", type=int, default=1, help="seed for cutting tiles (1)")
    parser.add_argument("--tile", type=int, default=32, help="output tile edge, px (32)")
    parser.add_argument("--cols", type=int, default=48, help="cells across (48)")
    parser.add_argument("--sources", default=",".join(data.SOURCES),
                        help=f"source photos ({','.join(data.SOURCES)})")
    parser.add_argument("--rounds", type=int, default=3, help="generation runs per source (3)")
    parser.add_argument("--ingest-rounds", type=int, default=3,
                        help="library ingests, embedded and metapixel, each into a fresh store; "
                             "couchdb and gridfs: one (3)")
    parser.add_argument("--cross-check", default="1,3",
                        help="also score at these samples per cell side, no goal (1,3)")
    parser.add_argument("--library-dir", type=Path,
                        help="keep the cut tiles here and reuse them when made with the same "
                             "settings (default: a temporary directory)")
    parser.add_argument("--save-images", type=Path, help="copy the sources and mosaics here")
    parser.add_argument("--max-minutes", type=float, default=90,
                        help="stop everything after this long (90)")
    opts = parser.parse_args()
    wanted = [b.strip() for b in opts.backends.split(",") if b.strip()]
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")
    opts.backends = ["embedded"] + [b for b in BACKENDS[1:] if b in wanted]
    try:
        opts.cross_check = [int(v) for v in opts.cross_check.split(",") if v.strip()]
    except ValueError:
        parser.error("--cross-check: whole numbers, comma-separated")
    opts.cross_check = [v for v in opts.cross_check if v != quality.SAMPLES_PER_CELL and v > 0]
    names = [s.strip() for s in opts.sources.split(",") if s.strip()]
    if any(n not in data.SOURCES for n in names) or not names:
        parser.error(f"--sources: choose from {', '.join(data.SOURCES)}")
    hints = data.missing()
    if hints:
        parser.error("missing what this benchmark needs; install it with:\n  "
                     + "\n  ".join(hints))
    for key in [k for k in os.environ if k.startswith("FILESERVER_")]:
        del os.environ[key]  # they would override the INI files we write

    opts.load, opts.cpu, opts.git = os.getloadavg()[0], cpu_times(), git_state()
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGALRM, backends._too_long)
    signal.setitimer(signal.ITIMER_REAL, opts.max_minutes * 60)
    work = Path(tempfile.mkdtemp(prefix="fileserver-bench-mosaic-"))
    theirs = Run("metapixel")
    ours = [Run(f"ours ({b})") for b in opts.backends]
    try:
        library = data.build_library(opts.library_dir or work / "library", opts.tiles, opts.seed,
                                     log=log)
        log(f"library: {library.count} tiles from {library.photos} photos, ZIP "
            f"{library.bytes / (1 << 20):.1f} MiB")
        sources = [data.prepare_source(n, p, work / "sources", opts.cols, opts.tile)
                   for n, p in data.source_photos(names).items()]
        if opts.save_images:
            opts.save_images.mkdir(parents=True, exist_ok=True)
            for s in sources:
                shutil.copyfile(s.path, opts.save_images / f"{s.name}-source.png")
        home = work / "home"
        home.mkdir()
        mp = Metapixel(home)
        for run, name in zip(ours, opts.backends):
            log(f"== {name}")
            try:
                if name == "embedded":
                    run_embedded(library, sources, mp, run, theirs, work / "embedded", opts)
                else:
                    run_other(name, library, sources, run, work, opts)
            except backends.TooLong as exc:
                log(str(exc))
                run.error = str(exc)
                break
            except Unsupported as exc:
                log(f"{name}: {exc}")
                run.error = str(exc).split(": ", 1)[-1]
            except Exception as exc:  # noqa: BLE001 -- one backend's failure keeps the others
                log(f"{name} failed: {type(exc).__name__}: {exc}")
                run.error = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        table = report(theirs, ours, library, sources, mp, opts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        shutil.rmtree(work, ignore_errors=True)
    publish(table, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
