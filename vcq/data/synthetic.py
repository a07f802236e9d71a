"""Seeded class-conditional synthetic image set: the embedded stand-in for ImageNet."""

from __future__ import annotations

import colorsys
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vcq.data.source import images_root, preparing
from vcq.io import read_json, write_json
from vcq.paths import Layout

# A class is a mask function of rotated, centred coordinates (u, v in about [-1, 1]) and the shape
# size s, plus a hue. Shapes are big and anti-aliased and each class has its own hue, so a 32 px
# image says its class at a glance and a 32-token tokenizer can keep the shape; position, size,
# rotation, shade and background vary per image.
Mask = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _circle(u, v, s):
    return u**2 + v**2 < s**2


def _square(u, v, s):
    return (np.abs(u) < s * 0.8) & (np.abs(v) < s * 0.8)


def _triangle(u, v, s):
    return (v < s * 0.7) & (v > -s + 1.7 * np.abs(u))


def _ring(u, v, s):
    r = np.sqrt(u**2 + v**2)
    return (r < s) & (r > s * 0.55)


def _cross(u, v, s):
    w = s * 0.3
    return ((np.abs(u) < w) & (np.abs(v) < s)) | ((np.abs(v) < w) & (np.abs(u) < s))


def _stripes(u, v, s):
    # Three bars across the whole image, 8 px apart at 32 px.
    return np.sin(v * np.pi * 2) > 0


def _checkerboard(u, v, s):
    return (np.floor(u * 2) + np.floor(v * 2)) % 2 == 0


def _diamond(u, v, s):
    # Elongated so that it is not merely a rotated square.
    return np.abs(u) + 2 * np.abs(v) < s * 1.2


def _half(u, v, s):
    return v > 0


def _dots(u, v, s):
    # Four discs on the corners of a square.
    c = s * 0.55
    return ((np.abs(u) - c) ** 2 + (np.abs(v) - c) ** 2) < (s * 0.35) ** 2


def _frame(u, v, s):
    m = np.maximum(np.abs(u), np.abs(v))
    return (m < s * 0.85) & (m > s * 0.5)


def _bar(u, v, s):
    return (np.abs(u) < s) & (np.abs(v) < s * 0.3)


CLASSES: dict[str, Mask] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "ring": _ring,
    "cross": _cross,
    "stripes": _stripes,
    "checkerboard": _checkerboard,
    "diamond": _diamond,
    "half": _half,
    "dots": _dots,
    "frame": _frame,
    "bar": _bar,
}
CLASS_NAMES = list(CLASSES)
# Hues (fraction of the colour wheel) ordered so that the first ten classes are far apart.
HUES = dict(zip(CLASS_NAMES, (0.0, 0.6, 0.3, 0.15, 0.8, 0.5, 0.07, 0.7, 0.4, 0.9, 0.22, 0.97)))
SUPERSAMPLE = 4


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255


def render(class_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 image of class `class_id`."""
    name = CLASS_NAMES[class_id]
    n = size * SUPERSAMPLE
    grid = (np.arange(n) + 0.5) / n * 2 - 1
    y, x = np.meshgrid(grid, grid, indexing="ij")
    cx, cy = rng.uniform(-0.08, 0.08, size=2)
    theta = rng.uniform(-0.15, 0.15)
    u = np.cos(theta) * (x - cx) + np.sin(theta) * (y - cy)
    v = -np.sin(theta) * (x - cx) + np.cos(theta) * (y - cy)
    s = rng.uniform(0.55, 0.75)
    # Anti-aliased: the hard mask at SUPERSAMPLE x the size, box-averaged down.
    mask = CLASSES[name](u, v, s).astype(np.float64)
    mask = mask.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean((1, 3))[..., None]
    fg = _hsv_to_rgb(
        HUES[name] + rng.uniform(-0.03, 0.03), rng.uniform(0.7, 1.0), rng.uniform(0.8, 1.0)
    )
    # A dark, greyish background keeps the class hue the brightest thing in the image.
    bg = _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.05, 0.3))
    image = mask * fg + (1 - mask) * bg
    image += rng.normal(0, rng.uniform(0, 4), size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _image_rng(seed: int, split: str, class_id: int, index: int) -> np.random.Generator:
    # One stream per image: any image can be regenerated alone, and counts do not shift streams.
    return np.random.default_rng([seed, 0 if split == "train" else 1, class_id, index])


def folder_hash(root: str | os.PathLike, by: str = "bytes") -> str:
    """SHA-256 over sorted relative paths and each file's `bytes`, `sizes` or `stats` (size and
    modification time)."""
    if by not in ("bytes", "sizes", "stats"):
        raise ValueError(f"folder_hash by {by!r}: expected bytes, sizes or stats")
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(
        q for q in root.rglob("*") if q.is_file() and q.name != Layout.images_manifest(root).name
    ):
        h.update(str(p.relative_to(root)).encode())
        if by == "bytes":
            h.update(p.read_bytes())
        elif by == "sizes":
            h.update(str(p.stat().st_size).encode())
        else:
            st = p.stat()
            h.update(f"{st.st_size} {st.st_mtime_ns}".encode())
    return h.hexdigest()


def generate(
    root: str | os.PathLike,
    num_classes: int = 10,
    train_per_class: int = 100,
    val_per_class: int = 20,
    image_size: int = 32,
    seed: int = 0,
) -> dict:
    """Write `root/{train,val}/<class>/<idx>.png`, then `root/manifest.json` last; return it.

    A set is never written over: `root` must not hold a `train/` or `val/` yet (`generate_once`
    writes each parameter set once, into a folder of its own).
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(CLASSES)}, got {num_classes}")
    root = Path(root)
    counts = {"train": train_per_class, "val": val_per_class}
    for split in counts:
        if (root / split).exists():
            raise FileExistsError(f"{root / split} exists; refusing to overwrite a data set")
    for split, per_class in counts.items():
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
    write_json(Layout.images_manifest(root), manifest)
    return manifest


def generate_once(data: dict) -> dict:
    """The manifest of the synthetic set of a `data` config section, generating it if needed.

    Two jobs that ask for the same set at once generate it once: the second waits for the first's
    lock on `data.root` (vcq.data.source.preparing). The set is written to a temporary folder beside its final
    one and renamed into place, so a reader never sees a half-written set and nothing is ever
    deleted that another job may read.
    """
    final = images_root(data)
    manifest = Layout.images_manifest(final)
    if not manifest.is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        with preparing(final.parent):
            if not manifest.is_file():
                _generate_into(final, data)
    return read_json(manifest, "make_dataset")


def _generate_into(final: Path, data: dict) -> None:
    """Generate the set of `data` into a temporary folder and rename it to `final`."""
    if final.exists():
        raise FileExistsError(
            f"{final} exists without its manifest.json (not written by the generator?); "
            "move it away and rerun make_dataset"
        )
    # mkdir (not mkdtemp, which makes it private to this user): the set is shared
    tmp = final.parent / f".{final.name}.tmp-{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        generate(
            tmp,
            data["num_classes"],
            data["train_per_class"],
            data["val_per_class"],
            data["image_size"],
            data["seed"],
        )
        os.rename(tmp, final)
        logging.getLogger(__name__).info("generated the synthetic set %s", final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
