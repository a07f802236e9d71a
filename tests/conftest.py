"""Fixtures shared by several test modules (test modules never import each other)."""

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import vcq.tokenizer
from vcq.config import k_sizes_for, load_config, load_schema, resolve_model, validate
from vcq.data.tokens import TokenWriter
from vcq.tokenizer import build_tokenizer, save_tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def snakemake_exe() -> str:
    """The snakemake command of this environment (tests that need it are skipped without one)."""
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    if not Path(exe).exists():
        pytest.skip("snakemake not installed")
    return exe


@pytest.fixture
def in_checkout(monkeypatch) -> Path:
    """Run from the checkout, where configs' relative paths (e.g. report.paper_numbers) point."""
    monkeypatch.chdir(ROOT)
    return ROOT


class TrainARStep:
    """`pipeline_steps/train_ar.py` on tiny token files (L 16, 2 views, K 16, 4 classes)."""

    L, V, K = 16, 2, 16

    def __init__(self, tmp: Path):
        self.tmp = tmp

    def write_tokens(self, path: Path, n: int, seed: int, sha: str = "x") -> None:
        """Structured tokens (a class-dependent arithmetic progression mod K), encoded by `sha`."""
        L, V, K = self.L, self.V, self.K
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 4, n)
        start = rng.integers(0, K, (n, V, 1))
        tok = (start + (labels[:, None, None] + 1) * np.arange(L)) % K
        with TokenWriter(
            path,
            num_rows=n,
            k_sizes=np.full(L, K),
            view_names=["a", "b"],
            num_classes=4,
            schedule="c",
            tokenizer_sha256=sha,
        ) as w:
            w.write(np.arange(n), tok, labels)
            w.finalize()

    def config(self, steps: int, **train) -> Path:
        """A config of one constant schedule `c` and the `ar_tiny` model trained for `steps`."""
        train = {
            "steps": steps,
            "batch_size": 8,
            "lr": 3e-3,
            "lr_end": 3e-4,
            "warmup_steps": 2,
            "peak_steps": 2,
            "log_every": 1,
            "ckpt_every": 1000,
            "val_batches": 4,
            **train,
        }
        cfg = {
            "experiment": "t",
            "seed": 0,
            "device": "cpu",
            "schedules": [{"name": "c", "kind": "constant", "k_max": self.K}],
            "paths": {"work_dir": str(self.tmp / "work"), "results_dir": str(self.tmp / "results")},
            "ar": {"model": "ar_tiny", "train": train},
        }
        p = self.tmp / "cfg.yaml"
        p.write_text(yaml.safe_dump(cfg))
        return p

    def command(self, cfg: Path, out: Path, *extra: str) -> list[str]:
        """The step's command line on the folder's train.h5 / val.h5."""
        return [
            sys.executable,
            str(ROOT / "pipeline_steps" / "train_ar.py"),
            "--config",
            str(cfg),
            "--schedule",
            "c",
            "--tokens",
            str(self.tmp / "train.h5"),
            "--val-tokens",
            str(self.tmp / "val.h5"),
            "--out",
            str(out),
            *extra,
        ]

    def attempt(self, cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
        """Run the step on the folder's token files as they are, succeeding or not."""
        return subprocess.run(
            self.command(cfg, out, *extra),
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
            check=False,
        )

    def run(self, cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
        """Run the step (writing the token files first if missing); it must succeed."""
        for name, n, seed in (("train.h5", 64, 0), ("val.h5", 32, 1)):
            if not (self.tmp / name).exists():
                self.write_tokens(self.tmp / name, n, seed)
        r = self.attempt(cfg, out, *extra)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    @staticmethod
    def losses(out: Path) -> list[float]:
        """The training losses logged beside the checkpoint `out`."""
        log = (out.parent / "train_log.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in log]


@pytest.fixture
def train_ar_step(tmp_path) -> TrainARStep:
    """The AR training step on tiny token files in `tmp_path`."""
    return TrainARStep(tmp_path)


def _tokenizer_cfg(**train) -> dict:
    cfg = {
        "experiment": "t",
        "device": "cpu",
        "seed": 0,
        "data": {"crop_scale": 1.125},
        "schedules": [{"name": "cosine", "kind": "cosine", "k_min": 4, "k_max": 64, "alpha": 2.5}],
        "tokenizer": {
            "num_tokens": 32,
            "quantizer": {"vcq": {"code_dim": 8}},
            "train": {
                "steps": 6,
                "batch_size": 4,
                "grad_accum": 2,
                "disc_start": 2,
                "ckpt_every": 1,
                "log_every": 1,
                "warmup_steps": 2,
                "peak_steps": 3,
                **train,
            },
        },
    }
    cfg["data"] = validate(cfg["data"], load_schema()["properties"]["data"])
    cfg["tokenizer"] = validate(cfg["tokenizer"], load_schema()["properties"]["tokenizer"])
    cfg["tokenizer"]["model"] = resolve_model("tokenizer", cfg["tokenizer"]["model"])
    return cfg


@pytest.fixture
def tokenizer_cfg():
    """`tokenizer_cfg(**train)`: a config for in-process tokenizer training (tiny model, 6 steps,
    cosine schedule of 32 tokens); keyword arguments override `tokenizer.train`."""
    return _tokenizer_cfg


def _image_folder(root: Path, n: int, shape: tuple[int, int] = (36, 36), seed: int = 0) -> Path:
    """n random RGB PNGs of `shape` (height, width) alternating between class folders c0 and c1."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(
            root / f"c{i % 2}" / f"{i}.png"
        )
    return root


@pytest.fixture(scope="session")
def image_folder():
    """`image_folder(root, n, shape=(36, 36), seed=0)`: n random PNGs in two class folders."""
    return _image_folder


def _run_step(name: str, *args) -> None:
    """Run `pipeline_steps/NAME.py` in this process as a script with the arguments `args`."""
    argv = sys.argv
    sys.argv = [f"{name}.py", *map(str, args)]
    try:
        runpy.run_path(str(ROOT / "pipeline_steps" / f"{name}.py"), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.fixture(scope="session")
def run_step():
    """`run_step(name, *args)`: `pipeline_steps/NAME.py` run in this process as a script."""
    return _run_step


def _encode_args(cfg_path: Path, tokenizer: Path, split: str, out: Path) -> list[str]:
    return [
        "--config",
        str(cfg_path),
        "--schedule",
        "cosine",
        "--tokenizer",
        str(tokenizer),
        "--split",
        split,
        "--out",
        str(out),
    ]


@pytest.fixture(scope="session")
def encode_args():
    """`encode_args(config, tokenizer, split, out)`: encode_tokens' arguments for schedule
    `cosine` of the config, the split encoded by the tokenizer checkpoint into `out`."""
    return _encode_args


class EncodeSetup(NamedTuple):
    """Synthetic data made by make_dataset and an untrained tiny tokenizer `final.pt`, in `tmp`."""

    tmp: Path
    cfg_path: Path
    cfg: dict

    def args(self, split: str, out: Path) -> list[str]:
        """encode_tokens' arguments for `split` with this tokenizer, written to `out`."""
        return _encode_args(self.cfg_path, self.tmp / "final.pt", split, out)

    def encode(self, out: Path, split: str = "train", *extra: str) -> None:
        """Run encode_tokens in this process; `extra` arguments after the others."""
        _run_step("encode_tokens", *self.args(split, out), *extra)


def _encode_setup(tmp: Path, train_per_class: int, batch_size: int) -> EncodeSetup:
    cfg_path = tmp / "cfg.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "experiment": "t",
                "device": "cpu",
                "schedules": [{"name": "cosine", "kind": "cosine", "k_min": 4, "k_max": 64}],
                "data": {
                    "root": str(tmp / "data"),
                    "num_classes": 3,
                    "train_per_class": train_per_class,
                    "val_per_class": 2,
                },
                "tokenizer": {
                    "model": "tokenizer_tiny",
                    "num_tokens": 32,
                    "quantizer": {"kind": "vcq", "vcq": {"code_dim": 8}},
                },
                "encode": {"batch_size": batch_size, "chunk_rows": 4},
            }
        )
    )
    cfg = load_config(cfg_path)
    _run_step("make_dataset", "--config", cfg_path)
    torch.manual_seed(0)
    model = build_tokenizer(cfg["tokenizer"], k_sizes_for(cfg, "cosine"))
    save_tokenizer(tmp / "final.pt", model, cfg, {"schedule": "cosine"})
    return EncodeSetup(tmp, cfg_path, cfg)


@pytest.fixture(scope="session")
def make_encode_setup():
    """`make_encode_setup(tmp, train_per_class, batch_size)` -> EncodeSetup: 3 classes of
    `train_per_class` train and 2 val images, schedule `cosine` of 32 tokens, encoding in batches
    of `batch_size` and chunks of 4 rows."""
    return _encode_setup


class SampleStep:
    """`pipeline_steps/sample.py` in this process for schedule `c` of `c.yaml`, with the AR model
    `ar.pt` and a stand-in tokenizer `tok.pt` (its bytes only feed the chunk key)."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp, self.monkeypatch = tmp, monkeypatch

    def stand_in_tokenizer(self, scale: float) -> None:
        """Decode token ids as grey levels `id / scale - 1`, 4 pixels wide."""

        class FakeTokenizer(torch.nn.Module):
            def decode_indices(self, idx):
                return (idx.float()[:, None, :, None] / scale - 1).expand(-1, 3, -1, 4)

        self.monkeypatch.setattr(
            vcq.tokenizer, "load_tokenizer", lambda path, map_location="cpu": FakeTokenizer()
        )
        (self.tmp / "tok.pt").write_bytes(b"stand-in: the chunk key hashes it")

    def config(self, k_max: int, preset: dict, **sampling) -> None:
        """One constant schedule `c` of `k_max` and one preset; `sampling` keys beside it."""
        cfg = {
            "experiment": "t",
            "device": "cpu",
            "schedules": [{"name": "c", "kind": "constant", "k_max": k_max}],
            "sampling": {"presets": [preset], **sampling},
        }
        (self.tmp / "c.yaml").write_text(yaml.safe_dump(cfg))

    def run(self, preset: str, *overrides: str) -> Path:
        """Sample `preset` into s/PRESET.npz with `--set` overrides; the output path."""
        out = self.tmp / "s" / f"{preset}.npz"
        _run_step(
            "sample",
            "--config",
            self.tmp / "c.yaml",
            "--schedule",
            "c",
            "--preset",
            preset,
            "--ar",
            self.tmp / "ar.pt",
            "--tokenizer",
            self.tmp / "tok.pt",
            "--out",
            out,
            *[a for o in overrides for a in ("--set", o)],
        )
        return out


@pytest.fixture
def sample_step(tmp_path, monkeypatch) -> SampleStep:
    """The sample step in `tmp_path` (see SampleStep)."""
    return SampleStep(tmp_path, monkeypatch)


@pytest.fixture(scope="session")
def dry_run(snakemake_exe):
    """`dry_run(config, profile)` -> (rule counts, (rule, wildcards) per job, printed plan) of a
    forced dry run from the checkout, each plan computed once per session."""
    return cache(lambda config, profile: plan(snakemake_exe, config, profile))


def plan(
    snakemake_exe: str, config: str, profile: str
) -> tuple[Counter, list[tuple[str, dict]], str]:
    """A forced dry run (every job planned whether or not outputs exist): rule -> job count,
    (rule, wildcards) per job, and the printed plan."""
    cmd = [
        snakemake_exe,
        "-n",
        "--forceall",
        "--profile",
        f"workflow/profiles/{profile}",
        "--configfile",
        config,
    ]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    stats = out.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = Counter(
        {
            m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", stats, re.MULTILINE)
        }
    )
    del counts["total"]
    jobs = []
    for block in re.split(r"^(?:local)?rule (?=\w+:)", out.stdout, flags=re.MULTILINE)[1:]:
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        pairs = wildcards.group(1).split(", ") if wildcards else []
        jobs.append((block.split(":", 1)[0], dict(p.split("=", 1) for p in pairs)))
    assert Counter(rule for rule, _ in jobs) == counts
    return counts, jobs, out.stdout


@pytest.fixture
def make_tokenizer():
    """A builder of 16 px, width-16 tokenizers for given K_t (quantizer options as keywords)."""
    from vcq.tokenizer import Tokenizer, TokenizerConfig

    def build(k_sizes, **quantizer) -> Tokenizer:
        return Tokenizer(
            TokenizerConfig(
                image_size=16,
                patch_size=8,
                enc_width=16,
                enc_depth=1,
                enc_heads=2,
                dec_width=16,
                dec_depth=1,
                dec_heads=2,
                k_sizes=list(k_sizes),
                quantizer={"kind": "vcq", "vcq": {"code_dim": 4, **quantizer}},
            )
        )

    return build
