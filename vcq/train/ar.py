"""AR training: next-token cross-entropy on pre-encoded (image, view) token sequences."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vcq import preempt
from vcq.ar import ARConfig, ARModel, count_params, format_breakdown, head_class, save_ar
from vcq.config import schedule as schedule_entry
from vcq.data.tokens import TokenStore
from vcq.io import StepError, write_json
from vcq.numerics import FiniteGuard, check_finite_weights, enable_tf32
from vcq.paths import Layout
from vcq.runfiles import write_position_loss
from vcq.tokenizer import load_tokenizer
from vcq.train.batches import TokenBatches
from vcq.train.checkpoint import (
    Checkpointer,
    digest,
    restore_module,
    run_key,
    store_digest,
)
from vcq.train.common import (
    adamw,
    autocast,
    batch_indices,
    clip_grads,
    grad_sync,
    lr_at,
    matmul_params,
    micro_batch,
    param_groups,
    use_compile,
)
from vcq.train.distributed import DistEnv, cleanup_distributed, init_distributed
from vcq.train.log import JsonlLog, Throughput, peak_flops, plot_log, progress

log = logging.getLogger(__name__)


def tokenizer_codebook(path: str | os.PathLike | None) -> torch.Tensor:
    """The (K_max, D) code vectors of the tokenizer (the token files are checked by its hash)."""
    if path is None:
        raise StepError(
            "this AR model reads the tokenizer's code vectors (ar.model.token_input: codes or "
            "ar_head: leech_factorized): pass --tokenizer with the schedule's tokenizer (final.pt)"
        )
    return load_tokenizer(path).quantizer.codebook_vectors().detach().float().cpu()


def needs_codebook(cfg: dict, schedule: str) -> bool:
    """Whether the AR model of `schedule` reads the tokenizer's code vectors."""
    return (
        cfg["ar"]["model"]["token_input"] == "codes"
        or head_class(schedule_entry(cfg, schedule)["ar_head"]).needs_codes
    )


@dataclass
class ARData:
    """Train and val token stores, and the tokenizer's code vectors for models that read them."""

    train: TokenStore
    val: TokenStore
    codebook: torch.Tensor | None = None


def model_config(cfg: dict, schedule: str, data: ARData) -> ARConfig:
    """AR hyper-parameters: the config's model and dropouts, vocabulary and L from the tokens."""
    tc = cfg["ar"]["train"]
    return ARConfig.from_dict(
        {
            **cfg["ar"]["model"],
            "vocab_size": data.train.k_max,
            "seq_len": data.train.seq_len,
            "num_classes": data.train.num_classes,
            "dropout": tc["dropout"],
            "attn_dropout": tc["attn_dropout"],
            "token_dropout": tc["token_dropout"],
            "class_dropout": tc["class_dropout"],
            "head": schedule_entry(cfg, schedule)["ar_head"],
            "code_dim": 0 if data.codebook is None else data.codebook.shape[1],
            "k_sizes": [int(k) for k in data.train.k_sizes],
            "restrict_k": tc["restrict_k"],
            "prologue": cfg["ar"]["prologue"],
        }
    )


def flops_per_token(model: ARModel) -> float:
    """Training FLOPs per token (nanoGPT's estimate): 6 N + 12 x n_layer x dim x L, with N the
    Linear weights (forward + backward = 3 x forward) and the second term attention's scores and
    values over the L positions."""
    c = model.cfg
    return float(6 * matmul_params(model) + 12 * c.n_layer * c.dim * c.seq_len)


def unigram_entropy_nats(store: TokenStore, vocab: int) -> float:
    """Entropy of the pooled token distribution of view 0 (the no-context baseline of val loss)."""
    counts = np.zeros(vocab, dtype=np.int64)
    for block in store.iter_chunks(view=0, chunk_rows=4096):
        counts += np.bincount(block.ravel(), minlength=vocab)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@torch.no_grad()
def validate(
    net: ARModel, store: TokenStore, batch: int, max_batches: int, device: torch.device
) -> np.ndarray:
    """Per-position val CE (L,) of the AR model over view 0."""
    net.eval()
    tot, count = None, 0
    for s in range(0, min(store.num_rows, batch * max_batches), batch):
        tok = torch.from_numpy(store.read_range(s, s + batch, view=0)).to(device)
        lab = torch.from_numpy(store.labels[s : s + batch]).to(device)
        ce = net(tok, lab).ce.sum(0)
        tot = ce if tot is None else tot + ce
        count += tok.shape[0]
    net.train()
    return (tot / count).cpu().numpy()


def batch_keys(
    n: int, n_views: int, micro: int, accum: int, seed: int, start: int, stop: int, env: DistEnv
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, views) of every micro-batch of steps start..stop-1 on this rank (seeded)."""
    for step in range(start, stop):
        for m in range(accum):
            gstep = step * accum + m
            idx = batch_indices(n, micro, gstep, seed, env.rank, env.world_size)
            views = np.random.default_rng([seed, gstep, env.rank]).integers(n_views, size=len(idx))
            yield idx, views


def train(
    cfg: dict,
    schedule: str,
    data: ARData,
    out: Path,
    stop_at: int | None = None,
    position_loss: Path | None = None,
) -> ARModel:
    """Train (or resume from `<out dir>/last.pt`); write `out`, its JSON, the per-position CSV."""
    tc = cfg["ar"]["train"]
    steps, accum = tc["steps"], tc["grad_accum"]
    stop = steps if stop_at is None else min(stop_at, steps)

    # build: process group, model (with its prologue), optimiser, data
    preempt.install()
    env = init_distributed(cfg["device"])
    micro = micro_batch(tc["batch_size"], env.world_size, accum, "ar.train.batch_size")
    mcfg = model_config(cfg, schedule, data)
    L = mcfg.seq_len
    if env.is_main:
        log.info("AR parameters:\n%s", format_breakdown(count_params(mcfg)))
    if env.device.type == "cuda":
        enable_tf32()
    torch.manual_seed(cfg["seed"] + env.rank)
    model = ARModel(mcfg)
    if data.codebook is not None:
        model.set_codebook(data.codebook)
    net = model.to(env.device)
    opt = adamw(
        param_groups(net, tc["weight_decay"]), env.device, lr=tc["lr"], betas=tuple(tc["betas"])
    )
    cuda = env.device.type == "cuda"
    # every rank of a node holds its own copy of the tokens
    batches = TokenBatches(
        data.train,
        tc["tokens_in_memory"],
        pin_memory=cuda,
        processes=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )

    # resume: weights, optimiser, step, per-position EMA and this rank's RNG from last.pt, if it
    # was written by this run (same config, tokens, tokenizer and world size)
    last = Layout.resume_state(out)
    key = run_key(
        {"seed": cfg["seed"], "ar": cfg["ar"], "schedule": schedule_entry(cfg, schedule)},
        data=digest([store_digest(data.train), store_digest(data.val)]),
        upstream=data.train.tokenizer_sha256,
        world_size=env.world_size,
    )
    ckpt = Checkpointer(last, key, env)
    state = ckpt.load(map_location=env.device)
    step, pos_ema = 0, torch.zeros(L, device=env.device)
    if state is not None:
        restore_module(net, state["model"], last)
        restore_module(opt, state["opt"], last)
        step, pos_ema = (
            state["step"],
            torch.as_tensor(state["pos_ema"], dtype=torch.float32).to(env.device),
        )
        log.info("resumed from %s at step %d", last, step)
    jlog = (
        JsonlLog(Layout.metrics_log(out), schedule, step if state else None)
        if env.is_main
        else None
    )
    fwd = net
    if env.world_size > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[env.device] if cuda else None
        )
    if use_compile(tc["compile"], env.device):
        fwd = torch.compile(fwd)
    guard = FiniteGuard()

    bar = progress(steps, initial=step, desc=f"train_ar {schedule}", enabled=env.is_main)
    net.train()
    keys = batch_keys(
        data.train.num_rows, data.train.num_views, micro, accum, cfg["seed"], step, stop, env
    )
    feed = batches.batches(keys)
    speed = Throughput(
        tc["batch_size"] * L, "tok", flops_per_token(model), peak_flops(env.device), env.world_size
    )
    while step < stop:
        # step: learning rate, accumulated forward/backward (gradients all-reduced on the last
        # micro-step), clip, optimiser (no host sync before the stop check below)
        lr = lr_at(step, tc["lr"], tc["lr_end"], tc["warmup_steps"], tc["peak_steps"], steps)
        for g in opt.param_groups:
            g["lr"] = lr
        terms: dict[str, torch.Tensor] = {}
        step_pos = torch.zeros(L, device=env.device)
        for m in range(accum):
            with speed.waiting():
                tok, lab = (t.to(env.device, non_blocking=True) for t in next(feed))
            with grad_sync(fwd, m == accum - 1), autocast(env.device, tc["bf16"]):
                out_ = fwd(tok, lab, tc["z_loss"])
            (out_.loss / accum).backward()
            for k, v in {"loss": out_.loss.detach(), **out_.terms}.items():
                terms[k] = terms.get(k, 0) + v / accum
            step_pos += out_.ce.mean(0).float() / accum
        terms["grad_norm"] = clip_grads(net.parameters(), tc["grad_clip"])
        guard.observe(step + 1, terms)
        opt.step()
        opt.zero_grad(set_to_none=True)
        pos_ema = (
            step_pos
            if step == 0
            else tc["position_ema"] * pos_ema + (1 - tc["position_ema"]) * step_pos
        )
        step += 1
        bar.update(1)
        speed.step()

        # evaluate: metrics (the only host syncs) at logging intervals, validation when due
        validate_now = tc["val_every"] and step % tc["val_every"] == 0
        if step % tc["log_every"] == 0 or step == steps or validate_now:
            guard.check()
            record = {"step": step, **{k: float(v) for k, v in terms.items()}, "lr": lr}
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", **speed.report())
            if validate_now and env.is_main:
                record["val_loss"] = float(
                    validate(net, data.val, micro, tc["val_batches"], env.device).mean()
                )
            if jlog:
                jlog.write(record)

        # checkpoint: last.pt every ckpt_every steps, at the early stop and when the slice ends
        slice_ends = preempt.stop_requested(env.device)
        if step % tc["ckpt_every"] == 0 or step == stop_at or slice_ends:
            guard.check()
            check_finite_weights(net, str(last))
            ckpt.save(
                {
                    "model": net.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "pos_ema": pos_ema.cpu(),
                }
            )
        # after the last step the slice writes final.pt instead: done is done, not requeued
        if slice_ends and step < steps:
            preempt.end_slice(f"train_ar {schedule} at step {step}", log)
    bar.close()
    feed.close()
    if stop < steps:
        cleanup_distributed()
        return model

    # finish: final validation, per-position CSV, final model, loss plot
    guard.check()
    check_finite_weights(net, str(out))
    if env.is_main:
        val_pos = validate(net, data.val, micro, tc["val_batches"], env.device)
        val_loss, h_uni = float(val_pos.mean()), unigram_entropy_nats(data.val, mcfg.vocab_size)
        log.info(
            "val loss %.4f nats (%.4f bits) vs unigram entropy %.4f nats (%.4f bits)",
            val_loss,
            val_loss / math.log(2),
            h_uni,
            h_uni / math.log(2),
        )
        extra = {
            "schedule": schedule,
            "k_sizes": [int(k) for k in data.train.k_sizes],
            "steps": step,
            "val_loss_nats": val_loss,
            "unigram_entropy_nats": h_uni,
            "tokenizer_sha256": data.train.tokenizer_sha256,
        }
        pos = pos_ema.cpu().numpy()
        if position_loss is not None:
            write_position_loss(position_loss, schedule, pos, val_pos)
        write_json(Layout.model_meta(out), extra)
        plot_log(Layout.metrics_log(out), Layout.loss_plot(out), ["loss", "val_loss"])
        save_ar(out, model, mcfg, extra)
    cleanup_distributed()
    return model
