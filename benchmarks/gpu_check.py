"""One-GPU throughput check of the paper-scale models (run by benchmarks/gpu_check.sh).

Prints, one line each: Base-tokenizer bf16 training images/s and MFU; the training process's
images/s with `tokenizer.train.decode: device` (JPEGs decoded and cropped on the GPU, beside the
PIL crops of one worker); AR-B bf16 training tokens/s
and MFU; AR-B sampling images/s (batch 256, CFG, L = 256) eager and compiled; encoding images/s;
the time of a torch-fidelity FID over 10,000 generated images. Inputs are synthetic tensors
already on the device (the input pipelines have their own benchmarks); weights are random.

FLOPs per trained image or token are the training loops' (`vcq.train.tokenizer.flops_per_image`,
`vcq.train.ar.flops_per_token`, nanoGPT's 6 N + 12 n_layer d T); the tokenizer's leave LPIPS and
the discriminator out, so its MFU is a lower bound. MFU = achieved / peak bf16 dense.
`--tiny` runs the same code with the demo's small models on the CPU (a smoke test).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vcq.ar import ARConfig, ARModel
from vcq.config import k_sizes_for, load_config, tokenizer_section
from vcq.data.images import ImageFolderDataset, TrainCrops, keep_items, normalize_uint8
from vcq.data.views import view_names
from vcq.losses import TokenizerLoss
from vcq.numerics import enable_tf32, inference_autocast
from vcq.sampling import generate
from vcq.tokenizer import build_tokenizer
from vcq.train.ar import flops_per_token
from vcq.train.common import adamw
from vcq.train.log import PEAK_BF16_FLOPS
from vcq.train.tokenizer import flops_per_image


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def precision(device: torch.device) -> str:
    return "bf16" if device.type == "cuda" else "fp32"


def timed(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of `fn()` after warm-up calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def tokenizer_training(
    cfg: dict, device: torch.device, batch: int, peak: float, tiny: bool
) -> None:
    train_cfg = {**cfg["tokenizer"]["train"], "disc_start": 0, "lpips_weights": None}
    model = build_tokenizer(tokenizer_section(cfg, "cosine"), k_sizes_for(cfg, "cosine")).to(device)
    loss_fn = TokenizerLoss(train_cfg, cfg["tokenizer"]["model"]["image_size"]).to(device)
    if not tiny:  # LPIPS with a random VGG trunk: same cost as the real one, no weight file needed
        import lpips

        loss_fn.lpips = (
            lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).to(device).eval()
        )
        model.encoder.compile()
        model.decoder.compile()
    opt_g = adamw(list(model.parameters()), device, lr=1e-4)
    opt_d = adamw(list(loss_fn.discriminator.parameters()), device, lr=1e-4)
    size = model.image_size
    x_u8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    amp = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )

    def step() -> None:
        x = normalize_uint8(x_u8)
        with amp:
            recon, q = model(x)
            loss, _ = loss_fn.generator(x, recon, q.loss, 1)
        loss.backward()
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        with amp:
            d = loss_fn.discriminator_step_loss(x, recon.detach())
        d.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)

    t = timed(step, device, 2 if tiny else 5, 2 if tiny else 10)
    flops = flops_per_image(model)
    ips = batch / t
    extras = "GAN" if tiny else "GAN + LPIPS"
    print(
        f"tokenizer training ({precision(device)}, batch {batch}, {size}px, {extras} on): "
        f"{ips:8.1f} images/s, "
        f"{t * 1e3:.0f} ms/step, MFU {ips * flops / peak:.1%} (encoder + decoder FLOPs only)"
    )


def device_decoding(cfg: dict, device: torch.device, batch: int, tiny: bool) -> None:
    """Images/s of `TrainCrops.device_batch` (the training process's share of `decode: device`,
    files already read) and of the PIL crops one loader worker makes, on 500x375 JPEGs."""
    h, w = (48, 64) if tiny else (375, 500)
    size, scale = cfg["tokenizer"]["model"]["image_size"], cfg["data"]["crop_scale"]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c").mkdir()
        yy, xx = (np.mgrid[0:h, 0:w, 0:1] / w)[:2]
        for i in range(batch):
            pixels = 127.5 + 100 * np.sin(6 * xx + i) * np.cos(4 * yy - rng.random(3))
            Image.fromarray(pixels.astype(np.uint8)).save(Path(tmp) / "c" / f"{i}.jpg", quality=90)
        data = ImageFolderDataset(tmp)
        raw, pil = TrainCrops(data, size, scale, raw_jpeg=True), TrainCrops(data, size, scale)
        items = keep_items([raw[(i, i)] for i in range(batch)])
        t_dev = timed(lambda: raw.device_batch(items, device), device, 2, 2 if tiny else 10)
        few = min(batch, 16)
        t_pil = timed(lambda: [pil[(i, i)] for i in range(few)], torch.device("cpu"), 1, 2)
    print(
        f"tokenizer input, decode: device ({device.type}, batch {batch}, {w}x{h} JPEG -> "
        f"{size}px): {batch / t_dev:8.1f} images/s in the training process; PIL crops in one "
        f"worker {few / t_pil:.1f} images/s"
    )


def ar_model(cfg: dict, device: torch.device) -> ARModel:
    mcfg = ARConfig.from_dict(
        {
            **cfg["ar"]["model"],
            "vocab_size": int(max(k_sizes_for(cfg, "cosine"))),
            "seq_len": cfg["tokenizer"]["num_tokens"],
            "num_classes": 1000,
            "dropout": 0.1,
            "token_dropout": 0.1,
            "class_dropout": 0.1,
        }
    )
    return ARModel(mcfg).to(device)


def ar_training(cfg: dict, device: torch.device, batch: int, peak: float, tiny: bool) -> None:
    model = ar_model(cfg, device).train()
    fwd = model if tiny else torch.compile(model)
    opt = adamw(list(model.parameters()), device, lr=1e-4, betas=(0.9, 0.96))
    L = model.cfg.seq_len
    tok = torch.randint(0, model.cfg.vocab_size, (batch, L), device=device)
    lab = torch.randint(0, 1000, (batch,), device=device)
    amp = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )

    def step() -> None:
        with amp:
            loss = fwd(tok, lab).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    t = timed(step, device, 2 if tiny else 5, 2 if tiny else 20)
    c = model.cfg
    tps = batch * L / t
    print(
        f"AR training ({precision(device)}, batch {batch}, L {L}, V {c.vocab_size}): "
        f"{tps:10.0f} tokens/s, {t * 1e3:.0f} ms/step, "
        f"MFU {tps * flops_per_token(model) / peak:.1%} (6N + 12 n_layer d T per token)"
    )


def ar_sampling(cfg: dict, device: torch.device, batch: int, tiny: bool) -> None:
    model = ar_model(cfg, device).eval()
    k_sizes = k_sizes_for(cfg, "cosine")
    preset = {"guidance": "codebook-aware", "scale": 9.0, "power": 1.5, "temperature": 1.0}
    labels = torch.arange(batch, device=device) % 1000
    gen = torch.Generator(device).manual_seed(0)

    def run() -> None:
        with torch.no_grad(), inference_autocast(device):
            generate(model, labels, k_sizes, preset, gen)

    eager = batch / timed(run, device, 1, 1 if tiny else 3)
    # decode steps change the cached length: dynamic shapes, one compiled graph
    model.forward_embeds = torch.compile(
        model.forward_embeds, dynamic=True, backend="eager" if tiny else "inductor"
    )
    compiled = batch / timed(run, device, 1, 1 if tiny else 3)
    print(
        f"AR sampling (batch {batch}, CFG, L {len(k_sizes)}): eager {eager:.1f} images/s, "
        f"compiled {compiled:.1f} images/s"
    )


def encoding(cfg: dict, device: torch.device, batch: int, views: int, tiny: bool) -> None:
    model = (
        build_tokenizer(tokenizer_section(cfg, "cosine"), k_sizes_for(cfg, "cosine"))
        .to(device)
        .eval()
    )
    size = model.image_size
    x_u8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)

    def run() -> None:
        with torch.inference_mode(), inference_autocast(device):
            model.encode(normalize_uint8(x_u8))

    vps = batch / timed(run, device, 1 if tiny else 3, 2 if tiny else 10)
    print(
        f"encoding ({precision(device)}, batch {batch} views of {size}px): "
        f"{vps:.0f} views/s = {vps / views:.1f} images/s "
        f"at {views} views per image"
    )


def fid_time(device: torch.device, n: int, size: int, weights: Path | None) -> None:
    from torch_fidelity.feature_extractor_inceptionv3 import (
        FeatureExtractorInceptionV3 as Inception,
    )
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    from vcq.metrics.fid import ImageSource, _stats, extract_features

    with tempfile.TemporaryDirectory() as tmp:
        if weights is None or not weights.is_file():
            # random weights time the same network; patch out the load of the missing file
            empty = Path(tmp) / "empty.pt"
            torch.save({}, empty)
            load, Inception.load_state_dict = (
                Inception.load_state_dict,
                lambda self, sd, *a, **k: None,
            )
            try:
                net = Inception(
                    "inception-v3-compat",
                    ["2048", "logits_unbiased"],
                    feature_extractor_weights_path=str(empty),
                )
            finally:
                Inception.load_state_dict = load
        else:
            net = Inception(
                "inception-v3-compat",
                ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(weights),
            )
        net = net.to(device).eval()
        path = Path(tmp) / "samples.npy"
        np.save(path, np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8))
        ref = {"mu": np.zeros(2048), "sigma": np.eye(2048)}
        t0 = time.perf_counter()
        feats = extract_features(
            net, ImageSource(path), 250 if device.type == "cuda" else 16, desc="fid"
        )
        fid_statistics_to_metric(_stats(feats["pool"]), ref, False)
        sync(device)
        print(
            f"FID (torch-fidelity Inception, {n} images of {size}px, "
            f"{'given' if weights and weights.is_file() else 'random'} weights): "
            f"{time.perf_counter() - t0:.1f} s"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tiny", action="store_true", help="demo-size models on the CPU (smoke test)")
    p.add_argument("--only", nargs="*", default=["tokenizer", "ar", "sample", "encode", "fid"])
    p.add_argument(
        "--inception-weights",
        type=Path,
        default=Path("weights/weights-inception-2015-12-05-6726825d.pth"),
    )
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    # --tiny: the demo config with its 32 px tokenizer model; PatchGAN needs at least 32 px, and the
    # demo's own 16 px tokenizer never switches the discriminator on
    cfg = (
        load_config("config/default.yaml", ["tokenizer.model=tokenizer_tiny"])
        if args.tiny
        else load_config("config/imagenet/base.yaml")
    )
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = (
        next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), 989e12)
        if device.type == "cuda"
        else 1e12
    )
    print(f"device: {name}; torch {torch.__version__}; peak for MFU {peak / 1e12:.0f} TFLOP/s")
    if device.type == "cuda":
        enable_tf32()
    torch.manual_seed(0)
    small = args.tiny
    if "tokenizer" in args.only:
        tokenizer_training(cfg, device, 4 if small else 32, peak, small)
        device_decoding(cfg, device, 4 if small else 256, small)
    if "ar" in args.only:
        ar_training(cfg, device, 4 if small else 64, peak, small)
    if "sample" in args.only:
        ar_sampling(cfg, device, 4 if small else 256, small)
    if "encode" in args.only:
        encoding(cfg, device, 8 if small else 256, len(view_names(cfg["encode"]["views"])), small)
    if "fid" in args.only:
        fid_time(device, 16 if small else 10_000, 32 if small else 256, args.inception_weights)
    print("gpu check done")


if __name__ == "__main__":
    main()
