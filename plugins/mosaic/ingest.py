"""Turning uploaded ZIPs and images into tiles, safely.

Hostile input is expected. The archive is spooled to a temporary file in
chunks (never held in memory) up to ``max_archive``; entries are read from
the ``zipfile`` object, so entry names are only labels, never paths on disk
(``../evil.jpg`` cannot escape anything). Zip bombs are bounded by the entry
count, the per-entry and total uncompressed sizes (counted while reading, not
trusted from the headers) and the compression ratio; decompression-bomb
images by their pixel count, checked from the header before decoding.
Anything unusable in an archive is skipped with a reason, not fatal.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from fileserver.errors import StoreError, TooLarge
from fileserver.store import Store, format_size

from .features import TILE_SIZE, features, normalise
from .index import TileIndex, tile_file

CHUNK = 1 << 20
#: Decoders we trust with hostile bytes (no EPS: Pillow would run Ghostscript).
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")


@dataclass(frozen=True)
class Limits:
    """Bounds on one upload; ``app.config["mosaic.limits"]`` overrides them."""

    max_archive: int = 2 << 30        # bytes of ZIP (or image) uploaded
    max_entries: int = 20_000         # entries in one ZIP
    max_entry: int = 100 << 20        # uncompressed bytes of one entry
    max_total: int = 4 << 30          # uncompressed bytes of all entries
    max_ratio: int = 100              # uncompressed / compressed, for entries > 1 MiB
    max_pixels: int = 50_000_000      # width * height of one image


class Refused(StoreError):
    """The whole upload is refused (not just one entry skipped)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Skip(Exception):
    """This entry is skipped; the message is the reason."""


@dataclass
class Report:
    added: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def skip(self, entry: str, reason: str) -> None:
        self.skipped.append({"entry": entry, "reason": reason})

    def to_dict(self) -> dict:
        return {"added": len(self.added), "tiles": self.added, "skipped": self.skipped,
                "seconds": round(time.monotonic() - self.started, 3)}


def spool(source: BinaryIO, limit: int, length: int | None = None) -> BinaryIO:
    """Copy ``source`` to an anonymous temporary file in chunks, at most
    ``limit`` bytes (413 past it); returns the file rewound."""
    if length is not None and length > limit:
        raise Refused(f"The upload is {format_size(length)}; the limit is {format_size(limit)}.", 413)
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
                raise Refused(f"The upload is larger than the limit of {format_size(limit)}.", 413)
            out.write(data)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def load_tile(fp: BinaryIO, limits: Limits) -> Image.Image:
    """Decode and normalise one image, or raise ``Skip`` with the reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fp, formats=FORMATS)
            width, height = image.size
            if width * height > limits.max_pixels:
                raise Skip(f"decompression bomb: {width}x{height} pixels is more than "
                           f"the limit of {limits.max_pixels}")
            # JPEG can decode at 1/2..1/8 scale: a big photo never needs full size.
            image.draft(None, (2 * TILE_SIZE, 2 * TILE_SIZE))
            image.load()
            return normalise(image)
    except Skip:
        raise
    except UnidentifiedImageError:
        raise Skip("not an image (or a format not accepted: "
                   + ", ".join(FORMATS) + ")") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Skip(f"decompression bomb: {exc}") from None
    except Exception as exc:  # hostile bytes break decoders in many ways
        raise Skip(f"corrupt or truncated image: {type(exc).__name__}: {exc}") from None


def add_tile(image: Image.Image, label: str, store: Store, index: TileIndex) -> str:
    """Store one normalised tile and index it; returns its id, ``Skip`` on a duplicate."""
    pixels = image.tobytes()
    tile_id = hashlib.sha256(b"%dx%d:" % image.size + pixels).hexdigest()
    if index.has_sha256(tile_id):
        raise Skip(f"duplicate: the library already has this image as tile {tile_id}")
    data = io.BytesIO()
    image.save(data, "JPEG", quality=90, optimize=True)
    data.seek(0)
    store.put(tile_file(tile_id), data, content_type="image/jpeg", length=len(data.getvalue()),
              meta={"mosaic": "tile", "source": label[:200]})
    try:
        if not index.add(tile_id, features(image),
                         {"source": label[:200], "width": image.width, "height": image.height}):
            raise Skip(f"duplicate: the library already has this image as tile {tile_id}")
    except Skip:
        raise
    except BaseException:
        store.delete(tile_file(tile_id))  # no file without its index entry
        raise
    return tile_id


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
    return None


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits,
                budget: int) -> bytes:
    """The entry's bytes, counted while decompressing (headers can lie)."""
    cap = min(limits.max_entry, budget)
    if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise Skip(f"compression ratio {info.file_size // max(info.compress_size, 1)}:1 is above "
                   f"the limit of {limits.max_ratio}:1 (zip bomb?)")
    if info.file_size > cap:
        raise Skip(_too_big(cap, limits))
    out = bytearray()
    with archive.open(info) as entry:
        while chunk := entry.read(min(CHUNK, cap + 1 - len(out))):
            out += chunk
            if len(out) > cap:
                raise Skip(_too_big(cap, limits))
    return bytes(out)


def _too_big(cap: int, limits: Limits) -> str:
    which = "per-entry" if cap == limits.max_entry else "remaining total"
    return f"uncompressed size above the {which} limit of {format_size(cap)} (zip bomb?)"


def ingest_zip(fp: BinaryIO, store: Store, index: TileIndex, limits: Limits,
               report: Report | None = None) -> Report:
    """Add every image entry of the ZIP in ``fp`` (a seekable file) as a tile."""
    report = report or Report()
    try:
        archive = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise Refused(f"Not a readable ZIP archive: {exc}") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise Refused(f"The archive has {len(entries)} entries; the limit is "
                          f"{limits.max_entries}.", 413)
        total = 0
        for info in entries:
            label = info.filename
            try:
                reason = _skip_reason(info)
                if reason:
                    raise Skip(reason)
                data = _read_entry(archive, info, limits, limits.max_total - total)
                total += len(data)
                image = load_tile(io.BytesIO(data), limits)
                report.added.append(add_tile(image, label, store, index))
            except Skip as skip:
                report.skip(label, str(skip))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                    ValueError) as exc:  # bad CRC, unsupported compression...
                report.skip(label, f"unreadable entry: {exc}")
    return report


def ingest_image(fp: BinaryIO, label: str, store: Store, index: TileIndex, limits: Limits,
                 report: Report | None = None) -> Report:
    """Add one uploaded image; a decompression bomb is refused with 413,
    other problems are reported as skipped."""
    report = report or Report()
    try:
        report.added.append(add_tile(load_tile(fp, limits), label, store, index))
    except Skip as skip:
        if str(skip).startswith("decompression bomb"):
            raise TooLarge(f"{label}: {skip}; nothing was stored.") from None
        report.skip(label, str(skip))
    return report
