"""Resume state of a training loop: `last.pt` keyed by what shapes the run, with every rank's RNG.

A run's key names, part by part, what determines its weights: the config sections that shape it
(minus settings that only change how it runs, such as logging and checkpoint intervals), the data
it reads, the upstream artefacts it builds on, and the world size. A `last.pt` written under
another key is moved aside, never resumed: a changed learning rate retrains, cutting the step count
does not finish from a later step, and a resume with another number of processes starts afresh.
Each rank's generators are saved and restored, so ranks stay independent across a resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch.distributed as dist

from vcq.training import DistEnv, capture_rng, load_checkpoint, restore_rng, save_checkpoint

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
    """Short sha256 of a JSON-serialisable value (keys sorted, so dict order does not matter)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def _change(part: str, old: Any, new: Any) -> str:
    """`part`, with old and new value when they are readable (the world size)."""
    return f"{part} ({old} -> {new})" if part == "world_size" else part


def _gather(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order (collective under torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class Checkpointer:
    """The `last.pt` of one run: saved with its key and all ranks' RNG, resumed only under that key.

    `load()` and `save()` are called by every rank (saving gathers the generators; rank 0 writes).
    """

    def __init__(self, path: str | os.PathLike, key: dict[str, str | int], env: DistEnv) -> None:
        self.path, self.key, self.env = Path(path), key, env

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
            restore_rng(state["rng"][self.env.rank])
            return state
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank has read the file before rank 0 moves it
        if self.env.is_main:
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
        rng = _gather(capture_rng())
        if self.env.is_main:
            save_checkpoint(self.path, {**state, "key": self.key, "rng": rng})
