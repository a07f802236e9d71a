"""Linear probe (Table 6) on frozen code vectors of the first k tokens; writes the probe JSON."""

from __future__ import annotations

import h5py
import numpy as np
import torch

from vcq.cli import load_step_config, setup_logging, step_parser
from vcq.io import write_json
from vcq.metrics.probe import code_features, train_probe
from vcq.prologue import PrologueEncoder


def load_prologue(ar_path: str) -> PrologueEncoder | None:
    """The prologue encoder saved with an AR checkpoint, or None if it has none."""
    extra = torch.load(ar_path, map_location="cpu", weights_only=False)["extra"]
    if "prologue" not in extra:
        return None
    enc = PrologueEncoder(**extra["prologue"]["config"]).eval()
    enc.load_state_dict(extra["prologue"]["state_dict"])
    return enc


@torch.no_grad()
def prologue_features(enc: PrologueEncoder, tokens: np.ndarray, batch: int = 4096) -> torch.Tensor:
    """Flattened prologue code vectors (M, P * width) of visual token rows (M, L)."""
    out = []
    for i in range(0, len(tokens), batch):
        ids, _ = enc(torch.as_tensor(tokens[i:i + batch].astype(np.int64)))
        out.append(enc.codes()[ids].flatten(1))
    return torch.cat(out)


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
    parser.add_argument("--ar", default=None,
                        help="AR final.pt; if it carries prologue tokens they are probed too (Table 6 row 'prologue')")
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
        rows.append({"features": "codes", "k": k_eff, **res})
    prologue = load_prologue(args.ar) if args.ar else None
    if prologue is not None:
        res = train_probe(prologue_features(prologue, tr), torch.as_tensor(ytr), prologue_features(prologue, va),
                          torch.as_tensor(yva), num_classes, pcfg, seed=cfg["seed"])
        log.info("prologue (%d tokens) top1 %.2f top5 %.2f", prologue.num_tokens, res["top1"], res["top5"])
        rows.append({"features": "prologue", "k": prologue.num_tokens, **res})
    write_json(args.out, {"rows": rows, "features": "codes: quantized code vectors of the first k tokens; "
                                                    "prologue: prologue code vectors; standardised"})


if __name__ == "__main__":
    main()
