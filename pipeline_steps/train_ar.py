"""Train the class-conditional AR transformer on pre-encoded tokens (next-token CE)."""
from __future__ import annotations

import contextlib
import csv
import math
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from vcq import training as T
from vcq.ar import ARConfig, ARModel, count_params, format_breakdown, save_ar, z_loss
from vcq.cli import load_step_config, setup_logging, step_parser
from vcq.config import schedule
from vcq.io import atomic_path, file_sha256, write_json
from vcq.prologue import ARWithPrologue, PrologueEncoder
from vcq.tokenizer import load_tokenizer


def read_batch(f: h5py.File, idx: np.ndarray, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (B, L) and labels (B,) of rows idx (any order, repeats allowed), one view per row."""
    uniq, inv = np.unique(idx, return_inverse=True)  # h5py fancy indexing needs increasing indices
    return f["tokens"][uniq][inv, views].astype(np.int64), f["labels"][uniq][inv]


def token_loss(model: ARModel, logits: torch.Tensor, tokens: torch.Tensor,
               z_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss for backward (CE + optional z-loss) and the per-position CE (L,) for logging."""
    ce = model.position_ce(logits, tokens)  # (B, L)
    return ce.mean() + z_loss(logits, z_weight), ce.detach().mean(0)


def tokenizer_codebook(path: str | None, attrs: h5py.AttributeManager) -> torch.Tensor:
    """The (K_max, D) code vectors of the tokenizer that encoded the token file (checked by hash)."""
    if path is None:
        raise SystemExit("this AR model reads the tokenizer's code vectors (ar.model.token_input: codes or "
                         "ar_head: leech_factorized): pass --tokenizer work/<experiment>/tokenizer/<schedule>/final.pt")
    want = str(attrs.get("tokenizer_sha256", ""))
    if want and file_sha256(path) != want:
        raise SystemExit(f"--tokenizer {path} did not encode these tokens (their tokenizer sha256 is {want[:16]}...)")
    return load_tokenizer(path).quantizer.codebook_vectors().detach().float().cpu()


def unigram_entropy_nats(ds: h5py.Dataset, vocab: int, chunk: int = 4096) -> float:
    """Entropy of the pooled token distribution of view 0 (the no-context baseline of val loss)."""
    counts = np.zeros(vocab, dtype=np.int64)
    for i in range(0, ds.shape[0], chunk):
        counts += np.bincount(ds[i:i + chunk, 0].ravel().astype(np.int64), minlength=vocab)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@torch.no_grad()
def validate(net: torch.nn.Module, model: ARModel, f: h5py.File, batch: int, max_batches: int,
             device) -> np.ndarray:
    """Per-position val CE (L,) of `net` (the AR model, or it wrapped with a prologue) over view 0."""
    net.eval()
    n = f["tokens"].shape[0]
    tot, count = None, 0
    for s in range(0, min(n, batch * max_batches), batch):
        tok = torch.from_numpy(f["tokens"][s:s + batch, 0].astype(np.int64)).to(device)
        lab = torch.from_numpy(f["labels"][s:s + batch]).to(device)
        logits = net(tok, lab)
        logits = logits[0] if isinstance(logits, tuple) else logits  # (visual, prologue, ids) with a prologue
        ce = model.position_ce(logits, tok).sum(0)
        tot = ce if tot is None else tot + ce
        count += tok.shape[0]
    net.train()
    return (tot / count).cpu().numpy()


def main() -> None:
    p = step_parser(__doc__)
    p.add_argument("--schedule", required=True)
    p.add_argument("--tokens", required=True, help="train token HDF5")
    p.add_argument("--val-tokens", required=True, help="val token HDF5")
    p.add_argument("--out", required=True, help="final model path (last.pt goes beside it)")
    p.add_argument("--tokenizer", help="tokenizer final.pt; read only by models that need its code vectors")
    p.add_argument("--position-loss", help="CSV t,train_loss,val_loss (default results/{exp}/ar/)")
    p.add_argument("--stop-after", type=int, help="checkpoint and exit after this step (for tests)")
    args = p.parse_args()
    cfg = load_step_config(args)
    tc = cfg["ar"]["train"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = T.init_distributed(cfg["device"])
    log = setup_logging(str(out.parent / "train.log") if env.is_main else None)
    pos_csv = Path(args.position_loss or Path(cfg["paths"]["results_dir"]) / cfg["experiment"] / "ar"
                   / f"{args.schedule}_position_loss.csv")

    ftr, fva = h5py.File(args.tokens, "r"), h5py.File(args.val_tokens, "r")
    n, n_views, L = ftr["tokens"].shape
    head = schedule(cfg, args.schedule)["ar_head"]
    codebook = None
    if cfg["ar"]["model"]["token_input"] == "codes" or head == "leech_factorized":
        codebook = tokenizer_codebook(args.tokenizer, ftr.attrs)
    mcfg = ARConfig.from_dict({**cfg["ar"]["model"], "vocab_size": int(ftr.attrs["k_max"]), "seq_len": L,
                               "num_classes": int(ftr.attrs["num_classes"]), "dropout": tc["dropout"],
                               "token_dropout": tc["token_dropout"], "class_dropout": tc["class_dropout"],
                               "head": head, "code_dim": 0 if codebook is None else codebook.shape[1]})
    micro, rem = divmod(tc["batch_size"], env.world_size * tc["grad_accum"])
    if rem or micro == 0:
        raise SystemExit(f"ar.train.batch_size {tc['batch_size']} not divisible by "
                         f"world_size {env.world_size} x grad_accum {tc['grad_accum']}")
    if env.is_main:
        log.info("AR parameters:\n%s", format_breakdown(count_params(mcfg)))

    torch.manual_seed(cfg["seed"] + env.rank)
    model = ARModel(mcfg)
    if codebook is not None:
        model.set_codebook(codebook)
    pcfg = {**cfg["ar"]["prologue"], "vocab": mcfg.vocab_size, "seq_len": L, "ar_dim": mcfg.dim}
    if pcfg["num_tokens"]:
        net = ARWithPrologue(model, PrologueEncoder(**pcfg)).to(env.device)
    else:
        net = model.to(env.device)
    opt = torch.optim.AdamW(T.param_groups(net, tc["weight_decay"]), lr=tc["lr"], betas=tuple(tc["betas"]))
    last = out.parent / "last.pt"
    state = T.load_checkpoint(last, map_location=env.device)
    step, pos_ema = 0, np.zeros(L)
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, pos_ema = state["step"], state["pos_ema"]
        T.restore_rng(state["rng"])
        log.info("resumed from %s at step %d", last, step)
    jlog = T.JsonlLog(out.parent / "train_log.jsonl", resume_step=step if state else None) if env.is_main else None
    fwd = net
    if env.world_size > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(net, device_ids=[env.device] if env.device.type == "cuda" else None)
    if tc["compile"]:
        fwd = torch.compile(fwd)

    def checkpoint() -> None:
        if env.is_main:
            T.save_checkpoint(last, {"model": net.state_dict(), "opt": opt.state_dict(), "step": step,
                                     "pos_ema": pos_ema, "rng": T.capture_rng()})

    bar = T.progress(tc["steps"], initial=step, desc=f"train_ar {args.schedule}", enabled=env.is_main)
    net.train()
    while step < tc["steps"]:
        lr = T.lr_at(step, tc["lr"], tc["lr_end"], tc["warmup_steps"], tc["peak_steps"], tc["steps"])
        for g in opt.param_groups:
            g["lr"] = lr
        step_loss, step_pos, step_pro = 0.0, np.zeros(L), 0.0
        for m in range(tc["grad_accum"]):
            gstep = step * tc["grad_accum"] + m
            idx = T.batch_indices(n, micro, gstep, cfg["seed"], env.rank, env.world_size)
            views = np.random.default_rng([cfg["seed"], gstep, env.rank]).integers(n_views, size=len(idx))
            tok, lab = (torch.from_numpy(a).to(env.device) for a in read_batch(ftr, idx, views))
            last_micro = m == tc["grad_accum"] - 1
            sync = last_micro or env.world_size == 1
            ctx = fwd.no_sync() if not sync and hasattr(fwd, "no_sync") else contextlib.nullcontext()
            with ctx, T.autocast(env.device, tc["bf16"]):
                out_ = fwd(tok, lab)
                if isinstance(out_, tuple):  # prologue: its CE joins the loss, its only training signal
                    loss, pos = token_loss(model, out_[0], tok, tc["z_loss"])
                    pro = F.cross_entropy(out_[1].float().transpose(1, 2), out_[2])
                    loss = loss + pro
                    step_pro += pro.item() / tc["grad_accum"]
                else:
                    loss, pos = token_loss(model, out_, tok, tc["z_loss"])
            (loss / tc["grad_accum"]).backward()
            step_loss += loss.item() / tc["grad_accum"]
            step_pos += pos.float().cpu().numpy() / tc["grad_accum"]
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), tc["grad_clip"] or math.inf)
        opt.step()
        opt.zero_grad(set_to_none=True)
        pos_ema = step_pos if step == 0 else tc["position_ema"] * pos_ema + (1 - tc["position_ema"]) * step_pos
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
        record = {"step": step, "loss": step_loss, "lr": lr, "grad_norm": float(gnorm)}
        if net is not model:
            record["prologue_loss"] = step_pro
        if tc["val_every"] and step % tc["val_every"] == 0 and env.is_main:
            record["val_loss"] = float(validate(net, model, fva, micro, tc["val_batches"], env.device).mean())
        if jlog and (step % tc["log_every"] == 0 or step == tc["steps"] or "val_loss" in record):
            jlog.write(record)
        if step % tc["ckpt_every"] == 0 or step == args.stop_after:
            checkpoint()
        if step == args.stop_after:
            bar.close()
            T.cleanup_distributed()
            return
    bar.close()

    if env.is_main:
        val_pos = validate(net, model, fva, micro, tc["val_batches"], env.device)
        val_loss, h_uni = float(val_pos.mean()), unigram_entropy_nats(fva["tokens"], mcfg.vocab_size)
        log.info("val loss %.4f nats (%.4f bits) vs unigram entropy %.4f nats (%.4f bits)",
                 val_loss, val_loss / math.log(2), h_uni, h_uni / math.log(2))
        extra = {"schedule": args.schedule, "k_sizes": [int(k) for k in ftr.attrs["k_sizes"]], "steps": step,
                 "val_loss_nats": val_loss, "unigram_entropy_nats": h_uni,
                 "tokenizer_sha256": str(ftr.attrs.get("tokenizer_sha256", ""))}
        pos_csv.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(pos_csv) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["t", "train_loss", "val_loss"])
            w.writerows([t, f"{pos_ema[t]:.6f}", f"{val_pos[t]:.6f}"] for t in range(L))
        write_json(out.with_suffix(".json"), extra)
        if net is not model:  # the sampler needs the prologue codebook to feed sampled ids back
            extra["prologue"] = {"config": pcfg, "state_dict": net.prologue.state_dict()}
        T.plot_log(out.parent / "train_log.jsonl", out.parent / "loss.png", ["loss", "val_loss"])
        save_ar(out, model, mcfg, extra)
    T.cleanup_distributed()


if __name__ == "__main__":
    main()
