"""Tests for vcq.data: synthetic set, corrupt-image handling, transforms and view recipes."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcq.data.images import (
    ImageFolderDataset,
    TrainCrops,
    eval_transform,
    keep_items,
    to_tensor_pm1,
)
from vcq.data.source import images_root, manifest_name, source_key
from vcq.data.synthetic import CLASS_NAMES, generate, generate_once
from vcq.data.views import make_views, view_names
from vcq.io import read_json

REPO = Path(__file__).resolve().parent.parent


def _pngs(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_synthetic_deterministic_and_manifest_last(tmp_path):
    kw = dict(num_classes=12, train_per_class=3, val_per_class=1, image_size=16)
    m1 = generate(tmp_path / "a", seed=5, **kw)
    m2 = generate(tmp_path / "b", seed=5, **kw)
    assert _pngs(tmp_path / "a") == _pngs(tmp_path / "b")
    assert m1["content_sha256"] == m2["content_sha256"]
    assert read_json(tmp_path / "a" / "manifest.json") == m1
    assert m1["counts"] == {"train": 36, "val": 12} and m1["classes"] == CLASS_NAMES
    m3 = generate(tmp_path / "c", seed=6, **kw)
    assert m3["content_sha256"] != m1["content_sha256"]


def test_synthetic_sets_are_written_once_into_a_folder_per_parameter_set(tmp_path, monkeypatch):
    # issue 22 case 3: a second experiment regenerated (deleted, rewrote) the folder that an encode
    # of the first was reading; now each parameter set has its own folder, renamed into place
    data = {
        "source": "synthetic",
        "root": str(tmp_path),
        "num_classes": 2,
        "train_per_class": 4,
        "val_per_class": 1,
        "image_size": 8,
        "seed": 0,
    }
    first = generate_once(data)
    folder = images_root(data)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    other = {**data, "train_per_class": 2}
    generate_once(other)
    assert images_root(other) != folder and len(list(images_root(other).rglob("*.png"))) == 6
    assert generate_once(data) == first  # found, not regenerated
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    # a generation that fails part way leaves neither a set nor its temporary folder
    broken = {**data, "seed": 1}

    def fail(*args):
        raise OSError("disk went away")

    monkeypatch.setattr("vcq.data.synthetic.render", fail)
    with pytest.raises(OSError, match="disk went away"):
        generate_once(broken)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([folder.name, images_root(other).name])


def test_data_source_keys_name_distinct_manifests(tmp_path):
    # issue 22 case 3: roots data/a_b and data/a/b mapped to one manifest name
    def key_name(root):
        data = {"source": "folder", "root": str(root)}
        return manifest_name(data, source_key(data))

    for root in (tmp_path / "a_b" / "train" / "c", tmp_path / "a" / "b" / "train" / "c"):
        root.mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / "0.png")
    assert key_name(tmp_path / "a_b") != key_name(tmp_path / "a" / "b")
    # issue 22 case 5: a changed folder (file added, changed, removed) is another source
    root = tmp_path / "a_b"
    seen = {key_name(root)}
    (root / "train" / "d").mkdir()
    Image.new("RGB", (4, 4)).save(root / "train" / "d" / "0.png")
    seen.add(key_name(root))
    Image.new("RGB", (5, 4)).save(root / "train" / "d" / "0.png")
    seen.add(key_name(root))
    (root / "train" / "c" / "0.png").unlink()
    seen.add(key_name(root))
    assert len(seen) == 4
    # hidden entries are not data: a notebook checkpoint folder changes nothing
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / ".ipynb_checkpoints" / "x.png").write_bytes(b"x")
    assert key_name(root) in seen


def test_synthetic_classes_differ_and_vary(tmp_path):
    generate(tmp_path, num_classes=10, train_per_class=30, val_per_class=1, image_size=32, seed=0)
    data = ImageFolderDataset(tmp_path / "train", transform=to_tensor_pm1)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = data.labels
    # Compare colour-free structure (each class also has its own hue): per-image edge maps.
    gray = images.mean(1)
    dy = (gray[:, 1:, :] - gray[:, :-1, :]).abs()[:, :, :-1]
    dx = (gray[:, :, 1:] - gray[:, :, :-1]).abs()[:, :-1]
    edges = dx + dy
    feats = torch.stack([edges[torch.as_tensor(labels == c)].mean(0).flatten() for c in range(10)])
    dists = torch.cdist(feats, feats)
    assert dists[~torch.eye(10, dtype=bool)].min() > 0.01
    # Intra-class variation: no two images of a class are identical.
    assert all(not torch.equal(images[i], images[i + 1]) for i in range(0, 29))


def test_synthetic_refuses_bad_args_and_foreign_folders(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        generate(tmp_path, num_classes=99)
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "train" / "n01440764" / "img.JPEG").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate(tmp_path, num_classes=2, train_per_class=1, val_per_class=1, image_size=8)
    assert (tmp_path / "train" / "n01440764" / "img.JPEG").exists()


def _folder(tmp_path):
    for c, colour in (("a", 10), ("b", 200)):
        (tmp_path / c).mkdir()
        for i in range(2):
            image = Image.fromarray(np.full((12, 10, 3), colour + i, np.uint8))
            image.save(tmp_path / c / f"{i}.png")
    Image.fromarray(np.full((12, 10, 3), 99, np.uint8)).save(tmp_path / "a" / "x.jpg")
    return tmp_path


def test_image_folder_labels_and_classes(tmp_path):
    data = ImageFolderDataset(_folder(tmp_path))
    assert data.classes == ["a", "b"] and data.num_classes == 2 and len(data) == 5
    assert data.labels.tolist() == [0, 0, 0, 1, 1]
    image, label = data[3]
    assert label == 1 and np.asarray(image)[0, 0, 0] == 200


@pytest.mark.parametrize("name", ["0.png", "x.jpg"])
def test_corrupt_file_skipped_counted_logged_once(tmp_path, caplog, name):
    root = _folder(tmp_path)
    bad = root / "a" / name
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    data = ImageFolderDataset(root)
    with caplog.at_level(logging.WARNING):
        index = [p for p, _ in data.samples].index(bad)
        image, label = data[index]
        data[index]
    assert data.skipped == [str(bad)]
    assert sum("skipping unreadable image" in r.message for r in caplog.records) == 1
    # Deterministic replacement: the next sample in file order.
    expected, expected_label = data[index + 1]
    assert np.array_equal(np.asarray(image), np.asarray(expected)) and label == expected_label
    assert ImageFolderDataset(root).scan() == [str(bad)]


def test_transforms_range_and_shape(tmp_path):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    x = to_tensor_pm1(np.array([[[0, 255, 128]]], np.uint8))
    assert x.shape == (3, 1, 1) and x[0].item() == -1 and x[1].item() == 1
    y = eval_transform(32)(image)
    assert y.shape == (3, 32, 32) and y.min() >= -1 and y.max() <= 1
    image.save(tmp_path / "a.png")
    (tmp_path / "c").mkdir()
    (tmp_path / "a.png").rename(tmp_path / "c" / "a.png")
    crops = TrainCrops(ImageFolderDataset(tmp_path), 32, crop_scale=1.125)
    views = [crops[(0, seed)][0] for seed in range(8)]
    assert all(v.shape == (3, 32, 32) and v.dtype == torch.uint8 for v in views)
    assert torch.equal(crops[(0, 3)][0], views[3]) and len({v.numpy().tobytes() for v in views}) > 1


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth uint8 RGB image with mild noise (resize filters differ most on pure noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1)
    return np.clip(127.5 + 100 * base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def _mixed_folder(root: Path) -> Path:
    """c/0 RGB JPEG, c/1 grayscale JPEG, c/2 PNG, c/3 truncated JPEG, c/4 CMYK JPEG."""
    (root / "c").mkdir(parents=True)
    Image.fromarray(_photo(60, 80, 0)).save(root / "c" / "0.jpg", quality=95)
    Image.fromarray(_photo(70, 50, 1)[..., 0]).save(root / "c" / "1.jpg", quality=95)
    Image.fromarray(_photo(50, 66, 2)).save(root / "c" / "2.png")
    Image.fromarray(_photo(60, 60, 3)).save(root / "c" / "3.jpg", quality=95)
    jpeg = (root / "c" / "3.jpg").read_bytes()
    (root / "c" / "3.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.fromarray(_photo(64, 48, 4)).convert("CMYK").save(root / "c" / "4.jpg", quality=95)
    return root


def test_pil_train_crops_are_unchanged(tmp_path):
    from torchvision.transforms import functional as F

    def before(image, size, pad, seed):  # TrainCrops.__getitem__ before decode: device existed
        image = F.center_crop(F.resize(image, pad), [pad, pad])
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        rng = np.random.default_rng(seed)
        y, x0 = rng.integers(0, pad - size + 1, size=2)
        x = x[:, y : y + size, x0 : x0 + size]
        return (x.flip(-1) if rng.random() < 0.5 else x).contiguous()

    data = ImageFolderDataset(_mixed_folder(tmp_path))
    crops = TrainCrops(data, 32, crop_scale=1.25)
    for index in (0, 1, 2, 4):
        image = data.load(index)[0]
        for seed in range(4):
            assert torch.equal(crops[(index, seed)][0], before(image, 32, 40, seed))


def test_device_decoded_batch_matches_pil_crops_and_counts_the_skip(tmp_path, caplog):
    data = ImageFolderDataset(_mixed_folder(tmp_path))
    pil = TrainCrops(data, 32, crop_scale=1.25)
    raw = TrainCrops(data, 32, crop_scale=1.25, raw_jpeg=True)
    keys = [(i, 10 + i) for i in range(5)]
    items = keep_items([raw[k] for k in keys])
    # the workers only read the upright RGB/L JPEGs; the PNG, the CMYK JPEG and the truncated one
    # (whose header reads) take the PIL path or are left to the main process
    assert [item[0].dim() for item in items] == [1, 1, 3, 1, 3]
    with caplog.at_level(logging.WARNING):
        images, labels, flags = raw.device_batch(items, torch.device("cpu"))
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.uint8
    assert flags.tolist() == [-1, -1, -1, 3, -1] and labels.tolist() == [0] * 5
    assert data.skipped == [str(tmp_path / "c" / "3.jpg")]
    expected = torch.stack([pil[k][0] for k in keys])
    # the truncated file is replaced by the next readable one (4.jpg) with its own crop seed
    assert torch.equal(expected[3], pil[(4, 13)][0]) and torch.equal(images[3], expected[3])
    assert torch.equal(images[[2, 4]], expected[[2, 4]])
    for i in (0, 1):  # decode_jpeg + tensor resize vs PIL: the same crop, other rounding
        assert (images[i].float() - expected[i].float()).abs().mean() < 3
    again = raw.device_batch(keep_items([raw[k] for k in keys]), torch.device("cpu"))[0]
    assert torch.equal(again, images)
    other = raw.device_batch(keep_items([raw[(i, 99 + i)] for i in range(5)]), torch.device("cpu"))
    assert not torch.equal(other[0][:2], images[:2])


def test_view_recipes():
    assert view_names("center") == ["center"] and len(view_names("tencrop")) == 10
    with pytest.raises(ValueError, match="unknown view recipe"):
        view_names("tencrop_flip")
    image = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    v = make_views(image, "tencrop", resize=36, crop=32)
    assert v.shape == (10, 3, 32, 32) and v.min() >= -1 and v.max() <= 1
    # ten distinct views; the only mirror pairs are the ones ten_crop makes on purpose (a crop of
    # the mirrored image mirrors the opposite corner of the original)
    assert len({tuple(row.tolist()) for row in v.flatten(1)}) == 10
    mirror_pairs = {
        (i, j)
        for i in range(10)
        for j in range(10)
        if torch.allclose(v[i], v[j].flip(-1), atol=1e-5)
    }
    assert mirror_pairs == {
        (0, 6),
        (6, 0),
        (1, 5),
        (5, 1),
        (2, 8),
        (8, 2),
        (3, 7),
        (7, 3),
        (4, 9),
        (9, 4),
    }
    c = make_views(Image.fromarray(image), "center", resize=36, crop=32)
    assert c.shape == (1, 3, 32, 32) and torch.allclose(c[0], v[4])


def test_make_dataset_stops_when_a_split_loses_more_images_than_allowed(tmp_path, run_step, capsys):
    # issue 22 case 4: unreadable images were skipped without limit
    for split in ("train", "val"):
        (tmp_path / "mine" / split / "a").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (4, 4)).save(tmp_path / "mine" / split / "a" / f"{i}.png")
    for i in (1, 2):
        (tmp_path / "mine" / "train" / "a" / f"{i}.png").write_bytes(b"truncated")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"extends: {REPO / 'config/default.yaml'}\n"
        f"data: {{source: folder, root: {tmp_path / 'mine'}}}\n"
        f"paths: {{work_dir: {tmp_path / 'work'}, results_dir: {tmp_path / 'res'}}}\n"
    )
    with pytest.raises(SystemExit) as stop:
        run_step("make_dataset", "--config", cfg, "--out", tmp_path / "m.json")
    assert stop.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 2 of 4 images under") and "1.png" in err
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "work").exists()
    allow = ["--set", "data.max_unreadable=0.5"]
    run_step("make_dataset", "--config", cfg, *allow, "--out", tmp_path / "m.json")
    assert read_json(tmp_path / "m.json")["counts"] == {"train": 2, "val": 4}


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
