"""AR training batches of (row, view) token pairs from a token store, one batch ahead."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from vcq.data.tokens import TokenStore

log = logging.getLogger(__name__)


def fits_in_memory(nbytes: int, share: float = 0.25, processes: int = 1) -> bool:
    """Whether `nbytes` is at most `share` of the available memory divided among `processes`."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return False
    return nbytes <= share * available / max(1, processes)


class TokenBatches:
    """(tokens, labels) training batches of (row, view) pairs from a token store.

    The token array is read into RAM once (checksums and bounds checked) when `in_memory` is
    true, or with "auto" when it fits (`fits_in_memory`); otherwise each batch reads only its
    pairs (`TokenStore.read_rows`, which checks them). `batches` builds the next batch in a
    background thread while the current one trains, in pinned memory if asked.
    """

    def __init__(
        self,
        store: TokenStore,
        in_memory: bool | str = "auto",
        pin_memory: bool = False,
        processes: int = 1,
    ) -> None:
        self.store, self.pin_memory = store, pin_memory
        tokens = store.tokens
        nbytes = int(np.prod(tokens.shape)) * tokens.dtype.itemsize
        if in_memory == "auto":
            in_memory = fits_in_memory(nbytes, processes=processes)
        self.array = store.read_stored() if in_memory else None
        if self.array is not None:
            log.info("%s: holding %.2f GiB of tokens in memory", store.path, nbytes / 2**30)

    @property
    def in_memory(self) -> bool:
        """Whether the tokens are held in RAM."""
        return self.array is not None

    def batch(self, rows: np.ndarray, views: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """int64 tokens (B, L) and labels (B,) of the pairs, as CPU tensors (pinned if asked)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.array is not None:
            tok, lab = self.array[rows, views].astype(np.int64), self.store.labels[rows]
        else:
            tok, lab = self.store.read_rows(rows, views)
        tok, lab = torch.from_numpy(tok), torch.from_numpy(lab)
        if self.pin_memory:
            tok, lab = tok.pin_memory(), lab.pin_memory()
        return tok, lab

    def batches(
        self, keys: Iterable[tuple[np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `keys` ((rows, views) pairs) in order, each read while the last trains."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for key in keys:
                nxt = pool.submit(self.batch, *key)
                if pending is not None:
                    yield pending.result()
                pending = nxt
            if pending is not None:
                yield pending.result()
