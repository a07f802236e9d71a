"""Seeded class-conditional synthetic image set: the embedded stand-in for ImageNet."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vcq.io import write_json

# A class is a mask function of rotated, centred coordinates (u, v in about [-1, 1]), the
# shape size s and the per-image generator; colours, position, rotation and noise vary per image.
Mask = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]


def _circle(u, v, s, rng):
    return u**2 + v**2 < s**2


def _square(u, v, s, rng):
    return (np.abs(u) < s * 0.85) & (np.abs(v) < s * 0.85)


def _triangle(u, v, s, rng):
    return (v < s * 0.7) & (v > -s + 1.7 * np.abs(u))


def _stripes(u, v, s, rng):
    return np.sin(u * np.pi * rng.uniform(3, 6)) > 0


def _checkerboard(u, v, s, rng):
    f = rng.uniform(2, 4)
    return (np.floor(u * f) + np.floor(v * f)) % 2 == 0


def _ring(u, v, s, rng):
    r = np.sqrt(u**2 + v**2)
    return (r < s) & (r > s * rng.uniform(0.45, 0.7))


def _cross(u, v, s, rng):
    w = s * rng.uniform(0.2, 0.35)
    return ((np.abs(u) < w) & (np.abs(v) < s)) | ((np.abs(v) < w) & (np.abs(u) < s))


def _dots(u, v, s, rng):
    f = rng.uniform(2.5, 4)
    return (np.sin(u * np.pi * f) * np.sin(v * np.pi * f)) > 0.5


def _gradient(u, v, s, rng):
    # A soft mask: the blend weight itself, dithered later like the hard masks.
    return np.clip(0.5 + u / (2 * max(s, 1e-3)), 0, 1)


def _noise(u, v, s, rng):
    coarse = rng.random((4, 4))
    n = u.shape[0]
    reps = -(-n // 4)
    return np.kron(coarse, np.ones((reps, reps)))[:n, :n] > 0.5


def _diamond(u, v, s, rng):
    # Elongated so that it is not merely a rotated square.
    return np.abs(u) + 2.2 * np.abs(v) < s * 1.2


def _half(u, v, s, rng):
    return v > 0


CLASSES: dict[str, Mask] = {
    "circle": _circle, "square": _square, "triangle": _triangle, "stripes": _stripes,
    "checkerboard": _checkerboard, "ring": _ring, "cross": _cross, "dots": _dots,
    "gradient": _gradient, "noise": _noise, "diamond": _diamond, "half": _half,
}
CLASS_NAMES = list(CLASSES)


def render(class_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image of class `class_id`."""
    grid = (np.arange(size) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(grid, grid, indexing="ij")
    cx, cy = rng.uniform(-0.35, 0.35, size=2)
    theta = rng.uniform(0, np.pi)
    u = np.cos(theta) * (x - cx) + np.sin(theta) * (y - cy)
    v = -np.sin(theta) * (x - cx) + np.cos(theta) * (y - cy)
    s = rng.uniform(0.3, 0.6)
    mask = CLASSES[CLASS_NAMES[class_id]](u, v, s, rng).astype(np.float64)[..., None]
    fg, bg = rng.uniform(0, 255, size=(2, 3))
    # Keep foreground and background apart so the class shape is always visible.
    if np.abs(fg - bg).max() < 80:
        fg = 255 - bg
    bg_ramp = bg + rng.uniform(-40, 40) * y[..., None]
    image = mask * fg + (1 - mask) * bg_ramp
    image += rng.normal(0, rng.uniform(2, 12), size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _image_rng(seed: int, split: str, class_id: int, index: int) -> np.random.Generator:
    # One stream per image: any image can be regenerated alone, and counts do not shift streams.
    return np.random.default_rng([seed, 0 if split == "train" else 1, class_id, index])


def folder_hash(root: str | os.PathLike, content: bool = True) -> str:
    """SHA-256 over sorted relative paths and file bytes (or, if not `content`, sizes)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name != "manifest.json"):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes() if content else str(p.stat().st_size).encode())
    return h.hexdigest()


def _check_replaceable(folder: Path) -> None:
    """Refuse to delete a folder that holds anything but images this module wrote."""
    if not folder.exists():
        return
    foreign = [p for p in folder.iterdir() if p.name not in CLASSES or not p.is_dir()]
    foreign += [q for p in folder.iterdir() if p.is_dir() for q in p.iterdir()
                if not (q.suffix == ".png" and q.stem.isdigit())]
    if foreign:
        raise FileExistsError(
            f"{folder} holds files the synthetic generator did not write (e.g. {foreign[0]}); "
            "refusing to overwrite it (wrong data.root or data.source?)"
        )


def generate(
    root: str | os.PathLike,
    num_classes: int = 10,
    train_per_class: int = 100,
    val_per_class: int = 20,
    image_size: int = 32,
    seed: int = 0,
) -> dict:
    """Write `root/{train,val}/<class>/<idx>.png`, then `root/manifest.json` last; return it."""
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(CLASSES)}, got {num_classes}")
    root = Path(root)
    # The manifest marks a finished set: remove it and old images before writing anything.
    (root / "manifest.json").unlink(missing_ok=True)
    counts = {"train": train_per_class, "val": val_per_class}
    for split, per_class in counts.items():
        _check_replaceable(root / split)
        shutil.rmtree(root / split, ignore_errors=True)
        for c in range(num_classes):
            folder = root / split / CLASS_NAMES[c]
            folder.mkdir(parents=True)
            for i in range(per_class):
                image = render(c, image_size, _image_rng(seed, split, c, i))
                Image.fromarray(image).save(folder / f"{i:06d}.png")
    manifest = {
        "source": "synthetic",
        "seed": seed,
        "image_size": image_size,
        "num_classes": num_classes,
        "classes": CLASS_NAMES[:num_classes],
        "counts": {split: n * num_classes for split, n in counts.items()},
        "skipped": {"train": [], "val": []},
        "content_sha256": folder_hash(root),
    }
    write_json(root / "manifest.json", manifest)
    return manifest
