"""End-to-end tests of make_dataset and encode_tokens (and eval_recon, sample's weight check) on a
tiny tokenizer and synthetic data."""

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from vcq.ar import ARConfig, ARModel, save_ar
from vcq.config import k_sizes_for, load_config
from vcq.data.images import ImageFolderDataset
from vcq.data.source import images_root
from vcq.data.tokens import open_tokens, partial_path
from vcq.data.views import make_views
from vcq.io import file_sha256, read_json
from vcq.numerics import NonFiniteError, check_finite_weights
from vcq.runfiles import read_recon_images
from vcq.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer

REPO = Path(__file__).resolve().parents[1]


def encode_args(cfg_path: Path, tokenizer: Path, split: str, out: Path) -> list[str]:
    """encode_tokens' arguments for schedule `cosine` of the config, the split encoded by the
    tokenizer checkpoint into `out`."""
    return [
        *("--config", str(cfg_path), "--schedule", "cosine", "--tokenizer", str(tokenizer)),
        *("--split", split, "--out", str(out)),
    ]


@dataclass(frozen=True)
class EncodeSetup:
    """Synthetic data made by make_dataset and an untrained tiny tokenizer `final.pt`, in `tmp`."""

    tmp: Path
    cfg_path: Path
    cfg: dict
    run_step: Callable

    def args(self, split: str, out: Path) -> list[str]:
        """encode_tokens' arguments for `split` with this tokenizer, written to `out`."""
        return encode_args(self.cfg_path, self.tmp / "final.pt", split, out)

    def encode(self, out: Path, split: str = "train", *extra: str) -> None:
        """Run encode_tokens in this process; `extra` arguments after the others."""
        self.run_step("encode_tokens", *self.args(split, out), *extra)


def encode_setup(tmp: Path, run_step, train_per_class: int, batch_size: int) -> EncodeSetup:
    """3 classes of `train_per_class` train and 2 val images, schedule `cosine` of 32 tokens,
    encoding in batches of `batch_size` and chunks of 4 rows."""
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
    run_step("make_dataset", "--config", cfg_path)
    torch.manual_seed(0)
    model = build_tokenizer(cfg["tokenizer"], k_sizes_for(cfg, "cosine"))
    save_tokenizer(tmp / "final.pt", model, cfg, {"schedule": "cosine"})
    return EncodeSetup(tmp, cfg_path, cfg, run_step)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, run_step):
    return encode_setup(
        tmp_path_factory.mktemp("encode"), run_step, train_per_class=4, batch_size=3
    )


def test_make_dataset_manifest(setup):
    cfg = setup.cfg
    m = read_json(images_root(cfg["data"]) / "manifest.json")
    assert m["counts"] == {"train": 12, "val": 6} and m["num_classes"] == 3


def test_encode_train_views_match_direct_encoding(setup):
    tmp, cfg = setup.tmp, setup.cfg
    out = tmp / "train.h5"
    setup.encode(out)
    model = load_tokenizer(tmp / "final.pt")
    data = ImageFolderDataset(images_root(cfg["data"]) / "train")
    with open_tokens(out, k_sizes_for(cfg, "cosine")) as s:
        assert (s.num_rows, s.num_views, s.seq_len) == (12, 10, 32)
        assert s.tokenizer_sha256 == file_sha256(tmp / "final.pt") and s.schedule == "cosine"
        assert np.array_equal(s.labels, data.labels) and s.num_classes == 3
        image, _ = data[5]
        with torch.no_grad():
            direct = model.encode(make_views(image, "tencrop", 36, 32))[0].numpy()
        assert np.array_equal(s.read()[5], direct)
        assert (s.read() < s.k_sizes).all()


def test_encode_val_uses_center_view(setup):
    tmp = setup.tmp
    setup.encode(tmp / "val.h5", "val")
    with open_tokens(tmp / "val.h5") as s:
        assert s.view_names == ["center"] and s.read().shape == (6, 1, 32)


def test_resume_after_kill_equals_uninterrupted(setup):
    tmp = setup.tmp
    out = tmp / "resumed.h5"
    setup.encode(out, "train", "--stop-after-batches", "2")
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:
        assert f["done"][:].sum() == 6
    setup.encode(out)
    with open_tokens(out) as r, open_tokens(tmp / "train.h5") as full:
        assert np.array_equal(r.read(), full.read()) and np.array_equal(r.labels, full.labels)


def test_wrong_schedule_is_refused(setup, run_python):
    tmp = setup.tmp
    proc = run_python(
        "pipeline_steps/encode_tokens.py",
        *setup.args("val", tmp / "x.h5"),
        "--set",
        "schedules=[{name: cosine, kind: cosine, k_min: 4, k_max: 32}]",
    )
    assert proc.returncode != 0 and "K_t differ from schedule 'cosine'" in proc.stderr


@pytest.mark.slow
def test_torchrun_shards_merge_to_single_process_result(setup, run_python):
    tmp = setup.tmp
    out = tmp / "dist.h5"
    if not (tmp / "train.h5").exists():
        setup.encode(tmp / "train.h5")
    r = run_python(
        *("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29617"),
        "pipeline_steps/encode_tokens.py",
        *setup.args("train", out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(tmp.glob("dist.h5.rank*"))
    with open_tokens(out) as d, open_tokens(tmp / "train.h5") as s:
        assert np.array_equal(d.read(), s.read()) and np.array_equal(d.labels, s.labels)


def test_encode_skips_corrupt_image(setup, tmp_path, capsys):
    cfg = setup.cfg
    root = tmp_path / "data"
    shutil.copytree(images_root(cfg["data"]) / "val", root / "val")
    bad = sorted((root / "val").rglob("*.png"))[1]
    bad.write_bytes(bad.read_bytes()[:50])
    # The step's logging handler writes to stderr (setup_logging replaces pytest's handlers).
    folder = ["--set", "data.source=folder", "--set", f"data.root={root}"]
    setup.encode(tmp_path / "val.h5", "val", *folder)
    err = capsys.readouterr().err
    assert "1 corrupt images skipped" in err and str(bad) in err
    with open_tokens(tmp_path / "val.h5") as s:
        assert s.num_rows == 6 and np.array_equal(s.read()[1], s.read()[2])


def test_encode_stops_when_more_images_are_unreadable_than_allowed(setup, tmp_path, capsys):
    # issue 22 case 4: an encode that skipped 451 of 750 images exited 0 and finalised its file
    cfg = setup.cfg
    root = tmp_path / "data"
    shutil.copytree(images_root(cfg["data"]) / "val", root / "val")
    bad = sorted((root / "val").rglob("*.png"))[:2]
    for b in bad:
        b.write_bytes(b"not an image")
    folder = ["--set", "data.source=folder", "--set", f"data.root={root}"]
    with pytest.raises(SystemExit) as stop:
        setup.encode(tmp_path / "val.h5", "val", *folder)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stop.value.code == 1 and err.startswith("error: 2 of 6 images under")
    assert "data.max_unreadable = 0.001 allows (1)" in err and str(bad[0]) in err
    assert not (tmp_path / "val.h5").exists()
    # a larger allowance lets the same folder through
    setup.encode(tmp_path / "val.h5", "val", *folder, "--set", "data.max_unreadable=0.5")
    assert (tmp_path / "val.h5").exists()


def test_eval_recon_writes_metrics_and_a_grid_of_originals_above_reconstructions(setup, run_step):
    from PIL import Image

    tmp, cfg_path = setup.tmp, setup.cfg_path
    out = tmp / "recon" / "cosine.json"
    run_step(
        "eval_recon",
        "--config",
        cfg_path,
        "--schedule",
        "cosine",
        "--tokenizer",
        tmp / "final.pt",
        "--out",
        out,
        "--out-images",
        tmp / "recon" / "cosine.npz",
        "--no-rfid",
    )
    assert read_json(out)["schedule"] == "cosine"
    images = read_recon_images(tmp / "recon" / "cosine.npz")
    originals = images.originals
    assert images.schedule == "cosine" and images.recon.shape == originals.shape
    grid = np.asarray(Image.open(out.with_suffix(".png")).convert("RGB"))
    # one val image per class (3 classes of 2, sorted by class): originals 0, 2, 4 above their
    # reconstructions
    assert len(originals) == 6 and grid.shape == (2 * 32, 3 * 32, 3)
    assert np.array_equal(grid[:32, 32:64], originals[2])


def test_eval_recon_stops_when_more_val_images_are_unreadable_than_allowed(
    setup, run_step, tmp_path, capsys
):
    tmp, cfg_path, cfg = setup.tmp, setup.cfg_path, setup.cfg
    root = tmp_path / "data"
    shutil.copytree(images_root(cfg["data"]) / "val", root / "val")
    for b in sorted((root / "val").rglob("*.png"))[:2]:
        b.write_bytes(b"not an image")
    args = ["--config", cfg_path, "--schedule", "cosine", "--tokenizer", tmp / "final.pt"]
    args += ["--out", tmp_path / "r.json", "--out-images", tmp_path / "r.npz", "--no-rfid"]
    folder = ["--set", "data.source=folder", "--set", f"data.root={root}"]
    with pytest.raises(SystemExit):
        run_step("eval_recon", *args, *folder)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: 2 of 6 images")
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.npz").exists()


@pytest.fixture(scope="module")
def full_disk_setup(tmp_path_factory, run_step):
    """24 training images in batches of 4: more tokens than the 16 KiB disk holds."""
    return encode_setup(tmp_path_factory.mktemp("full"), run_step, train_per_class=8, batch_size=4)


def test_encoding_onto_a_full_disk_fails_in_one_line_and_resumes(
    full_disk_setup, tiny_disk, tmp_path, run_python
):
    def encode(out):
        return run_python("pipeline_steps/encode_tokens.py", *full_disk_setup.args("train", out))

    r = encode(tiny_disk / "train.h5")
    assert (
        run_python.error_line(r)
        == f"error: no space left on device while writing {tiny_disk / 'train.h5.partial'}"
    )
    assert "Exception ignored" not in r.stderr and not (tiny_disk / "train.h5").exists()
    # space again: resume
    shutil.copy(tiny_disk / "train.h5.partial", tmp_path / "train.h5.partial")
    assert encode(tmp_path / "train.h5").returncode == 0
    assert encode(tmp_path / "fresh.h5").returncode == 0
    with open_tokens(tmp_path / "train.h5") as a, open_tokens(tmp_path / "fresh.h5") as b:
        assert np.array_equal(a.read(), b.read()) and np.array_equal(a.labels, b.labels)


def test_non_finite_weights_are_refused_by_encoding_and_sampling(setup, run_python, tmp_path):
    k_sizes = k_sizes_for(setup.cfg, "cosine")
    torch.manual_seed(0)
    with pytest.raises(NonFiniteError):
        check_finite_weights(
            ARModel(ARConfig(n_layer=1, dim=16, n_head=2, vocab_size=16)).apply(
                lambda m: (
                    m.weight.data.fill_(float("nan")) if isinstance(m, torch.nn.Linear) else None
                )
            ),
            "x",
        )
    tok = build_tokenizer(setup.cfg["tokenizer"], k_sizes)
    tok.decoder.norm.weight.data[0] = float("nan")
    save_tokenizer(tmp_path / "nan.pt", tok, setup.cfg, {"schedule": "cosine"})
    out = tmp_path / "val.h5"
    r = run_python(
        "pipeline_steps/encode_tokens.py",
        *encode_args(setup.cfg_path, tmp_path / "nan.pt", "val", out),
    )
    assert "nan.pt: the model has NaN or infinite weights" in run_python.error_line(r)
    assert not out.exists()
    ar_cfg = ARConfig(
        vocab_size=int(k_sizes.max()),
        seq_len=len(k_sizes),
        num_classes=3,
        n_layer=1,
        n_head=2,
        dim=16,
    )
    ar = ARModel(ar_cfg)
    ar.output.weight.data[0, 0] = float("inf")
    save_ar(tmp_path / "ar.pt", ar, ar_cfg, {"k_sizes": k_sizes.tolist()})
    r = run_python(
        "pipeline_steps/sample.py",
        *("--config", setup.cfg_path, "--schedule", "cosine", "--preset", "nocfg"),
        *("--set", "sampling.presets=[{name: nocfg, guidance: none}]"),
        *("--ar", tmp_path / "ar.pt", "--tokenizer", setup.tmp / "final.pt"),
        *("--out", tmp_path / "s.npz"),
    )
    assert "ar.pt: the model has NaN or infinite weights" in run_python.error_line(r)
    assert not (tmp_path / "s.npz").exists()
