"""Reconstruct the val split: PSNR vs mean-colour baseline, code usage, image grid, recon .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.images import ImageFolderDataset, check_unreadable, eval_transform, split_images
from vcq.metrics.fid import feature_weights
from vcq.metrics.fid import rfid as metrics_rfid
from vcq.metrics.recon import reconstruct
from vcq.metrics.records import ReconstructionMetrics, write_record
from vcq.plotting import save_image_grid
from vcq.runfiles import write_recon_images
from vcq.tokenizer import load_tokenizer
from vcq.train.distributed import init_distributed


def val_images(data: dict, size: int) -> ImageFolderDataset:
    """Val images, resized and centre-cropped to `size`, in [-1, 1] (corrupt files skipped)."""
    return split_images(data, "val", eval_transform(size), min_side=size)


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument("--schedule", required=True)
    parser.add_argument(
        "--tokenizer", required=True, type=Path, help="the trained tokenizer (final.pt)"
    )
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON")
    parser.add_argument(
        "--out-images",
        required=True,
        type=Path,
        help="reconstructions and centre-cropped originals (.npz, vcq.runfiles.ReconImages)",
    )
    parser.add_argument(
        "--out-grid", type=Path, default=None, help="PNG grid (default: beside --out)"
    )
    parser.add_argument("--no-rfid", action="store_true", help="skip rFID (PSNR and usage only)")
    args = parser.parse_args()
    cfg = load_step_config(args)
    log = setup_logging()
    if not args.no_rfid:
        feature_weights(cfg)  # a missing file is an error before the val split is reconstructed
    device = init_distributed(cfg["device"]).device
    model = load_tokenizer(args.tokenizer, device)
    dataset = val_images(cfg["data"], model.image_size)
    shape = (len(dataset), model.image_size, model.image_size, 3)
    with write_recon_images(args.out_images, args.schedule, shape) as (recon_path, orig_path):
        recon = np.load(recon_path, mmap_mode="r+")
        orig = np.load(orig_path, mmap_mode="r+")
        result = reconstruct(model, dataset, cfg["encode"]["batch_size"], device, recon, orig)
        # (no loader workers: the dataset's own list holds every skip)
        check_unreadable(
            dataset.skipped, len(dataset), cfg["data"]["max_unreadable"], str(dataset.root)
        )
        # one val image of each of the first ten classes (the val split is sorted by class),
        # originals in the first row and their reconstructions below
        labels = dataset.labels
        picks = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)[:10]]
        save_image_grid(
            args.out_grid or args.out.with_suffix(".png"),
            np.concatenate([orig[picks], recon[picks]]),
            ncol=len(picks),
        )
        recon.flush(), orig.flush()
        del recon, orig
        rfid, label = (None, None) if args.no_rfid else metrics_rfid(recon_path, orig_path, cfg)
    record = ReconstructionMetrics(schedule=args.schedule, rfd=rfid, fd_label=label, **result)
    write_record(args.out, record)
    log.info(
        "%s: PSNR %.2f dB (mean-colour baseline %.2f dB), r%s %s, %.1f%% of the codes used",
        args.schedule,
        record.psnr,
        record.psnr_mean_colour_baseline,
        label,
        rfid,
        100 * record.codebook_usage,
    )


if __name__ == "__main__":
    run_step(main)
