"""Checkpoints: atomic, `weights_only`-loadable files with one-line errors, RNG capture, and the
resume state of a training loop (`last.pt` keyed by what shapes the run, with every rank's RNG).

A run's key names, part by part, what determines its weights: the config sections that shape it
(minus settings that only change how it runs, such as logging and checkpoint intervals), the data
it reads, the upstream artefacts it builds on, and the world size. A `last.pt` written under
another key is moved aside, never resumed: a changed learning rate retrains, cutting the step count
does not finish from a later step, and a resume with another number of processes starts afresh.
Each rank's generators are saved and restored, so ranks stay independent across a resume.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from vcq.io import StepError, atomic_path, content_key
from vcq.train.distributed import DistEnv, gather

if TYPE_CHECKING:
    from vcq.data.tokens import TokenStore

log = logging.getLogger(__name__)

# Settings that change how a run executes or reports, not what it computes: editing one resumes.
EXECUTION_ONLY = frozenset(
    {
        "ckpt_every",
        "log_every",
        "val_every",
        "val_batches",
        "num_workers",
        "prefetch_factor",
        "pin_memory",
        "compile",
        "tokens_in_memory",
    }
)


def digest(obj: Any) -> str:
    """Short `vcq.io.content_key` of a JSON-serialisable value: resume keys, sample chunks, token
    `.partial` files and caches are all named by that one hash."""
    return content_key(value=obj)[:16]


def _shaping(obj: Any) -> Any:
    """`obj` without the EXECUTION_ONLY keys of any nested dict."""
    if isinstance(obj, dict):
        return {k: _shaping(v) for k, v in obj.items() if k not in EXECUTION_ONLY}
    return obj


def run_key(config: dict, data: str, upstream: str, world_size: int) -> dict[str, str | int]:
    """The parts that determine a run: config sections, data listing, upstream artefacts, ranks."""
    return {
        "config": digest(_shaping(config)),
        "data": data,
        "upstream": upstream,
        "world_size": world_size,
    }


def listing_digest(root: str | os.PathLike, samples: list[tuple[Path, int]]) -> str:
    """Digest of an image folder's listing: each file's path under `root` and its label."""
    rows = [f"{label}\t{Path(p).relative_to(root).as_posix()}" for p, label in samples]
    return digest(rows)


def store_digest(store: TokenStore) -> str:
    """Digest of a token file's content: its attributes, labels and per-row checksums."""
    return digest(
        {
            "shape": list(store.tokens.shape),
            "k_sizes": store.k_sizes.tolist(),
            "tokenizer": store.tokenizer_sha256,
            "inputs": store.inputs_sha256,
            "labels": hashlib.sha256(store.labels.tobytes()).hexdigest(),
            "checksum": hashlib.sha256(store.checksums.tobytes()).hexdigest(),
        }
    )


def _change(part: str, old: Any, new: Any) -> str:
    """`part`, with old and new value when they are readable (the world size)."""
    return f"{part} ({old} -> {new})" if part == "world_size" else part


class Checkpointer:
    """The `last.pt` of one run: saved with its key and all ranks' RNG, resumed only under that key.

    `load()` and `save()` are called by every rank (saving gathers the generators; rank 0 writes).
    """

    def __init__(
        self, path: str | os.PathLike, key: dict[str, str | int], env: DistEnv | None = None
    ) -> None:
        self.path, self.key = Path(path), key
        self.rank = env.rank if env else 0

    @property
    def stale_path(self) -> Path:
        """Where state written under another key is moved (replacing an older one)."""
        return self.path.with_name(f"{self.path.stem}.stale{self.path.suffix}")

    def load(self, map_location: Any = "cpu") -> dict | None:
        """The saved state of this run (this rank's RNG restored), or None to start from step 0."""
        state = load_checkpoint(self.path, map_location=map_location)
        if state is None:
            return None
        found = state.get("key") if isinstance(state, dict) else None
        if found == self.key:
            restore_rng(state["rng"][self.rank])
            return state
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has read the file before rank 0 moves it
        if self.rank == 0:
            why = (
                "it records no run key (written by an older version)"
                if not isinstance(found, dict)
                else "its run key changed in "
                + ", ".join(
                    _change(k, found.get(k), v) for k, v in self.key.items() if found.get(k) != v
                )
            )
            os.replace(self.path, self.stale_path)
            log.info(
                "%s not resumed: %s; starting from step 0 (old state moved to %s)",
                self.path,
                why,
                self.stale_path.name,
            )
        return None

    def save(self, state: dict) -> None:
        """Write `state` with the run key and every rank's generators (collective)."""
        if "key" in state or "rng" in state:
            raise ValueError("'key' and 'rng' are the Checkpointer's own entries of last.pt")
        rng = gather(capture_rng())
        if self.rank == 0:
            save_checkpoint(self.path, {**state, "key": self.key, "rng": rng})


def capture_rng() -> dict:
    """Every random generator's state as tensors and plain types, for a checkpoint."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = torch.from_numpy(np_state["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Restore generator states captured by `capture_rng`."""
    random.setstate(state["python"])
    np_state = {**state["numpy"], "state": dict(state["numpy"]["state"])}
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointError(StepError):
    """A checkpoint that cannot be used: unreadable, unsafe, or from another configuration."""


def _plain(obj: Any, where: str) -> Any:
    """`obj` as tensors and plain Python types, the only things `weights_only` loading accepts."""
    if isinstance(obj, dict):
        return type(obj)((k, _plain(v, f"{where}.{k}")) for k, v in obj.items())
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size)):
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(
        f"checkpoint entry {where} is a {type(obj).__name__}: store tensors and plain types only"
    )


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save `state` atomically (a kill mid-write never leaves a broken checkpoint).

    numpy values become tensors so that `load_checkpoint` can read the file with weights_only.
    """
    state = _plain(state, "state")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # A file object, not a path: torch then chains the OSError (e.g. ENOSPC) it hit.
        torch.save(state, f)


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", rule: str | None = None
) -> dict | None:
    """Load a checkpoint written by `save_checkpoint` (tensors and plain data only), or None.

    `rule` is the workflow rule that writes this model file; without one the file is a training
    step's resume state (last.pt), whose loss restarts the training."""
    if not Path(path).exists():
        return None
    remedy = (
        f"delete it and rerun the `{rule}` rule"
        if rule
        else "delete it and rerun the step (its training then starts from step 0)"
    )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message advises weights_only=False, which would run the payload: not repeated.
        found = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        if not found:  # not a pickle of disallowed objects: damaged, truncated or not a checkpoint
            raise CheckpointError(
                f"{path}: unreadable checkpoint (damaged or not a torch checkpoint); {remedy}"
            ) from e
        raise CheckpointError(
            f"{path}: refused, it holds Python objects other than tensors and plain data "
            f"({found}); {remedy}"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({_first_line(e)}); {remedy}") from e


def require_checkpoint(
    path: str | os.PathLike, keys: list[str], map_location: Any = "cpu", *, rule: str
) -> dict:
    """`load_checkpoint` of a model file that the workflow's `rule` writes and that must exist
    and hold `keys`."""
    state = load_checkpoint(path, map_location, rule)
    if state is None:
        raise CheckpointError(f"{path}: no such checkpoint; the `{rule}` rule writes it")
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a vcq model file (no '{missing[0]}' entry); the `{rule}` rule writes it"
        )
    return state


def restore_module(target: Any, state: dict, path: str | os.PathLike) -> None:
    """`target.load_state_dict(state)` (a model or optimiser), failing in one line naming `path`."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as e:
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), _first_line(e))
        raise CheckpointError(
            f"{path} does not fit this configuration's {type(target).__name__} ({detail}); "
            "delete it to start afresh, or restore the configuration it was written with"
        ) from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
