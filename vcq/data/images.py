"""ImageFolder-style data set that survives corrupt files, its training crops and step sampler,
plus the [-1, 1] tensor transforms."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from vcq.data.source import images_root, is_hidden
from vcq.io import StepError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".JPEG", ".PNG", ".JPG")


def to_tensor_pm1(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 HWC (PIL, numpy or tensor) to float CHW in [-1, 1]."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    x = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    return x.permute(2, 0, 1).float().div(127.5).sub(1.0)


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) on any device to float in [-1, 1] (to_tensor_pm1's device half)."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8 on the CPU (the inverse of to_tensor_pm1)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def center_crop_arr(image: Image.Image, size: int) -> np.ndarray:
    """The shorter side to `size`, then the centre square: uint8 (size, size, 3).

    ADM's `center_crop_arr` (guided-diffusion, which made the ImageNet reference batch; LlamaGen
    uses it too): halve with BOX filtering while the shorter side is at least 2 × `size`, then one
    BICUBIC resize, then crop (the crop's top-left rounds down).
    """
    image = image.convert("RGB")
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.array(image)  # writable, so torch.from_numpy may share it
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return arr[top : top + size, left : left + size]


def eval_transform(size: int) -> Callable[[Image.Image], torch.Tensor]:
    """`center_crop_arr` to `size`, as a tensor in [-1, 1] (reconstruction originals)."""
    return lambda image: to_tensor_pm1(center_crop_arr(image, size))


# PIL's own warning threshold (about 9459 x 9459); `data.max_pixels` sets it per data set.
MAX_PIXELS = 89_478_485


class ImageTooLarge(ValueError):
    """An image above the pixel limit: refused (and counted as unreadable), never decoded."""


def load_rgb(
    path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS, min_side: int | None = None
) -> Image.Image:
    """Decode an image fully (so truncated files fail here, not later) as 8-bit RGB, upright.

    Images above `max_pixels` are refused (`ImageTooLarge`) before decoding. With `min_side`, a
    JPEG is decoded at the smallest power-of-two reduction whose shorter side is still at least
    `min_side` (PIL's draft), so a large photo costs a fraction of its full decode.
    """
    with warnings.catch_warnings():
        # the limit below is ours; PIL's warning would only repeat it
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise ImageTooLarge(
                    f"{w}x{h} = {w * h / 1e6:.1f} MP, above data.max_pixels = "
                    f"{max_pixels / 1e6:.1f} MP"
                )
            if min_side and im.format == "JPEG" and min(w, h) >= 2 * min_side:
                scale = min_side / min(w, h)
                im.draft(im.mode, (math.ceil(w * scale), math.ceil(h * scale)))
            return to_rgb8(ImageOps.exif_transpose(im))


def to_rgb8(im: Image.Image) -> Image.Image:
    """8-bit RGB of any PIL image: integer depths scaled to 0..255 (16-bit by 65535, 32-bit by
    2^31 - 1, negatives as 0), transparency composited onto white, palette and CMYK converted."""
    if im.mode.startswith("I;16") or im.mode == "I":
        full = 65535 if im.mode != "I" else 2**31 - 1
        a = np.clip(np.asarray(im).astype(np.float64), 0, full) * (255 / full)
        return Image.fromarray(np.rint(a).astype(np.uint8)).convert("RGB")
    if im.mode in ("LA", "RGBA", "PA") or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


class ImageFolderDataset(torch.utils.data.Dataset):
    """`root/<class>/<image>` files as (image, label); class ids follow sorted folder names.

    A file that cannot be decoded, or is above `max_pixels`, is skipped: the sample is replaced by
    the next readable one (index + 1, wrapping), so a given file list always yields the same
    samples. Each bad path is logged once and kept in `.skipped` (per process: with DataLoader
    workers, count with `scan()` in the main process, or through `FlaggedSkips`). Hidden entries
    (`.ipynb_checkpoints/`, `.DS_Store`) are neither classes nor images; a class folder without
    images is an error naming it. `min_side` lets JPEGs decode at reduced size (`load_rgb`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable[[Image.Image], Any] | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        max_pixels: int | None = MAX_PIXELS,
        min_side: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        inside = self.root.resolve()
        self.classes = sorted(
            d.name
            for d in self.root.iterdir()
            if d.is_dir() and not is_hidden(d.name) and _within(d, inside)
        )
        if not self.classes:
            raise FileNotFoundError(f"no class sub-folders in {self.root}")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = [
            (p, i)
            for i, c in enumerate(self.classes)
            for p in sorted((self.root / c).iterdir())
            # one level deep and never through a link out of the root: a symlink loop or a link to
            # another tree cannot multiply or import images
            if p.is_file()
            and not is_hidden(p.name)
            and p.name.endswith(extensions)
            and (not p.is_symlink() or _within(p, inside))
        ]
        if not self.samples:
            raise FileNotFoundError(f"no images with extensions {extensions} under {self.root}")
        empty = sorted(set(self.classes) - {self.classes[i] for _, i in self.samples})
        if empty:
            raise StepError(
                f"{self.root}: class folders without images: {', '.join(empty)} (a class needs "
                "images: remove the folders or fill them)"
            )
        self.transform, self.max_pixels, self.min_side = transform, max_pixels, min_side
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
            return load_rgb(path, self.max_pixels, self.min_side)
        except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError...)
            if str(path) not in self.skipped:
                self.skipped.append(str(path))
                log.warning("skipping unreadable image %s (%s: %s)", path, type(e).__name__, e)
            return None

    def load(self, index: int) -> tuple[Image.Image, int, int]:
        """Decoded image, label and the index actually read (> index when files were skipped)."""
        for k in range(len(self.samples)):
            i = (index + k) % len(self.samples)
            image = self._try_load(i)
            if image is not None:
                return image, self.samples[i][1], i
        raise RuntimeError(f"no readable image under {self.root}")

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label, _ = self.load(index)
        return (self.transform(image) if self.transform else image), label

    def scan(self) -> list[str]:
        """Decode every file once; return (and remember) the unreadable paths."""
        for i in range(len(self.samples)):
            self._try_load(i)
        return list(self.skipped)


def check_unreadable(skipped: Sequence[str], total: int, max_share: float, where: str) -> None:
    """Stop (StepError) when more of `total` images were unreadable than `data.max_unreadable`
    allows: `max_share` of them, at least one."""
    allowed = max(1, math.floor(max_share * total))
    if len(skipped) > allowed:
        first = ", ".join(str(p) for p in list(skipped)[:3])
        raise StepError(
            f"{len(skipped)} of {total} images under {where} are unreadable, more than "
            f"data.max_unreadable = {max_share} allows ({allowed}); first: {first} "
            "(repair or remove them, or raise data.max_unreadable)"
        )


class FlaggedSkips(torch.utils.data.Dataset):
    """An ImageFolderDataset's (sample, label, flag): the flag is the index when its file was
    unreadable (the sample is the next readable one), else -1, so that skips made in DataLoader
    workers are counted in the main process."""

    def __init__(self, images: ImageFolderDataset) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        image, label, used = self.images.load(index)
        sample = self.images.transform(image) if self.images.transform else image
        return sample, label, index if used != index else -1


def _within(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def split_images(
    data: dict,
    split: str,
    transform: Callable[[Image.Image], Any] | None = None,
    min_side: int | None = None,
) -> ImageFolderDataset:
    """The `split` images of a config's `data` section (its pixel limit applied)."""
    root = images_root(data) / split
    if not root.is_dir():
        raise StepError(
            f"{root}: no such image folder (data.root); a generated set that was removed is made "
            "again by `snakemake ... --forcerun make_dataset`"
        )
    return ImageFolderDataset(root, transform, max_pixels=data["max_pixels"], min_side=min_side)


def crop_seed(seed: int, step: int, slot: int) -> int:
    """Seed of the random crop and flip of batch slot `slot` at `step` (independent of workers)."""
    return int(np.random.SeedSequence([seed, step, slot]).generate_state(1)[0])


def train_crop(image: Image.Image | torch.Tensor, size: int, pad: int, seed: int) -> torch.Tensor:
    """A PIL image, or a uint8 (3, H, W) tensor on any device, to its uint8 (3, size, size)
    training crop: shorter side to `pad` (antialiased), centre `pad` square, then the random crop
    and horizontal flip drawn from `seed`."""
    from torchvision.transforms import functional as F

    image = F.center_crop(F.resize(image, pad, antialias=True), [pad, pad])
    if isinstance(image, Image.Image):
        image = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    rng = np.random.default_rng(seed)
    y, x0 = rng.integers(0, pad - size + 1, size=2)
    x = image[:, y : y + size, x0 : x0 + size]
    if rng.random() < 0.5:
        x = x.flip(-1)
    return x.contiguous()


def jpeg_bytes(path: str | os.PathLike, max_pixels: int | None) -> torch.Tensor | None:
    """The file as uint8 bytes when `decode_jpeg(mode=RGB)` gives the image `load_rgb` would (a
    JPEG in RGB or L mode, upright, within `max_pixels`: only its header is read), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if (
                    im.format != "JPEG"
                    or im.mode not in ("RGB", "L")
                    or im.getexif().get(0x0112, 1) != 1
                    or (max_pixels is not None and w * h > max_pixels)
                ):
                    return None
        return torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    except Exception:  # unreadable: load_rgb's path skips and logs it
        return None


def keep_items(items: list) -> list:
    """DataLoader collate that leaves a batch as its list of items (raw JPEGs differ in size)."""
    return items


class TrainCrops(torch.utils.data.Dataset):
    """Training view of an ImageFolderDataset: (index, crop seed) -> uint8 (3, size, size) crop.

    Decoding, the shorter-side resize to `crop_scale`·`size`, the square centre crop, the random
    crop and the horizontal flip ("random cropping and horizontal flipping", App. A) all run in the
    DataLoader worker (`train_crop`); the result stays uint8 so a batch
    crosses to the device at a quarter of the float size and is normalised there. The third item
    is the requested index when its file was unreadable (and replaced by the next one), else -1;
    skips are counted from it in the main process, since each worker has its own `skipped`.

    With `raw_jpeg`, an item is (crop or JPEG bytes, label, flag, index, seed): a JPEG that
    `jpeg_bytes` accepts is only read, and `device_batch` decodes and crops it in the main process.
    """

    def __init__(
        self,
        images: ImageFolderDataset,
        size: int,
        crop_scale: float = 1.125,
        raw_jpeg: bool = False,
    ) -> None:
        self.images, self.size, self.pad = images, size, round(size * crop_scale)
        self.raw_jpeg = raw_jpeg

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple:
        index, seed = key
        if self.raw_jpeg:
            path, label = self.images.samples[index]
            data = jpeg_bytes(path, self.images.max_pixels)
            if data is not None:
                return data, label, -1, index, seed
            return *self._crop(index, seed), index, seed
        return self._crop(index, seed)

    def _crop(self, index: int, seed: int) -> tuple[torch.Tensor, int, int]:
        image, label, used = self.images.load(index)
        return train_crop(image, self.size, self.pad, seed), label, index if used != index else -1

    def device_batch(
        self, items: list[tuple], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A `raw_jpeg` batch as (uint8 (B, 3, size, size) crops on `device`, labels, flags): its
        JPEG bytes decoded by one `decode_jpeg` call on `device` (nvJPEG on CUDA), then cropped
        like a worker's crops; a JPEG it cannot decode takes the worker's path here (PIL, or the
        next readable file)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        raw = [i for i, item in enumerate(items) if item[0].dim() == 1]
        decoded: dict[int, torch.Tensor] = {}
        try:
            if raw:
                data = [items[i][0] for i in raw]
                out = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
                decoded = dict(zip(raw, out, strict=True))
        except RuntimeError:  # one bad file fails the whole call: find it
            for i in raw:
                with contextlib.suppress(RuntimeError):
                    decoded[i] = decode_jpeg(items[i][0], mode=ImageReadMode.RGB, device=device)
        crops, labels, flags = [], [], []
        for i, (x, label, flag, index, seed) in enumerate(items):
            if i in decoded:
                x = train_crop(decoded[i], self.size, self.pad, seed)
            elif x.dim() == 1:
                x, label, flag = self._crop(index, seed)
            crops.append(x.to(device, non_blocking=True))
            labels.append(label)
            flags.append(flag)
        return torch.stack(crops), torch.tensor(labels), torch.tensor(flags)


class StepBatchSampler(torch.utils.data.Sampler):
    """This rank's (index, crop seed) keys for each optimiser step from `start` to `stop`.

    Indices come from `vcq.train.common.batch_indices` (seeded per-epoch permutations split across
    ranks), so a resumed run, any worker count and any world size see the same global order.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        from vcq.train.common import batch_indices

        for step in range(self.start, self.stop):
            idx = batch_indices(
                self.n, self.batch_size, step, self.seed, self.rank, self.world_size
            )
            base = self.rank * self.batch_size
            yield [(int(i), crop_seed(self.seed, step, base + j)) for j, i in enumerate(idx)]
