"""Train a VCQ tokenizer for one codebook schedule (resumable, DDP-aware)."""

from __future__ import annotations

from pathlib import Path

from vcq import cluster
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.images import split_images
from vcq.losses import lpips_weights
from vcq.paths import Layout
from vcq.train.common import divergence_reported
from vcq.train.distributed import init_distributed
from vcq.train.tokenizer import train


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument("--schedule", required=True, help="schedule name from the config")
    parser.add_argument("--out", required=True, type=Path, help="final checkpoint path (final.pt)")
    parser.add_argument(
        "--stop-after", type=int, help="checkpoint and exit after this step (for tests)"
    )
    args = parser.parse_args()
    cfg = load_step_config(args)
    lpips_weights(cfg["tokenizer"]["train"])  # a missing file is an error before any compute
    cluster.claim(args.out, f"train_tokenizer {args.schedule} for {cfg['experiment']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env = init_distributed(cfg["device"])
    log = setup_logging(str(Layout.step_log(args.out)) if env.is_main else None)
    # JPEGs decode at the smallest reduction that still covers the training crop's resize
    crop_side = round(cfg["tokenizer"]["model"]["image_size"] * cfg["data"]["crop_scale"])
    dataset = split_images(cfg["data"], "train", min_side=crop_side)
    log.info("training tokenizer %s on %d images", args.schedule, len(dataset))
    with divergence_reported("tokenizer", args.schedule):
        train(cfg, args.schedule, dataset, args.out, args.stop_after)
    steps = cfg["tokenizer"]["train"]["steps"]
    if args.stop_after is not None and args.stop_after < steps:
        log.info(
            "stopped after step %d of %d, no %s yet (a rerun resumes)",
            args.stop_after,
            steps,
            args.out,
        )
    else:
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    run_step(main)
