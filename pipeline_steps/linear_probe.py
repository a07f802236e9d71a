"""Linear probe (Table 6) on frozen code vectors of the first k tokens; writes the probe JSON."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from vcq.cli import load_step_config, setup_logging, step_parser
from vcq.io import write_json
from vcq.metrics.probe import code_features, train_probe


def _read_tokens(path: str, views: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(tokens (M, L), labels (M,), num_classes) from a token store; views: all | first."""
    with h5py.File(path, "r") as f:
        tokens, labels = f["tokens"][:], f["labels"][:]
        num_classes = int(f.attrs["num_classes"])
    if views == "first":
        tokens = tokens[:, :1]
    n, v, length = tokens.shape
    return tokens.reshape(n * v, length), np.repeat(labels, v), num_classes


def main() -> None:
    """Parse flags, build features for every k, train the probes, write the JSON atomically."""
    parser = step_parser(__doc__)
    parser.add_argument("--tokenizer", required=True, help="tokenizer final.pt")
    parser.add_argument("--train-tokens", required=True, help="train.h5 token store")
    parser.add_argument("--val-tokens", required=True, help="val.h5 token store (view 0 = centre crop)")
    parser.add_argument("--out", required=True, help="results/EXP/probe/SCHEDULE.json")
    parser.add_argument("--log", default=None, help="log file")
    args = parser.parse_args()
    log = setup_logging(args.log)
    cfg = load_step_config(args)
    pcfg = cfg["probe"]
    from vcq.tokenizer import load_tokenizer

    codebook = load_tokenizer(args.tokenizer).quantizer.codebook_vectors().detach().cpu().float()
    tr, ytr, num_classes = _read_tokens(args.train_tokens, pcfg["train_views"])
    va, yva, _ = _read_tokens(args.val_tokens, "first")
    rows = []
    for k in pcfg["k"]:
        k_eff = tr.shape[1] if k is None else k
        res = train_probe(code_features(tr, codebook, k_eff), torch.as_tensor(ytr),
                          code_features(va, codebook, k_eff), torch.as_tensor(yva),
                          num_classes, pcfg, seed=cfg["seed"])
        log.info("k=%d top1 %.2f top5 %.2f", k_eff, res["top1"], res["top5"])
        rows.append({"k": k_eff, **res})
    write_json(args.out, {"rows": rows, "features": "quantized code vectors of the first k tokens, standardised"})


if __name__ == "__main__":
    main()
