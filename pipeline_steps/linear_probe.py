"""Linear probe (Table 6) on frozen code vectors of the first k tokens; writes the probe JSON."""

from __future__ import annotations

from functools import partial

import numpy as np

from vcq import cluster
from vcq.ar import load_ar
from vcq.cli import load_step_config, run_step, setup_logging, step_parser
from vcq.data.tokens import open_tokens
from vcq.io import file_sha256
from vcq.metrics.probe import code_features
from vcq.metrics.records import ProbeMetrics, write_record
from vcq.paths import Layout
from vcq.prologue import prologue_features
from vcq.train.checkpoint import Checkpointer, digest, run_key, store_digest
from vcq.train.distributed import init_distributed
from vcq.train.probe import train_probe


def _read_tokens(path: str, tokenizer_sha256: str) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(tokens (N, V, L), labels (N,), num_classes, content digest) of a token store, read whole."""
    with open_tokens(path, tokenizer_sha256=tokenizer_sha256) as store:
        return store.read(), store.labels, store.num_classes, store_digest(store)


def main() -> None:
    """Parse flags, train one probe per feature set, write the JSON atomically."""
    parser = step_parser(__doc__)
    parser.add_argument("--schedule", required=True, help="schedule name, recorded in the JSON")
    parser.add_argument("--tokenizer", required=True, help="tokenizer final.pt")
    parser.add_argument("--train-tokens", required=True, help="train.h5 token store")
    parser.add_argument(
        "--val-tokens", required=True, help="val.h5 token store (view 0 = centre crop)"
    )
    parser.add_argument(
        "--ar",
        default=None,
        help="AR final.pt; its prologue tokens, if any, are probed too (Table 6 row 'prologue')",
    )
    parser.add_argument("--out", required=True, help="results/EXP/probe/SCHEDULE.json")
    parser.add_argument("--log", default=None, help="log file")
    args = parser.parse_args()
    log = setup_logging(args.log)
    cfg = load_step_config(args)
    cluster.claim(args.out, f"linear_probe {args.schedule} for {cfg['experiment']}")
    probe_cfg = cfg["probe"]
    device = init_distributed(cfg["device"]).device
    from vcq.tokenizer import load_tokenizer

    codebook = (
        load_tokenizer(args.tokenizer).quantizer.codebook_vectors().detach().float().to(device)
    )
    sha = file_sha256(args.tokenizer)
    tr, ytr, num_classes, tr_digest = _read_tokens(args.train_tokens, sha)
    va, yva, _, va_digest = _read_tokens(args.val_tokens, sha)
    va = va[:, 0]
    ar_sha = file_sha256(args.ar) if args.ar else ""

    def probe(featurize, name: str, k: int) -> dict:
        # resumable per probe, keyed by the probe settings, the tokens and the models they read
        key = run_key(
            {"seed": cfg["seed"], "probe": probe_cfg, "features": name, "k": k},
            data=digest([tr_digest, va_digest]),
            upstream=digest([sha, ar_sha if name == "prologue" else ""]),
            world_size=1,
        )
        state = Checkpointer(Layout.of(cfg).probe_state(args.schedule, f"{name}_k{k}"), key)
        return train_probe(
            featurize, tr, ytr, va, yva, num_classes, probe_cfg, cfg["seed"], device, state
        )

    rows = []
    for k in probe_cfg["k"]:
        k_eff = tr.shape[2] if k is None else k
        res = probe(partial(code_features, codebook=codebook, k=k_eff), "codes", k_eff)
        log.info("k=%d top1 %.2f top5 %.2f", k_eff, res["top1"], res["top5"])
        rows.append({"features": "codes", "k": k_eff, **res})
    prologue = load_ar(args.ar, map_location=device)[0].prologue if args.ar else None
    if prologue is not None:
        res = probe(partial(prologue_features, prologue), "prologue", prologue.num_tokens)
        log.info(
            "prologue (%d tokens) top1 %.2f top5 %.2f",
            prologue.num_tokens,
            res["top1"],
            res["top5"],
        )
        rows.append({"features": "prologue", "k": prologue.num_tokens, **res})
    write_record(
        args.out,
        ProbeMetrics(
            schedule=args.schedule,
            rows=rows,
            features="codes: quantized code vectors of the first k tokens; "
            "prologue: prologue code vectors; standardised",
        ),
    )


if __name__ == "__main__":
    run_step(main)
