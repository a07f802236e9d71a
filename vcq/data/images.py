"""ImageFolder-style data set that survives corrupt files, plus the [-1, 1] tensor transforms."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".JPEG", ".PNG", ".JPG")


def to_tensor_pm1(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 HWC (PIL, numpy or tensor) to float CHW in [-1, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    x = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    return x.permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 on the CPU (the inverse of to_tensor_pm1)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def train_transform(size: int, crop_scale: float = 1.125) -> Callable[[Image.Image], torch.Tensor]:
    """Random crop + horizontal flip (paper App. A): shorter side to crop_scale*size, crop size."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(round(size * crop_scale)),
        transforms.RandomCrop(size),
        transforms.RandomHorizontalFlip(),
        to_tensor_pm1,
    ])


def eval_transform(size: int) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the shorter side to `size`, centre crop, tensor in [-1, 1]."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), to_tensor_pm1])


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully (so truncated files fail here, not later) as RGB."""
    with Image.open(path) as im:
        return im.convert("RGB")


class ImageFolderDataset(torch.utils.data.Dataset):
    """`root/<class>/<image>` files as (image, label); class ids follow sorted folder names.

    A file that cannot be decoded is skipped: the sample is replaced by the next readable one
    (index + 1, wrapping), so a given file list always yields the same samples. Each bad path is
    logged once and kept in `.skipped` (per process: with DataLoader workers, count with
    `scan()` in the main process).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Image.Image], Any] | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.classes = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        if not self.classes:
            raise FileNotFoundError(f"no class sub-folders in {self.root}")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = [
            (p, i)
            for i, c in enumerate(self.classes)
            for p in sorted((self.root / c).iterdir())
            if p.is_file() and p.name.endswith(extensions)
        ]
        if not self.samples:
            raise FileNotFoundError(f"no images with extensions {extensions} under {self.root}")
        self.transform = transform
        self.skipped: list[str] = []

    @property
    def num_classes(self) -> int:
        """Number of classes (sub-folders)."""
        return len(self.classes)

    @property
    def labels(self) -> np.ndarray:
        """Label of every file, in sample order."""
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def _try_load(self, index: int) -> Image.Image | None:
        path = self.samples[index][0]
        try:
            return load_rgb(path)
        except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError...)
            if str(path) not in self.skipped:
                self.skipped.append(str(path))
                log.warning("skipping unreadable image %s (%s: %s)", path, type(e).__name__, e)
            return None

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for k in range(len(self.samples)):
            i = (index + k) % len(self.samples)
            image = self._try_load(i)
            if image is not None:
                label = self.samples[i][1]
                return (self.transform(image) if self.transform else image), label
        raise RuntimeError(f"no readable image under {self.root}")

    def scan(self) -> list[str]:
        """Decode every file once; return (and remember) the unreadable paths."""
        for i in range(len(self.samples)):
            self._try_load(i)
        return list(self.skipped)
