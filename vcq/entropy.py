"""The entropy cliff: Prop. 1 in theory, and plug-in conditional entropies of real token sets.

H(x_t | x_<t) is estimated over exact prefixes: with n_g sequences sharing prefix g,
H(x_<=t) = -sum_g (n_g/N) log2(n_g/N) and H(x_t | x_<t) = H(x_<=t) - H(x_<t). Prefixes are kept as
one integer id per sequence and refined one position at a time (sort-based relabelling), so the
cost is O(N log N) per position and memory O(N); once every prefix is unique the conditional
entropy is exactly zero for all later positions (the cliff) and the refinement stops.

Standalone for any tokenizer's (N, L) token ids: `python -m vcq.entropy TOKENS --help`.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcq import schedules
from vcq.io import StepError, reading


def cliff_position(n_images: int, k: int) -> int:
    """Prop. 1: t* = ceil(log2 N / log2 K), the first position a constant K-codebook loses."""
    t = 0
    while k**t < n_images:  # integer form of the ceiling: exact even where log2 N rounds (N ~ 1e17)
        t += 1
    return t


@dataclass
class EntropyResult:
    """Per-position statistics of a token set (arrays of length L, entropies in bits)."""

    cond_entropy: np.ndarray
    marginal_entropy: np.ndarray
    distinct_values: np.ndarray
    distinct_prefixes: np.ndarray
    n_sequences: int

    def utilization(self, k_sizes: np.ndarray) -> np.ndarray:
        """Fraction of the K_t codes that occur at position t."""
        return self.distinct_values / np.asarray(k_sizes, dtype=np.float64)


def _entropy_of_counts(counts: np.ndarray, n: int) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def conditional_entropy(tokens: np.ndarray) -> EntropyResult:
    """Plug-in H(x_t | x_<t), H(x_t), distinct values and prefixes x_<=t of tokens (N, L)."""
    tokens = np.asarray(tokens)
    n, length = tokens.shape
    cond, marg = np.zeros(length), np.zeros(length)
    distinct, prefixes = np.zeros(length, np.int64), np.full(length, n, np.int64)
    prefix = np.zeros(n, np.int64)
    n_groups, h_prev = 1, 0.0
    for t in range(length):
        col = tokens[:, t].astype(np.int64)
        values = np.bincount(col)
        distinct[t] = np.count_nonzero(values)
        marg[t] = _entropy_of_counts(values, n)
        if n_groups == n:  # every prefix already unique: nothing left to condition on
            continue
        # Relabelled prefix ids are < n_groups <= N, so the combined key stays far below 2^63.
        key = prefix * (int(col.max()) + 1) + col
        _, prefix, counts = np.unique(key, return_inverse=True, return_counts=True)
        prefix = prefix.reshape(-1)
        n_groups = len(counts)
        h = _entropy_of_counts(counts, n)
        cond[t], h_prev = h - h_prev, h
        prefixes[t] = n_groups
    return EntropyResult(np.maximum(cond, 0.0), marg, distinct, prefixes, n)


def measured_cliff(result: EntropyResult, threshold_bits: float) -> int:
    """The position t from which H(x_s | x_<s) stays below `threshold_bits` for every s >= t.

    Same convention as Prop. 1 and Eq. 2: positions count from 0, so t* = 2 means x_0 and x_1
    carry information and every later token is (almost) determined by its prefix. Requiring the
    collapse to last keeps a redundant early token (common in small tokenizers) from counting.
    """
    above = np.nonzero(result.cond_entropy >= threshold_bits)[0]
    return int(above[-1]) + 1 if above.size else 0


def read_token_matrix(
    path: str | Path,
    view: int | str = 0,
    max_rows: int | None = None,
    chunk_rows: int = 65536,
    tokenizer_sha256: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (N, L) in the file's compact dtype and K_t from an HDF5 token store, read in chunks.

    `view` is a view index, or "all" to treat every (image, view) pair as a sequence. The store
    checks the file (and, if given, the tokenizer hash) on open and K_t bounds on every chunk.
    """
    from vcq.data.tokens import open_tokens

    with open_tokens(path, tokenizer_sha256=tokenizer_sha256) as store:
        n = min(store.num_rows, max_rows) if max_rows else store.num_rows
        views = range(store.num_views) if view == "all" else [int(view)]
        out = np.empty((n * len(views), store.seq_len), dtype=store.tokens.dtype)
        for i, v in enumerate(views):
            row = 0
            for block in store.iter_chunks(v, chunk_rows):
                block = block[: n - row]
                out[i * n + row : i * n + row + len(block)] = block
                row += len(block)
                if row == n:
                    break
        return out, store.k_sizes


def entropy_table(
    result: EntropyResult, k_sizes: np.ndarray, n_images: int | None = None
) -> list[dict]:
    """Rows of the per-position entropy CSV with the theory of Fig. 2(a) alongside.

    `theory_remaining_bits` is log2 N - I(t) clipped at 0 (information left for x_t and later when
    every earlier token used its full log2 K_s); `theory_bound_bits` = min(log2 K_t, remaining) is
    the Fig. 2(a) curve of such a maximally informative token set. N is `n_images`, by default
    the number of sequences measured.
    """
    k_sizes = np.asarray(k_sizes, np.int64)
    budget = np.maximum(
        schedules.remaining_budget(k_sizes, n_images or result.n_sequences)[:-1], 0.0
    )
    bound = np.minimum(np.log2(k_sizes), budget)
    util = result.utilization(k_sizes)
    return [
        {
            "t": t,
            "k_t": int(k_sizes[t]),
            "cond_entropy_bits": float(result.cond_entropy[t]),
            "marginal_entropy_bits": float(result.marginal_entropy[t]),
            "utilization": float(util[t]),
            "distinct_prefixes": int(result.distinct_prefixes[t]),
            "theory_remaining_bits": float(budget[t]),
            "theory_bound_bits": float(bound[t]),
        }
        for t in range(len(k_sizes))
    ]


def summarize(
    result: EntropyResult, k_sizes: np.ndarray, threshold_bits: float, n_images: int | None = None
) -> dict:
    """The cliff in numbers: measured t* (H below the threshold from there on) and Eq. 2's t*."""
    n = n_images or result.n_sequences
    return {
        "n_sequences": result.n_sequences,
        "n_images": n,
        "seq_len": len(k_sizes),
        "log2_n": round(math.log2(n), 4),
        "threshold_bits": threshold_bits,
        "t_star_measured": measured_cliff(result, threshold_bits),
        "t_star_theory": schedules.cliff_position_vcq(np.asarray(k_sizes, np.int64), n),
        "measured_bits_total": round(float(result.cond_entropy.sum()), 4),
    }


def plot_entropy(rows: list[dict], title: str, png: str | Path) -> Path:
    """Measured H(x_t | x_<t) and H(x_t) against the theoretical bound, per position (PNG)."""
    from vcq.plotting import pyplot, save_figure

    plt = pyplot()
    t = [r["t"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(t, [r["theory_bound_bits"] for r in rows], label="theory: min(log2 K_t, log2 N - I(t))")
    ax.plot(t, [r["cond_entropy_bits"] for r in rows], "o-", ms=3, label="measured H(x_t | x_<t)")
    ax.plot(t, [r["marginal_entropy_bits"] for r in rows], ":", label="measured H(x_t)")
    ax.set(xlabel="position t", ylabel="bits", title=f"entropy cliff: {title}")
    ax.legend(fontsize=8)
    return save_figure(fig, [png])[0]


class InputError(ValueError):
    """A token file or codebook-size argument the CLI cannot use."""


def load_tokens(
    path: str | Path, key: str | None = None, view: int | str = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, L) token ids and K_t (None unless the file records them) from .npy, .npz, .pt or a token
    store.

    A (N, V, L) array is read like a token store: one view, or every (image, view) pair with "all".
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return read_token_matrix(path, view)
    if suffix == ".npy":
        with reading(path, None):
            arr = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with reading(path, None), np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
        name = _pick_key(path, keys, key)  # outside `reading`: its own errors are not damage
        with reading(path, None), np.load(path, allow_pickle=False) as z:
            arr = z[name]
    elif suffix == ".pt":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
            # torch words a cut-off file and a foreign pickle in many lines; one is enough
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise InputError(f"{path}: not a readable tensor file ({detail})") from e
        if isinstance(obj, dict):
            obj = obj[
                _pick_key(path, [k for k, v in obj.items() if isinstance(v, torch.Tensor)], key)
            ]
        if not isinstance(obj, torch.Tensor):
            raise InputError(f"{path}: holds a {type(obj).__name__}, not a tensor of token ids")
        arr = obj.numpy()
    else:
        raise InputError(f"{path}: unknown token file type {suffix!r} (use .npy, .npz, .pt, .h5)")
    if arr.ndim == 3:
        arr = arr.reshape(-1, arr.shape[2]) if view == "all" else arr[:, int(view)]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"{path}: expected integer token ids of shape (N, L) or (N, V, L), "
            f"got {arr.dtype} {arr.shape}"
        )
    if arr.size and arr.min() < 0:
        raise InputError(f"{path}: negative token id {int(arr.min())}")
    return arr, None


def _pick_key(path: Path, keys: list[str], key: str | None) -> str:
    if key is not None:
        if key not in keys:
            raise InputError(f"{path}: no array {key!r} (have {keys})")
        return key
    for k in ("tokens", "arr_0"):
        if k in keys:
            return k
    if len(keys) == 1:
        return keys[0]
    raise InputError(f"{path}: several arrays {keys}; choose one with --key")


def parse_k_sizes(spec: str, length: int) -> np.ndarray:
    """K_t from `K` (constant), `K0,K1,...` (L values) or `kind:kmin:kmax[:alpha]` (Eq. 3)."""
    try:
        if ":" in spec:
            kind, *nums = spec.split(":")
            alpha = float(nums[2]) if len(nums) == 3 else 2.5
            return schedules.schedule_k_sizes(kind, int(nums[0]), int(nums[1]), length, alpha)
        values = [int(v) for v in spec.split(",")]
    except (ValueError, IndexError, KeyError) as e:
        raise InputError(f"--k-sizes {spec!r}: {e}") from None
    if len(values) == 1:
        values = values * length
    if len(values) != length or min(values) < 1:
        raise InputError(
            f"--k-sizes {spec!r}: need 1 or L = {length} positive sizes, got {len(values)}"
        )
    return np.asarray(values, np.int64)


def main(argv: list[str] | None = None) -> int:
    """`python -m vcq.entropy TOKENS`: the entropy cliff of any tokenizer's token ids."""
    script = Path(sys.argv[0]).name == "vcq-entropy"  # the console script of `pip install .`
    parser = argparse.ArgumentParser(
        prog="vcq-entropy" if script else "python -m vcq.entropy",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Measure H(x_t | x_<t) per position (exact plug-in over full prefixes), the "
        "measured cliff t* and the theoretical curve log2 N - sum_{s<t} log2 K_s (Prop. 1, "
        "Eq. 2) of an (N, L) array of token ids. Writes PREFIX.csv, PREFIX.json, PREFIX.png.",
    )
    parser.add_argument(
        "tokens",
        help="token ids: .npy, .npz, .pt (a tensor, or a dict of tensors; "
        "loaded with weights_only) of shape (N, L) or (N, V, L), or a vcq HDF5 token store",
    )
    parser.add_argument(
        "--k-sizes",
        default=None,
        help="codebook size per position: K, K0,K1,..., or "
        "kind:kmin:kmax[:alpha] (constant, linear, cosine, power); default: from a token "
        "store, else inferred as max id + 1 per position (a lower bound of the true K_t)",
    )
    parser.add_argument(
        "--key",
        default=None,
        help="array name inside a .npz or .pt dict (default: tokens, arr_0, or the only one)",
    )
    parser.add_argument(
        "--view", default="0", help="view of an (N, V, L) input, or 'all' (every image-view pair)"
    )
    parser.add_argument(
        "--n-images",
        type=int,
        default=None,
        help="N for the theoretical curve (default: the number of sequences)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="measured t*: first t from which H(x_s | x_<s) stays below this many bits",
    )
    parser.add_argument("--max-rows", type=int, default=None, help="use only the first rows")
    parser.add_argument(
        "--out", default=None, help="output prefix (default: TOKENS without suffix + _entropy)"
    )
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        view = args.view if args.view == "all" else int(args.view)
        tokens, k_file = load_tokens(args.tokens, args.key, view)
        tokens = tokens[: args.max_rows] if args.max_rows else tokens
        if len(tokens) == 0:
            raise InputError(f"{args.tokens}: no token rows")
        length = tokens.shape[1]
        if args.k_sizes:
            k_sizes, source = parse_k_sizes(args.k_sizes, length), "given"
        elif k_file is not None:
            k_sizes, source = k_file, "token store"
        else:
            k_sizes, source = (
                tokens.max(axis=0).astype(np.int64) + 1,
                "inferred: max id + 1 per position",
            )
        over = np.nonzero(tokens.max(axis=0) >= k_sizes)[0]
        if over.size:
            t = int(over[0])
            raise InputError(
                f"{args.tokens}: token id {int(tokens[:, t].max())} at position {t} is not "
                f"below K_t = {int(k_sizes[t])}"
            )
    except (InputError, StepError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = conditional_entropy(tokens)
    rows = entropy_table(result, k_sizes, args.n_images)
    summary = {
        "tokens": str(args.tokens),
        "k_sizes_source": source,
        **summarize(result, k_sizes, args.threshold, args.n_images),
        "seconds": round(time.perf_counter() - start, 2),
    }
    prefix = args.out or str(Path(args.tokens).with_suffix("")) + "_entropy"
    _write_outputs(prefix, rows, summary)
    print(
        f"N = {summary['n_sequences']}, L = {length}, K_t {source}: "
        f"t* measured {summary['t_star_measured']} (H < {args.threshold:g} bits from there on), "
        f"theory {summary['t_star_theory']} -> {prefix}.{{csv,json,png}}"
    )
    return 0


def _write_outputs(prefix: str, rows: list[dict], summary: dict) -> None:
    from vcq.io import write_json
    from vcq.runfiles import write_entropy_csv

    # the pipeline's format, named after the token file, so one reader serves both
    write_entropy_csv(f"{prefix}.csv", Path(summary["tokens"]).stem, rows)
    write_json(f"{prefix}.json", summary)
    plot_entropy(rows, Path(summary["tokens"]).name, f"{prefix}.png")


if __name__ == "__main__":
    sys.exit(main())
