"""End-to-end tests of make_dataset and encode_tokens on a tiny tokenizer and synthetic data."""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from vcq.config import k_sizes_for
from vcq.data.images import ImageFolderDataset
from vcq.data.source import images_root
from vcq.data.tokens import open_tokens, partial_path
from vcq.data.views import make_views
from vcq.io import file_sha256, read_json
from vcq.runfiles import read_recon_images
from vcq.tokenizer import load_tokenizer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_encode_setup):
    return make_encode_setup(tmp_path_factory.mktemp("encode"), train_per_class=4, batch_size=3)


def test_make_dataset_manifest(setup):
    _, _, cfg = setup
    m = read_json(images_root(cfg["data"]) / "manifest.json")
    assert m["counts"] == {"train": 12, "val": 6} and m["num_classes"] == 3


def test_encode_train_views_match_direct_encoding(setup):
    tmp, _, cfg = setup
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
    tmp, _, _ = setup
    setup.encode(tmp / "val.h5", "val")
    with open_tokens(tmp / "val.h5") as s:
        assert s.view_names == ["center"] and s.read().shape == (6, 1, 32)


def test_resume_after_kill_equals_uninterrupted(setup):
    tmp, _, _ = setup
    out = tmp / "resumed.h5"
    setup.encode(out, "train", "--stop-after-batches", "2")
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:
        assert f["done"][:].sum() == 6
    setup.encode(out)
    with open_tokens(out) as r, open_tokens(tmp / "train.h5") as full:
        assert np.array_equal(r.read(), full.read()) and np.array_equal(r.labels, full.labels)


def test_wrong_schedule_is_refused(setup):
    tmp, _, _ = setup
    proc = subprocess.run(
        [
            sys.executable,
            "pipeline_steps/encode_tokens.py",
            *setup.args("val", tmp / "x.h5"),
            "--set",
            "schedules=[{name: cosine, kind: cosine, k_min: 4, k_max: 32}]",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "K_t differ from schedule 'cosine'" in proc.stderr


@pytest.mark.slow
def test_torchrun_shards_merge_to_single_process_result(setup):
    tmp, _, _ = setup
    out = tmp / "dist.h5"
    if not (tmp / "train.h5").exists():
        setup.encode(tmp / "train.h5")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29617",
            "pipeline_steps/encode_tokens.py",
            *setup.args("train", out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    assert not list(tmp.glob("dist.h5.rank*"))
    with open_tokens(out) as d, open_tokens(tmp / "train.h5") as s:
        assert np.array_equal(d.read(), s.read()) and np.array_equal(d.labels, s.labels)


def test_encode_skips_corrupt_image(setup, tmp_path, capsys):
    _, _, cfg = setup
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
    _, _, cfg = setup
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

    tmp, cfg_path, _ = setup
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
    tmp, cfg_path, cfg = setup
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
