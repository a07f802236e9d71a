"""Linear-probe training (paper Table 6): a linear classifier on frozen, standardised features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vcq import preempt
from vcq.metrics.probe import Featurizer, feature_moments, probe_accuracy, standardised
from vcq.train.checkpoint import Checkpointer, restore_module


def train_probe(
    featurize: Featurizer,
    train_tokens: np.ndarray,
    y_train: np.ndarray,
    val_tokens: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    probe_cfg: dict,
    seed: int = 0,
    device: torch.device | str = "cpu",
    ckpt: Checkpointer | None = None,
) -> dict:
    """Train a linear classifier with minibatch AdamW (seeded); return val {top1, top5} in percent.

    `train_tokens` is (N, V, L): every epoch visits each image once through one of its V views,
    drawn at random when `probe_cfg["train_views"]` is `all` (augmentation at no extra cost per
    epoch), else view 0. Features are standardised by the moments of one such draw and never held
    for the whole set. With `ckpt`, a stop request (`vcq.preempt`) saves the probe mid-epoch and
    ends the slice; a rerun continues it exactly, and a finished probe's result is kept there.
    """
    # build: generators, feature moments, a zero-initialised head and its optimiser
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    n, n_views, _ = train_tokens.shape
    bs = probe_cfg["batch_size"]
    n_drawn = n_views if probe_cfg.get("train_views", "all") == "all" else 1
    moments = feature_moments(
        featurize, train_tokens[np.arange(n), rng.integers(n_drawn, size=n)], bs, device
    )
    head = torch.nn.Linear(moments[0].numel(), num_classes).to(device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(
        head.parameters(), lr=probe_cfg["lr"], weight_decay=probe_cfg["weight_decay"]
    )
    y_train_t = torch.as_tensor(y_train, dtype=torch.int64, device=device)

    # resume: a finished probe's result, or the head, optimiser and place in its epoch
    state = ckpt.load() if ckpt else None
    if state is not None and "result" in state:
        return state["result"]
    start_epoch, start_batch = 0, 0
    if state is not None:
        restore_module(head, state["head"], ckpt.path)
        restore_module(opt, state["opt"], ckpt.path)
        start_epoch, start_batch = state["epoch"], state["batch"]
        gen.set_state(state["order_rng"])
        rng.bit_generator.state = state["views_rng"]
    if ckpt:
        preempt.install()

    for epoch in range(start_epoch, probe_cfg["epochs"]):
        # this epoch's views and order, drawn from the generators as they stood at its start
        at_start = {"order_rng": gen.get_state(), "views_rng": rng.bit_generator.state}
        views = rng.integers(n_drawn, size=n)
        batches = torch.randperm(n, generator=gen).split(bs)
        first = start_batch if epoch == start_epoch else 0
        for b in range(first, len(batches)):
            # step: features (frozen), cross-entropy, AdamW
            idx = batches[b].numpy()
            with torch.no_grad():
                x = standardised(featurize, *moments, train_tokens[idx, views[idx]], device)
            loss = F.cross_entropy(head(x), y_train_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

            # checkpoint: only when the time slice ends
            if ckpt and preempt.stop_requested():
                state = {"head": head.state_dict(), "opt": opt.state_dict(), **at_start}
                ckpt.save({**state, "epoch": epoch, "batch": b + 1})
                preempt.end_slice(f"linear probe {ckpt.path.stem} at epoch {epoch}")

    # finish: val accuracy, kept with the run key so a rerun does not train again
    result = probe_accuracy(head, featurize, moments, val_tokens, y_val, bs, device)
    if ckpt:
        ckpt.save({"result": result})
    return result
