"""Train the demo feature network (FD (demo features)) on the data set's train image folder."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.images import center_crop_arr, check_unreadable, split_images
from vcq.metrics.fid import sample_size
from vcq.paths import Layout
from vcq.train.checkpoint import (
    Checkpointer,
    listing_digest,
    run_key,
    save_checkpoint,
)
from vcq.train.features import train_demo_net


def _to_uint8_chw(img, size: int | None) -> torch.Tensor:
    """PIL image → uint8 (3, H, W), brought to size × size as the reference images are."""
    arr = center_crop_arr(img, size) if size else np.asarray(img.convert("RGB"))
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def main() -> None:
    """Parse flags, train the network, save its weights atomically to eval.demo_weights/--out."""
    parser = step_parser(__doc__)
    parser.add_argument("--out", default=None, help="weights file; default eval.demo_weights")
    parser.add_argument("--log", default=None, help="log file")
    args = parser.parse_args()
    log = setup_logging(args.log)
    cfg = load_step_config(args)
    demo_net_cfg = cfg["eval"]["demo_net"]
    # at the resolution of the samples it will judge (a folder's images may have any size)
    size = sample_size(cfg)
    data = split_images(cfg["data"], "train", partial(_to_uint8_chw, size=size), min_side=size)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=demo_net_cfg["batch_size"],
        shuffle=True,
        generator=torch.Generator().manual_seed(cfg["seed"]),
    )
    log.info("training demo feature net on %d images, %d classes", len(data), len(data.classes))
    out = args.out or cfg["eval"]["demo_weights"]
    key = run_key(
        {"seed": cfg["seed"], "demo_net": demo_net_cfg, "size": size},
        data=listing_digest(data.root, data.samples),
        upstream="",
        world_size=1,
    )
    state = Checkpointer(Layout.resume_state(out), key)
    _, ckpt = train_demo_net(loader, len(data.classes), demo_net_cfg, cfg["seed"], state)
    # (no loader workers: the dataset's own list holds every skip)
    check_unreadable(data.skipped, len(data), cfg["data"]["max_unreadable"], str(data.root))
    save_checkpoint(out, ckpt)
    log.info("wrote %s", out)


if __name__ == "__main__":
    run_step(main)
