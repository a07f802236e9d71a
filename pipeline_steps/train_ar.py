"""Train the class-conditional AR transformer on pre-encoded tokens (next-token CE)."""

from __future__ import annotations

from pathlib import Path

from vcq import cluster
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.tokens import open_tokens
from vcq.io import file_sha256
from vcq.paths import Layout
from vcq.train.ar import ARData, needs_codebook, tokenizer_codebook, train
from vcq.train.common import divergence_reported
from vcq.train.distributed import init_distributed


def main() -> None:
    p = step_parser(__doc__)
    p.add_argument("--schedule", required=True)
    p.add_argument("--tokens", required=True, help="train token HDF5")
    p.add_argument("--val-tokens", required=True, help="val token HDF5")
    p.add_argument("--out", required=True, help="final model path (last.pt goes beside it)")
    p.add_argument(
        "--tokenizer", help="tokenizer final.pt; read only by models that need its code vectors"
    )
    p.add_argument("--out-position-loss", help="CSV t,train_loss,val_loss (default: the layout's)")
    p.add_argument("--stop-after", type=int, help="checkpoint and exit after this step (for tests)")
    args = p.parse_args()
    cfg = load_step_config(args)
    cluster.claim(args.out, f"train_ar {args.schedule} for {cfg['experiment']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = init_distributed(cfg["device"])
    setup_logging(str(Layout.step_log(out)) if env.is_main else None)
    pos_csv = Path(args.out_position_loss or Layout.of(cfg).position_loss(args.schedule))
    sha = file_sha256(args.tokenizer) if args.tokenizer else None
    with (
        open_tokens(args.tokens, tokenizer_sha256=sha) as train_store,
        open_tokens(
            args.val_tokens, train_store.k_sizes, train_store.tokenizer_sha256
        ) as val_store,
    ):
        codebook = (
            tokenizer_codebook(args.tokenizer) if needs_codebook(cfg, args.schedule) else None
        )
        with divergence_reported("ar", args.schedule):
            train(
                cfg,
                args.schedule,
                ARData(train_store, val_store, codebook),
                out,
                args.stop_after,
                pos_csv,
            )


if __name__ == "__main__":
    run_step(main)
