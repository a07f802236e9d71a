"""Train a VCQ tokenizer for one codebook schedule (resumable, DDP-aware)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from vcq.cli import load_step_config, setup_logging, step_parser
from vcq.config import codebook_sizes_for, tokenizer_config
from vcq.losses import TokenizerLoss
from vcq.tokenizer import Tokenizer, build_tokenizer, export_for_inference, save_tokenizer
from vcq.training import (
    JsonlLog,
    autocast,
    batch_indices,
    capture_rng,
    cleanup_distributed,
    init_distributed,
    load_checkpoint,
    lr_at,
    param_groups,
    plot_log,
    progress,
    restore_rng,
    save_checkpoint,
)


def image_folder(root: str | Path, size: int) -> torch.utils.data.Dataset:
    """ImageFolder of square centre crops at 9/8 of the training size, as tensors in [-1, 1]."""
    from torchvision import datasets, transforms

    pad = size * 9 // 8
    tf = transforms.Compose([
        transforms.Resize(pad), transforms.CenterCrop(pad), transforms.ToTensor(),
        transforms.Normalize([0.5] * 3, [0.5] * 3),
    ])
    return datasets.ImageFolder(str(root), transform=tf)


def crop_flip(images: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop to `size` and horizontal flip per image, from a step-seeded generator."""
    out = []
    for img in images:
        h, w = img.shape[-2:]
        y = int(torch.randint(0, h - size + 1, (), generator=gen))
        x = int(torch.randint(0, w - size + 1, (), generator=gen))
        img = img[:, y : y + size, x : x + size]
        out.append(img.flip(-1) if bool(torch.rand((), generator=gen) < 0.5) else img)
    return torch.stack(out)


def train(cfg: dict, schedule: str, dataset, out: Path, stop_at: int | None = None) -> Tokenizer:
    """Train (or resume from `<out dir>/last.pt`); `stop_at` ends early, as a kill would."""
    env = init_distributed(cfg["device"])
    tcfg, seed = cfg["tokenizer"]["train"], cfg["seed"]
    size = cfg["tokenizer"]["model"]["image_size"]
    torch.manual_seed(seed)
    model = build_tokenizer(tokenizer_config(cfg, schedule), codebook_sizes_for(cfg, schedule)).to(env.device)
    loss_fn = TokenizerLoss(tcfg).to(env.device)
    opt_g = torch.optim.AdamW(param_groups(model, tcfg["weight_decay"]), betas=tuple(tcfg["betas"]))
    opt_d = torch.optim.AdamW(loss_fn.discriminator.parameters(), betas=tuple(tcfg["betas"]))
    outdir = out.parent
    ckpt_path, log_path = outdir / "last.pt", outdir / "log.jsonl"
    state = load_checkpoint(ckpt_path, map_location=env.device)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        loss_fn.discriminator.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        restore_rng(state["rng"])
        start = state["step"]
    log = JsonlLog(log_path, resume_step=start if state is not None else None) if env.is_main else None
    net = DistributedDataParallel(model) if env.world_size > 1 else model
    disc = loss_fn.discriminator
    if env.world_size > 1:
        loss_fn.discriminator = DistributedDataParallel(disc)
    steps, accum = tcfg["steps"], tcfg["grad_accum"]
    per_rank = tcfg["batch_size"] // env.world_size
    bar = progress(steps, initial=start, desc=f"train_tokenizer {schedule}", enabled=env.is_main)
    for step in range(start, stop_at if stop_at is not None else steps):
        lr = lr_at(step, tcfg["lr"], tcfg["lr_end"], tcfg["warmup_steps"], tcfg["peak_steps"], steps)
        for opt in (opt_g, opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = batch_indices(len(dataset), per_rank, step, seed, env.rank, env.world_size)
        x_all = crop_flip(torch.stack([dataset[int(i)][0] for i in idx]), size, gen).to(env.device)
        pairs, record = [], {}
        for x in x_all.chunk(accum):
            with autocast(env.device, tcfg["bf16"]):
                recon, q = net(x)
                loss, terms = loss_fn.generator(x, recon, q.loss, step)
            (loss / accum).backward()
            pairs.append((x, recon.detach()))
            for k, v in terms.items():
                record[k] = record.get(k, 0.0) + v / accum
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        if loss_fn.gan_active(step):
            for x, recon in pairs:
                with autocast(env.device, tcfg["bf16"]):
                    d_loss = loss_fn.discriminator_step_loss(x, recon)
                (d_loss / accum).backward()
                record["disc"] = record.get("disc", 0.0) + d_loss.item() / accum
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{record['l1']:.4f}")
        if log is not None and (done % tcfg["log_every"] == 0 or done == steps):
            log.write({"step": done, "lr": lr, **record, **{k: float(v) for k, v in q.stats.items()}})
        if env.is_main and (done % tcfg["ckpt_every"] == 0 or done == steps):
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "disc": disc.state_dict(), "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(), "rng": capture_rng(), "step": done,
            })
    bar.close()
    if env.is_main and (stop_at is None or stop_at >= steps):
        # final.pt is the inference model (a VQBridge is folded into its codebook); last.pt keeps it
        save_tokenizer(out, export_for_inference(model), cfg, {"schedule": schedule, "steps": steps})
        plot_log(log_path, outdir / "loss.png", ["l1", "lpips", "quant", "gen_adv", "disc"])
    cleanup_distributed()
    return model


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument("--schedule", required=True, help="schedule name from the config")
    parser.add_argument("--out", required=True, type=Path, help="final checkpoint path (final.pt)")
    args = parser.parse_args()
    cfg = load_step_config(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = setup_logging(str(args.out.parent / "train.log"))
    size = cfg["tokenizer"]["model"]["image_size"]
    dataset = image_folder(Path(cfg["data"]["root"]) / "train", size)
    log.info("training tokenizer %s on %d images", args.schedule, len(dataset))
    train(cfg, args.schedule, dataset, args.out)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
