"""Turning uploaded ZIPs and images into tiles, safely.

Hostile input is expected. The archive is spooled to a temporary file in
chunks (never held in memory) up to ``max_archive``; entries are read from
the ``zipfile`` object, so entry names are only labels, never paths on disk
(``../evil.jpg`` cannot escape anything). Zip bombs are bounded by the entry
count, the per-entry and total uncompressed sizes (counted while reading, not
trusted from the headers) and the compression ratio; decompression-bomb
images by their pixel count, checked from the header before decoding.
Anything unusable in an archive is skipped with a reason, not fatal; the
report groups skipped entries by reason, so a thousand duplicates are one line.
"""

from __future__ import annotations

import hashlib
import io
import stat
import tempfile
import time
import warnings
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

from PIL import Image, UnidentifiedImageError

from fileserver.errors import BadRequest, TooLarge
from fileserver.store import Store, format_size

from .features import TILE_SIZE, features, normalise, square
from .index import Features, TileIndex, tile_path

CHUNK = 1 << 20
#: Threads decoding tiles (CPU: about one per core) and storing them
#: (mostly waiting on fsync or the database, so more of them overlap better).
DECODERS, WRITERS = 3, 3
#: Uncompressed entry bytes waiting for a decoder, at most.
IN_FLIGHT = 64 << 20
#: Decoders we trust with hostile bytes (no EPS: Pillow would run Ghostscript).
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


@dataclass(frozen=True)
class Limits:
    """Bounds on one upload; ``[plugin.mosaic]`` options of the same names set them."""

    max_archive: int = 2 << 30        # bytes of ZIP (or image) uploaded
    max_entries: int = 20_000         # entries in one ZIP
    max_entry: int = 100 << 20        # uncompressed bytes of one entry
    max_total: int = 4 << 30          # uncompressed bytes of all entries
    max_ratio: int = 100              # uncompressed / compressed, for entries > 1 MiB
    max_pixels: int = 50_000_000      # width * height of one image (tile or source)
    max_tile: int = TILE_SIZE         # mosaic tile edge in px (tiles are stored this big)
    max_cols: int = 400               # mosaic cells across
    max_output_pixels: int = 40_000_000  # width * height of one mosaic


class Skip(Exception):
    """This entry is skipped. ``reason``: a short fixed phrase, the same for all
    entries skipped alike (the report groups by it, so it is a key of the job
    documents: no '.' or '$', which MongoDB refuses there); ``detail``: about
    this entry. ``too_large``: it was refused for its size (a source image so
    refused is a 413, not a 400)."""

    def __init__(self, reason: str, detail: str = "", *, too_large: bool = False):
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason, self.detail, self.too_large = reason, detail, too_large


def duplicate(tile_id: str, earlier: str | None = None) -> Skip:
    if earlier is None:
        return Skip("duplicate", f"already in the library as tile {tile_id}")
    return Skip("duplicate", f"the same picture as {earlier!r} (tile {tile_id})")


@dataclass
class Report:
    added: list[str] = field(default_factory=list)
    #: tiles already indexed whose missing image this upload stored again
    repaired: list[str] = field(default_factory=list)
    #: reason -> [{"entry", "detail"}], in the order they were skipped
    skipped: dict[str, list[dict]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def stored(self, tile_id: str, new: bool) -> None:
        (self.added if new else self.repaired).append(tile_id)

    def skip(self, entry: str, skip: Skip) -> None:
        self.skipped.setdefault(skip.reason, []).append({"entry": entry, "detail": skip.detail})

    @property
    def settled(self) -> int:
        return len(self.added) + len(self.repaired) + sum(map(len, self.skipped.values()))

    def to_dict(self) -> dict:
        groups = sorted(self.skipped.items(), key=lambda group: -len(group[1]))  # stable
        return {"added": len(self.added), "tiles": self.added, "repaired": self.repaired,
                "skipped": {reason: {"count": len(entries), "entries": entries}
                            for reason, entries in groups},
                "seconds": round(time.monotonic() - self.started, 3)}


def spool(source: BinaryIO, limit: int, length: int | None = None) -> BinaryIO:
    """Copy ``source`` to an anonymous temporary file in chunks, at most
    ``limit`` bytes (413 past it); returns the file rewound."""
    if length is not None and length > limit:
        raise TooLarge(f"The upload is {format_size(length)}; the limit is {format_size(limit)}.")
    out = tempfile.TemporaryFile(prefix="mosaic-")
    size = 0
    try:
        while True:
            want = CHUNK if length is None else min(CHUNK, length - size)
            data = source.read(want) if want > 0 else b""
            if not data:
                break
            size += len(data)
            if size > limit:
                raise TooLarge(f"The upload is larger than the limit of {format_size(limit)}.")
            out.write(data)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


CORRUPT = "corrupt or truncated image"


def decode(fp: BinaryIO, limits: Limits, draft: tuple[int, int] | None) -> Image.Image:
    """Decode one image, refusing more than ``limits.max_pixels`` from its
    header before decoding; ``Skip`` with the reason when it is unusable.
    ``draft``: the size needed, which lets JPEG decode at 1/2..1/8 scale."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fp, formats=FORMATS)
            width, height = image.size
            if width * height > limits.max_pixels:
                raise Skip("decompression bomb", f"{width}x{height} pixels is more than "
                           f"the limit of {limits.max_pixels}", too_large=True)
            if draft:
                image.draft(None, draft)
            image.load()
            return image
    except Skip:
        raise
    except UnidentifiedImageError:
        raise Skip("not an image", f"only {', '.join(FORMATS[:-1])} and {FORMATS[-1]} "
                   "are read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Skip("decompression bomb", str(exc), too_large=True) from None
    except Exception as exc:  # hostile bytes break decoders in many ways
        raise Skip(CORRUPT, f"{type(exc).__name__}: {exc}") from None


def load_tile(fp: BinaryIO, limits: Limits) -> Image.Image:
    """Decode, normalise and square one tile (a mosaic cell is square, so the
    features must describe the square that will be shown), or ``Skip``."""
    image = decode(fp, limits, (2 * TILE_SIZE, 2 * TILE_SIZE))
    try:
        return square(normalise(image))
    except Exception as exc:  # e.g. a broken EXIF block
        raise Skip(CORRUPT, f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Prepared:
    """A tile ready to store: the CPU-heavy part of ingestion, done in a worker."""

    id: str
    jpeg: bytes
    features: Features
    size: tuple[int, int]


def prepare_tile(image: Image.Image) -> Prepared:
    """Id (sha256 of size + pixels), JPEG bytes and features of a normalised tile."""
    tile_id = hashlib.sha256(b"%dx%d:" % image.size + image.tobytes()).hexdigest()
    data = io.BytesIO()
    image.save(data, "JPEG", quality=90, optimize=True)
    return Prepared(tile_id, data.getvalue(), features(image), image.size)


def _put_image(tile: Prepared, label: str, store: Store, owner: str | None) -> None:
    store.put(tile_path(tile.id), io.BytesIO(tile.jpeg), content_type="image/jpeg",
              length=len(tile.jpeg), owner=owner, meta={"mosaic": "tile", "source": label[:200]})


def store_tile(tile: Prepared, label: str, store: Store, index: TileIndex,
               owner: str | None = None) -> bool:
    """Store one tile's image (owned by ``owner``, who may delete it) and index
    it: True. A tile indexed without its image gets the image again: False,
    so re-importing repairs a library. ``Skip`` on a duplicate."""
    if index.has_sha256(tile.id):
        if store.exists(tile_path(tile.id)):
            raise duplicate(tile.id)
        _put_image(tile, label, store, owner)
        return False
    _put_image(tile, label, store, owner)
    try:
        meta = {"source": label[:200], "width": tile.size[0], "height": tile.size[1]}
        if not index.add(tile.id, tile.features, meta):
            raise duplicate(tile.id)  # another upload added it a moment ago
    except Skip:
        raise
    except BaseException:
        store.delete(tile_path(tile.id))  # no file without its index entry
        raise
    return True


def _skip_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if info.is_dir():
        return "directory"
    if parts and parts[0] == "__MACOSX":
        return "macOS metadata (__MACOSX/)"
    if parts and parts[-1].startswith("."):
        return "hidden file"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits,
                budget: int) -> bytes:
    """The entry's bytes, counted while decompressing (headers can lie)."""
    cap = min(limits.max_entry, budget)
    if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise Skip("compression ratio above the limit (zip bomb?)",
                   f"{info.file_size // max(info.compress_size, 1)}:1, the limit is "
                   f"{limits.max_ratio}:1")
    if info.file_size > cap:
        raise _too_big(cap, limits)
    out = bytearray()
    with archive.open(info) as entry:
        while chunk := entry.read(min(CHUNK, cap + 1 - len(out))):
            out += chunk
            if len(out) > cap:
                raise _too_big(cap, limits)
    return bytes(out)


def _too_big(cap: int, limits: Limits) -> Skip:
    which = "per-entry" if cap == limits.max_entry else "remaining total"
    return Skip("uncompressed size above the limit (zip bomb?)",
                f"the {which} limit is {format_size(cap)}")


def _unreadable(exc: Exception) -> Skip:
    return Skip("unreadable entry", str(exc))


#: Bad CRC, unsupported compression... : the entry is skipped, not the archive.
ENTRY_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                ValueError)


def ingest_zip(fp: BinaryIO, store: Store, index: TileIndex, limits: Limits,
               report: Report | None = None,
               progress: Callable[[str, int, int], None] | None = None,
               owner: str | None = None) -> Report:
    """Add every image entry of the ZIP in ``fp`` (a seekable file) as a tile;
    ``progress("ingesting", done, total)`` is told as entries finish.

    Pipelined: this thread reads entries (the ZIP is one file) while workers
    decode and encode tiles and others store them, so decoding overlaps
    storage round trips and fsyncs. Results are settled in entry order, so
    of two equal images the first entry is the one added, as if sequential.
    """
    report = report or Report()
    try:
        archive = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadRequest(f"Not a readable ZIP archive: {exc}") from None
    with archive, ThreadPoolExecutor(DECODERS) as decoders, ThreadPoolExecutor(WRITERS) as writers:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise TooLarge(f"The archive has {len(entries)} entries; the limit is "
                           f"{limits.max_entries}.")
        _check_small_entries_ratio(entries, fp.seek(0, io.SEEK_END), limits)
        decoding: deque = deque()  # (label, size, future of Prepared)
        storing: deque = deque()   # (label, tile id, future of store_tile)
        seen: dict[str, str] = {}  # tile id -> the entry that brought it
        in_flight = 0

        def finish_storing(block: bool) -> None:
            while storing and (block or storing[0][2].done()):
                label, tile_id, future = storing.popleft()
                try:
                    report.stored(tile_id, future.result())
                except Skip as skip:
                    report.skip(label, skip)
                if progress:
                    progress("ingesting", report.settled, len(entries))

        def finish_decoding(block: bool) -> None:
            nonlocal in_flight
            while decoding and (block or decoding[0][2].done()):
                label, size, future = decoding.popleft()
                in_flight -= size
                try:
                    tile = future.result()
                    if tile.id in seen:
                        raise duplicate(tile.id, seen[tile.id])
                    seen[tile.id] = label
                    storing.append((label, tile.id, writers.submit(store_tile, tile, label,
                                                                   store, index, owner)))
                except Skip as skip:
                    report.skip(label, skip)
                finish_storing(block=len(storing) > 2 * WRITERS)

        total = 0
        for info in entries:
            label = info.filename
            try:
                reason = _skip_reason(info)
                if reason:
                    raise Skip(reason)
                try:
                    data = _read_entry(archive, info, limits, limits.max_total - total)
                except ENTRY_ERRORS as exc:
                    raise _unreadable(exc) from None
                total += len(data)
            except Skip as skip:
                report.skip(label, skip)
                continue
            decoding.append((label, len(data), decoders.submit(_decode_entry, data, limits)))
            in_flight += len(data)
            # Bounded memory: a few entries' bytes in flight, not the archive.
            finish_decoding(block=len(decoding) > 2 * DECODERS or in_flight > IN_FLIGHT)
        finish_decoding(block=True)
        finish_storing(block=True)
    return report


def _check_small_entries_ratio(entries: list[zipfile.ZipInfo], archive_size: int,
                               limits: Limits) -> None:
    """Refuse (413) an archive of many small entries that together expand past
    ``max_ratio``: entries up to 1 MiB escape the per-entry ratio rule, and
    2 MiB of them inflated to 1.8 GiB. Declared sizes are a true bound here:
    zipfile never yields more than an entry's declared size."""
    small = sum(i.file_size for i in entries if i.file_size <= 1 << 20)
    if small > max(IN_FLIGHT, limits.max_ratio * archive_size):
        raise TooLarge(f"The archive's small entries expand to {format_size(small)} from "
                       f"{format_size(archive_size)}, more than the limit of "
                       f"{limits.max_ratio}:1 (zip bomb?); nothing was stored.")


def _decode_entry(data: bytes, limits: Limits) -> Prepared:
    return prepare_tile(load_tile(io.BytesIO(data), limits))


def ingest_image(fp: BinaryIO, label: str, store: Store, index: TileIndex, limits: Limits,
                 report: Report | None = None, owner: str | None = None) -> Report:
    """Add one uploaded image; a decompression bomb is refused with 413,
    other problems are reported as skipped."""
    report = report or Report()
    try:
        tile = prepare_tile(load_tile(fp, limits))
        report.stored(tile.id, store_tile(tile, label, store, index, owner))
    except Skip as skip:
        if skip.too_large:
            raise TooLarge(f"{label}: {skip}; nothing was stored.") from None
        report.skip(label, skip)
    return report
