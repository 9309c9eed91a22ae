"""Photos that ship in packages, a tile library cut from them, and source images.

Nothing here downloads anything: every photo comes from an installed
package. ``missing()`` says exactly what to install when one is absent.

- Library photos (tiles are cut from these only): Debian's mate-backgrounds
  (the 12 photographs under nature/), plasma-workspace-wallpapers (its 11
  photographs, the 2560x1600 versions), scikit-image's bundled photos
  (rocket, motorcycle, Hubble deep field, and the grey camera, brick, grass,
  gravel, moon) and scikit-learn's flower.jpg.
- Source photos (never in the library): scikit-image's astronaut, coffee
  and chelsea, scikit-learn's china.jpg.

Tiles are square crops at seeded random positions and sizes (from 1/2 down
to 1/20 of the photo's short side, log-uniform), scaled to 128 x 128 px,
written as JPEG (quality 90). A crop whose decoded JPEG pixels equal an
earlier tile's is dropped, so all tiles are distinct images; the same seed,
package versions and Pillow give the same files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import json
import math
import random
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

MATE_NATURE = Path("/usr/share/backgrounds/mate/nature")
MATE_PHOTOS = ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird",
               "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower"]
KDE_WALLPAPERS = Path("/usr/share/wallpapers")
KDE_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow",
              "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am"]
SKIMAGE_LIBRARY = ["rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg", "camera.png",
                   "brick.png", "grass.png", "gravel.png", "moon.png"]
SKLEARN_LIBRARY = ["flower.jpg"]
SOURCES = {"astronaut": ("skimage", "astronaut.png"), "coffee": ("skimage", "coffee.png"),
           "chelsea": ("skimage", "chelsea.png"), "china": ("sklearn", "china.jpg")}

TILE_PX = 128
JPEG_QUALITY = 90
SMALLEST_CROP = 24  # px of the photo
CROP_FRACTIONS = (1 / 20, 1 / 2)  # of the photo's short side, log-uniform

APT = {"metapixel": "metapixel", "mate": "mate-backgrounds", "kde": "plasma-workspace-wallpapers"}
PIP = {"skimage": "scikit-image", "sklearn": "scikit-learn"}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _data_dir(kind: str) -> Path | None:
    base = _package_dir(kind)
    if base is None:
        return None
    return base / "data" if kind == "skimage" else base / "datasets" / "images"


def library_photos() -> list[Path]:
    """The photos tiles are cut from, in a fixed order."""
    skimage, sklearn = _data_dir("skimage"), _data_dir("sklearn")
    return ([MATE_NATURE / f"{name}.jpg" for name in MATE_PHOTOS]
            + [KDE_WALLPAPERS / name / "contents" / "images" / "2560x1600.jpg" for name in KDE_PHOTOS]
            + [skimage / name for name in SKIMAGE_LIBRARY if skimage]
            + [sklearn / name for name in SKLEARN_LIBRARY if sklearn])


def source_photos(names: list[str] | None = None) -> dict[str, Path]:
    dirs = {"skimage": _data_dir("skimage"), "sklearn": _data_dir("sklearn")}
    return {name: dirs[kind] / file for name, (kind, file) in SOURCES.items()
            if (names is None or name in names) and dirs[kind]}


def missing() -> list[str]:
    """Install commands for whatever this benchmark needs and does not find."""
    apt, pip = [], []
    if not (shutil.which("metapixel") and shutil.which("metapixel-prepare")):
        apt.append(APT["metapixel"])
    if not all((MATE_NATURE / f"{n}.jpg").is_file() for n in MATE_PHOTOS):
        apt.append(APT["mate"])
    if not all((KDE_WALLPAPERS / n / "contents/images/2560x1600.jpg").is_file() for n in KDE_PHOTOS):
        apt.append(APT["kde"])
    for module, dist in PIP.items():
        if _data_dir(module) is None:
            pip.append(dist)
    hints = []
    if apt:
        hints.append(f"sudo apt-get install -y {' '.join(apt)}")
    if pip:
        hints.append(f"pip install {' '.join(pip)}   (into the Python that runs the bench)")
    return hints


def versions() -> str:
    """Versions of everything the library and sources come from (for the report)."""
    parts = []
    for pkg in ("mate-backgrounds", "plasma-workspace-wallpapers"):
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                                 check=False, capture_output=True, text=True).stdout.strip()
        except OSError:  # no dpkg
            out = ""
        parts.append(f"{pkg} {out or '?'}")
    for dist in ("scikit-image", "scikit-learn", "pillow"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} ?")
    return ", ".join(parts)


# -- the tile library ------------------------------------------------------------------


@dataclass
class Library:
    directory: Path  # the JPEG files, flat (metapixel-prepare's input)
    zip_path: Path  # the same files (our server's input)
    count: int
    photos: int
    bytes: int


def _label(photo: Path) -> str:
    """The photo's name: KDE's are DIR/contents/images/2560x1600.jpg."""
    return photo.parents[2].name if photo.parent.name == "images" else photo.stem


def _open_rgb(path: Path) -> Image.Image:
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    return image.convert("RGB")


def build_library(root: Path, count: int, seed: int, log=print) -> Library:
    """``count`` distinct tiles in ``root/tiles/`` and ``root/tiles.zip``.

    Reused as is when ``root/library.json`` says it was made with the same
    count, seed and package versions.
    """
    directory, zip_path, manifest = root / "tiles", root / "tiles.zip", root / "library.json"
    photos = library_photos()
    wanted = {"count": count, "seed": seed, "tile_px": TILE_PX, "quality": JPEG_QUALITY,
              "photos": [str(p) for p in photos], "versions": versions()}
    if manifest.is_file() and zip_path.is_file():
        kept = json.loads(manifest.read_text())
        if kept.get("made_with") == wanted:
            log(f"reusing the tile library in {root} ({count} tiles)")
            return Library(directory, zip_path, count, len(photos), zip_path.stat().st_size)
    root.mkdir(parents=True, exist_ok=True)
    if directory.exists():
        for old in directory.iterdir():
            old.unlink()
    directory.mkdir(exist_ok=True)
    log(f"cutting {count} tiles from {len(photos)} packaged photos (seed {seed})")
    rng = random.Random(seed)
    per_photo = math.ceil(count / len(photos))
    seen: set[str] = set()
    names: list[str] = []
    low, high = (math.log(f) for f in CROP_FRACTIONS)
    for number, photo in enumerate(photos):
        image = _open_rgb(photo)
        width, height = image.size
        short = min(width, height)
        made = tries = 0
        while made < per_photo and len(names) < count and tries < per_photo * 10:
            tries += 1
            side = max(SMALLEST_CROP, round(short * math.exp(rng.uniform(low, high))))
            x, y = rng.randint(0, width - side), rng.randint(0, height - side)
            tile = image.resize((TILE_PX, TILE_PX), Image.Resampling.LANCZOS,
                                box=(x, y, x + side, y + side))
            out = io.BytesIO()
            tile.save(out, "JPEG", quality=JPEG_QUALITY)
            data = out.getvalue()
            pixels = hashlib.sha256(Image.open(io.BytesIO(data)).convert("RGB").tobytes()).hexdigest()
            if pixels in seen:
                continue
            seen.add(pixels)
            name = f"{number:02d}-{_label(photo)}-{made:04d}.jpg"
            (directory / name).write_bytes(data)
            names.append(name)
            made += 1
    if len(names) < count:
        raise RuntimeError(f"only {len(names)} distinct tiles could be cut (wanted {count})")
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:  # JPEGs don't shrink
        for name in names:
            archive.write(directory / name, name)
    manifest.write_text(json.dumps({"made_with": wanted, "tiles": len(names)}, indent=1))
    return Library(directory, zip_path, len(names), len(photos), zip_path.stat().st_size)


# -- sources ---------------------------------------------------------------------------


@dataclass
class Source:
    name: str
    original: Path
    path: Path  # the prepared PNG both tools get
    cols: int
    rows: int


def prepare_source(name: str, original: Path, out_dir: Path, cols: int, tile: int) -> Source:
    """The photo scaled (Lanczos) to exactly cols*tile x rows*tile px, as PNG,
    rows = round(cols * height / width): both tools then cut the same grid."""
    image = _open_rgb(original)
    rows = max(1, round(cols * image.height / image.width))
    prepared = image.resize((cols * tile, rows * tile), Image.Resampling.LANCZOS)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{cols}x{rows}.png"
    prepared.save(path, "PNG")
    return Source(name, original, path, cols, rows)
