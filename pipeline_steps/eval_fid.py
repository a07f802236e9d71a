"""Compute FID/FD, IS, precision/recall and KID of a sample .npz against a reference."""

from __future__ import annotations

from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.source import images_root
from vcq.metrics.fid import evaluate
from vcq.metrics.records import GenerationMetrics, write_record
from vcq.runfiles import sample_names
from vcq.sampling import find_preset


def main() -> None:
    """Parse flags, evaluate the samples, write the generation-metrics JSON atomically."""
    parser = step_parser(__doc__)
    parser.add_argument(
        "--samples", required=True, help="sample .npz (arr_0 uint8 NHWC) or image folder"
    )
    parser.add_argument(
        "--reference",
        default="auto",
        help="image folder or ADM .npz; auto = eval.reference or data val folder",
    )
    parser.add_argument(
        "--out", required=True, help="output JSON, e.g. results/EXP/gen/SCHEDULE/PRESET.json"
    )
    parser.add_argument(
        "--schedule",
        default=None,
        help="schedule recorded in the JSON; must match the one a sample .npz names",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="preset whose settings are recorded; must match the one a sample .npz names",
    )
    parser.add_argument("--log", default=None, help="log file")
    args = parser.parse_args()
    log = setup_logging(args.log)
    cfg = load_step_config(args)
    reference = args.reference
    if reference == "auto":
        reference = cfg["eval"]["reference"] or str(images_root(cfg["data"]) / "val")
    log.info(
        "evaluating %s against %s with %s features",
        args.samples,
        reference,
        cfg["eval"]["feature_extractor"],
    )
    try:
        schedule, preset = sample_names(args.samples, args.schedule, args.preset)
        if schedule is None:
            parser.exit(1, f"error: {args.samples} names no schedule: give --schedule\n")
        res = GenerationMetrics(
            schedule=schedule,
            preset=find_preset(cfg["sampling"], preset) if preset else {},
            **evaluate(args.samples, reference, cfg),
        )
    except FileNotFoundError as e:
        parser.exit(1, f"error: {e}\n")
    write_record(args.out, res)
    log.info(
        "%s %.4f  IS %.2f  precision %s  recall %s -> %s",
        res.fd_label,
        res.fd,
        res.is_mean,
        res.precision,
        res.recall,
        args.out,
    )


if __name__ == "__main__":
    run_step(main)
