"""Fixtures shared by several test modules (test modules never import each other)."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import yaml

from vcq.config import load_schema, resolve_model, validate
from vcq.data.tokens import TokenWriter

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

    def run(self, cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
        """Run the step (writing the token files first if missing); it must succeed."""
        for name, n, seed in (("train.h5", 64, 0), ("val.h5", 32, 1)):
            if not (self.tmp / name).exists():
                self.write_tokens(self.tmp / name, n, seed)
        r = subprocess.run(
            self.command(cfg, out, *extra),
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
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
            "quantizer": {"code_dim": 8},
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
    cfg["tokenizer"] = validate(cfg["tokenizer"], load_schema()["properties"]["tokenizer"])
    cfg["tokenizer"]["model"] = resolve_model("tokenizer", cfg["tokenizer"]["model"])
    return cfg


@pytest.fixture
def tokenizer_cfg():
    """`tokenizer_cfg(**train)`: a config for in-process tokenizer training (tiny model, 6 steps,
    cosine schedule of 32 tokens); keyword arguments override `tokenizer.train`."""
    return _tokenizer_cfg


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
                quantizer={"kind": "vcq", "code_dim": 4, **quantizer},
            )
        )

    return build
