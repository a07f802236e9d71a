"""Reconstruct the val split: PSNR vs mean-colour baseline, code usage, image grid, recon .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vcq.cli import load_step_config, setup_logging, step_parser
from vcq.io import atomic_path, write_json
from vcq.metrics.recon import ReconStats
from vcq.tokenizer import load_tokenizer
from vcq.training import init_distributed, progress


def val_images(root: Path, size: int):
    """Val ImageFolder, resized and centre-cropped to `size`, in [-1, 1]."""
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize([0.5] * 3, [0.5] * 3),
    ])
    return datasets.ImageFolder(str(root), transform=tf)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW → uint8 NHWC."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def save_grid(path: Path, originals: np.ndarray, recons: np.ndarray) -> None:
    """Two rows per group: originals above reconstructions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.concatenate([np.concatenate(list(originals), 1), np.concatenate(list(recons), 1)], 0)
    with atomic_path(path) as tmp:
        plt.imsave(tmp, rows, format="png")


@torch.no_grad()
def evaluate(model, dataset, batch_size: int, device: torch.device):
    """ReconStats result and uint8 reconstructions of every image, in dataset order."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    mean = torch.zeros(3)
    for x, _ in loader:
        mean += x.mean(dim=(2, 3)).sum(0)
    stats = ReconStats(torch.as_tensor(model.sizes), mean / len(dataset))
    recons, firsts = [], None
    bar = progress(len(loader), desc="recon")
    for x, _ in loader:
        idx, q = model.encode(x.to(device))
        recon = model.decode(q)
        stats.update(x, recon, idx)
        recons.append(to_uint8(recon))
        firsts = firsts if firsts is not None else (to_uint8(x[:8]), recons[0][:8])
        bar.update(1)
    bar.close()
    return stats.result(), np.concatenate(recons), firsts


def main() -> None:
    """CLI entry point."""
    parser = step_parser(__doc__)
    parser.add_argument("--schedule", required=True)
    parser.add_argument("--tokenizer", required=True, type=Path, help="final.pt")
    parser.add_argument("--out", required=True, type=Path, help="metrics JSON")
    parser.add_argument("--npz", required=True, type=Path, help="reconstructions (uint8 NHWC arr_0)")
    parser.add_argument("--grid", type=Path, default=None, help="PNG grid (default: beside --out)")
    args = parser.parse_args()
    cfg = load_step_config(args)
    log = setup_logging()
    device = init_distributed(cfg["device"]).device
    model = load_tokenizer(args.tokenizer, device)
    dataset = val_images(Path(cfg["data"]["root"]) / "val", model.image_size)
    result, recons, (orig, rec) = evaluate(model, dataset, cfg["encode"]["batch_size"], device)
    result = {"schedule": args.schedule, "rfid": None, "fd_label": None, **result}
    write_json(args.out, result)
    args.npz.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, arr_0=recons)
    save_grid(args.grid or args.out.with_suffix(".png"), orig, rec)
    log.info("%s: PSNR %.2f dB (mean-colour baseline %.2f dB)", args.schedule,
             result["psnr"], result["psnr_mean_colour_baseline"])


if __name__ == "__main__":
    main()
