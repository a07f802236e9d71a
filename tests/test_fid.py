"""FID/IS/PR/KID plumbing: lazy npz reading, Inception weights from a local file, ADM statistics."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tfi
from PIL import Image

from vcq.io import StepError
from vcq.metrics.features import DemoNet
from vcq.metrics.fid import ImageSource, build_extractor, evaluate, extract_features
from vcq.train.checkpoint import save_checkpoint

DEMO = Path(__file__).resolve().parents[1] / "config/default.yaml"


def _frechet(mu1, s1, mu2, s2) -> float:
    """Fréchet distance with tr sqrt(S1 S2) = tr sqrt(A S2 A), A = S1^(1/2) (symmetric, so eigh)."""
    w, v = scipy.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(scipy.linalg.eigvalsh(a @ s2 @ a), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    """A randomly initialised state dict of torch-fidelity's Inception, saved like the real file."""
    mp = pytest.MonkeyPatch()
    mp.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
    torch.manual_seed(0)
    net = tfi.FeatureExtractorInceptionV3("x", ["2048", "logits_unbiased"])
    mp.undo()
    path = tmp_path_factory.mktemp("w") / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


def _cfg(tmp_path: Path, weights: Path, **kw) -> dict:
    eval_cfg = dict(
        feature_extractor="inception",
        inception_weights=str(weights),
        demo_weights="",
        reference=None,
        batch_size=4,
        num_samples=None,
        kid_subset_size=4,
        pr_neighborhood=2,
        is_split_size=5000,
        cache_dir=str(tmp_path / "cache"),
    )
    eval_cfg.update(kw)
    return {"eval": eval_cfg}


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_npz_is_memory_mapped_and_folder_matches(tmp_path):
    imgs = _images(5, 0)
    np.savez(tmp_path / "s.npz", arr_0=imgs, labels=np.arange(5))
    src = ImageSource(tmp_path / "s.npz")
    assert isinstance(src.array, np.memmap) and len(src) == 5
    (tmp_path / "f" / "c").mkdir(parents=True)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / "f" / "c" / f"{i}.png")
    folder = ImageSource(tmp_path / "f", limit=3)
    assert len(folder) == 3
    assert (
        torch.equal(folder[2], src[2])
        and src[2].shape == (3, 32, 32)
        and src[2].dtype == torch.uint8
    )


def test_missing_inception_weights_message(tmp_path):
    with pytest.raises(
        StepError, match="weights-inception-2015-12-05-6726825d.pth.*nope.pth|nope.pth"
    ):
        build_extractor(_cfg(tmp_path, tmp_path / "nope.pth"))
    with pytest.raises(StepError, match="eval.inception_weights"):
        build_extractor(_cfg(tmp_path, tmp_path / "nope.pth"))


class _TinyNet(torch.nn.Module):
    """A stand-in extractor with torch-fidelity's (pool, logits) outputs, small and fast."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pool = torch.nn.Linear(3, 8)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        f = self.pool(x.float().mean((2, 3)) / 255)
        return f, self.head(f)


@pytest.fixture(params=["tiny", pytest.param("inception", marks=pytest.mark.slow)])
def extractor_cfg(request, tmp_path, monkeypatch):
    if request.param == "tiny":
        monkeypatch.setattr("vcq.metrics.fid.build_extractor", lambda cfg: (_TinyNet(), "FID"))
        return _cfg(tmp_path, tmp_path / "unused.pth")
    return _cfg(tmp_path, request.getfixturevalue("inception_file"))


def test_fid_matches_scipy_and_adm_stats(tmp_path, extractor_cfg):
    """FID equals a direct Fréchet distance; an ADM batch's mu/sigma replace image statistics."""
    from vcq.metrics import fid as fid_mod

    cfg = extractor_cfg
    fake, real = _images(6, 1), _images(6, 2)
    np.savez(tmp_path / "s.npz", arr_0=fake)
    np.savez(tmp_path / "r.npz", arr_0=real)
    res = evaluate(tmp_path / "s.npz", tmp_path / "r.npz", cfg)
    assert res["fd_label"] == "FID" and res["n_samples"] == 6
    assert 0 <= res["precision"] <= 1 and 0 <= res["recall"] <= 1 and np.isfinite(res["kid_mean"])
    assert res["is_mean"] >= 1 - 1e-6

    net, _ = fid_mod.build_extractor(cfg)
    f = extract_features(net, ImageSource(tmp_path / "s.npz"), 4)["pool"].numpy()
    r = extract_features(net, ImageSource(tmp_path / "r.npz"), 4)["pool"].numpy()
    ref = _frechet(f.mean(0), np.cov(f, rowvar=False), r.mean(0), np.cov(r, rowvar=False))
    assert res["fd"] == pytest.approx(ref, rel=1e-3)
    assert any((tmp_path / "cache").iterdir())

    # ADM batch: its mu/sigma win over statistics of its images.
    mu, sigma = r.mean(0) + 1.0, np.cov(r, rowvar=False)
    np.savez(tmp_path / "adm.npz", arr_0=real, mu=mu, sigma=sigma)
    adm = evaluate(tmp_path / "s.npz", tmp_path / "adm.npz", cfg)
    assert adm["fd"] == pytest.approx(
        _frechet(f.mean(0), np.cov(f, rowvar=False), mu, sigma), rel=1e-3
    )
    assert adm["precision"] == pytest.approx(res["precision"])


def test_demo_features_train_load_and_label(tmp_path):
    """A trained demo net loads through torch-fidelity's extractor API and labels FD accordingly."""
    import torch_fidelity

    from vcq.metrics.features import NAME, load_demo_extractor
    from vcq.train.features import train_demo_net

    imgs = _images(16, 3)
    labels = torch.arange(16) % 2
    imgs[labels.numpy() == 1] //= 4  # a dark class, easy to tell apart
    data = torch.utils.data.TensorDataset(torch.from_numpy(imgs).permute(0, 3, 1, 2), labels)
    demo_net_cfg = {"width": 8, "image_size": 16, "epochs": 2, "lr": 1e-2, "weight_decay": 0.0}
    net, ckpt = train_demo_net(torch.utils.data.DataLoader(data, batch_size=8), 2, demo_net_cfg)
    torch.save(ckpt, tmp_path / "demo.pt")
    ext = load_demo_extractor(tmp_path / "demo.pt")
    pool, logits = ext(data.tensors[0])
    assert pool.shape == (16, 32) and logits.shape == (16, 2)
    assert NAME in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY

    np.savez(tmp_path / "s.npz", arr_0=imgs)
    cfg = _cfg(
        tmp_path,
        tmp_path / "unused",
        feature_extractor="demo",
        demo_weights=str(tmp_path / "demo.pt"),
    )
    res = evaluate(tmp_path / "s.npz", tmp_path / "s.npz", cfg)
    assert res["fd_label"] == "FD (demo features)" and abs(res["fd"]) < 1e-6
    assert res["class_accuracy"] is None  # the samples carry no conditioning labels

    # Samples conditioned on their true class score the classifier's accuracy, shuffled labels less;
    # a reference folder's labels come from its class sub-folders.
    truth = (ext(data.tensors[0])[1].argmax(1) == labels).float().mean().item()
    np.savez(tmp_path / "l.npz", arr_0=imgs, labels=labels.numpy())
    for c in (0, 1):
        (tmp_path / "ref" / f"class{c}").mkdir(parents=True)
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(tmp_path / "ref" / f"class{int(labels[i])}" / f"{i:02d}.png")
    res = evaluate(tmp_path / "l.npz", tmp_path / "ref", cfg)
    assert res["class_accuracy"] == pytest.approx(truth) and res[
        "class_accuracy_reference"
    ] == pytest.approx(truth)
    np.savez(tmp_path / "w.npz", arr_0=imgs, labels=1 - labels.numpy())
    assert evaluate(tmp_path / "w.npz", tmp_path / "ref", cfg)["class_accuracy"] == pytest.approx(
        1 - truth
    )
    with pytest.raises(StepError, match="train_feature_net"):
        load_demo_extractor(tmp_path / "missing.pt")


def _samples_and_folder_reference(tmp_path: Path) -> dict:
    """s.npz (6 samples) and a one-class folder reference ref/ of 6 PNGs; the eval config."""
    np.savez(tmp_path / "s.npz", arr_0=_images(6, 1))
    (tmp_path / "ref" / "c").mkdir(parents=True)
    for i, im in enumerate(_images(6, 2)):
        Image.fromarray(im).save(tmp_path / "ref" / "c" / f"{i}.png")
    return _cfg(tmp_path, tmp_path / "unused.pth")


def test_folder_reference_cache_is_keyed_by_file_stats(tmp_path, monkeypatch):
    from vcq.metrics import fid as fid_mod

    monkeypatch.setattr(fid_mod, "build_extractor", lambda cfg: (_TinyNet(), "FID"))
    references = []
    extract = fid_mod.extract_features

    def counting(net, src, batch_size, desc=""):
        references.append(desc == "reference")
        return extract(net, src, batch_size, desc)

    monkeypatch.setattr(fid_mod, "extract_features", counting)
    cfg = _samples_and_folder_reference(tmp_path)
    first = evaluate(tmp_path / "s.npz", tmp_path / "ref", cfg)["fd"]
    assert evaluate(tmp_path / "s.npz", tmp_path / "ref", cfg)["fd"] == first
    assert references == [True, False, False]  # the second run reused the cached statistics

    # a rewritten image changes the key even when its size does not (an explicit later mtime:
    # file systems store times coarser than nanoseconds)
    img = tmp_path / "ref" / "c" / "0.png"
    stat = img.stat()
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(img)
    os.utime(img, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert evaluate(tmp_path / "s.npz", tmp_path / "ref", cfg)["fd"] != pytest.approx(first)
    assert references[3:] == [True, False]


def test_a_damaged_reference_cache_is_recomputed_not_an_error(tmp_path, monkeypatch):
    from vcq.metrics import fid as fid_mod

    monkeypatch.setattr(fid_mod, "build_extractor", lambda cfg: (_TinyNet(), "FID"))
    cfg = _samples_and_folder_reference(tmp_path)
    first = evaluate(tmp_path / "s.npz", tmp_path / "ref", cfg)["fd"]
    (cache,) = [p for p in Path(cfg["eval"]["cache_dir"]).rglob("*.npz")]
    cache.write_bytes(cache.read_bytes()[:100])
    assert evaluate(tmp_path / "s.npz", tmp_path / "ref", cfg)["fd"] == first
    assert np.load(cache)["key"].size == 1  # rewritten whole


def test_reference_statistics_follow_the_feature_weights(tmp_path):
    rng = np.random.default_rng(0)
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    np.savez(tmp_path / "samples.npz", arr_0=rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8))
    weights = tmp_path / "demo_net.pt"

    def train(seed):
        torch.manual_seed(seed)
        net = DemoNet(num_classes=3, width=8, image_size=16)
        save_checkpoint(
            weights,
            {
                "config": {"num_classes": 3, "width": 8, "image_size": 16},
                "state_dict": net.state_dict(),
            },
        )

    def fd(cache):
        cfg = {
            "eval": {
                "feature_extractor": "demo",
                "demo_weights": str(weights),
                "inception_weights": "",
                "batch_size": 8,
                "num_samples": None,
                "kid_subset_size": 4,
                "pr_neighborhood": 2,
                "is_split_size": 5000,
                "cache_dir": str(tmp_path / cache),
            }
        }
        return evaluate(tmp_path / "samples.npz", ref, cfg)["fd"]

    train(0)
    old = fd("cache")
    train(1)  # the feature network is retrained
    assert fd("cache") == pytest.approx(fd("empty_cache")) and fd("cache") != pytest.approx(old)


def test_missing_inception_weights_stop_eval_recon_before_it_reconstructs(tmp_path, run_python):
    # the tokenizer does not exist either: the weights are checked first, before anything loads
    r = run_python(
        "pipeline_steps/eval_recon.py",
        *("--config", DEMO, "--schedule", "constant", "--tokenizer", tmp_path / "final.pt"),
        *("--out", tmp_path / "r.json", "--out-images", tmp_path / "r.npz"),
        *("--set", "eval.feature_extractor=inception"),
        *("--set", f"eval.inception_weights={tmp_path / 'inception.pth'}"),
    )
    line = run_python.error_line(r)
    assert line.startswith(f"error: {tmp_path / 'inception.pth'}: feature extractor weights")
    assert "eval.inception_weights" in line and "download" in line
