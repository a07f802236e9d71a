"""Encode an image split into the HDF5 token store (train: encode.views recipe, val: centre crop).

Resumable: rerunning after a kill continues from `<out>.partial`; at the end of a SLURM time slice
(vcq.preempt) it stops after the batch it is on and requeues. Under torchrun, rank r encodes rows
r::world into `<out>.rank{r}` and rank 0 merges them after a barrier.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from vcq import cluster, preempt
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.config import k_sizes_for
from vcq.data.images import FlaggedSkips, check_unreadable, normalize_uint8, split_images
from vcq.data.source import images_root, source_key
from vcq.data.tokens import TokenWriter, merge_shards
from vcq.data.views import view_names, views_transform
from vcq.io import content_key, file_sha256
from vcq.numerics import check_finite_weights, inference_autocast
from vcq.paths import Layout
from vcq.tokenizer import load_tokenizer_with_extra
from vcq.train.distributed import cleanup_distributed, init_distributed
from vcq.train.log import progress


def checked_k_sizes(
    cfg: dict, schedule: str, tokenizer_path: Path, model_sizes: list[int], extra: dict
) -> np.ndarray:
    """K_t of the checkpoint, after checking it (`extra`: its metadata) belongs to `schedule` of
    this config."""
    saved = extra.get("schedule", schedule)
    if saved != schedule:
        sys.exit(f"{tokenizer_path} was trained for schedule '{saved}', not '{schedule}'")
    k_sizes = np.asarray(model_sizes, dtype=np.int64)
    if not np.array_equal(k_sizes, k_sizes_for(cfg, schedule)):
        sys.exit(
            f"{tokenizer_path}: K_t differ from schedule '{schedule}' in {cfg['_config_path']}"
        )
    return k_sizes


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument("--schedule", required=True, help="schedule name from the config")
    parser.add_argument("--tokenizer", required=True, type=Path, help="tokenizer final.pt")
    parser.add_argument("--split", required=True, choices=["train", "val"])
    parser.add_argument("--out", required=True, type=Path, help="output .h5")
    # Test hook: exit after this many batches, as if killed, leaving the .partial behind.
    parser.add_argument("--stop-after-batches", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = load_step_config(args)
    log = setup_logging()
    cluster.claim(args.out, f"encode_tokens {args.schedule} {args.split} for {cfg['experiment']}")
    preempt.install()
    env = init_distributed(cfg["device"])
    enc = cfg["encode"]

    model, extra = load_tokenizer_with_extra(args.tokenizer, env.device)
    check_finite_weights(model, str(args.tokenizer))
    k_sizes = checked_k_sizes(cfg, args.schedule, args.tokenizer, model.k_sizes, extra)
    recipe = enc["views"] if args.split == "train" else "center"
    names = view_names(recipe)
    # uint8 views through the loader (a quarter of float32's bytes), normalised on the device
    transform = views_transform(recipe, enc["resize"], enc["crop"], uint8=True)
    images = images_root(cfg["data"]) / args.split
    dataset = split_images(cfg["data"], args.split, transform, min_side=enc["resize"])
    skipped: list[str] = []
    max_unreadable = cfg["data"]["max_unreadable"]
    rows = np.arange(env.rank, len(dataset), env.world_size)
    target = args.out if env.world_size == 1 else Layout.rank_shard(args.out, env.rank)
    writer = TokenWriter(
        target,
        num_rows=len(rows),
        k_sizes=k_sizes,
        view_names=names,
        num_classes=dataset.num_classes,
        schedule=args.schedule,
        tokenizer_sha256=file_sha256(args.tokenizer),
        chunk_rows=enc["chunk_rows"],
        # A .partial continues only under the same data and views (batch boundaries included).
        # And the source key (its file listing): a repaired folder starts over.
        inputs_sha256=content_key(
            data=cfg["data"],
            source=source_key(cfg["data"]),
            split=args.split,
            recipe=recipe,
            resize=enc["resize"],
            crop=enc["crop"],
            batch_size=enc["batch_size"],
        ),
        rows=rows if env.world_size > 1 else None,
    )
    pending = writer.pending_rows()
    log.info(
        "%s/%s: %d images x %d views (%s), %d to encode on rank %d/%d",
        args.schedule,
        args.split,
        len(dataset),
        len(names),
        recipe,
        len(pending),
        env.rank,
        env.world_size,
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(FlaggedSkips(dataset), rows[pending].tolist()),
        batch_size=enc["batch_size"],
        num_workers=enc["num_workers"],
        pin_memory=env.device.type == "cuda",
    )
    bar = progress(len(pending), desc=f"encode {args.schedule} {args.split}", enabled=env.is_main)
    with writer, torch.inference_mode(), inference_autocast(env.device):
        for b, (views, labels, replaced) in enumerate(loader):
            if b == args.stop_after_batches:
                log.info("stopping after %d batches (test hook)", b)
                return
            n, v = views.shape[:2]
            indices, _ = model.encode(
                normalize_uint8(views.flatten(0, 1).to(env.device, non_blocking=True))
            )
            local = pending[b * enc["batch_size"] : b * enc["batch_size"] + n]
            writer.write(local, indices.view(n, v, -1).cpu().numpy(), labels.numpy())
            bar.update(n)
            # a folder that lost its images (e.g. rewritten under this job) stops the step
            # before the file is finalised (issue 22 case 4)
            skipped += [str(dataset.samples[i][0]) for i in replaced[replaced.ne(-1)].tolist()]
            check_unreadable(skipped, len(rows), max_unreadable, f"{images}")
            # per rank, not collective: ranks may hold one batch more or less than another
            if preempt.signalled():
                break
        bar.close()
        if len(writer.pending_rows()):
            writer.close()
            preempt.end_slice(f"encode_tokens {args.schedule} {args.split}", log)
        writer.finalize()
    if skipped:
        log.warning(
            "%d corrupt images skipped (replaced by the next readable one): %s",
            len(skipped),
            skipped[:10],
        )
    if env.world_size > 1:
        dist.barrier()
        if env.is_main:
            shards = [Layout.rank_shard(args.out, r) for r in range(env.world_size)]
            merge_shards(shards, args.out)
            for s in shards:
                s.unlink()
        dist.barrier()
    log.info("wrote %s", args.out)
    cleanup_distributed()


if __name__ == "__main__":
    run_step(main)
