"""Tokenizer input pipeline throughput: decode + resize + random crop + flip of 500x375 JPEGs.

Generates a folder of JPEGs (ImageNet's typical size), then times the training DataLoader of
`vcq.train.tokenizer` (TrainCrops over ImageFolderDataset, step batch sampler, uint8 batches) with
0 and 2 workers at 256 px, every process on one torch thread as a loader worker runs (the 0-worker
rate is one worker's). Beside it: the decode time of one JPEG with PIL (what the loader uses) and
with torchvision.io.decode_jpeg (alone, and as the loader would use it), and the rate one GPU needs
at the paper's batch (256 over 8 GPUs = 32 images per GPU per step) and a 50 ms step (a
Base-tokenizer step at 40-50 % MFU on an H100), as CPU cores per GPU. Last line: images/s with 2
workers and the rate one GPU needs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vcq.data.images import ImageFolderDataset
from vcq.train.distributed import DistEnv
from vcq.train.tokenizer import image_loader

SIZE, PAPER_BATCH, GPUS, STEP_S = 256, 256, 8, 0.050


def make_jpegs(root: Path, n: int) -> None:
    """n smooth random 500x375 JPEGs (quality 90) in 10 class folders."""
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        noise = rng.integers(-20, 20, (375, 500, 3))
        img = Image.fromarray(
            np.clip(np.asarray(img, dtype=np.int64) + noise, 0, 255).astype(np.uint8)
        )
        (root / f"c{i % 10}").mkdir(parents=True, exist_ok=True)
        img.save(root / f"c{i % 10}" / f"{i}.JPEG", quality=90)


def rate(data: ImageFolderDataset, workers: int, batch: int, steps: int) -> float:
    """Images/s of the loader over `steps` batches, worker start-up included."""
    import torch

    train_cfg = {
        "num_workers": workers,
        "batch_size": batch,
        "pin_memory": False,
        "prefetch_factor": 2,
        "decode": "pil",
    }
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    t0 = time.perf_counter()
    n = sum(
        len(x)
        for x, _, _ in image_loader(
            data, train_cfg, SIZE, crop_scale=1.125, seed=0, start=0, stop=steps, env=env
        )
    )
    return n / (time.perf_counter() - t0)


def decode_ms(path: Path, repeat: int = 50) -> dict[str, float]:
    """Milliseconds to decode `path` to RGB: PIL as the loader does (`load_rgb`: file, header,
    EXIF orientation, RGB image), torchvision's decode_jpeg alone (bytes in memory to a tensor),
    and decode_jpeg as the loader would have to use it for the same pixels (read the file and the
    header for the mode and orientation, hand a PIL image to the PIL resize)."""
    import numpy as np
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    from vcq.data.images import load_rgb

    data = read_file(str(path))

    def as_the_loader() -> Image.Image:
        with Image.open(path) as im:
            assert im.mode in ("RGB", "L") and im.getexif().get(0x0112, 1) == 1
        raw = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
        return Image.fromarray(decode_jpeg(raw, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy())

    timings = {}
    for name, decode in (
        ("PIL (load_rgb, the loader's)", lambda: load_rgb(path)),
        ("torchvision.io.decode_jpeg alone", lambda: decode_jpeg(data, mode=ImageReadMode.RGB)),
        ("torchvision.io.decode_jpeg as the loader would use it", as_the_loader),
    ):
        decode()
        t0 = time.perf_counter()
        for _ in range(repeat):
            decode()
        timings[name] = (time.perf_counter() - t0) / repeat * 1e3
    return timings


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()
    import torch

    # a loader worker runs on one thread (torch sets it so in each worker): so does the main
    # process here, which decodes itself with 0 workers
    torch.set_num_threads(1)
    need = PAPER_BATCH / GPUS / STEP_S
    with tempfile.TemporaryDirectory() as tmp:
        make_jpegs(Path(tmp), args.images)
        data = ImageFolderDataset(tmp)
        rates = {w: rate(data, w, args.batch, args.steps) for w in (0, 2)}
        decode = decode_ms(next(Path(tmp).rglob("*.JPEG")))
    for w, r in rates.items():
        print(f"{w} workers: {r:7.1f} images/s")
    for name, ms in decode.items():
        print(f"decode one 500x375 JPEG, {name}: {ms:.2f} ms")
    print(
        f"one GPU needs {need:.0f} images/s "
        f"(batch {PAPER_BATCH} on {GPUS} GPUs, {STEP_S * 1e3:.0f} ms step): "
        f"about {need / rates[0]:.0f} CPU cores per GPU at this machine's one-worker rate"
    )
    print(
        f"tokenizer input: {rates[2]:.0f} images/s with 2 workers ({rates[0]:.0f} with 0); "
        f"one GPU needs {need:.0f}"
    )


if __name__ == "__main__":
    main()
