"""Tests for vcq.data: synthetic set, corrupt-image handling, transforms and view recipes."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from vcq.data.images import ImageFolderDataset, TrainCrops, eval_transform, to_tensor_pm1
from vcq.data.synthetic import CLASS_NAMES, generate
from vcq.data.views import make_views, view_names
from vcq.io import read_json


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


def test_synthetic_regenerate_replaces_old_images(tmp_path):
    generate(tmp_path, num_classes=2, train_per_class=4, val_per_class=1, image_size=8)
    generate(tmp_path, num_classes=2, train_per_class=2, val_per_class=1, image_size=8)
    assert len(list((tmp_path / "train").rglob("*.png"))) == 4


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
