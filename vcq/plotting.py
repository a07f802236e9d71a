"""One plotting setup: matplotlib on its file-only backend; the figure and image-grid writers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import numpy as np

from vcq.io import atomic_path


def pyplot() -> ModuleType:
    """`matplotlib.pyplot` on the Agg backend (cluster nodes and CI have no display)."""
    # imported on first use: the library's import must not pick a backend for the caller
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    fig, paths: Iterable[str | Path], dpi: int = 150, tight: bool = False
) -> list[Path]:
    """Write `fig` to each path (format from the suffix), atomically, and close it; `tight` grows
    the bounding box to text outside the axes (captions, rotated labels)."""
    written = []
    for path in map(Path, paths):
        with atomic_path(path) as tmp:
            fig.savefig(
                tmp, format=path.suffix[1:], dpi=dpi, bbox_inches="tight" if tight else None
            )
        written.append(path)
    pyplot().close(fig)
    return written


def image_grid(images: np.ndarray, ncol: int, fill: int = 0) -> np.ndarray:
    """uint8 (N, H, W, 3) images tiled row by row, `ncol` per row; cells past N hold `fill`."""
    n, h, w = images.shape[:3]
    rows = -(-n // ncol)
    grid = np.full((rows * h, ncol * w, 3), fill, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, ncol)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return grid


def save_image_grid(path: str | Path, images: np.ndarray, ncol: int) -> Path:
    """A PNG of `image_grid(images, ncol)`, written atomically."""
    from PIL import Image

    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(image_grid(np.asarray(images), ncol)).save(tmp, format="PNG")
    return path
