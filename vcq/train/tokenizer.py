"""Tokenizer training: L1 + LPIPS + quantizer + PatchGAN losses on random image crops."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from vcq import preempt
from vcq.config import k_sizes_for, tokenizer_section
from vcq.data.images import (
    ImageFolderDataset,
    StepBatchSampler,
    TrainCrops,
    check_unreadable,
    keep_items,
    normalize_uint8,
)
from vcq.losses import TokenizerLoss
from vcq.numerics import FiniteGuard, check_finite_weights, enable_tf32
from vcq.paths import Layout
from vcq.tokenizer import Tokenizer, build_tokenizer, export_for_inference, save_tokenizer
from vcq.train.checkpoint import (
    Checkpointer,
    listing_digest,
    restore_module,
    run_key,
)
from vcq.train.common import (
    adamw,
    autocast,
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


def image_loader(
    data: ImageFolderDataset,
    train_cfg: dict,
    size: int,
    crop_scale: float,
    seed: int,
    start: int,
    stop: int,
    env: DistEnv,
) -> Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One batch per step from `start` to `stop`: (uint8 crops, labels, skip flags), decoded and
    augmented in workers, or with `decode: device` JPEGs decoded and cropped on `env.device`."""
    workers, on_device = train_cfg["num_workers"], train_cfg["decode"] == "device"
    crops = TrainCrops(data, size, crop_scale, raw_jpeg=on_device)
    sampler = StepBatchSampler(
        len(data),
        train_cfg["batch_size"] // env.world_size,
        seed,
        start,
        stop,
        env.rank,
        env.world_size,
    )
    loader = torch.utils.data.DataLoader(
        crops,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=train_cfg["pin_memory"] and env.device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=train_cfg["prefetch_factor"] if workers else None,
        # its own generator: the loader's base-seed draw must not advance the checkpointed global
        # RNG
        generator=torch.Generator().manual_seed(seed),
        collate_fn=keep_items if on_device else None,
    )
    return (crops.device_batch(items, env.device) for items in loader) if on_device else loader


def flops_per_image(model: Tokenizer) -> float:
    """Training FLOPs per image of the encoder and decoder (forward + backward = 3 x forward):
    6 x (their Linear weights) x T + 12 x depth x width x T^2 per stack (attention scores and
    values), with T = patches + latent tokens. The quantizer, LPIPS and the discriminator are left
    out, so an MFU from it is a lower bound."""
    tokens = model.grid**2 + model.num_tokens
    flops = 6 * (matmul_params(model.encoder) + matmul_params(model.decoder)) * tokens
    for vit in (model.encoder, model.decoder):
        flops += 12 * len(vit.blocks) * vit.blocks[0].qkv.in_features * tokens**2
    return float(flops)


def train(
    cfg: dict, schedule: str, data: ImageFolderDataset, out: Path, stop_at: int | None = None
) -> Tokenizer:
    """Train (or resume from `<out dir>/last.pt`); write the inference model to `out` at the end."""
    train_cfg, seed = cfg["tokenizer"]["train"], cfg["seed"]
    steps, accum = train_cfg["steps"], train_cfg["grad_accum"]
    stop = steps if stop_at is None else min(stop_at, steps)
    size = cfg["tokenizer"]["model"]["image_size"]

    # build: process group, model, losses (with the discriminator), optimisers
    preempt.install()
    env = init_distributed(cfg["device"])
    micro_batch(train_cfg["batch_size"], env.world_size, accum, "tokenizer.train.batch_size")
    if env.device.type == "cuda":
        enable_tf32()
    # rank-seeded, so ranks draw their own augmentations (DDP copies rank 0's initial weights)
    torch.manual_seed(seed + env.rank)
    model = build_tokenizer(tokenizer_section(cfg, schedule), k_sizes_for(cfg, schedule)).to(
        env.device
    )
    loss_fn = TokenizerLoss(train_cfg, size).to(env.device)
    disc = loss_fn.discriminator
    betas = tuple(train_cfg["betas"])
    opt_g = adamw(param_groups(model, train_cfg["weight_decay"]), env.device, betas=betas)
    opt_d = adamw(list(disc.parameters()), env.device, betas=betas)

    # resume: weights, optimisers, step, this rank's RNG and the skipped-file list from last.pt,
    # if it was written by this run (same config, images and world size)
    ckpt_path = Layout.resume_state(out)
    key = run_key(
        {
            "seed": seed,
            "tokenizer": tokenizer_section(cfg, schedule),
            "k_sizes": [int(k) for k in k_sizes_for(cfg, schedule)],
            "crop_scale": cfg["data"]["crop_scale"],
        },
        data=listing_digest(data.root, data.samples),
        upstream="",
        world_size=env.world_size,
    )
    ckpt = Checkpointer(ckpt_path, key, env)
    state = ckpt.load(map_location=env.device)
    start, skipped = 0, set()
    if state is not None:
        restore_module(model, state["model"], ckpt_path)
        restore_module(disc, state["disc"], ckpt_path)
        restore_module(opt_g, state["opt_g"], ckpt_path)
        restore_module(opt_d, state["opt_d"], ckpt_path)
        start, skipped = state["step"], set(state["skipped"])
        log.info("resumed from %s at step %d", ckpt_path, start)
    jlog = (
        JsonlLog(Layout.metrics_log(out), schedule, start if state is not None else None)
        if env.is_main
        else None
    )
    if use_compile(train_cfg["compile"], env.device):
        # in place, so state-dict keys stay those of the plain modules
        model.encoder.compile()
        model.decoder.compile()
    net = DistributedDataParallel(model) if env.world_size > 1 else model
    if env.world_size > 1:
        loss_fn.discriminator = DistributedDataParallel(disc)
    loader = image_loader(data, train_cfg, size, cfg["data"]["crop_scale"], seed, start, stop, env)
    guard = FiniteGuard()

    bar = progress(steps, initial=start, desc=f"train_tokenizer {schedule}", enabled=env.is_main)
    peak = peak_flops(env.device)
    speed = Throughput(train_cfg["batch_size"], "img", flops_per_image(model), peak, env.world_size)
    batches = iter(loader)
    for step in range(start, stop):
        # data: this step's images of this rank (decoded and cropped by the loader's workers, or
        # with decode: device read by them and decoded here)
        with speed.waiting():
            images, _, replaced = next(batches)

        # step: learning rate, generator forward/backward per micro-batch (gradients all-reduced
        # on the last), clip, then the discriminator the same way
        lr = lr_at(
            step,
            train_cfg["lr"],
            train_cfg["lr_end"],
            train_cfg["warmup_steps"],
            train_cfg["peak_steps"],
            steps,
        )
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        x_all = normalize_uint8(images.to(env.device, non_blocking=True))
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        terms: dict[str, torch.Tensor] = {}
        for m, x in enumerate(x_all.chunk(accum)):
            with grad_sync(net, last_micro_step=m == accum - 1):
                with autocast(env.device, train_cfg["bf16"]):
                    recon, q = net(x)
                    loss, parts = loss_fn.generator(x, recon, q.loss, step)
                (loss / accum).backward()
            pairs.append((x, recon.detach()))
            for k, v in parts.items():
                terms[k] = terms.get(k, 0) + v / accum
        terms["grad_norm"] = clip_grads(model.parameters(), train_cfg["grad_clip"])
        guard.observe(step + 1, terms)
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        if loss_fn.gan_active(step):
            for m, (x, recon) in enumerate(pairs):
                with grad_sync(loss_fn.discriminator, last_micro_step=m == accum - 1):
                    with autocast(env.device, train_cfg["bf16"]):
                        d_loss = loss_fn.discriminator_step_loss(x, recon)
                    (d_loss / accum).backward()
                terms["disc"] = terms.get("disc", 0) + d_loss.detach() / accum
            terms["disc_grad_norm"] = clip_grads(disc.parameters(), train_cfg["grad_clip"])
            guard.observe(step + 1, {k: terms[k] for k in ("disc", "disc_grad_norm")})
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        done = step + 1
        bar.update(1)
        speed.step()
        # the flags come from the workers: a CPU tensor, no device sync
        skipped.update(replaced[replaced.ne(-1)].tolist())

        # evaluate: metrics of this step (the only host syncs) at logging intervals
        if done % train_cfg["log_every"] == 0 or done == steps:
            guard.check()
            # a folder that lost its images under the run stops it (data.max_unreadable)
            lost = [str(data.samples[i][0]) for i in sorted(skipped)]
            check_unreadable(lost, len(data), cfg["data"]["max_unreadable"], str(data.root))
            record = {
                "step": done,
                "lr": lr,
                **{k: float(v) for k, v in terms.items()},
                **{k: float(v) for k, v in q.stats.items()},
                "skipped_images": len(skipped),
            }
            bar.set_postfix(l1=f"{record['l1']:.4f}", lr=f"{lr:.2e}", **speed.report())
            if jlog:
                jlog.write(record)

        # checkpoint: last.pt every ckpt_every steps, at the early stop and when the slice ends
        slice_ends = preempt.stop_requested(env.device)
        if done % train_cfg["ckpt_every"] == 0 or done in (steps, stop_at) or slice_ends:
            guard.check()
            check_finite_weights(model, str(ckpt_path))
            ckpt.save(
                {
                    "model": model.state_dict(),
                    "disc": disc.state_dict(),
                    "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(),
                    "step": done,
                    "skipped": sorted(skipped),
                }
            )
        # after the last step the slice writes final.pt instead: done is done, not requeued
        if slice_ends and done < steps:
            preempt.end_slice(f"train_tokenizer {schedule} at step {done}", log)
    bar.close()
    if skipped and env.is_main:
        paths = [str(data.samples[i][0]) for i in sorted(skipped)]
        log.warning(
            "%d unreadable images skipped (each replaced by the next readable one): %s",
            len(paths),
            paths[:10],
        )

    # finish: the inference model (a VQBridge folded into its codebook; last.pt keeps it) and plots
    if env.is_main and stop == steps:
        guard.check()
        check_finite_weights(model, str(out))
        save_tokenizer(
            out, export_for_inference(model), cfg, {"schedule": schedule, "steps": steps}
        )
        plot_log(
            Layout.metrics_log(out),
            Layout.loss_plot(out),
            ["l1", "lpips", "quant", "gen_adv", "disc"],
        )
    cleanup_distributed()
    return model
