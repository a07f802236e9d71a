"""Run files of the demo config for the report steps' tests (make_tables, plot_figures), written
by the library's own writers with different numbers per schedule."""

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TABLE_INPUTS = ["--recon", "--entropy", "--gen", "--probe", "--position-loss"]
FIGURE_INPUTS = [
    "--entropy-csv",
    "--position-loss",
    "--recon",
    "--recon-images",
    "--samples",
    "--tokenizer-log",
    "--ar-log",
]


def step(script: str, *args: str) -> subprocess.CompletedProcess:
    """A report step of the checkout, on config/default.yaml."""
    return subprocess.run(
        [sys.executable, f"pipeline_steps/{script}", "--config", "config/default.yaml", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def args(files: dict[str, list[str]], flags: list[str], order=lambda x: x) -> list[str]:
    """The command-line flags of `flags` with their files (in `order`)."""
    return [a for f in flags for a in (f, *order(files[f]))]


def gen_record(schedule: str, preset: dict, fd: float, **extra):
    """A generation record with demo-feature defaults."""
    from vcq.metrics.records import GenerationMetrics

    fields = dict(
        fd_label="FD (demo features)",
        is_mean=2.0,
        is_std=0.0,
        is_split_size=5000,
        precision=0.5,
        recall=0.5,
        kid_mean=0.01,
        n_samples=6,
    )
    return GenerationMetrics(schedule=schedule, preset=preset, fd=fd, **{**fields, **extra})


def recon_record(schedule: str, psnr: float, rfd: float | None, **extra):
    """A reconstruction record with demo-feature defaults."""
    from vcq.metrics.records import ReconstructionMetrics

    fields = dict(psnr_mean_colour_baseline=14.0, fd_label="FD (demo features)", codebook_usage=1.0)
    return ReconstructionMetrics(schedule=schedule, psnr=psnr, rfd=rfd, **{**fields, **extra})


def entropy_record(schedule: str, t_star: int):
    """An entropy summary with measured cliff `t_star`."""
    from vcq.metrics.records import EntropySummary

    return EntropySummary(schedule, 1000, 1000, 16, 9.97, 0.3, t_star, 2, 9.0, 1.0)


def run_files(tmp: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Each report input of the default config's schedules and presets: ({flag: files in config
    order}, settings).

    Every file's path names another schedule than the one inside (the next in config order), so
    a reader that trusted paths would put the numbers in the wrong rows."""
    from PIL import Image

    from vcq.config import load_config
    from vcq.metrics.records import ProbeMetrics, write_record
    from vcq.runfiles import (
        ENTROPY_COLUMNS,
        write_entropy_csv,
        write_position_loss,
        write_recon_images,
        write_samples,
    )
    from vcq.sampling import presets_for
    from vcq.train.log import JsonlLog

    cfg = load_config(ROOT / "config/default.yaml")
    files: dict[str, list[str]] = {}

    def add(flag: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        files.setdefault(flag, []).append(str(path))
        return path

    names = [n["name"] for n in cfg["schedules"]]
    for i, s in enumerate(names):
        decoy = names[(i + 1) % len(names)]
        usage = [{"t": t, "k_t": 4, "used": 1 + (t + i) % 4, "utilization": 0.5} for t in range(8)]
        write_record(
            add("--recon", tmp / "recon" / f"{decoy}.json"),
            recon_record(s, 20.0 + i, 5.0 - i, usage_per_position=usage),
        )
        write_record(add("--entropy", tmp / "entropy" / f"{decoy}.json"), entropy_record(s, 3 + i))
        rows = [dict.fromkeys(ENTROPY_COLUMNS, 8 - t - i) | {"t": t} for t in range(8)]
        write_entropy_csv(add("--entropy-csv", tmp / "entropy" / f"{decoy}.csv"), s, rows)
        write_record(
            add("--probe", tmp / "probe" / f"{decoy}.json"),
            ProbeMetrics(s, [{"features": "codes", "k": 4, "top1": 10.0 + i, "top5": 30}]),
        )
        loss = np.linspace(3, 1, 8) + i
        write_position_loss(
            add("--position-loss", tmp / "ar" / f"{decoy}.csv"), s, loss, loss + 0.5
        )
        for flag in ("--tokenizer-log", "--ar-log"):
            log = JsonlLog(add(flag, tmp / flag.strip("-") / f"{decoy}.jsonl"), s)
            for st in range(4):
                log.write({"step": st, "l1": 1 / (st + 1 + i), "loss": 2.0 + i - st / 4})
        with write_recon_images(
            add("--recon-images", tmp / "images" / f"{decoy}.npz"), s, (3, 4, 4, 3)
        ) as (r, o):
            np.load(r, mmap_mode="r+")[:] = 40 * (i + 1)
            np.load(o, mmap_mode="r+")[:] = np.arange(3)[:, None, None, None] * 50
        for j, p in enumerate(presets_for(cfg["sampling"], s)):
            write_record(
                add("--gen", tmp / "gen" / decoy / f"{p['name']}.json"),
                gen_record(s, p, 10.0 - i - j),
            )
            chunk = tmp / "chunks" / f"{decoy}_{p['name']}.npy"
            tokens = chunk.with_name(f"{chunk.stem}_tok.npy")
            chunk.parent.mkdir(exist_ok=True)
            np.save(chunk, np.full((6, 4, 4, 3), 30 * (i + j), np.uint8))
            np.save(tokens, np.zeros((6, 16), np.int32))
            write_samples(
                add("--samples", tmp / "samples" / decoy / f"{p['name']}.npz"),
                s,
                p["name"],
                [chunk],
                np.arange(6) % 3,
                [tokens],
            )
    for c in range(3):
        (tmp / "data" / "val" / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp / "data" / "val" / f"c{c}" / "0.png")
    data = ["--set", "data.source=folder", "--set", f"data.root={tmp / 'data'}"]
    return files, ["--set", "report.n_images=1200", *data]
