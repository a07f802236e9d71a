"""Measure the entropy cliff of a token set: per-position H(x_t | x_<t) vs theory (Fig. 2a)."""

from __future__ import annotations

import time
from pathlib import Path

from vcq import entropy
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.io import file_sha256
from vcq.metrics.records import EntropySummary, write_record
from vcq.runfiles import write_entropy_csv


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument("--tokens", required=True, help="HDF5 token store (train split)")
    parser.add_argument(
        "--schedule", required=True, help="schedule name, recorded in the JSON and the CSV"
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="tokenizer final.pt; if given, the token file must have been encoded by it",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="summary JSON (t* measured and theory)"
    )
    parser.add_argument("--out-csv", required=True, type=Path, help="per-position CSV")
    parser.add_argument("--out-plot", type=Path, default=None, help="PNG (default: beside the CSV)")
    args = parser.parse_args()
    cfg, log = load_step_config(args), setup_logging()
    entropy_cfg = cfg["entropy"]
    start = time.perf_counter()
    sha = file_sha256(args.tokenizer) if args.tokenizer else None
    tokens, k_sizes = entropy.read_token_matrix(
        args.tokens, entropy_cfg["view"], entropy_cfg["max_rows"], tokenizer_sha256=sha
    )
    log.info(
        "read %s tokens from %s in %.1f s", tokens.shape, args.tokens, time.perf_counter() - start
    )
    result = entropy.conditional_entropy(tokens)
    rows = entropy.entropy_table(result, k_sizes)
    summary = EntropySummary(
        schedule=args.schedule,
        **entropy.summarize(result, k_sizes, entropy_cfg["threshold_bits"]),
        seconds=round(time.perf_counter() - start, 2),
    )
    write_entropy_csv(args.out_csv, args.schedule, rows)
    write_record(args.out, summary)
    entropy.plot_entropy(rows, args.schedule, args.out_plot or args.out_csv.with_suffix(".png"))
    log.info(
        "%s: t* measured %d (H < %.2g bits from there on), theory %d, N = %d",
        args.schedule,
        summary.t_star_measured,
        entropy_cfg["threshold_bits"],
        summary.t_star_theory,
        result.n_sequences,
    )


if __name__ == "__main__":
    run_step(main)
