"""Making a mosaic: source cells, candidates from the index, matching, rendering.

The source is cut into ``cols`` x ``rows`` cells and each cell described like
a tile (mean Lab and a GRID x GRID sub-grid). The backend's tile index is then
asked, in a few batched queries, for the tiles in the colour buckets around
the cells' colours; buckets are widened only for cells that found too few.
Every cell picks its best tile among those candidates (weighted Lab distance
over the sub-grid, lightness weighted 8x so edges and shading show), and
only the tiles actually used are read from the store.
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Mapping

import numpy as np
from PIL import Image

from fileserver.documents import counting
from fileserver.errors import BadRequest, Conflict, FileNotFound, TooLarge
from fileserver.store import Store

from .features import AB_MIN, AB_SPAN, AB_STEPS, L_STEPS, normalise, srgb_to_lab
from .index import GRID, TileIndex, tile_path
from .ingest import Limits, Skip, decode

FORMATS = {"jpeg": ("JPEG", "image/jpeg", "jpg"), "png": ("PNG", "image/png", "png")}
#: Lightness weighs this much more than a/b in squared distance: structure
#: reads through lightness, and the eye forgives a hue shift sooner than a
#: lost edge. 8 was the best balance of ΔE and SSIM in bench/bench_mosaic.py
#: (2 gave lower ΔE but flatter pictures).
L_WEIGHT = 8.0
#: A cell is satisfied once this many candidates lie in its search box.
ENOUGH = 8
#: Search box half-width in Lab units, doubled per widening round.
FIRST_MARGIN = 6.0
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Params:
    tile: int = 32
    cols: int = 40
    max_repeats: int = 0
    blend: int = 0
    format: str = "jpeg"

    @classmethod
    def parse(cls, fields: Mapping[str, str], limits: Limits) -> "Params":
        """From form/query fields; a 400 naming the field when one is wrong."""
        def number(key: str, default: int, low: int, high: int) -> int:
            raw = (fields.get(key) or "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise BadRequest(f"{key} must be a whole number, not {raw!r}.") from None
            if not low <= value <= high:
                raise BadRequest(f"{key} must be between {low} and {high}, not {value}.")
            return value

        fmt = (fields.get("format") or "jpeg").strip().lower()
        fmt = {"jpg": "jpeg"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise BadRequest(f"format must be jpeg or png, not {fmt!r}.")
        return cls(tile=number("tile", cls.tile, 4, limits.max_tile),
                   cols=number("cols", cls.cols, 1, limits.max_cols),
                   max_repeats=number("max_repeats", cls.max_repeats, 0, 1_000_000),
                   blend=number("blend", cls.blend, 0, 100), format=fmt)


@dataclass
class Stats:
    """What a run asked of the backend (the index-use test reads these)."""

    queries: int = 0          # candidate queries sent to the index
    records_read: int = 0     # tile feature records they returned
    images_read: int = 0      # tile images fetched from the store
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Mosaic:
    image: Image.Image
    cols: int
    rows: int
    tiles_used: int
    stats: Stats


def load_source(fp: BinaryIO, label: str, limits: Limits) -> Image.Image:
    """Decode a source image (any mode, EXIF rotation applied) or refuse it:
    413 for more pixels than allowed, 400 for anything not a readable image."""
    try:
        image = decode(fp, limits, None)
    except Skip as skip:
        raise (TooLarge if skip.too_large else BadRequest)(f"{label}: {skip}.") from None
    return normalise(image, size=max(image.size))


def grid_size(source: Image.Image, params: Params, limits: Limits) -> tuple[int, int]:
    """cols x rows for this source; rows follow the aspect ratio. Output past
    the configured pixel cap is refused before any work is done."""
    width, height = source.size
    rows = max(1, round(params.cols * height / width))
    if rows > limits.max_cols * 8:
        raise BadRequest(f"The source is too tall for {params.cols} columns ({rows} rows); "
                         "use more columns or crop it.")
    pixels = params.cols * rows * params.tile ** 2
    if pixels > limits.max_output_pixels:
        raise TooLarge(f"The mosaic would be {params.cols * params.tile}x{rows * params.tile} "
                       f"pixels, more than the limit of {limits.max_output_pixels}; "
                       "lower cols or tile.")
    return params.cols, rows


def cell_features(source: Image.Image, cols: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: the mean Lab (N x 3) and the sub-grid as Lab (N x GRID*GRID*3),
    cells row by row, averaged as sRGB values like tile features."""
    k = 4  # supersampling per sub-cell; Pillow's box filter does the heavy part
    small = source.resize((cols * GRID * k, rows * GRID * k), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64)
    sub = pixels.reshape(rows * GRID, k, cols * GRID, k, 3).mean(axis=(1, 3))
    cells = sub.reshape(rows, GRID, cols, GRID, 3).transpose(0, 2, 1, 3, 4)
    cells = cells.reshape(rows * cols, GRID * GRID, 3)
    grid = srgb_to_lab(cells).reshape(rows * cols, GRID * GRID * 3)
    mean = srgb_to_lab(cells.mean(axis=1))
    return mean, grid


#: Per axis of the bucket grid: the lowest value, the span and the steps.
_AXES = np.array([(0.0, 100.0, L_STEPS), (AB_MIN, AB_SPAN, AB_STEPS), (AB_MIN, AB_SPAN, AB_STEPS)])


def _boxes(colours: np.ndarray, margin: float) -> np.ndarray:
    """For each Lab colour, the bucket-grid box within ``margin`` of it, as
    rows (l0, a0, b0, l1, a1, b1) of inclusive cell indices."""
    low, span, steps = _AXES.T
    first = np.floor((colours - margin - low) / span * steps)
    last = np.floor((colours + margin - low) / span * steps)
    top = steps - 1
    return np.hstack([np.clip(first, 0, top), np.clip(last, 0, top)]).astype(np.int64)


def _unique_rows(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(boxes, axis=0, return_inverse=True)``, but on one int key
    per row (grid indices are < 16): many times faster for many cells."""
    keys = (boxes << (4 * np.arange(boxes.shape[1]))).sum(axis=1)
    _, first, which = np.unique(keys, return_index=True, return_inverse=True)
    return boxes[first], which.ravel()


def gather(index: TileIndex, means: np.ndarray, cells: int, max_repeats: int,
           stats: Stats) -> tuple[list[str], np.ndarray]:
    """Candidates for all cells in a few batched index queries.

    Round one asks for the buckets within FIRST_MARGIN of every cell colour;
    each later round doubles the margin, only for the colours that still see
    fewer than ENOUGH candidates (or for all of them when ``max_repeats``
    needs more distinct tiles than were found). Work per round is per
    distinct box, not per cell, so a huge mosaic costs no more to plan.
    """
    shape = (L_STEPS, AB_STEPS, AB_STEPS)
    asked = np.zeros(shape, dtype=bool)
    found_per_bucket = np.zeros(shape, dtype=np.int64)
    ids: list[str] = []
    vectors: list[tuple[float, ...]] = []
    pending = means
    margin = FIRST_MARGIN
    while len(pending):
        boxes, which = _unique_rows(_boxes(pending, margin))
        wanted = np.zeros(shape, dtype=bool)
        for l0, a0, b0, l1, a1, b1 in boxes:
            wanted[l0:l1 + 1, a0:a1 + 1, b0:b1 + 1] = True
        new = wanted & ~asked
        if new.any():
            with counting() as query:
                found = index.candidates([int(b) for b in np.flatnonzero(new)])
            stats.queries += query.queries
            stats.records_read += query.read
            asked |= new
            for tile_id, feats in found:
                ids.append(tile_id)
                vectors.append(feats.grid)
                found_per_bucket.flat[feats.bucket] += 1
        if asked.all():
            break
        if max_repeats and len(ids) * max_repeats < cells:
            pending = means  # widen for every colour
        else:
            seen = np.array([found_per_bucket[l0:l1 + 1, a0:a1 + 1, b0:b1 + 1].sum()
                             for l0, a0, b0, l1, a1, b1 in boxes])
            pending = pending[seen[which] < ENOUGH]
        margin *= 2
    if not ids:
        raise Conflict("The tile library is empty: add tiles first (POST /mosaic/tiles).")
    if max_repeats and len(ids) * max_repeats < cells:
        raise Conflict(f"The library has {len(ids)} tiles; with max_repeats={max_repeats} they "
                       f"fill at most {len(ids) * max_repeats} of the {cells} cells. "
                       "Raise max_repeats, use fewer columns or add tiles.")
    stale = sum(len(v) != GRID * GRID * 3 for v in vectors)
    if stale:
        raise Conflict(f"{stale} tiles were indexed by an older version with other features; "
                       "delete them and add them again.")
    return ids, np.asarray(vectors, dtype=np.float64)


def _weighted(grid: np.ndarray) -> np.ndarray:
    weights = np.tile([np.sqrt(L_WEIGHT), 1.0, 1.0], GRID * GRID)
    return grid * weights


def match(cell_grid: np.ndarray, tile_grid: np.ndarray, max_repeats: int,
          seed: int = 0) -> np.ndarray:
    """Index into ``tile_grid`` of the best tile per cell; with ``max_repeats``
    no tile is used more often (cells take turns in a seeded random order, so
    no region of the picture gets first pick)."""
    cells, tiles = _weighted(cell_grid), _weighted(tile_grid)
    tile_norms = (tiles ** 2).sum(axis=1)
    n = len(cells)
    depth = min(len(tiles), 32 if max_repeats else 1)
    ranked = np.empty((n, depth), dtype=np.int64)
    for start in range(0, n, 512):  # N x C distances in slices: bounded memory
        chunk = cells[start:start + 512]
        dist = tile_norms[None, :] - 2.0 * chunk @ tiles.T
        if depth == 1:
            ranked[start:start + 512, 0] = dist.argmin(axis=1)
        else:
            part = np.argpartition(dist, depth - 1, axis=1)[:, :depth]
            order = np.take_along_axis(dist, part, axis=1).argsort(axis=1)
            ranked[start:start + 512] = np.take_along_axis(part, order, axis=1)
    if not max_repeats:
        return ranked[:, 0]
    chosen = np.empty(n, dtype=np.int64)
    uses = np.zeros(len(tiles), dtype=np.int64)
    for cell in np.random.default_rng(seed).permutation(n):
        pick = next((t for t in ranked[cell] if uses[t] < max_repeats), None)
        if pick is None:  # its favourites are used up: rank all tiles for it
            dist = tile_norms - 2.0 * tiles @ cells[cell]
            dist[uses >= max_repeats] = np.inf
            pick = int(dist.argmin())
        chosen[cell] = pick
        uses[pick] += 1
    return chosen


def _read_tile(store: Store, tile_id: str, edge: int) -> Image.Image:
    try:
        with store.open(tile_path(tile_id)) as fp:
            data = fp.read()
    except FileNotFound:  # its name means nothing to a client: say what to do
        raise Conflict(f"The image of tile {tile_id} is missing from the store: add the "
                       "picture again (re-importing its ZIP restores it) or delete the "
                       "tile.") from None
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (edge, edge))  # JPEG decodes straight at 1/2..1/8 scale
    image = image.convert("RGB")
    if image.size != (edge, edge):
        side = min(image.size)  # tiles are square; older or odd ones are centre-cropped
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.resize((edge, edge), Image.Resampling.LANCZOS,
                             box=(left, top, left + side, top + side))
    return image


def generate(source: Image.Image, params: Params, store: Store, index: TileIndex,
             limits: Limits, progress: Progress | None = None) -> Mosaic:
    """The mosaic of ``source`` from the library in ``index`` (images in ``store``)."""
    progress = progress or (lambda stage, done, total: None)
    stats, clock = Stats(), time.monotonic()
    cols, rows = grid_size(source, params, limits)
    n = cols * rows
    progress("matching", 0, n)
    means, grid = cell_features(source, cols, rows)
    ids, vectors = gather(index, means, n, params.max_repeats, stats)
    chosen = match(grid, vectors, params.max_repeats)
    stats.timings["match"] = time.monotonic() - clock
    progress("rendering", 0, n)

    used = sorted({int(i) for i in chosen})
    edge = params.tile
    with ThreadPoolExecutor(4) as pool:  # remote stores: overlap the round trips
        images = dict(zip(used, pool.map(lambda i: _read_tile(store, ids[i], edge), used)))
    stats.images_read = len(images)
    # Tiles as one array, cells copied a row at a time: no per-cell paste.
    slot = {pick: i for i, pick in enumerate(used)}
    pixels = np.stack([np.asarray(images[pick]) for pick in used])
    picks = np.array([slot[int(p)] for p in chosen]).reshape(rows, cols)
    canvas = np.empty((rows * edge, cols * edge, 3), dtype=np.uint8)
    for row in range(rows):
        band = pixels[picks[row]]  # cols x edge x edge x 3
        canvas[row * edge:(row + 1) * edge] = band.transpose(1, 0, 2, 3).reshape(edge, -1, 3)
        progress("rendering", (row + 1) * cols, n)
    out = Image.fromarray(canvas)
    del canvas
    if params.blend:
        under = source.resize(out.size, Image.Resampling.LANCZOS)
        out = Image.blend(out, under, params.blend / 100.0)
    stats.timings["total"] = time.monotonic() - clock
    return Mosaic(out, cols, rows, len(used), stats)


def encode(image: Image.Image, fmt: str, fp: BinaryIO) -> str:
    """Write ``image`` as ``fmt`` to ``fp``; returns the content type."""
    kind, content_type, _ = FORMATS[fmt]
    options = {"quality": 90, "optimize": True} if kind == "JPEG" else {"compress_level": 6}
    image.save(fp, kind, **options)
    return content_type
