"""Demo feature-network training: the small CNN classifier that stands in for Inception."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from vcq import preempt
from vcq.metrics.features import DemoNet
from vcq.train.checkpoint import Checkpointer, restore_module


def train_demo_net(
    loader: torch.utils.data.DataLoader,
    num_classes: int,
    demo_net_cfg: dict,
    seed: int = 0,
    ckpt: Checkpointer | None = None,
) -> tuple[DemoNet, dict]:
    """Train a DemoNet with AdamW on (uint8 CHW image, label) batches; returns (net, checkpoint).

    With `ckpt` (the loader then needs its own `generator`), a stop request (`vcq.preempt`) saves
    the network mid-epoch and ends the slice; a rerun continues it exactly.
    """
    # build: the seeded network and its optimiser
    torch.manual_seed(seed)
    config = {
        "num_classes": num_classes,
        "width": demo_net_cfg["width"],
        "image_size": demo_net_cfg["image_size"],
    }
    net = DemoNet(**config)
    opt = torch.optim.AdamW(
        net.parameters(), lr=demo_net_cfg["lr"], weight_decay=demo_net_cfg["weight_decay"]
    )

    # resume: weights, optimiser and the place in the epoch (with the loader's generator as the
    # epoch began, so the same order is drawn again)
    state = ckpt.load() if ckpt else None
    start_epoch, start_batch = 0, 0
    if state is not None:
        restore_module(net, state["model"], ckpt.path)
        restore_module(opt, state["opt"], ckpt.path)
        start_epoch, start_batch = state["epoch"], state["batch"]
        loader.generator.set_state(state["loader_rng"])
    if ckpt:
        preempt.install()

    for epoch in range(start_epoch, demo_net_cfg["epochs"]):
        loader_rng = loader.generator.get_state() if ckpt else None
        first = start_batch if epoch == start_epoch else 0
        for b, (x, y) in enumerate(itertools.islice(loader, first, None), first):
            # step: cross-entropy of the class logits, AdamW
            _, logits = net(x.float() / 127.5 - 1)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

            # checkpoint: only when the time slice ends
            if ckpt and preempt.stop_requested():
                state = {"model": net.state_dict(), "opt": opt.state_dict()}
                ckpt.save({**state, "epoch": epoch, "batch": b + 1, "loader_rng": loader_rng})
                preempt.end_slice(f"train_feature_net at epoch {epoch}")
    net.eval()
    return net, {"state_dict": net.state_dict(), "config": config}
