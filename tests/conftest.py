"""Fixtures shared by several test modules (test modules never import each other)."""

import hashlib
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

import numpy as np
import pytest
import yaml
from PIL import Image

from vcq.config import load_schema, resolve_model, validate
from vcq.data.tokens import TokenWriter

ROOT = Path(__file__).resolve().parents[1]


class Snakemake:
    """Snakemake run in a subprocess from the checkout, with this checkout's `vcq` (PYTHONPATH) and
    one thread per process unless `env` says otherwise."""

    def __init__(self, exe: str, tmp: Path):
        self.exe, self.tmp = exe, tmp

    def __call__(
        self,
        *args: str | Path,
        config: Path | str | dict | None = None,
        profile: str | None = "local",
        check: bool = True,
        env: dict | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess:
        """`snakemake [--profile workflow/profiles/PROFILE] ARGS [--configfile CONFIG]`; a dict
        `config` is written to a YAML file first; `check`: the run must succeed."""
        cmd = [self.exe]
        if profile is not None:
            cmd += ["--profile", f"workflow/profiles/{profile}"]
        if isinstance(config, dict):
            text = yaml.safe_dump(config)
            # named by content: the same dict is the same --configfile on every call
            config = self.tmp / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
            config.write_text(text)
        cmd += map(str, args)
        if config is not None:  # last: --configfile takes every word up to the next option
            cmd += ["--configfile", str(config)]
        out = subprocess.run(
            cmd,
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env or {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
            timeout=timeout,
            check=False,
        )
        assert out.returncode == 0 or not check, (out.stdout + out.stderr)[-3000:]
        return out

    @staticmethod
    def planned(out: subprocess.CompletedProcess) -> Counter:
        """Rule -> jobs of a dry run's job stats (empty when nothing is to be done)."""
        if "Job stats:" not in out.stdout:
            return Counter()
        stats = out.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
        counts = Counter(
            {
                m.group(1): int(m.group(2))
                for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", stats, re.MULTILINE)
            }
        )
        del counts["total"]
        return counts


@pytest.fixture(scope="session")
def run_snakemake(tmp_path_factory) -> Snakemake:
    """`run_snakemake(*args, config=None, profile="local", check=True, env=None, timeout=600)`
    -> CompletedProcess; `run_snakemake.planned(out)`: the dry run's rule -> job count. Tests
    that need it are skipped where this environment has no snakemake."""
    exe = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    if not Path(exe).exists():
        pytest.skip("snakemake not installed")
    return Snakemake(exe, tmp_path_factory.mktemp("snakemake_configs"))


class Python:
    """Python run in a subprocess from the checkout, on one thread, with this checkout's `vcq`."""

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess:
        """`python ARGS` (a script or `-m module` and its arguments), succeeding or not."""
        return subprocess.run(
            [sys.executable, *map(str, args)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
            check=False,
        )

    @staticmethod
    def error_line(out: subprocess.CompletedProcess) -> str:
        """The last stderr line of a run that must have failed with exit 1 and no traceback."""
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
        return out.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def run_python() -> Python:
    """`run_python(*args)` -> CompletedProcess of `python ARGS` from the checkout;
    `run_python.error_line(out)`: the one `error:` line of a failed step."""
    return Python()


def _figure_pixels(path: Path, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """A written figure's content: a PDF is a whole PDF document; a PNG is `size` (width, height)
    pixels if given and not blank (several colours, over 1 % of pixels off the background). The
    PNG's RGB pixels, None for a PDF."""
    if path.suffix == ".pdf":
        data = path.read_bytes()
        assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:], path
        return None
    with Image.open(path) as im:
        assert im.format == "PNG" and (size is None or im.size == size), (path, im.size)
        pixels = np.asarray(im.convert("RGB"))
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) >= 4 and counts.max() < 0.99 * counts.sum(), f"{path} is blank"
    return pixels


@pytest.fixture(scope="session")
def figure_pixels():
    """`figure_pixels(path, size=None)`: a figure file has content (_figure_pixels); its pixels."""
    return _figure_pixels


def _truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut the file to its first `keep` fraction, as a kill or a full disk leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.fixture(scope="session")
def truncate():
    """`truncate(path, keep=0.5)` -> path: the file cut to its first `keep` fraction."""
    return _truncate


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 KiB tmpfs (root only): a real ENOSPC, not a simulated one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        shutil.which("mount") is None
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
            capture_output=True,
            check=False,
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def write_token_store(
    path: Path,
    tokens: np.ndarray,
    k_sizes,
    labels: np.ndarray | None = None,
    num_classes: int = 1,
    sha: str = "x",
    view_names: list[str] | None = None,
    schedule: str = "s",
    chunk_rows: int = 64,
) -> Path:
    """A complete token store of `tokens` (rows, views, L) written in one call by the store's
    writer; labels 0 unless given, views v0, v1, ... unless named."""
    labels = np.zeros(len(tokens), np.int64) if labels is None else labels
    with TokenWriter(
        path,
        num_rows=len(tokens),
        k_sizes=k_sizes,
        view_names=view_names or [f"v{i}" for i in range(tokens.shape[1])],
        num_classes=num_classes,
        schedule=schedule,
        tokenizer_sha256=sha,
        chunk_rows=chunk_rows,
    ) as w:
        w.write(np.arange(len(tokens)), tokens, labels)
        return w.finalize()


@pytest.fixture(scope="session")
def token_store():
    """`token_store(path, tokens, k_sizes, labels=None, num_classes=1, sha="x", view_names=None,
    schedule="s", chunk_rows=64)` -> path: a complete token store written by the store's writer."""
    return write_token_store


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
        write_token_store(
            path, tok, np.full(L, K), labels, 4, sha, view_names=["a", "b"], schedule="c"
        )

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


@pytest.fixture(scope="session")
def dry_run(run_snakemake):
    """`dry_run(config, profile)` -> (rule counts, (rule, wildcards) per job, printed plan) of a
    forced dry run from the checkout, each plan computed once per session."""
    return cache(lambda config, profile: plan(run_snakemake, config, profile))


def plan(
    run_snakemake: Snakemake, config: str, profile: str
) -> tuple[Counter, list[tuple[str, dict]], str]:
    """A forced dry run (every job planned whether or not outputs exist): rule -> job count,
    (rule, wildcards) per job, and the printed plan."""
    out = run_snakemake("-n", "--forceall", config=config, profile=profile, timeout=300)
    counts = run_snakemake.planned(out)
    jobs = []
    for block in re.split(r"^(?:local)?rule (?=\w+:)", out.stdout, flags=re.MULTILINE)[1:]:
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
        pairs = wildcards.group(1).split(", ") if wildcards else []
        jobs.append((block.split(":", 1)[0], dict(p.split("=", 1) for p in pairs)))
    assert Counter(rule for rule, _ in jobs) == counts
    return counts, jobs, out.stdout
