"""How close a mosaic looks to its source, seen from afar (numpy + Pillow only).

Both images are reduced with a box filter to 2 x 2 samples per mosaic cell
(Pillow's ``Image.reduce``: the plain average of each block of sRGB values,
as any image viewer's area downscale), converted to CIELAB (sRGB, D65), then:

- mean ΔE*ab (CIE76: the Euclidean distance in Lab) over all samples;
- SSIM of the L* channel (Wang et al. 2004: 7x7 uniform window, K1 = 0.01,
  K2 = 0.03, data range 100, sample covariances, the mean over the windows
  that fit inside the image), the same numbers as scikit-image's
  ``structural_similarity(x, y, data_range=100)`` with its defaults.

A matcher can be tuned to exactly this scale, so the bench also reports the
same numbers at other sample counts per cell as a cross-check (no goal).

This module is the bench's own judge: it shares no code with the mosaic
plugin it measures.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: sRGB (D65) linear RGB -> XYZ (IEC 61966-2-1) and the D65 reference white.
RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
D65 = np.array([0.95047, 1.0, 1.08883])
SAMPLES_PER_CELL = 2  # per axis: 2 x 2 = 4 samples per cell
SSIM_WINDOW = 7


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB (..., 3) -> CIELAB (..., 3), D65."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ RGB_TO_XYZ.T / D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16,
                     500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


def reduce_to_grid(image: Image.Image, cols: int, rows: int,
                   samples: int = SAMPLES_PER_CELL) -> np.ndarray:
    """``image`` as (samples*rows, samples*cols, 3) sRGB floats, each the box
    average of its block. The blocks are exact when the image is a multiple
    of the grid (at 2 per cell, both tools' outputs and the prepared sources
    are); otherwise Pillow's BOX resampling (area weights) is used."""
    image = image.convert("RGB")
    size = (samples * cols, samples * rows)
    fx, fy = image.width // size[0], image.height // size[1]
    if (image.width, image.height) == (fx * size[0], fy * size[1]):
        reduced = image.reduce((fx, fy))
    else:
        reduced = image.resize(size, Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.float64)


def ssim(x: np.ndarray, y: np.ndarray, data_range: float, win: int = SSIM_WINDOW) -> float:
    """Mean SSIM of two 2-D arrays over every ``win`` x ``win`` window inside them."""
    from numpy.lib.stride_tricks import sliding_window_view

    def mean(a: np.ndarray) -> np.ndarray:
        return sliding_window_view(a, (win, win)).mean(axis=(-2, -1))

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or min(x.shape) < win:
        raise ValueError(f"SSIM needs equal shapes of at least {win} px: {x.shape} {y.shape}")
    n = win * win
    norm = n / (n - 1)  # sample covariance
    ux, uy = mean(x), mean(y)
    vx = norm * (mean(x * x) - ux * ux)
    vy = norm * (mean(y * y) - uy * uy)
    vxy = norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def compare(source: Image.Image, mosaic: Image.Image, cols: int, rows: int,
            samples: int = SAMPLES_PER_CELL) -> dict[str, float]:
    """``delta_e``: mean CIE76 ΔE; ``ssim_l``: SSIM of L*; at ``samples`` x
    ``samples`` per cell (2 x 2 = the 4 samples per cell the goals are set at)."""
    a = srgb_to_lab(reduce_to_grid(source, cols, rows, samples))
    b = srgb_to_lab(reduce_to_grid(mosaic, cols, rows, samples))
    delta_e = float(np.sqrt(((a - b) ** 2).sum(axis=-1)).mean())
    fits = min(a.shape[:2]) >= SSIM_WINDOW  # else too few samples for one window: NaN
    return {"delta_e": delta_e,
            "ssim_l": ssim(a[..., 0], b[..., 0], data_range=100.0) if fits else float("nan")}
