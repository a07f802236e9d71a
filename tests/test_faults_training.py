"""Faults in training and inference: divergence, non-finite models, unreadable and linked images."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vcq.ar import ARConfig, ARModel, save_ar
from vcq.config import k_sizes_for, load_config
from vcq.data.images import ImageFolderDataset
from vcq.io import StepError
from vcq.numerics import FiniteGuard, NonFiniteError, check_finite_weights
from vcq.tokenizer import build_tokenizer, save_tokenizer
from vcq.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def config(tmp: Path, **train) -> Path:
    path = tmp / "cfg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "experiment": "t",
                "device": "cpu",
                "seed": 0,
                "schedules": [{"name": "cosine", "kind": "cosine", "k_min": 4, "k_max": 16}],
                "data": {"source": "folder", "root": str(tmp / "data")},
                "tokenizer": {
                    "model": "tokenizer_tiny",
                    "num_tokens": 8,
                    "quantizer": {"vcq": {"code_dim": 8}},
                    "train": {
                        "steps": 4,
                        "batch_size": 4,
                        "log_every": 2,
                        "ckpt_every": 1,
                        "warmup_steps": 0,
                        **train,
                    },
                },
                "encode": {"views": "center", "resize": 36, "crop": 32, "batch_size": 4},
                "sampling": {
                    "presets": [{"name": "nocfg", "guidance": "none"}],
                    "samples_per_class": 1,
                },
            }
        )
    )
    return path


def step(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"pipeline_steps/{name}.py", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )


def test_guard_names_the_first_non_finite_step_and_term():
    guard = FiniteGuard()
    guard.observe(1, {"l1": torch.tensor(0.5), "quant": torch.tensor(0.1)})
    guard.check()
    guard.observe(2, {"l1": torch.tensor(0.5), "quant": torch.tensor(float("nan"))})
    guard.observe(3, {"l1": torch.tensor(float("inf")), "quant": torch.tensor(0.1)})
    with pytest.raises(NonFiniteError, match="non-finite quant at step 2"):
        guard.check()


def test_diverging_tokenizer_stops_with_one_line_and_no_non_finite_checkpoint(
    image_folder, tmp_path
):
    image_folder(tmp_path / "data" / "train", n=8)
    out = tmp_path / "tok" / "final.pt"
    r = step(
        "train_tokenizer",
        "--config",
        config(tmp_path, lr=1e10),
        "--schedule",
        "cosine",
        "--out",
        out,
    )
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "training diverged: non-finite" in last and "at step" in last
    assert not out.exists()
    state = (
        load_checkpoint(tmp_path / "tok" / "last.pt")
        if (tmp_path / "tok" / "last.pt").exists()
        else None
    )
    if state is not None:
        assert all(
            torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point()
        )


def test_diverging_ar_stops_with_one_line(train_ar_step, tmp_path):
    train_ar_step.write_tokens(tmp_path / "train.h5", 64, 0)
    train_ar_step.write_tokens(tmp_path / "val.h5", 32, 1)
    cfg = train_ar_step.config(6, lr=1e10, warmup_steps=0, grad_clip=0.0, log_every=3, ckpt_every=1)
    out = tmp_path / "ar" / "final.pt"
    r = train_ar_step.attempt(cfg, out)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "training diverged: non-finite" in last and "at step" in last, r.stderr[-2000:]
    assert not out.exists()


def test_non_finite_weights_are_refused_by_encoding_and_sampling(
    image_folder, encode_args, tmp_path
):
    image_folder(tmp_path / "data" / "val", n=8)
    cfg_path = config(tmp_path)
    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    tok = build_tokenizer(cfg["tokenizer"], k_sizes_for(cfg, "cosine"))
    save_tokenizer(tmp_path / "good.pt", tok, cfg, {"schedule": "cosine"})
    with pytest.raises(NonFiniteError):
        check_finite_weights(
            ARModel(ARConfig(n_layer=1, dim=16, n_head=2, vocab_size=16)).apply(
                lambda m: (
                    m.weight.data.fill_(float("nan")) if isinstance(m, torch.nn.Linear) else None
                )
            ),
            "x",
        )
    tok.decoder.norm.weight.data[0] = float("nan")
    save_tokenizer(tmp_path / "nan.pt", tok, cfg, {"schedule": "cosine"})
    r = step(
        "encode_tokens", *encode_args(cfg_path, tmp_path / "nan.pt", "val", tmp_path / "val.h5")
    )
    assert (
        r.returncode != 0
        and "nan.pt: the model has NaN or infinite weights" in r.stderr.strip().splitlines()[-1]
    )
    assert not (tmp_path / "val.h5").exists()

    ar_cfg = ARConfig(vocab_size=16, seq_len=8, num_classes=2, n_layer=1, n_head=2, dim=16)
    ar = ARModel(ar_cfg)
    ar.output.weight.data[0, 0] = float("inf")
    save_ar(tmp_path / "ar.pt", ar, ar_cfg, {"k_sizes": k_sizes_for(cfg, "cosine").tolist()})
    r = step(
        "sample",
        "--config",
        cfg_path,
        "--schedule",
        "cosine",
        "--preset",
        "nocfg",
        "--ar",
        tmp_path / "ar.pt",
        "--tokenizer",
        tmp_path / "good.pt",
        "--out",
        tmp_path / "s.npz",
    )
    assert (
        r.returncode != 0
        and "ar.pt: the model has NaN or infinite weights" in r.stderr.strip().splitlines()[-1]
    )


def test_truncated_image_is_skipped_and_counted_in_tokenizer_training(
    tokenizer_cfg, image_folder, tmp_path, caplog
):
    from vcq.train.tokenizer import train

    root = image_folder(tmp_path / "images", n=4)
    bad = root / "c0" / "0.png"
    bad.write_bytes(bad.read_bytes()[:60])
    cfg = tokenizer_cfg(num_workers=2, steps=2, grad_accum=1)
    train(cfg, "cosine", ImageFolderDataset(root), tmp_path / "t" / "final.pt")
    records = [json.loads(x) for x in (tmp_path / "t" / "train_log.jsonl").read_text().splitlines()]
    assert records[-1]["skipped_images"] == 1
    assert any(
        "1 unreadable images skipped" in r.message and str(bad) in r.message for r in caplog.records
    )


def test_tokenizer_training_stops_when_more_images_are_unreadable_than_allowed(
    tokenizer_cfg, image_folder, tmp_path
):
    # issue 22 case 4: a run that loses most of its data still succeeded
    from vcq.train.tokenizer import train

    root = image_folder(tmp_path / "images", n=4)
    for bad in sorted(root.rglob("*.png"))[:2]:
        bad.write_bytes(b"not an image")
    cfg = tokenizer_cfg(num_workers=0, steps=2, grad_accum=1)
    with pytest.raises(StepError, match=r"^2 of 4 images under .* data.max_unreadable"):
        train(cfg, "cosine", ImageFolderDataset(root), tmp_path / "t" / "final.pt")
    assert not (tmp_path / "t" / "final.pt").exists()


def test_symlinks_are_not_followed_out_of_the_data_root(image_folder, tmp_path):
    root = image_folder(tmp_path / "data", n=4)
    outside = image_folder(tmp_path / "elsewhere", n=4)
    (root / "c0" / "loop").symlink_to(root / "c0", target_is_directory=True)
    (root / "c0" / "loop.png").symlink_to(root / "c0")
    (root / "c1" / "foreign.png").symlink_to(outside / "c1" / "1.png")
    (root / "c1" / "inside.png").symlink_to(root / "c1" / "1.png")
    (root / "c2").symlink_to(outside / "c0", target_is_directory=True)
    data = ImageFolderDataset(root)
    assert data.classes == ["c0", "c1"]
    assert sorted(p.name for p, _ in data.samples) == [
        "0.png",
        "1.png",
        "2.png",
        "3.png",
        "inside.png",
    ]
