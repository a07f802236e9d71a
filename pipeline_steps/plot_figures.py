"""Plot Fig. 2 (budget and K_t per schedule), per-position AR loss, sample grids and training curves."""

from pathlib import Path

from vcq import report
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.config import load_config


def _stems(paths: list[str]) -> dict[str, str]:
    return {Path(p).stem.removesuffix("_position_loss"): p for p in paths}


def _parents(paths: list[str]) -> dict[str, str]:
    return {Path(p).parent.name: p for p in paths}


def main() -> None:
    parser = step_parser(__doc__)
    parser.add_argument("--out-dir", required=True, help="folder for the figures (PNG + PDF)")
    parser.add_argument("--entropy-csv", nargs="*", default=[],
                        help="results/{exp}/entropy/<schedule>.csv; omit for the theory-only Fig. 2")
    parser.add_argument("--position-loss", nargs="*", default=[],
                        help="results/{exp}/ar/<schedule>_position_loss.csv")
    parser.add_argument("--samples", nargs="*", default=[],
                        help="work/{exp}/samples/<schedule>/<preset>.npz (one grid per file)")
    parser.add_argument("--tokenizer-log", nargs="*", default=[],
                        help="work/{exp}/tokenizer/<schedule>/train_log.jsonl (named by parent folder)")
    parser.add_argument("--ar-log", nargs="*", default=[],
                        help="work/{exp}/ar/<schedule>/train_log.jsonl (named by parent folder)")
    parser.add_argument("--recon", nargs="*", default=[],
                        help="results/{exp}/recon/<schedule>.json (codebook usage per position)")
    parser.add_argument("--only-theory", action="store_true",
                        help="only Fig. 2 from the config (theoretical budget and K_t), no run files")
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    out = Path(args.out_dir)
    if args.only_theory:
        written = report.plot_schedules(cfg, out / "fig2_theory")
        if cfg["report"]["reference_configs"]:
            ref = report.merge_schedules([load_config(c) for c in cfg["report"]["reference_configs"]])
            written += report.plot_schedules(ref, out / "fig2_theory_reference")
        log.info("wrote %s", [str(p) for p in written])
        return
    written = report.plot_schedules(cfg, out / "fig2_schedules", _stems(args.entropy_csv))
    if args.position_loss:
        written += report.plot_lines(_stems(args.position_loss), "t", ["train_loss", "val_loss"],
                                     out / "position_loss", "position t", "cross-entropy (nats)")
    if args.recon:
        written += report.plot_usage(_stems(args.recon), out / "codebook_usage")
    for npz in map(Path, args.samples):
        written.append(report.sample_grid(npz, out / f"samples_{npz.parent.name}_{npz.stem}.png"))
    if args.tokenizer_log:
        written += report.plot_lines(_parents(args.tokenizer_log), "step", ["l1", "quant"],
                                     out / "tokenizer_curves", "step", "loss", log_y=True)
    if args.ar_log:
        written += report.plot_lines(_parents(args.ar_log), "step", ["loss", "val_loss"],
                                     out / "ar_curves", "step", "cross-entropy (nats)", log_y=True)
    log.info("wrote %s", [str(p) for p in written])


if __name__ == "__main__":
    run_step(main)
